// The pages the account mails lead to (/console/<page>?token=…): each asks for what it needs and
// spends the token with one call. They work signed in or not.
import { ApiError, callJson } from '../api';
import { h, replace, uid } from '../dom';
import { COOKIE_SESSION, sessionFrom, setSession } from '../session';

export const LINK_PAGES = ['reset-password', 'confirm-email', 'confirm-email-change', 'accept-invite'] as const;
export type LinkPage = (typeof LINK_PAGES)[number];

const TITLES: Record<LinkPage, string> = {
  'reset-password': 'Choose a new password',
  'confirm-email': 'Confirm your email address',
  'confirm-email-change': 'Confirm your new email address',
  'accept-invite': 'Accept the invitation',
};

/** Shows the page for a mailed link; `done` is called once it succeeded (the console then goes on). */
export function linkPageView(root: HTMLElement, page: LinkPage, token: string, done: (message: string) => void): void {
  const needsPassword = page === 'reset-password' || page === 'accept-invite';
  const passwordId = uid('password');
  const password = needsPassword ? h('input', { id: passwordId, name: 'password', type: 'password', autocomplete: 'new-password', required: true, minlength: 8 }) : null;
  const submit = h('button', { type: 'submit', class: 'primary' }, TITLES[page]);
  const alert = h('p', { class: 'alert', role: 'alert', hidden: true });
  const form = h(
    'form',
    { class: 'card auth-form', 'aria-labelledby': 'link-title' },
    h('h1', { id: 'link-title' }, TITLES[page]),
    password && h('div', { class: 'field' }, h('label', { for: passwordId }, 'New password'), password, h('small', {}, 'At least 8 characters.')),
    submit,
    alert,
  );
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    alert.hidden = true;
    submit.disabled = true;
    try {
      done(await spend(page, token, password?.value ?? ''));
    } catch (err) {
      alert.textContent = err instanceof ApiError ? err.message : String(err);
      alert.hidden = false;
    } finally {
      submit.disabled = false;
    }
  });
  replace(root, h('div', { class: 'auth' }, h('p', { class: 'brand-big' }, 'Plinth console'), form));
}

async function spend(page: LinkPage, token: string, password: string): Promise<string> {
  const signIn = (body: unknown) => {
    const s = sessionFrom(body);
    if (!s) throw new ApiError(502, 'The server answered without a session.');
    setSession(s);
  };
  switch (page) {
    case 'reset-password':
      await callJson('/auth/reset', { method: 'POST', auth: false, json: { token, password } });
      setSession(null);
      return 'Password changed. Every session of the account has ended: sign in with the new password.';
    case 'accept-invite':
      signIn(await callJson('/auth/invite/accept', { method: 'POST', auth: false, headers: COOKIE_SESSION, json: { token, password } }));
      return '';
    case 'confirm-email':
      signIn(await callJson('/auth/confirm', { method: 'POST', auth: false, headers: COOKIE_SESSION, json: { token } }));
      return '';
    case 'confirm-email-change': {
      const user = await callJson<{ email: string }>('/auth/email/confirm', { method: 'POST', auth: false, json: { token } });
      return `Your account's email is now ${user.email}.`;
    }
  }
}
