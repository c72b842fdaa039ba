// The signed-in user's own account: change the password, change the email (confirmed by a link
// to the new address), and sign out everywhere.
import { ApiError, callJson } from '../api';
import { h, replace, uid } from '../dom';
import { COOKIE_SESSION, session, sessionFrom, setSession } from '../session';

const errorText = (err: unknown) => (err instanceof ApiError ? err.message : String(err));

/** A card with one form: labelled inputs, a submit button, an alert and a status line. */
function formCard(
  title: string,
  fields: Array<{ name: string; label: string; type: string; autocomplete: string; minlength?: number }>,
  submitLabel: string,
  run: (values: Record<string, string>) => Promise<string>,
): HTMLElement {
  const titleId = uid('account-title');
  const inputs = fields.map((f) => {
    const id = uid(f.name);
    const input = h('input', { id, name: f.name, type: f.type, autocomplete: f.autocomplete, required: true, minlength: f.minlength ?? null });
    return { f, input, row: h('div', { class: 'field' }, h('label', { for: id }, f.label), input) };
  });
  const submit = h('button', { type: 'submit', class: 'primary' }, submitLabel);
  const alert = h('p', { class: 'alert', role: 'alert', hidden: true });
  const status = h('p', { class: 'status', role: 'status', 'aria-live': 'polite' });
  const form = h('form', { class: 'card auth-form', 'aria-labelledby': titleId }, h('h2', { id: titleId }, title), inputs.map((i) => i.row), submit, alert, status);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    alert.hidden = true;
    status.textContent = 'Working…';
    submit.disabled = true;
    try {
      status.textContent = await run(Object.fromEntries(inputs.map(({ f, input }) => [f.name, input.value])));
      form.reset();
    } catch (err) {
      status.textContent = '';
      alert.textContent = errorText(err);
      alert.hidden = false;
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

export function accountView(root: HTMLElement): void {
  const s = session()!;
  const everywhereStatus = h('p', { class: 'status', role: 'status', 'aria-live': 'polite' });
  replace(
    root,
    h('div', { class: 'page-head' }, h('h1', {}, 'Your account')),
    h('p', {}, 'Signed in as ', h('strong', { class: 'account-email' }, s.user.email), '.'),
    formCard(
      'Change password',
      [
        { name: 'current_password', label: 'Current password', type: 'password', autocomplete: 'current-password' },
        { name: 'new_password', label: 'New password', type: 'password', autocomplete: 'new-password', minlength: 8 },
      ],
      'Change password',
      async (v) => {
        // Every session ends with the change; the answer is this browser's new one.
        const next = sessionFrom(await callJson('/auth/password', { method: 'POST', headers: COOKIE_SESSION, json: v }));
        if (!next) throw new ApiError(502, 'The server answered without a session.');
        setSession(next);
        return 'Password changed. Every other session of this account has ended.';
      },
    ),
    formCard('Change email', [{ name: 'email', label: 'New email', type: 'email', autocomplete: 'email' }], 'Send a confirmation link', async (v) => {
      await callJson('/auth/email', { method: 'POST', json: { email: v.email.trim() } });
      return `A link is on its way to ${v.email.trim()}. Your address changes once you follow it.`;
    }),
    h(
      'section',
      { class: 'card', 'aria-labelledby': 'everywhere-title' },
      h('h2', { id: 'everywhere-title' }, 'Sign out everywhere'),
      h('p', {}, 'Ends every session of this account, on every device, this one included.'),
      h(
        'button',
        {
          type: 'button',
          class: 'danger',
          onclick: async () => {
            try {
              await callJson('/auth/logout', { method: 'POST', headers: COOKIE_SESSION, json: { scope: 'global' } });
              setSession(null);
              history.replaceState(null, '', '/console/');
            } catch (err) {
              everywhereStatus.textContent = errorText(err);
            }
          },
        },
        'Sign out everywhere',
      ),
      everywhereStatus,
    ),
  );
}
