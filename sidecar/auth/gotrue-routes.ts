// The accounts under /auth/v1 with GoTrue's routes and shapes, for supabase-js's auth client. A
// second face of the same accounts: every handler calls the domain functions Plinth's own routes
// call (the same rules, sessions and SQL), and only the shapes differ (gotrue-shapes.ts).
// Registered with the prefix /auth/v1.
import { createHash } from 'node:crypto';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { callerOf } from '../core/caller.js';
import type { Plinth } from '../core/context.js';
import type { Claims } from '../core/db.js';
import { PlinthError } from '../core/errors.js';
import {
  adminCreateUserWithMetadata,
  adminDeleteUser,
  adminGetUser,
  adminInviteUser,
  adminUpdateUser,
  callerProfile,
  endOtherSessions,
  endSession,
  searchUsers,
  updateOwnMetadata,
  type AdminUserChanges,
} from './account-functions.js';
import {
  confirmEmail,
  confirmEmailChange,
  inviteSession,
  issueLink,
  linkUrl,
  mailLink,
  recoverySession,
  requestEmailChange,
  sendPasswordReset,
  type LinkMaker,
  type LinkPurpose,
} from './account-links.js';
import { assertSignupOpen, changePassword, signInWithPassword, signUp } from './credentials.js';
import { asGoTrueError, GoTrueError, gotrueSession, gotrueUser, oauthError, sendGoTrueError } from './gotrue-shapes.js';
import { followMagicLink, issueMagicLink, sendMagicLink } from './magic-link.js';
import { newOpaqueToken } from './opaque-tokens.js';
import { assertAcceptablePassword, hashPassword } from './passwords.js';
import { enforceRateLimit } from './rate-limit.js';
import { AccountRefusal } from './refusals.js';
import { accountValidatorCompiler } from './schemas.js';
import type { AccountsService } from './service.js';
import { refreshSession, type Session } from './sessions.js';
import { createUser, findUserByEmail, userMetadataOf, type UserProfile } from './users.js';

// GoTrue accepts fields it does not use (gotrue_meta_security, code_challenge, …), so bodies are
// open objects here; the fields that are read have their types checked.
const text = { type: 'string', maxLength: 4096 } as const;
const email = { type: 'string', minLength: 3, maxLength: 320, pattern: '^[^\\s@\\u0000-\\u001f\\u007f]+@[^\\s@\\u0000-\\u001f\\u007f]+$' } as const;
const object = { type: 'object' } as const;
const uuid = { type: 'string', pattern: '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$' } as const;
const body = (properties: Record<string, unknown>, required: string[] = []) => ({ body: { type: 'object', properties, required } });
const userIdParams = { params: { type: 'object', properties: { id: uuid }, required: ['id'] } };

const withCaller = { caller: {} };
const noStore = { 'cache-control': 'no-store' };
const LINK_INVALID = new GoTrueError(403, 'otp_expired', 'Email link is invalid or has expired');

type VerifyType = 'magiclink' | 'email' | 'signup' | 'recovery' | 'invite' | 'email_change';
const VERIFY_TYPES: VerifyType[] = ['magiclink', 'email', 'signup', 'recovery', 'invite', 'email_change'];

export async function gotrueRoutes(app: FastifyInstance, { plinth, accounts }: { plinth: Plinth; accounts: AccountsService }) {
  const { mailer } = accounts;
  app.setValidatorCompiler(accountValidatorCompiler);
  // auth-js sends Content-Type: application/json with no body on some POSTs (logout): that is {}.
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, raw, done) => {
    if (raw === '') return done(null, {});
    try {
      done(null, JSON.parse(raw as string));
    } catch {
      done(new GoTrueError(400, 'bad_json', 'Could not parse request body as JSON'), undefined);
    }
  });
  // The form of the verify page (GET /verify) posts its fields url-encoded.
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_req, raw, done) => {
    done(null, Object.fromEntries(new URLSearchParams(raw as string)));
  });
  app.setErrorHandler((err: Error & { validation?: unknown; statusCode?: number }, req, reply) => {
    if (err.validation) return sendGoTrueError(req, reply, new GoTrueError(400, 'validation_failed', `Invalid request: ${err.message}`));
    if (err.statusCode === 413) return sendGoTrueError(req, reply, new GoTrueError(413, 'request_entity_too_large', 'Request body too large'));
    const known = asGoTrueError(err);
    if (known) return sendGoTrueError(req, reply, known);
    plinth.log.error(`${req.method} ${req.url.split('?')[0]}: ${err.stack ?? err.message}`, { request_id: req.headers['x-request-id'] as string });
    return sendGoTrueError(req, reply, new GoTrueError(500, 'unexpected_failure', 'Unexpected failure, please check server logs for more information'));
  });

  const metadataOf = async (userId: string) => (await userMetadataOf(plinth.sql, [userId])).get(userId) ?? {};
  const sessionBody = async (session: Session) => gotrueSession(session, await metadataOf(session.user.id));
  const userBody = async (user: UserProfile & { disabled_at?: Date | null }) => gotrueUser(user, await metadataOf(user.id));
  /** Mailed links lead to GET /auth/v1/verify, which sends the browser on to redirect_to with the session. */
  const linksTo = (redirectTo: string | undefined): LinkMaker => {
    const target = redirectTarget(plinth, redirectTo);
    return (purpose, token) => `${plinth.config.publicUrl}/auth/v1/verify?${new URLSearchParams({ token, type: VERIFY_TYPE_OF[purpose], redirect_to: target })}`;
  };
  const silently = (what: string, work: Promise<void>) => work.catch((err) => plinth.log.error(`${what} not sent: ${(err as Error).message}`));

  /** The caller's account while their session lives; GoTrue's refusals otherwise. */
  async function me(claims: Claims): Promise<UserProfile> {
    try {
      return await callerProfile(plinth, claims);
    } catch (err) {
      if (err instanceof PlinthError && err.status === 401) throw new GoTrueError(403, 'session_not_found', 'Session from session_id claim in JWT does not exist');
      if (err instanceof PlinthError && err.code === 'PT403') throw new GoTrueError(403, 'bad_jwt', 'invalid claim: missing sub claim');
      throw err;
    }
  }

  // ---- sign-up and sign-in -------------------------------------------------------------------

  app.post<{ Body: { email?: string; password?: string; data?: Record<string, unknown> }; Querystring: { redirect_to?: string } }>(
    '/signup',
    { schema: body({ email, password: text, data: object }) },
    async (req, reply) => {
      const { email: address, password, data } = req.body;
      if (!address) throw new GoTrueError(400, 'validation_failed', 'To signup, please provide your email');
      if (!password) throw new GoTrueError(400, 'validation_failed', 'Signup requires a valid password');
      try {
        const { user, session } = await signUp(plinth, mailer, req.ip, address, password, data ?? {}, linksTo(req.query.redirect_to));
        if (session) return reply.headers(noStore).send(gotrueSession(session, data ?? {}));
        // The address must be confirmed first: the user, and no session (as GoTrue without autoconfirm).
        return reply.headers(noStore).send({ ...gotrueUser(user, data ?? {}), confirmation_sent_at: new Date().toISOString() });
      } catch (err) {
        if (err instanceof AccountRefusal && err.reason === 'email_taken') throw new GoTrueError(422, 'user_already_exists', 'User already registered');
        throw err;
      }
    },
  );

  app.post<{ Querystring: { grant_type?: string }; Body: { email?: string; password?: string; refresh_token?: string } }>(
    '/token',
    { schema: { querystring: { type: 'object', properties: { grant_type: text } }, ...body({ email: text, password: text, refresh_token: text }) } },
    async (req, reply) => {
      const grant = req.query.grant_type;
      if (grant === 'password') {
        const { email: address, password } = req.body;
        if (!address) throw new GoTrueError(400, 'validation_failed', 'missing email or phone');
        if (!password) throw new GoTrueError(400, 'invalid_credentials', 'Invalid login credentials');
        return reply.headers(noStore).send(await sessionBody(await signInWithPassword(plinth, req.ip, address, password)));
      }
      if (grant === 'refresh_token') {
        const token = req.body.refresh_token;
        if (!token) return oauthError(reply, 'invalid_request', 'refresh_token required');
        let session: Session;
        try {
          session = await refreshSession(plinth, token);
        } catch (err) {
          if (err instanceof PlinthError && err.status === 401) throw new GoTrueError(400, 'refresh_token_not_found', 'Invalid Refresh Token: Refresh Token Not Found');
          throw err;
        }
        return reply.headers(noStore).send(await sessionBody(session));
      }
      throw new GoTrueError(400, 'validation_failed', 'unsupported_grant_type: Plinth accepts grant_type=password and grant_type=refresh_token');
    },
  );

  // ---- the signed-in user --------------------------------------------------------------------

  app.get('/user', { config: withCaller }, async (req, reply) => reply.headers(noStore).send(await userBody(await me(callerOf(req).claims))));

  app.put<{ Body: { email?: string; password?: string; current_password?: string; data?: Record<string, unknown> }; Querystring: { redirect_to?: string } }>(
    '/user',
    { config: withCaller, schema: body({ email, password: text, current_password: text, data: object }) },
    async (req, reply) => {
      const { claims } = callerOf(req);
      const { email: newEmail, password, current_password, data } = req.body;
      let user = await me(claims);
      // The caller's own session goes on after a password change; their other sessions end.
      if (password !== undefined && password !== '') await changePassword(plinth, claims, req.ip, current_password, password, true);
      if (data !== undefined) await updateOwnMetadata(plinth, claims, data);
      if (newEmail !== undefined && newEmail.trim().toLowerCase() !== user.email) {
        await enforceRateLimit(plinth, 'email_change', req.ip, newEmail);
        // The account keeps its address until the link mailed to the new one is followed.
        silently('email change', requestEmailChange(plinth, mailer, user.id, newEmail, linksTo(req.query.redirect_to)));
      }
      user = await me(claims);
      return reply.headers(noStore).send(await userBody(user));
    },
  );

  app.post<{ Querystring: { scope?: string } }>('/logout', { config: withCaller, schema: { querystring: { type: 'object', properties: { scope: text } } } }, async (req, reply) => {
    const scope = req.query.scope ?? 'global';
    const { claims } = callerOf(req);
    if (scope === 'global') await endSession(plinth, claims, true);
    else if (scope === 'local') await endSession(plinth, claims, false);
    else if (scope === 'others') await endOtherSessions(plinth, claims);
    else throw new GoTrueError(400, 'validation_failed', `Unsupported logout scope ${JSON.stringify(scope)}`);
    return reply.code(204).send();
  });

  // ---- mailed links: magic link, verification, recovery ---------------------------------------

  app.post<{ Body: { email?: string; create_user?: boolean; data?: Record<string, unknown> }; Querystring: { redirect_to?: string } }>(
    '/otp',
    { schema: body({ email, create_user: { type: 'boolean' }, data: object }) },
    async (req, reply) => {
      const { email: address, create_user, data } = req.body;
      if (!address) throw new GoTrueError(400, 'validation_failed', 'Only email is supported: send {"email": …}');
      await enforceRateLimit(plinth, 'magic_link', req.ip, address);
      // The answer and its timing are the same whether or not the account exists: the account
      // (without a password, when sign-up is open and the client asks) and the mail come after it.
      const work = async () => {
        if (create_user !== false && !(await findUserByEmail(plinth.sql, address))) {
          try {
            assertSignupOpen(plinth);
            await createUser(plinth.sql, address, null, data ?? {});
          } catch (err) {
            if (!(err instanceof AccountRefusal)) throw err;
          }
        }
        await sendMagicLink(plinth, mailer, address, linksTo(req.query.redirect_to));
      };
      silently('magic link', work());
      return reply.send({});
    },
  );

  /** Spends a mailed token of the given type: a session, or the user alone (an email change). */
  async function verify(type: VerifyType, token: string): Promise<{ session: Session } | { user: UserProfile }> {
    try {
      switch (type) {
        case 'magiclink':
          return { session: await followMagicLink(plinth, token) };
        case 'signup':
          return { session: await confirmEmail(plinth, token) };
        case 'email':
          // GoTrue's "email" OTP stands for a magic link or a sign-up confirmation alike.
          try {
            return { session: await followMagicLink(plinth, token) };
          } catch (err) {
            if (err instanceof PlinthError && err.status === 401) return { session: await confirmEmail(plinth, token) };
            throw err;
          }
        case 'recovery':
          return { session: await recoverySession(plinth, token) };
        case 'invite':
          return { session: await inviteSession(plinth, token) };
        case 'email_change':
          return { user: await confirmEmailChange(plinth, token) };
      }
    } catch (err) {
      if (err instanceof PlinthError && err.status === 401) throw LINK_INVALID;
      throw err;
    }
  }

  app.post<{ Body: { type?: string; token_hash?: string; token?: string; email?: string; redirect_to?: string } }>(
    '/verify',
    { schema: body({ type: text, token_hash: text, token: text, email: text, redirect_to: text }) },
    async (req, reply) => {
      const { type, token_hash, token } = req.body;
      if (/^application\/x-www-form-urlencoded/.test(req.headers['content-type'] ?? '')) return verifyInBrowser(reply, type, token, req.body.redirect_to);
      if (!VERIFY_TYPES.includes(type as VerifyType)) throw new GoTrueError(400, 'validation_failed', `Verify requires a verification type: one of ${VERIFY_TYPES.join(', ')}`);
      const secret = token_hash || token;
      if (!secret) throw new GoTrueError(400, 'validation_failed', 'Verify requires the token from the mailed link, as token_hash');
      const done = await verify(type as VerifyType, secret);
      if ('user' in done) return reply.headers(noStore).send(await userBody(done.user));
      return reply.headers(noStore).send(await sessionBody(done.session));
    },
  );

  // A mailed link followed in a browser. GET spends nothing: mail scanners that fetch links must
  // not use them up. It answers a page whose form (sent by its script, or by a click) posts the
  // token back; that POST spends it and sends the browser on to redirect_to (this server's own
  // address unless the app is on an allowed origin) with the session in the URL fragment, as
  // GoTrue does; supabase-js picks it up from there.
  app.get<{ Querystring: { token?: string; type?: string; redirect_to?: string } }>(
    '/verify',
    { schema: { querystring: { type: 'object', properties: { token: text, type: text, redirect_to: text } } } },
    async (req, reply) => {
      const field = (name: string, value: string | undefined) => `<input type="hidden" name="${name}" value="${escapeHtml(value ?? '')}">`;
      const page =
        '<!doctype html><html><head><meta charset="utf-8"><meta name="referrer" content="no-referrer"><meta name="robots" content="noindex">' +
        '<title>Continue</title></head><body><form method="post" action="verify">' +
        field('token', req.query.token) +
        field('type', req.query.type) +
        field('redirect_to', req.query.redirect_to) +
        `<button type="submit">Continue</button></form><script>${SUBMIT_SCRIPT}</script></body></html>`;
      return reply
        .headers({ ...noStore, 'content-type': 'text/html; charset=utf-8', 'referrer-policy': 'no-referrer', 'content-security-policy': VERIFY_PAGE_CSP, 'x-frame-options': 'DENY' })
        .send(page);
    },
  );

  /** The browser half of verification: spend the token, then 303 to redirect_to with the outcome in the fragment. */
  async function verifyInBrowser(reply: FastifyReply, type: string | undefined, token: string | undefined, redirectTo: string | undefined) {
    const target = redirectTarget(plinth, redirectTo);
    let fragment: URLSearchParams;
    try {
      if (!VERIFY_TYPES.includes(type as VerifyType) || !token) throw LINK_INVALID;
      const done = await verify(type as VerifyType, token);
      if ('user' in done) fragment = new URLSearchParams({ message: 'Email address changed', type: type! });
      else {
        const s = await sessionBody(done.session);
        fragment = new URLSearchParams({
          access_token: s.access_token,
          expires_at: String(s.expires_at),
          expires_in: String(s.expires_in),
          refresh_token: s.refresh_token,
          token_type: 'bearer',
          type: type!,
        });
      }
    } catch (err) {
      const e = asGoTrueError(err) ?? new GoTrueError(500, 'unexpected_failure', 'Unexpected failure');
      fragment = new URLSearchParams({ error: e.status === 403 ? 'access_denied' : 'server_error', error_code: e.errorCode, error_description: e.message });
    }
    return reply.headers(noStore).redirect(`${target}#${fragment.toString()}`, 303);
  }

  app.post<{ Body: { email?: string }; Querystring: { redirect_to?: string } }>('/recover', { schema: body({ email }) }, async (req, reply) => {
    const address = req.body.email;
    if (!address) throw new GoTrueError(400, 'validation_failed', 'Password recovery requires an email');
    await enforceRateLimit(plinth, 'recover', req.ip, address);
    // Sent after answering: the answer is the same whether or not the account exists.
    silently('password reset', sendPasswordReset(plinth, mailer, address, linksTo(req.query.redirect_to)));
    return reply.send({});
  });

  app.get('/settings', async () => {
    const { signup, confirmEmail: mustConfirm } = plinth.config.auth;
    return {
      external: { email: true, phone: false, anonymous_users: false, saml: false },
      disable_signup: signup !== 'open',
      mailer_autoconfirm: !mustConfirm,
      phone_autoconfirm: false,
      sms_provider: '',
      saml_enabled: false,
    };
  });

  // auth-js's getClaims() verifies access tokens locally with these keys (the same as /auth/jwks).
  app.get('/.well-known/jwks.json', async (_req, reply) => reply.header('cache-control', 'public, max-age=60').send(plinth.keys.jwksDocument));

  // ---- admin: the service key, or an admin's token (the SQL functions decide) -----------------

  // auth-js sends page= and per_page= empty when the app gives none: the defaults.
  const count = { type: 'string', pattern: '^[0-9]{0,9}$' } as const;
  app.get<{ Querystring: { page?: string; per_page?: string } }>(
    '/admin/users',
    { config: withCaller, schema: { querystring: { type: 'object', properties: { page: count, per_page: count } } } },
    async (req, reply) => {
      const page = Math.max(1, Number(req.query.page || 1));
      const perPage = Math.min(1000, Math.max(1, Number(req.query.per_page || 50)));
      const { users, total } = await searchUsers(plinth, callerOf(req).claims, '', perPage, (page - 1) * perPage);
      const metadata = await userMetadataOf(plinth.sql, users.map((u) => u.id));
      // GoTrue's pagination headers: the total, and links to the next and last pages.
      const last = Math.max(1, Math.ceil(total / perPage));
      const link = (p: number) => `</auth/v1/admin/users?page=${p}&per_page=${perPage}>`;
      const links = [...(page < last ? [`${link(page + 1)}; rel="next"`] : []), `${link(last)}; rel="last"`];
      return reply
        .headers({ ...noStore, 'x-total-count': String(total), link: links.join(', ') })
        .send({ users: users.map((u) => gotrueUser(u, metadata.get(u.id))), aud: 'authenticated' });
    },
  );

  interface AdminUserBody {
    email?: string;
    password?: string;
    email_confirm?: boolean;
    user_metadata?: Record<string, unknown>;
    app_metadata?: { app_role?: string };
    ban_duration?: string;
  }
  const adminUserBody = body({
    email,
    password: text,
    email_confirm: { type: 'boolean' },
    user_metadata: object,
    app_metadata: { type: 'object', properties: { app_role: { type: 'string', enum: ['editor', 'admin'] } } },
    ban_duration: text,
  });
  /** The changes an admin body asks for, with a new password checked and hashed first. */
  async function changesOf(b: AdminUserBody): Promise<AdminUserChanges> {
    const changes: AdminUserChanges = {};
    if (b.password !== undefined) {
      assertAcceptablePassword(b.password);
      changes.passwordHash = await hashPassword(b.password);
    }
    if (b.app_metadata?.app_role !== undefined) changes.appRole = b.app_metadata.app_role;
    // GoTrue bans for a duration; Plinth disables until enabled again ("none" lifts it).
    if (b.ban_duration !== undefined) changes.disabled = b.ban_duration !== 'none';
    return changes;
  }

  app.post<{ Body: AdminUserBody }>('/admin/users', { config: withCaller, schema: adminUserBody }, async (req, reply) => {
    const b = req.body;
    if (!b.email) throw new GoTrueError(400, 'validation_failed', 'Plinth accounts need an email');
    const { passwordHash, ...later } = await changesOf(b);
    const claims = callerOf(req).claims;
    let user = await adminCreateUserWithMetadata(plinth, claims, b.email, passwordHash ?? null, b.email_confirm ?? false, b.user_metadata ?? {});
    if (later.appRole !== undefined || later.disabled !== undefined) user = await adminUpdateUser(plinth, claims, user.id, later);
    return reply.headers(noStore).send(await userBody(user));
  });

  app.get<{ Params: { id: string } }>('/admin/users/:id', { config: withCaller, schema: userIdParams }, async (req, reply) =>
    reply.headers(noStore).send(await userBody(await adminGetUser(plinth, callerOf(req).claims, req.params.id))),
  );

  app.put<{ Params: { id: string }; Body: AdminUserBody }>('/admin/users/:id', { config: withCaller, schema: { ...userIdParams, ...adminUserBody } }, async (req, reply) => {
    const b = req.body;
    const changes = { ...(await changesOf(b)), email: b.email, confirmed: b.email_confirm, userMetadata: b.user_metadata };
    return reply.headers(noStore).send(await userBody(await adminUpdateUser(plinth, callerOf(req).claims, req.params.id, changes)));
  });

  app.delete<{ Params: { id: string } }>('/admin/users/:id', { config: withCaller, schema: userIdParams }, async (req, reply) =>
    reply.headers(noStore).send(gotrueUser(await adminDeleteUser(plinth, callerOf(req).claims, req.params.id))),
  );

  app.post<{ Body: { email?: string; data?: Record<string, unknown> }; Querystring: { redirect_to?: string } }>('/invite', { config: withCaller, schema: body({ email, data: object }) }, async (req, reply) => {
    const address = req.body.email;
    if (!address) throw new GoTrueError(400, 'validation_failed', 'Invite requires an email');
    await enforceRateLimit(plinth, 'invite', req.ip, address);
    const claims = callerOf(req).claims;
    const { token, hash } = newOpaqueToken();
    let user = await adminInviteUser(plinth, claims, address, hash);
    if (req.body.data) user = await adminUpdateUser(plinth, claims, user.id, { userMetadata: req.body.data });
    await mailLink(plinth, mailer, user.email, 'invite', token, linksTo(req.query.redirect_to));
    return reply.headers(noStore).send({ ...(await userBody(user)), invited_at: new Date().toISOString() });
  });

  // A link an admin hands out themself: the same token the mail would carry, and no mail.
  app.post<{ Body: { type?: string; email?: string; password?: string; data?: Record<string, unknown>; new_email?: string }; Querystring: { redirect_to?: string } }>(
    '/admin/generate_link',
    { config: withCaller, schema: { ...body({ type: text, email, password: text, data: object, new_email: email }, ['type', 'email']) } },
    async (req, reply) => {
      const { type, email: address, password, data, new_email } = req.body;
      const claims = callerOf(req).claims;
      // Only whoever may administer users gets a link for any account: asked of the database first.
      await searchUsers(plinth, claims, '', 1, 0);
      let user: UserProfile | undefined = await findUserByEmail(plinth.sql, address!);
      let token: string;
      let verification: VerifyType;
      switch (type) {
        case 'signup': {
          if (!password) throw new GoTrueError(422, 'validation_failed', 'Password is required for a signup link');
          assertAcceptablePassword(password);
          user = await adminCreateUserWithMetadata(plinth, claims, address!, await hashPassword(password), false, data ?? {});
          token = await issueLink(plinth, user.id, 'confirm_email');
          verification = 'signup';
          break;
        }
        case 'invite': {
          const issued = newOpaqueToken();
          user = await adminInviteUser(plinth, claims, address!, issued.hash);
          if (data) user = await adminUpdateUser(plinth, claims, user.id, { userMetadata: data });
          token = issued.token;
          verification = 'invite';
          break;
        }
        case 'magiclink':
        case 'recovery':
        case 'email_change_current':
        case 'email_change_new': {
          if (!user) throw new GoTrueError(404, 'user_not_found', 'User with this email not found');
          if (type === 'magiclink') token = await issueMagicLink(plinth, user.id);
          else if (type === 'recovery') token = await issueLink(plinth, user.id, 'password_reset');
          else {
            if (!new_email) throw new GoTrueError(422, 'validation_failed', 'The new email address is required');
            if (await findUserByEmail(plinth.sql, new_email)) throw new GoTrueError(422, 'email_exists', 'A user with this email address has already been registered');
            token = await issueLink(plinth, user.id, 'email_change', new_email.trim().toLowerCase());
          }
          verification = type === 'magiclink' ? 'magiclink' : type === 'recovery' ? 'recovery' : 'email_change';
          break;
        }
        default:
          throw new GoTrueError(400, 'validation_failed', 'Invalid email action link type requested: one of signup, invite, magiclink, recovery, email_change_current, email_change_new');
      }
      const redirectTo = redirectTarget(plinth, req.query.redirect_to);
      const actionLink = `${plinth.config.publicUrl}/auth/v1/verify?${new URLSearchParams({ token, type: verification, redirect_to: redirectTo })}`;
      return reply.headers(noStore).send({
        ...(await userBody(user)),
        action_link: actionLink,
        email_otp: '',
        hashed_token: token,
        redirect_to: redirectTo,
        verification_type: verification,
        // Plinth's own page for the same token, for apps that use the console's pages.
        plinth_link: verification === 'magiclink' ? `${plinth.config.publicUrl}/auth/verify?token=${token}` : linkUrl(plinth, LINK_PAGES[verification], token),
      });
    },
  );

  // Every other path under /auth/v1 is the sidecar's too: GoTrue's 404, never the REST API.
  app.all('/*', async (req) => {
    throw new GoTrueError(404, 'not_found', `No route ${req.method} ${req.url.split('?')[0]}`);
  });
}

/** GoTrue's verification type for each kind of mailed token. */
const VERIFY_TYPE_OF: Record<LinkPurpose | 'magic_link', VerifyType> = {
  magic_link: 'magiclink',
  password_reset: 'recovery',
  confirm_email: 'signup',
  email_change: 'email_change',
  invite: 'invite',
};

/** The account-link page of Plinth's console for each verification type. */
const LINK_PAGES = {
  signup: 'confirm_email',
  email: 'confirm_email',
  recovery: 'password_reset',
  invite: 'invite',
  email_change: 'email_change',
} as const;

/**
 * Where a followed link may send the browser: redirect_to when it is on this server's own origin
 * or an origin PLINTH_CORS_ORIGINS lists (never any site: the session rides in the URL), else
 * PLINTH_PUBLIC_URL.
 */
export function redirectTarget(plinth: Plinth, requested: string | undefined): string {
  const home = plinth.config.publicUrl;
  if (!requested) return home;
  let url: URL;
  try {
    url = new URL(requested, home);
  } catch {
    return home;
  }
  const allowed = plinth.config.frontDoor.corsOrigins;
  const origin = url.origin;
  if (origin === new URL(home).origin || (allowed !== '*' && allowed.includes(origin))) return url.toString().replace(/#.*$/, '');
  return home;
}

const SUBMIT_SCRIPT = 'document.forms[0].submit()';
// Only that one script runs on the page, and no other site may frame it.
const VERIFY_PAGE_CSP = `default-src 'none'; script-src 'sha256-${createHash('sha256').update(SUBMIT_SCRIPT).digest('base64')}'; frame-ancestors 'none'; base-uri 'none'`;

function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
