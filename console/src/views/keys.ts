// Keys (admins): the anon key to copy into client apps, and the signing keys behind every token:
// rotate (a new key signs from now on; the older ones keep verifying) and retire an older one
// (every token and API key it signed stops working). The console.* SQL functions decide who may.
import { ApiError, callJson } from '../api';
import { confirmDialog } from '../dialog';
import { h, replace } from '../dom';
import { shortDate } from '../format';
import { copyBlock } from './tables';

interface SigningKey {
  kid: string;
  alg: string;
  created_at: string;
  newest: boolean;
  anon_key: string;
}

export function keysView(root: HTMLElement): void {
  const anon = h('div', {}, h('p', { class: 'muted' }, 'Loading keys…'));
  const list = h('div', { class: 'table-wrap' });
  const alert = h('p', { class: 'alert', role: 'alert', hidden: true });
  const status = h('p', { class: 'status done', role: 'status', 'aria-live': 'polite' });
  const rotate = h('button', { type: 'button', class: 'primary' }, 'Rotate signing key…');

  const show = (keys: SigningKey[]) => {
    const newest = keys.find((k) => k.newest);
    replace(anon, newest ? copyBlock('anon key', newest.anon_key) : h('p', { class: 'muted' }, 'No signing key.'));
    replace(
      list,
      h(
        'table',
        { class: 'rows keys' },
        h('caption', { class: 'visually-hidden' }, 'Signing keys, oldest first'),
        h('thead', {}, h('tr', {}, ['key id (kid)', 'algorithm', 'created', 'use', ''].map((c) => h('th', { scope: 'col' }, c)))),
        h(
          'tbody',
          {},
          keys.map((k) =>
            h(
              'tr',
              { 'data-kid': k.kid },
              h('td', { 'data-label': 'kid', title: k.kid }, h('code', {}, k.kid)),
              h('td', { 'data-label': 'algorithm' }, k.alg),
              h('td', { 'data-label': 'created' }, shortDate(k.created_at)),
              h('td', { 'data-label': 'use' }, k.newest ? 'signs new tokens' : 'verifies older tokens only'),
              h(
                'td',
                { class: 'actions-cell' },
                k.newest ? null : h('button', { type: 'button', class: 'danger', 'aria-label': `Retire key ${k.kid}`, onclick: () => void retire(k) }, 'Retire'),
              ),
            ),
          ),
        ),
      ),
    );
  };

  const act = async (run: () => Promise<SigningKey[]>, done: string) => {
    alert.hidden = true;
    status.textContent = '';
    try {
      show(await run());
      status.textContent = done;
    } catch (err) {
      alert.textContent = err instanceof ApiError ? err.message : String(err);
      alert.hidden = false;
    }
  };

  async function retire(k: SigningKey): Promise<void> {
    const sure = await confirmDialog({
      title: `Retire key ${k.kid.slice(0, 12)}…?`,
      body: 'Every token it signed stops working at once: the anon and service keys of that key, and access tokens (signed-in users get new ones on their next refresh). Apps still using its anon key must switch to the current one first.',
      confirmLabel: 'Retire key',
      danger: true,
    });
    if (sure) await act(() => callJson<SigningKey[]>(`/console/api/keys/${encodeURIComponent(k.kid)}`, { method: 'DELETE' }), `Retired key ${k.kid}.`);
    rotate.focus();
  }

  rotate.addEventListener('click', async () => {
    const sure = await confirmDialog({
      title: 'Rotate the signing key?',
      body: 'A new key signs every token from now on, with a new anon key and service key. Tokens and API keys of the older keys keep working until you retire those keys.',
      confirmLabel: 'Rotate',
    });
    if (sure) await act(() => callJson<SigningKey[]>('/console/api/keys', { method: 'POST' }), 'A new signing key signs tokens from now on; copy its anon key into your apps, then retire the old key.');
    rotate.focus();
  });

  replace(
    root,
    h('div', { class: 'page-head' }, h('h1', {}, 'Keys')),
    h(
      'section',
      { class: 'card', 'aria-labelledby': 'anon-key-title' },
      h('h2', { id: 'anon-key-title' }, 'Anon key'),
      h('p', { class: 'muted' }, 'For client apps: sent as the apikey header, it acts as the anon role and RLS applies. The service key bypasses RLS and is shown only on the server (plinth keys).'),
      anon,
    ),
    h('section', { class: 'card', 'aria-labelledby': 'signing-keys-title' }, h('div', { class: 'card-head' }, h('h2', { id: 'signing-keys-title' }, 'Signing keys'), rotate), alert, status, list),
  );
  void act(() => callJson<SigningKey[]>('/console/api/keys'), '');
}
