// The file manager: the signed-in user's files, sortable; upload with a path, description and a
// progress bar per file; overwrite and delete ask first; every failure says what went wrong.
import { ApiError } from '../api';
import { confirmDialog } from '../dialog';
import { h, replace, uid } from '../dom';
import { deleteFile, downloadFile, listFiles, uploadFile, type FileRow } from '../files';
import { humanSize } from '../format';
import { session } from '../session';
import { fileTable } from './file-table';

const errorText = (err: unknown) => (err instanceof ApiError ? err.message : `Something went wrong: ${String(err)}`);

export function filesView(root: HTMLElement): void {
  const me = session()!.user;
  let files: FileRow[] = [];

  const alert = h('p', { class: 'alert', role: 'alert', hidden: true });
  const status = h('p', { class: 'status', role: 'status', 'aria-live': 'polite' });
  const listHolder = h('div', { class: 'list-holder' }, h('p', { class: 'muted' }, 'Loading files…'));
  const count = h('span', { class: 'count' });

  const showError = (message: string) => {
    alert.textContent = message;
    alert.hidden = false;
  };

  async function load(): Promise<void> {
    try {
      // An admin's GET /files holds every user's rows (RLS); this page is about their own.
      files = await listFiles(me.app_role === 'admin' ? me.id : undefined);
      count.textContent = files.length === 1 ? '1 file' : `${files.length} files`;
      replace(
        listHolder,
        fileTable(files, {
          caption: 'Your files',
          empty: 'No files yet: choose files above to upload them.',
          actions: (f) => [
            h('button', { type: 'button', class: 'secondary small', 'aria-label': `Download ${f.path}`, onclick: () => void download(f) }, 'Download'),
            h('button', { type: 'button', class: 'danger small', 'aria-label': `Delete ${f.path}`, onclick: () => void remove(f) }, 'Delete'),
          ],
        }),
      );
    } catch (err) {
      replace(listHolder, h('p', { class: 'muted' }, 'The list could not be loaded.'));
      showError(errorText(err));
    }
  }

  async function download(f: FileRow): Promise<void> {
    alert.hidden = true;
    status.textContent = `Downloading ${f.path}…`;
    try {
      await downloadFile(f);
      status.textContent = `Downloaded ${f.path}.`;
    } catch (err) {
      status.textContent = '';
      showError(`Download of ${f.path} failed. ${errorText(err)}`);
    }
  }

  async function remove(f: FileRow): Promise<void> {
    alert.hidden = true;
    const yes = await confirmDialog({
      title: 'Delete this file?',
      body: h('p', {}, 'Delete ', h('strong', {}, f.path), ` (${humanSize(f.size)})? This cannot be undone.`),
      confirmLabel: 'Delete',
      danger: true,
    });
    if (!yes) return;
    try {
      await deleteFile(f);
      status.textContent = `Deleted ${f.path}.`;
      await load();
    } catch (err) {
      showError(`${f.path} was not deleted. ${errorText(err)}`);
    }
  }

  replace(
    root,
    h('div', { class: 'page-head' }, h('h1', {}, 'Files'), count),
    uploader({ existing: () => files, afterUpload: load, showError, clearError: () => (alert.hidden = true) }),
    alert,
    status,
    h('section', { class: 'card', 'aria-label': 'Your files' }, listHolder),
  );
  void load();
}

interface UploaderHooks {
  existing(): FileRow[];
  afterUpload(): Promise<void>;
  showError(message: string): void;
  clearError(): void;
}

interface Pending {
  file: File;
  path: HTMLInputElement;
  description: HTMLInputElement;
  progress: HTMLProgressElement;
  state: HTMLElement;
  row: HTMLElement;
}

function uploader(hooks: UploaderHooks): HTMLElement {
  const inputId = uid('choose');
  const chooser = h('input', { id: inputId, type: 'file', multiple: true, class: 'file-input' });
  const rows = h('ul', { class: 'upload-list', 'aria-label': 'Files to upload' });
  const uploadButton = h('button', { type: 'submit', class: 'primary', disabled: true }, 'Upload');
  const clearButton = h('button', { type: 'button', class: 'secondary', hidden: true }, 'Clear');
  let pending: Pending[] = [];

  const setPending = (list: File[]) => {
    pending = list.map((file) => {
      const pathId = uid('path');
      const descId = uid('desc');
      const path = h('input', { id: pathId, type: 'text', value: file.name, required: true, autocomplete: 'off', spellcheck: 'false' });
      const description = h('input', { id: descId, type: 'text', autocomplete: 'off', placeholder: 'Optional' });
      const progress = h('progress', { max: 100, value: 0, 'aria-label': `Upload progress of ${file.name}` });
      const state = h('span', { class: 'upload-state', 'aria-live': 'polite' }, humanSize(file.size));
      const row = h(
        'li',
        { class: 'upload-item' },
        h('div', { class: 'upload-name' }, h('strong', {}, file.name), state),
        h('div', { class: 'field' }, h('label', { for: pathId }, 'File path'), path),
        h('div', { class: 'field' }, h('label', { for: descId }, 'Description'), description),
        progress,
      );
      return { file, path, description, progress, state, row };
    });
    replace(rows, pending.map((p) => p.row));
    uploadButton.disabled = pending.length === 0;
    clearButton.hidden = pending.length === 0;
  };

  chooser.addEventListener('change', () => {
    hooks.clearError();
    setPending([...(chooser.files ?? [])]);
  });
  clearButton.addEventListener('click', () => {
    chooser.value = '';
    setPending([]);
  });

  const form = h(
    'form',
    { class: 'card uploader', 'aria-labelledby': 'upload-title' },
    h('h2', { id: 'upload-title' }, 'Upload'),
    h(
      'div',
      { class: 'choose' },
      h('label', { for: inputId, class: 'button secondary' }, 'Choose files…'),
      chooser,
      h('small', { class: 'muted' }, 'Each file is stored under its path; the same path replaces the old file after you confirm.'),
    ),
    rows,
    h('div', { class: 'actions' }, clearButton, uploadButton),
  );

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    hooks.clearError();
    const paths = pending.map((p) => p.path.value.trim());
    const empty = paths.findIndex((p) => !p);
    if (empty !== -1) {
      pending[empty].path.focus();
      hooks.showError('Every file needs a path.');
      return;
    }
    const dup = paths.find((p, i) => paths.indexOf(p) !== i);
    if (dup) {
      hooks.showError(`Two files would be stored as ${dup}: give each its own path.`);
      return;
    }
    // Refresh the list first so the overwrite question is about what is stored now.
    await hooks.afterUpload();
    const existing = new Set(hooks.existing().map((f) => f.path));
    const replaced = paths.filter((p) => existing.has(p));
    if (replaced.length > 0) {
      const yes = await confirmDialog({
        title: replaced.length === 1 ? 'Replace an existing file?' : `Replace ${replaced.length} existing files?`,
        body: h('div', {}, h('p', {}, 'These paths already hold a file; uploading replaces it:'), h('ul', {}, replaced.map((p) => h('li', {}, h('strong', {}, p))))),
        confirmLabel: 'Replace',
        danger: true,
      });
      if (!yes) {
        for (const p of pending) if (existing.has(p.path.value.trim())) p.state.textContent = 'Not uploaded: kept the existing file.';
        return;
      }
    }

    uploadButton.disabled = true;
    chooser.disabled = true;
    let failures = 0;
    for (const p of pending) {
      const path = p.path.value.trim();
      p.path.readOnly = true;
      p.description.readOnly = true;
      p.row.classList.remove('failed', 'done');
      p.state.textContent = 'Uploading…';
      try {
        await uploadFile(p.file, path, p.description.value.trim(), (loaded, total) => {
          const pct = total > 0 ? Math.round((loaded / total) * 100) : 100;
          p.progress.value = pct;
          p.state.textContent = `Uploading ${pct}%`;
        });
        p.progress.value = 100;
        p.state.textContent = 'Uploaded';
        p.row.classList.add('done');
      } catch (err) {
        failures++;
        p.state.textContent = errorText(err);
        p.row.classList.add('failed');
        p.path.readOnly = false;
        p.description.readOnly = false;
      }
    }
    chooser.disabled = false;
    await hooks.afterUpload();
    if (failures === 0) {
      // The rows stay, marked Uploaded, until the user clears them or chooses other files.
      chooser.value = '';
      pending = [];
    } else {
      uploadButton.disabled = false;
      hooks.showError(failures === 1 && pending.length === 1 ? `Upload failed. ${pending[0].state.textContent}` : `${failures} of ${pending.length} uploads failed; see each file above.`);
      // Keep only the files that still need uploading.
      pending = pending.filter((p) => !p.row.classList.contains('done'));
      for (const r of [...rows.children]) if (r.classList.contains('done')) r.remove();
    }
  });
  return form;
}
