// Sign in, create an account (when sign-up is open), ask for a sign-in link or a password reset by
// email: small forms, one screen.
import { ApiError, callJson } from '../api';
import { h, replace, uid } from '../dom';
import { COOKIE_SESSION, sessionFrom, sessionFromLogin, setSession, takeNotice } from '../session';

type Mode = 'signin' | 'signup' | 'magic' | 'recover';

const TITLES: Record<Mode, string> = {
  signin: 'Sign in',
  signup: 'Create an account',
  magic: 'Email me a sign-in link',
  recover: 'Email me a link to reset the password',
};

/** How sign-up works on this server (GET /auth/settings); open unless it says otherwise. */
let signupMode: Promise<string> | undefined;

export function signInView(root: HTMLElement, initialNotice = ''): void {
  let mode: Mode = 'signin';
  let signupOpen = true;
  const notice = initialNotice || takeNotice();
  signupMode ??= callJson<{ signup?: string }>('/auth/settings', { auth: false })
    .then((b) => b?.signup ?? 'open')
    .catch(() => 'open');

  const closedNote = () => h('p', { class: 'muted signup-mode' }, 'Sign-up is closed on this server: an administrator creates or invites accounts.');
  const switcherNav = () =>
    h(
      'nav',
      { class: 'auth-switch', 'aria-label': 'Other ways to sign in' },
      (['signin', 'signup', 'magic', 'recover'] as Mode[])
        .filter((m) => m !== mode && (m !== 'signup' || signupOpen))
        .map((m) =>
          h(
            'button',
            {
              type: 'button',
              class: 'link',
              onclick: () => {
                mode = m;
                render();
                (root.querySelector('input') as HTMLInputElement | null)?.focus();
              },
            },
            m === 'signin'
              ? 'I have an account: sign in'
              : m === 'signup'
                ? 'New here? Create an account'
                : m === 'magic'
                  ? 'Forgot the password? Email me a link'
                  : 'Reset the password by email',
          ),
        ),
    );

  let shown: HTMLElement;
  let switcher: HTMLElement;

  const render = () => {
    const status = h('p', { class: 'status', role: 'status', 'aria-live': 'polite' });
    const alert = h('p', { class: 'alert', role: 'alert', hidden: !notice });
    if (notice && mode === 'signin') {
      alert.textContent = notice;
      alert.hidden = false;
    }

    const emailId = uid('email');
    const passwordId = uid('password');
    const email = h('input', { id: emailId, name: 'email', type: 'email', autocomplete: 'email', required: true, inputmode: 'email' });
    const password =
      mode === 'magic' || mode === 'recover'
        ? null
        : h('input', {
            id: passwordId,
            name: 'password',
            type: 'password',
            required: true,
            minlength: mode === 'signup' ? 8 : null,
            autocomplete: mode === 'signup' ? 'new-password' : 'current-password',
          });
    const submit = h('button', { type: 'submit', class: 'primary' }, TITLES[mode]);

    const form = h(
      'form',
      { class: 'card auth-form', 'aria-labelledby': 'auth-title', novalidate: false },
      h('h1', { id: 'auth-title' }, TITLES[mode]),
      h('div', { class: 'field' }, h('label', { for: emailId }, 'Email'), email),
      password && h('div', { class: 'field' }, h('label', { for: passwordId }, 'Password'), password, mode === 'signup' ? h('small', {}, 'At least 8 characters.') : null),
      submit,
      alert,
      status,
    );
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      alert.hidden = true;
      status.textContent = mode === 'magic' || mode === 'recover' ? 'Sending…' : 'Signing in…';
      submit.disabled = true;
      try {
        if (mode === 'magic') {
          await callJson('/auth/magic-link', { method: 'POST', auth: false, json: { email: email.value.trim() } });
          status.textContent = `If ${email.value.trim()} has an account, a sign-in link is on its way. Paste it below once it arrives.`;
          pasteForm.hidden = false;
          return;
        }
        if (mode === 'recover') {
          await callJson('/auth/recover', { method: 'POST', auth: false, json: { email: email.value.trim() } });
          status.textContent = `If ${email.value.trim()} has an account, a link to reset its password is on its way.`;
          return;
        }
        const body = await callJson<unknown>(mode === 'signup' ? '/rpc/signup' : '/rpc/login', {
          method: 'POST',
          auth: false,
          headers: COOKIE_SESSION,
          json: { email: email.value.trim(), password: password!.value },
        });
        // Sign-up answers the session itself, login inside an array.
        // With email confirmation on, sign-up answers a message and no session yet.
        const pending = (body as { message?: unknown } | null)?.message;
        if (mode === 'signup' && typeof pending === 'string' && !(body as { token?: unknown }).token) {
          status.textContent = pending;
          return;
        }
        const s = mode === 'signup' ? sessionFrom(body) : sessionFromLogin(body);
        if (!s) throw new ApiError(502, 'The server answered without a session.');
        status.textContent = '';
        setSession(s);
      } catch (err) {
        status.textContent = '';
        alert.textContent = err instanceof ApiError ? err.message : String(err);
        alert.hidden = false;
      } finally {
        submit.disabled = false;
      }
    });

    // The mailed link points at the API (/auth/verify?token=…); pasting it here signs this browser in.
    const linkId = uid('link');
    const linkInput = h('input', { id: linkId, type: 'text', autocomplete: 'off', spellcheck: 'false', required: true });
    const pasteAlert = h('p', { class: 'alert', role: 'alert', hidden: true });
    const pasteForm = h(
      'form',
      { class: 'card auth-form', 'aria-label': 'Sign in with the emailed link', hidden: true },
      h('div', { class: 'field' }, h('label', { for: linkId }, 'Sign-in link from the email'), linkInput),
      h('button', { type: 'submit', class: 'primary' }, 'Sign in with the link'),
      pasteAlert,
    );
    pasteForm.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      pasteAlert.hidden = true;
      try {
        await signInWithLinkToken(tokenFromLink(linkInput.value));
      } catch (err) {
        pasteAlert.textContent = err instanceof ApiError ? err.message : String(err);
        pasteAlert.hidden = false;
      }
    });
    if (mode === 'magic') pasteForm.hidden = false;

    switcher = switcherNav();
    shown = h('div', { class: 'auth' }, h('p', { class: 'brand-big' }, 'Plinth console'), form, mode === 'magic' ? pasteForm : null, switcher, signupOpen ? null : closedNote());
    replace(root, shown);
  };
  render();
  void signupMode.then((m) => {
    if (m === 'open' || !shown.isConnected) return;
    signupOpen = false;
    if (mode === 'signup') {
      mode = 'signin';
      return render();
    }
    // Only the ways to sign in change: what the user may already have typed stays where it is.
    const next = switcherNav();
    switcher.replaceWith(next, closedNote());
    switcher = next;
  });
}

/** The token of a pasted sign-in link (…/auth/verify?token=…), or the token itself. */
export function tokenFromLink(text: string): string {
  const t = text.trim();
  try {
    return new URL(t).searchParams.get('token') ?? t;
  } catch {
    return t;
  }
}

/** Spends a magic-link token (POST /auth/verify) and signs this browser in. */
export async function signInWithLinkToken(token: string): Promise<void> {
  const s = sessionFrom(await callJson('/auth/verify', { method: 'POST', auth: false, headers: COOKIE_SESSION, json: { token } }));
  if (!s) throw new ApiError(502, 'The server answered without a session.');
  setSession(s);
}

/** The email of the account a sign-in link is for, without spending the link. */
export async function linkAccountEmail(token: string): Promise<string> {
  const body = await callJson<{ email?: unknown }>('/auth/magic-link/account', { method: 'POST', auth: false, json: { token } });
  if (typeof body?.email !== 'string') throw new ApiError(502, 'The server did not say whose link this is.');
  return body.email;
}
