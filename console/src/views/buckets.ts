// Buckets (the Supabase Storage API under /storage/v1): the buckets the user may see, a form to
// create one, the public switch, and one bucket's objects folder by folder, with upload (progress
// from XHR), delete, and a signed link to copy. The server's policies decide every action.
import { ApiError, call, callJson, failureMessage } from '../api';
import { confirmDialog } from '../dialog';
import { h, replace, uid } from '../dom';
import { humanSize } from '../format';
import { freshToken } from '../session';

const API = '/storage/v1';
const BASE = '/console/buckets';

interface Bucket {
  id: string;
  public: boolean;
  file_size_limit: number | null;
}

interface Entry {
  name: string;
  id: string | null;
  metadata: { size?: number; mimetype?: string } | null;
  updated_at: string | null;
}

const enc = (path: string) => path.split('/').map(encodeURIComponent).join('/');

/** Sends a file with XMLHttpRequest, the one browser API that reports upload progress. */
function uploadWithProgress(bucket: string, name: string, file: File, onProgress: (fraction: number) => void): Promise<void> {
  return freshToken().then(
    (token) =>
      new Promise<void>((resolve, reject) => {
        const xhr = new XMLHttpRequest();
        xhr.open('POST', `${API}/object/${encodeURIComponent(bucket)}/${enc(name)}`);
        if (token) xhr.setRequestHeader('authorization', `Bearer ${token}`);
        xhr.setRequestHeader('content-type', file.type || 'application/octet-stream');
        xhr.setRequestHeader('x-upsert', 'true');
        xhr.upload.onprogress = (ev) => ev.lengthComputable && onProgress(ev.loaded / ev.total);
        xhr.onerror = () => reject(new ApiError(0, failureMessage(0)));
        xhr.onload = () => {
          if (xhr.status >= 200 && xhr.status < 300) return resolve();
          let message: string | undefined;
          try {
            message = (JSON.parse(xhr.responseText) as { message?: string }).message;
          } catch {
            message = undefined;
          }
          reject(new ApiError(xhr.status, failureMessage(xhr.status, message)));
        };
        xhr.send(file);
      }),
  );
}

export function bucketsView(root: HTMLElement, bucket?: string, prefix = ''): void {
  const alert = h('p', { class: 'alert', role: 'alert', hidden: true });
  const fail = (err: unknown) => {
    alert.textContent = err instanceof Error ? err.message : String(err);
    alert.hidden = false;
  };
  const go = (b?: string, p = '') => {
    history.pushState(null, '', b ? `${BASE}/${encodeURIComponent(b)}${p ? `/${enc(p.replace(/\/$/, ''))}` : ''}` : BASE);
    bucketsView(root, b, p);
  };

  const list = h('ul', { class: 'bucket-list', 'aria-label': 'Buckets' });
  async function loadBuckets() {
    try {
      const buckets = await callJson<Bucket[]>(`${API}/bucket`);
      replace(
        list,
        buckets.length === 0 ? h('li', {}, 'No buckets yet.') : null,
        buckets.map((b) => {
          const toggle = h('input', { type: 'checkbox', checked: b.public, 'aria-label': `Public ${b.id}` });
          toggle.addEventListener('change', async () => {
            try {
              await call(`${API}/bucket/${encodeURIComponent(b.id)}`, { method: 'PUT', json: { public: toggle.checked } });
            } catch (err) {
              toggle.checked = !toggle.checked;
              fail(err);
            }
          });
          return h(
            'li',
            { 'data-bucket': b.id, 'aria-current': b.id === bucket ? 'true' : null },
            h('a', { href: `${BASE}/${encodeURIComponent(b.id)}`, onclick: (ev: Event) => (ev.preventDefault(), go(b.id)) }, b.id),
            h('label', { class: 'inline' }, toggle, ' public'),
          );
        }),
      );
    } catch (err) {
      fail(err);
    }
  }

  const newId = uid('bucket');
  const idInput = h('input', { id: newId, name: 'bucket', required: true, pattern: "[A-Za-z0-9_.!*'()& $@=;:+,?\\-]{1,100}" });
  const publicBox = h('input', { type: 'checkbox', name: 'public' });
  const createForm = h(
    'form',
    { class: 'bucket-create' },
    h('div', { class: 'field' }, h('label', { for: newId }, 'New bucket'), idInput),
    h('label', { class: 'inline' }, publicBox, ' Public'),
    h('button', { type: 'submit', class: 'primary' }, 'Create bucket'),
  );
  createForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    alert.hidden = true;
    try {
      await call(`${API}/bucket`, { method: 'POST', json: { id: idInput.value, public: publicBox.checked } });
      go(idInput.value);
    } catch (err) {
      fail(err);
    }
  });

  const side = h('aside', { class: 'card buckets-side' }, h('h1', {}, 'Buckets'), list, createForm);
  replace(root, h('div', { class: 'buckets' }, side, bucket ? objectsPanel(bucket, prefix, go, fail) : h('section', { class: 'card' }, h('p', {}, 'Choose or create a bucket.'))), alert);
  void loadBuckets();
}

function objectsPanel(bucket: string, prefix: string, go: (b?: string, p?: string) => void, fail: (err: unknown) => void): HTMLElement {
  const rows = h('tbody');
  const link = h('div', { class: 'signed-link', hidden: true });

  async function load() {
    try {
      const entries = await callJson<Entry[]>(`${API}/object/list/${encodeURIComponent(bucket)}`, {
        method: 'POST',
        json: { prefix, limit: 1000, offset: 0, sortBy: { column: 'name', order: 'asc' } },
      });
      replace(
        rows,
        entries.length === 0 ? h('tr', {}, h('td', { colspan: 3 }, 'Empty.')) : null,
        entries.map((e) => {
          const full = prefix + e.name;
          if (e.id === null) {
            return h('tr', { 'data-folder': full }, h('td', { colspan: 3 }, h('a', { href: '#', onclick: (ev: Event) => (ev.preventDefault(), go(bucket, `${full}/`)) }, `${e.name}/`)));
          }
          return h(
            'tr',
            { 'data-object': full },
            h('td', { 'data-label': 'Name' }, e.name),
            h('td', { 'data-label': 'Size' }, humanSize(e.metadata?.size ?? 0)),
            h(
              'td',
              { class: 'actions' },
              h('button', { type: 'button', class: 'secondary', 'aria-label': `Signed link ${full}`, onclick: () => void sign(full) }, 'Signed link'),
              h('button', { type: 'button', class: 'danger', 'aria-label': `Delete ${full}`, onclick: () => void remove(full) }, 'Delete'),
            ),
          );
        }),
      );
    } catch (err) {
      fail(err);
    }
  }

  async function sign(name: string) {
    try {
      const { signedURL } = await callJson<{ signedURL: string }>(`${API}/object/sign/${encodeURIComponent(bucket)}/${enc(name)}`, { method: 'POST', json: { expiresIn: 3600 } });
      const url = `${location.origin}${API}${signedURL}`;
      const field = h('input', { readonly: true, value: url, 'aria-label': `Signed link to ${name}`, class: 'signed-url' });
      const copy = h('button', { type: 'button', class: 'secondary', onclick: () => void navigator.clipboard?.writeText(url).catch(() => field.select()) }, 'Copy');
      replace(link, h('p', {}, `Anyone with this link can download ${name} for an hour:`), field, copy);
      link.hidden = false;
    } catch (err) {
      fail(err);
    }
  }

  async function remove(name: string) {
    if (!(await confirmDialog({ title: `Delete ${name}?`, body: h('p', {}, 'The object and every signed link to it stop working.'), confirmLabel: 'Delete', cancelLabel: 'Keep', danger: true }))) return;
    try {
      await call(`${API}/object/${encodeURIComponent(bucket)}/${enc(name)}`, { method: 'DELETE' });
      await load();
    } catch (err) {
      fail(err);
    }
  }

  const fileId = uid('object-file');
  const fileInput = h('input', { id: fileId, type: 'file' });
  const progress = h('progress', { max: 1, value: 0, hidden: true, 'aria-label': 'Upload progress' });
  const uploadForm = h(
    'form',
    { class: 'object-upload' },
    h('div', { class: 'field' }, h('label', { for: fileId }, `Upload to ${bucket}/${prefix}`), fileInput),
    h('button', { type: 'submit', class: 'primary' }, 'Upload'),
    progress,
  );
  uploadForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const file = fileInput.files?.[0];
    if (!file) return;
    progress.hidden = false;
    progress.value = 0;
    try {
      await uploadWithProgress(bucket, prefix + file.name, file, (f) => (progress.value = f));
      progress.value = 1;
      fileInput.value = '';
      await load();
    } catch (err) {
      fail(err);
    } finally {
      progress.hidden = true;
    }
  });

  const parts = prefix.split('/').filter(Boolean);
  const crumbs = h(
    'nav',
    { class: 'crumbs', 'aria-label': 'Folder' },
    h('a', { href: '#', onclick: (ev: Event) => (ev.preventDefault(), go(bucket)) }, bucket),
    parts.flatMap((p, i) => [' / ', h('a', { href: '#', onclick: (ev: Event) => (ev.preventDefault(), go(bucket, `${parts.slice(0, i + 1).join('/')}/`)) }, p)]),
  );
  void load();
  return h(
    'section',
    { class: 'card bucket-objects', 'aria-label': `Objects in ${bucket}` },
    crumbs,
    uploadForm,
    h('table', { class: 'objects' }, h('thead', {}, h('tr', {}, h('th', {}, 'Name'), h('th', {}, 'Size'), h('th', {}, ''))), rows),
    link,
  );
}
