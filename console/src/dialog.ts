// Confirmation with a native <dialog>: modal, focus trapped by the browser, Escape cancels.
import { h } from './dom';

export interface ConfirmOptions {
  title: string;
  body: string | Node;
  confirmLabel: string;
  /** The safe answer, which has the focus; "Cancel" unless the question needs words. */
  cancelLabel?: string;
  danger?: boolean;
}

export function confirmDialog(opts: ConfirmOptions): Promise<boolean> {
  return new Promise((resolve) => {
    const cancel = h('button', { type: 'button', class: 'secondary', value: 'cancel' }, opts.cancelLabel ?? 'Cancel');
    const ok = h('button', { type: 'button', class: opts.danger ? 'danger' : 'primary', value: 'ok' }, opts.confirmLabel);
    const dialog = h(
      'dialog',
      { class: 'confirm', 'aria-labelledby': 'confirm-title', 'aria-describedby': 'confirm-body' },
      h('h2', { id: 'confirm-title' }, opts.title),
      h('div', { id: 'confirm-body' }, opts.body),
      h('div', { class: 'actions' }, cancel, ok),
    );
    let answered = false;
    const finish = (yes: boolean) => {
      if (answered) return;
      answered = true;
      dialog.close();
      dialog.remove();
      resolve(yes);
    };
    cancel.addEventListener('click', () => finish(false));
    ok.addEventListener('click', () => finish(true));
    dialog.addEventListener('cancel', (ev) => {
      ev.preventDefault();
      finish(false);
    });
    document.body.append(dialog);
    dialog.showModal();
    // The safe answer has the focus: Enter on a destructive question does nothing harmful.
    cancel.focus();
  });
}
