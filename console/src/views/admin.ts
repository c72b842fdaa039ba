// The admin view (app role `admin`): every user's file metadata, without downloads, and the users:
// search, create, invite, make an editor an admin, disable or enable, end sessions, delete. PostgreSQL decides every one of
// these (the auth.admin_* functions); this page only asks and shows the answer.
import { ApiError, call, callJson } from '../api';
import { confirmDialog } from '../dialog';
import { h, replace, uid } from '../dom';
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
  disabled_at?: string | null;
  active_sessions?: number;
}

const PAGE = 50;

const errorText = (err: unknown) => (err instanceof ApiError ? err.message : String(err));

/** GET /auth/admin/users: one page of users whose email contains q, and how many there are in all. */
async function listUsers(q = '', offset = 0, limit = 1000): Promise<{ users: UserRow[]; total: number }> {
  const res = await call(`/auth/admin/users?${new URLSearchParams({ q, limit: String(limit), offset: String(offset) })}`);
  const users = (await res.json()) as UserRow[];
  return { users, total: Number(res.headers.get('x-total-count') ?? users.length) };
}

export function adminView(root: HTMLElement): void {
  const filesHolder = h('div', {}, h('p', { class: 'muted' }, 'Loading files…'));
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
    usersSection(),
  );

  void (async () => {
    const [files, users] = await Promise.allSettled([listFiles(), listUsers()]);
    const emails = new Map<string, string>();
    if (users.status === 'fulfilled') for (const u of users.value.users) emails.set(u.id, u.email);
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

/** The users card: sign-up mode, search, create, invite, and one row of actions per user. */
function usersSection(): HTMLElement {
  let query = '';
  let offset = 0;
  const holder = h('div', {}, h('p', { class: 'muted' }, 'Loading users…'));
  const status = h('p', { class: 'status', role: 'status', 'aria-live': 'polite' });
  const alert = h('p', { class: 'alert', role: 'alert', hidden: true });
  const mode = h('p', { class: 'signup-mode' }, 'Sign-up: …');
  const show = (err: unknown) => {
    alert.textContent = errorText(err);
    alert.hidden = false;
  };

  const load = async () => {
    try {
      const { users, total } = await listUsers(query, offset, PAGE);
      replace(holder, usersTable(users, act), pager(total));
    } catch (err) {
      replace(holder, h('p', { class: 'alert', role: 'alert' }, `The users could not be loaded. ${errorText(err)}`));
    }
  };
  const pager = (total: number) => {
    if (total <= PAGE) return h('p', { class: 'muted users-count' }, `${total} user${total === 1 ? '' : 's'}`);
    const go = (to: number) => () => {
      offset = to;
      void load();
    };
    return h(
      'nav',
      { class: 'pager', 'aria-label': 'Pages of users' },
      h('button', { type: 'button', class: 'secondary', disabled: offset === 0, onclick: go(Math.max(0, offset - PAGE)) }, 'Previous'),
      h('span', { class: 'users-count' }, `${offset + 1}–${Math.min(offset + PAGE, total)} of ${total}`),
      h('button', { type: 'button', class: 'secondary', disabled: offset + PAGE >= total, onclick: go(offset + PAGE) }, 'Next'),
    );
  };
  /** Runs one admin action, says what happened, and reloads the list. */
  const act = async (what: string, run: () => Promise<unknown>) => {
    alert.hidden = true;
    status.textContent = '';
    try {
      await run();
      status.textContent = what;
    } catch (err) {
      show(err);
    }
    await load();
  };

  const searchId = uid('user-search');
  const search = h('input', { id: searchId, type: 'search', name: 'q', autocomplete: 'off' });
  const searchForm = h('form', { class: 'inline-form', role: 'search' }, h('label', { for: searchId }, 'Search by email'), search, h('button', { type: 'submit', class: 'secondary' }, 'Search'));
  searchForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    query = search.value.trim();
    offset = 0;
    void load();
  });

  const createEmailId = uid('create-email');
  const createPasswordId = uid('create-password');
  const createConfirmedId = uid('create-confirmed');
  const createEmail = h('input', { id: createEmailId, type: 'email', name: 'email', required: true, autocomplete: 'off' });
  const createPassword = h('input', { id: createPasswordId, type: 'password', name: 'password', minlength: 8, autocomplete: 'new-password' });
  const createConfirmed = h('input', { id: createConfirmedId, type: 'checkbox', name: 'email_confirmed' });
  const createForm = h(
    'form',
    { class: 'inline-form', 'aria-label': 'Create a user' },
    h('label', { for: createEmailId }, 'Email'),
    createEmail,
    h('label', { for: createPasswordId }, 'Password (optional)'),
    createPassword,
    h('label', { for: createConfirmedId }, createConfirmed, ' Email confirmed'),
    h('button', { type: 'submit', class: 'primary' }, 'Create user'),
  );
  createForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const json: Record<string, unknown> = { email: createEmail.value.trim(), email_confirmed: createConfirmed.checked };
    if (createPassword.value) json.password = createPassword.value;
    void act(`Created ${json.email}.`, async () => {
      await callJson('/auth/admin/users', { method: 'POST', json });
      createForm.reset();
    });
  });

  const inviteId = uid('invite-email');
  const inviteEmail = h('input', { id: inviteId, type: 'email', name: 'email', required: true, autocomplete: 'off' });
  const inviteForm = h('form', { class: 'inline-form', 'aria-label': 'Invite a user' }, h('label', { for: inviteId }, 'Email'), inviteEmail, h('button', { type: 'submit', class: 'primary' }, 'Send invitation'));
  inviteForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const email = inviteEmail.value.trim();
    void act(`Invitation sent to ${email}.`, async () => {
      await callJson('/auth/admin/invite', { method: 'POST', json: { email } });
      inviteForm.reset();
    });
  });

  void callJson<{ signup: string; confirm_email: boolean }>('/auth/settings', { auth: false })
    .then((s) => {
      const words: Record<string, string> = { open: 'open to anyone', closed: 'closed (admins create accounts)', invite: 'by invitation only' };
      mode.textContent = `Sign-up: ${words[s.signup] ?? s.signup}${s.confirm_email ? '; new accounts confirm their email' : ''}. Set by PLINTH_SIGNUP and PLINTH_CONFIRM_EMAIL.`;
    })
    .catch(() => (mode.textContent = 'Sign-up: unknown'));
  void load();

  return h(
    'section',
    { class: 'card', 'aria-labelledby': 'users-title' },
    h('h2', { id: 'users-title' }, 'Users'),
    mode,
    h('p', { class: 'muted' }, 'Admins act on editors only, never on an admin account or their own: making an admin an editor again takes the service key (PATCH /auth/admin/users/:id).'),
    searchForm,
    h('details', {}, h('summary', {}, 'Create a user'), createForm),
    h('details', {}, h('summary', {}, 'Invite a user'), inviteForm),
    alert,
    status,
    holder,
  );
}

function usersTable(users: UserRow[], act: (what: string, run: () => Promise<unknown>) => Promise<void>): HTMLElement {
  if (users.length === 0) return h('p', { class: 'empty' }, 'No users found.');
  const actions = (u: UserRow) =>
    h(
      'div',
      { class: 'row-actions' },
      u.app_role === 'editor'
        ? h(
            'button',
            {
              type: 'button',
              class: 'secondary',
              onclick: async () => {
                const sure = await confirmDialog({
                  title: `Make ${u.email} an admin?`,
                  body: 'Admins see every user’s file metadata, manage users, keys and policies, and run SQL as any role. Their sessions end now; the role applies from their next sign-in. Only the service key can make them an editor again.',
                  confirmLabel: 'Make admin',
                  danger: true,
                });
                if (sure) await act(`${u.email} is now an admin.`, () => callJson(`/auth/admin/users/${u.id}`, { method: 'PATCH', json: { app_role: 'admin' } }));
              },
            },
            'Make admin',
          )
        : null,
      u.disabled_at
        ? h('button', { type: 'button', class: 'secondary', onclick: () => void act(`Enabled ${u.email}.`, () => callJson(`/auth/admin/users/${u.id}/enable`, { method: 'POST', json: {} })) }, 'Enable')
        : h('button', { type: 'button', class: 'secondary', onclick: () => void act(`Disabled ${u.email}; their sessions ended.`, () => callJson(`/auth/admin/users/${u.id}/disable`, { method: 'POST', json: {} })) }, 'Disable'),
      h('button', { type: 'button', class: 'secondary', onclick: () => void act(`Ended the sessions of ${u.email}.`, () => callJson(`/auth/admin/users/${u.id}/sessions`, { method: 'DELETE' })) }, 'End sessions'),
      h(
        'button',
        {
          type: 'button',
          class: 'danger',
          onclick: async () => {
            const sure = await confirmDialog({ title: `Delete ${u.email}?`, body: 'The account, its sessions and its files are deleted. This cannot be undone.', confirmLabel: 'Delete', danger: true });
            if (sure) await act(`Deleted ${u.email}.`, () => callJson(`/auth/admin/users/${u.id}`, { method: 'DELETE' }));
          },
        },
        'Delete',
      ),
    );
  const cols: Array<[string, (u: UserRow) => string | Node]> = [
    ['Email', (u) => u.email],
    ['App role', (u) => h('span', { class: `badge role-${u.app_role}` }, u.app_role)],
    ['Status', (u) => (u.disabled_at ? h('span', { class: 'badge disabled' }, 'disabled') : 'active')],
    ['Email confirmed', (u) => (u.email_confirmed_at ? shortDate(u.email_confirmed_at) : u.email_confirmed_at === undefined ? '—' : 'no')],
    ['Sessions', (u) => String(u.active_sessions ?? '—')],
    ['Last sign-in', (u) => shortDate(u.last_sign_in_at ?? null)],
    ['Created', (u) => shortDate(u.created_at ?? null)],
    ['Actions', actions],
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
