// The admin view (app role `admin`): every user's file metadata, without downloads, and the users
// with their app roles. RLS decides what GET /files returns; this page only shows it.
import { ApiError, callJson } from '../api';
import { h, replace } from '../dom';
import { listFiles } from '../files';
import { shortDate } from '../format';
import { fileTable } from './file-table';

interface UserRow {
  id: string;
  email: string;
  app_role: string;
  created_at?: string;
  last_sign_in_at?: string | null;
  email_confirmed_at?: string | null;
}

const errorText = (err: unknown) => (err instanceof ApiError ? err.message : String(err));

/** GET /auth/admin/users: an array of profiles. */
function listUsers(): Promise<UserRow[]> {
  return callJson<UserRow[]>('/auth/admin/users?limit=1000');
}

export function adminView(root: HTMLElement): void {
  const filesHolder = h('div', {}, h('p', { class: 'muted' }, 'Loading files…'));
  const usersHolder = h('div', {}, h('p', { class: 'muted' }, 'Loading users…'));
  replace(
    root,
    h('div', { class: 'page-head' }, h('h1', {}, 'Admin')),
    h(
      'section',
      { class: 'card', 'aria-labelledby': 'all-files-title' },
      h('h2', { id: 'all-files-title' }, 'Every user’s files'),
      h(
        'p',
        { class: 'rule', id: 'download-rule' },
        h('strong', {}, 'Metadata only. '),
        'An admin may see the metadata of every user’s files but may not download another user’s files. ',
        'This list therefore has no download buttons, and the server refuses such a download as well.',
      ),
      filesHolder,
    ),
    h('section', { class: 'card', 'aria-labelledby': 'users-title' }, h('h2', { id: 'users-title' }, 'Users'), usersHolder),
  );

  void (async () => {
    const [files, users] = await Promise.allSettled([listFiles(), listUsers()]);
    const emails = new Map<string, string>();
    if (users.status === 'fulfilled') {
      for (const u of users.value) emails.set(u.id, u.email);
      replace(usersHolder, usersTable(users.value));
    } else {
      replace(usersHolder, h('p', { class: 'alert', role: 'alert' }, `The users could not be loaded. ${errorText(users.reason)}`));
    }
    if (files.status === 'fulfilled') {
      replace(
        filesHolder,
        fileTable(files.value, {
          caption: 'Every user’s files',
          empty: 'No user has stored a file yet.',
          owner: (f) => emails.get(f.ownerId) ?? f.ownerId,
        }),
      );
    } else {
      replace(filesHolder, h('p', { class: 'alert', role: 'alert' }, `The files could not be loaded. ${errorText(files.reason)}`));
    }
  })();
}

function usersTable(users: UserRow[]): HTMLElement {
  if (users.length === 0) return h('p', { class: 'empty' }, 'No users yet.');
  const cols: Array<[string, (u: UserRow) => string | Node]> = [
    ['Email', (u) => u.email],
    ['App role', (u) => h('span', { class: `badge role-${u.app_role}` }, u.app_role)],
    ['Email confirmed', (u) => (u.email_confirmed_at ? shortDate(u.email_confirmed_at) : u.email_confirmed_at === undefined ? '—' : 'no')],
    ['Last sign-in', (u) => shortDate(u.last_sign_in_at ?? null)],
    ['Created', (u) => shortDate(u.created_at ?? null)],
  ];
  return h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      { class: 'users' },
      h('caption', { class: 'visually-hidden' }, 'Users and their app roles'),
      h('thead', {}, h('tr', {}, cols.map(([label]) => h('th', { scope: 'col' }, label)))),
      h('tbody', {}, users.map((u) => h('tr', { 'data-email': u.email }, cols.map(([label, cell], i) => h(i === 0 ? 'th' : 'td', { 'data-label': label, scope: i === 0 ? 'row' : null }, cell(u)))))),
    ),
  );
}
