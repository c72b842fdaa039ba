// The accounts feature as one fastify plugin: signup, login, refresh, logout, the caller's
// profile, magic links, the account lifecycle (password, email, invitations), the public signing
// keys, and the admin routes. Handlers stay thin:
// validation is in schemas.ts, the work in the modules named after it.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { callerOf } from '../core/caller.js';
import type { Plinth } from '../core/context.js';
import { PlinthError, unauthorized } from '../core/errors.js';
import {
  adminCreateUser,
  adminDeleteUser,
  adminEndSessions,
  adminInviteUser,
  adminSetDisabled,
  callerProfile,
  endSession,
  searchUsers,
  setAppRole,
} from './account-functions.js';
import { acceptInvite, confirmEmail, confirmEmailChange, issueLink, mailLink, requestEmailChange, resetPassword, sendPasswordReset } from './account-links.js';
import { newOpaqueToken } from './opaque-tokens.js';
import { followMagicLink, magicLinkAccount, sendMagicLink } from './magic-link.js';
import { assertAcceptablePassword, hashPassword, verifyPassword } from './passwords.js';
import { enforceRateLimit } from './rate-limit.js';
import {
  accountValidatorCompiler,
  credentialsSchema,
  describeSchemaErrors,
  acceptInviteSchema,
  changeEmailSchema,
  changePasswordSchema,
  createUserSchema,
  inviteSchema,
  listUsersSchema,
  logoutSchema,
  recoverSchema,
  resetPasswordSchema,
  userIdEmptyBodySchema,
  userIdSchema,
  magicLinkSchema,
  noInputSchema,
  refreshSchema,
  setAppRoleSchema,
  tokenBodySchema,
  verifyGetSchema,
  verifyPostSchema,
} from './schemas.js';
import type { AccountsService } from './service.js';
import { clearedRefreshCookie, deliverSession, refreshTokenFromCookie, wantsCookieSession } from './session-cookie.js';
import { refreshSession, signIn, startSession, type Session } from './sessions.js';
import { createUser, findUserByEmail, passwordHashOf, setPasswordHash } from './users.js';

// This body is a fixed contract, byte for byte; it is the same for an unknown email and a wrong password.
const INVALID_CREDENTIALS = { message: 'Invalid email or password' };

/** POST routes whose body is optional: no body at all reads as {}, so the schema still applies. */
async function emptyBodyIsEmptyObject(req: FastifyRequest) {
  req.body ??= {};
}

interface Credentials {
  email: string;
  password: string;
}

// Routes that act for a caller say so: the token is read and verified before the handler runs.
const withCaller = { caller: {} };

export async function accountRoutes(app: FastifyInstance, { plinth, accounts }: { plinth: Plinth; accounts: AccountsService }) {
  app.setValidatorCompiler(accountValidatorCompiler);
  app.addHook('onRoute', (route) => {
    route.schemaErrorFormatter ??= describeSchemaErrors;
  });
  const { mailer } = accounts;
  const noStore = { 'cache-control': 'no-store' };
  // A sign-in answer: refresh_token in the JSON, or in an HttpOnly cookie for X-Plinth-Session: cookie.
  const deliver = (req: FastifyRequest, reply: FastifyReply, session: Session) => deliverSession(req, reply, plinth.config, session);
  // A refused X-Plinth-Session is refused before any work, so it never leaves a session behind.
  const checkSessionMode = async (req: FastifyRequest) => void wantsCookieSession(req);

  app.post<{ Body: Credentials }>('/rpc/signup', { schema: credentialsSchema, preHandler: checkSessionMode }, async (req, reply) => {
    const { email, password } = req.body;
    const { signup, confirmEmail: mustConfirm } = plinth.config.auth;
    if (signup === 'closed') throw new PlinthError(403, 'Sign-up is closed on this server', 'PLINTH403', null, 'Ask an administrator for an account');
    if (signup === 'invite') throw new PlinthError(403, 'Sign-up is by invitation only on this server', 'PLINTH403', null, 'Follow the link of an invitation an administrator sent you');
    await enforceRateLimit(plinth, 'signup', req.ip, email);
    assertAcceptablePassword(password);
    const user = await createUser(plinth.sql, email, await hashPassword(password));
    if (mustConfirm) {
      // No session yet: the account signs in once the address is confirmed.
      await mailLink(plinth, mailer, user.email, 'confirm_email', await issueLink(plinth, user.id, 'confirm_email'));
      return reply.code(201).headers(noStore).send({ user, message: 'Check your email: follow the link in it to confirm your address, then sign in' });
    }
    const session = await signIn(plinth, user.id, false, 'signup');
    return reply.code(201).headers(noStore).send(deliver(req, reply, session));
  });

  app.post<{ Body: Credentials }>('/rpc/login', { schema: credentialsSchema, preHandler: checkSessionMode }, async (req, reply) => {
    const { email, password } = req.body;
    // Both at once (one round trip of waiting): a refused attempt has read a row for nothing.
    const [, user] = await Promise.all([enforceRateLimit(plinth, 'login', req.ip, email), findUserByEmail(plinth.sql, email)]);
    // Always one argon2 verification, so an unknown email answers as slowly as a wrong password.
    const valid = await verifyPassword(user?.password_hash, password);
    if (!user || !valid) {
      // The one auth event no row change shows.
      plinth.audit?.activity('auth.sign_in_failed', email, { reason: user ? 'wrong password' : 'unknown email', client_addr: req.ip }, user?.id ?? null);
      return reply.code(400).send(INVALID_CREDENTIALS);
    }
    // Said only to whoever knows the password.
    if (user.disabled_at) throw new PlinthError(403, 'This account is disabled', 'PLINTH403', null, 'Ask an administrator to enable it');
    if (plinth.config.auth.confirmEmail && !user.email_confirmed_at) {
      throw new PlinthError(403, 'Confirm your email address first: follow the link mailed to you', 'PLINTH403', null, 'Or sign in with a magic link, which confirms it too');
    }
    const session = await signIn(plinth, user.id, false, 'password');
    return reply.headers(noStore).send([deliver(req, reply, session)]);
  });

  app.post<{ Body: { refresh_token?: string } }>('/auth/refresh', { schema: refreshSchema, preValidation: emptyBodyIsEmptyObject }, async (req, reply) => {
    // The cookie is read only when the request asks for cookie mode (a header no other site can send).
    const fromCookie = wantsCookieSession(req);
    const token = req.body.refresh_token ?? (fromCookie ? refreshTokenFromCookie(req) : undefined);
    if (!token) {
      if (fromCookie) throw unauthorized('No refresh token: this browser is not signed in; sign in again');
      throw new PlinthError(400, 'Invalid request: body is missing the field "refresh_token"');
    }
    try {
      return reply.headers(noStore).send(deliver(req, reply, await refreshSession(plinth, token)));
    } catch (err) {
      // A refused token is dead for good: the browser stops sending it.
      if (fromCookie && err instanceof PlinthError) {
        throw new PlinthError(err.status, err.message, err.code, err.details, err.hint, { ...err.headers, 'set-cookie': clearedRefreshCookie(req, plinth.config) });
      }
      throw err;
    }
  });

  app.post<{ Body: { scope?: 'local' | 'global' } }>('/auth/logout', { config: withCaller, schema: logoutSchema, preValidation: emptyBodyIsEmptyObject }, async (req, reply) => {
    await endSession(plinth, callerOf(req).claims, req.body.scope === 'global');
    if (wantsCookieSession(req)) reply.header('set-cookie', clearedRefreshCookie(req, plinth.config));
    return reply.code(204).send();
  });

  app.get('/auth/user', { config: withCaller, schema: noInputSchema }, async (req, reply) => {
    return reply.headers(noStore).send(await callerProfile(plinth, callerOf(req).claims));
  });

  app.post<{ Body: { email: string } }>('/auth/magic-link', { schema: magicLinkSchema }, async (req) => {
    const { email } = req.body;
    await enforceRateLimit(plinth, 'magic_link', req.ip, email);
    // Sent after answering: the answer and its timing are the same whether or not the account exists.
    sendMagicLink(plinth, mailer, email).catch((err) => plinth.log.error(`magic link not sent: ${(err as Error).message}`));
    return { message: 'If an account exists for this email, a sign-in link is on its way' };
  });

  const verify = async (token: string | undefined) => {
    if (!token) throw new PlinthError(400, 'Send the sign-in token as ?token=… or as {"token": "…"}');
    return followMagicLink(plinth, token);
  };
  app.get<{ Querystring: { token: string } }>('/auth/verify', { schema: verifyGetSchema, preHandler: checkSessionMode }, async (req, reply) => {
    // A click in a mail client is a browser navigation: hand the link to the console, which spends
    // it and keeps the session. Link scanners that only fetch pages leave the token unspent.
    if (/^text\/html/.test(req.headers.accept ?? '') && req.query.token) {
      return reply.headers(noStore).redirect(`/console/verify?token=${encodeURIComponent(req.query.token)}`, 303);
    }
    return reply.headers(noStore).send(deliver(req, reply, await verify(req.query.token)));
  });
  app.post<{ Querystring: { token?: string }; Body: { token?: string } }>(
    '/auth/verify',
    { schema: verifyPostSchema, preValidation: emptyBodyIsEmptyObject, preHandler: checkSessionMode },
    async (req, reply) => reply.headers(noStore).send(deliver(req, reply, await verify(req.body.token ?? req.query.token))),
  );
  // Whose link is this, without spending it: the console asks before a link switches accounts.
  app.post<{ Body: { token: string } }>('/auth/magic-link/account', { schema: tokenBodySchema }, async (req, reply) =>
    reply.headers(noStore).send(await magicLinkAccount(plinth, req.body.token)),
  );

  // What a sign-in page needs to know: may visitors sign up, and must they confirm their address.
  app.get('/auth/settings', { schema: noInputSchema }, async () => ({ signup: plinth.config.auth.signup, confirm_email: plinth.config.auth.confirmEmail }));

  const silently = (what: string, work: Promise<void>) => work.catch((err) => plinth.log.error(`${what} not sent: ${(err as Error).message}`));

  app.post<{ Body: { email: string } }>('/auth/recover', { schema: recoverSchema }, async (req) => {
    const { email } = req.body;
    await enforceRateLimit(plinth, 'recover', req.ip, email);
    // Sent after answering: the answer and its timing are the same whether or not the account exists.
    silently('password reset', sendPasswordReset(plinth, mailer, email));
    return { message: 'If an account exists for this email, a link to reset its password is on its way' };
  });

  app.post<{ Body: { token: string; password: string } }>('/auth/reset', { schema: resetPasswordSchema }, async (req) => {
    await resetPassword(plinth, req.body.token, req.body.password);
    return { message: 'Password changed; every session of this account has ended: sign in with the new password' };
  });

  app.post<{ Body: { token: string } }>('/auth/confirm', { schema: tokenBodySchema, preHandler: checkSessionMode }, async (req, reply) =>
    reply.headers(noStore).send(deliver(req, reply, await confirmEmail(plinth, req.body.token))),
  );

  app.post<{ Body: { current_password: string; new_password: string } }>(
    '/auth/password',
    { config: withCaller, schema: changePasswordSchema, preHandler: checkSessionMode },
    async (req, reply) => {
      const me = await callerProfile(plinth, callerOf(req).claims);
      // Guessing the current password through this route is limited like guessing it at login.
      await enforceRateLimit(plinth, 'password_change', req.ip, me.email);
      if (!(await verifyPassword(await passwordHashOf(plinth.sql, me.id), req.body.current_password))) {
        throw new PlinthError(400, 'The current password is wrong', 'PLINTH400');
      }
      assertAcceptablePassword(req.body.new_password);
      // The change ends every session of the user (a trigger); this browser gets a new one.
      await setPasswordHash(plinth.sql, me.id, await hashPassword(req.body.new_password));
      return reply.headers(noStore).send(deliver(req, reply, await startSession(plinth, me, 'password')));
    },
  );

  app.post<{ Body: { email: string } }>('/auth/email', { config: withCaller, schema: changeEmailSchema }, async (req) => {
    const me = await callerProfile(plinth, callerOf(req).claims);
    await enforceRateLimit(plinth, 'email_change', req.ip, req.body.email);
    silently('email change', requestEmailChange(plinth, mailer, me.id, req.body.email));
    return { message: 'A link to confirm the new address is on its way to it; the account keeps its address until the link is followed' };
  });

  app.post<{ Body: { token: string } }>('/auth/email/confirm', { schema: tokenBodySchema }, async (req, reply) =>
    reply.headers(noStore).send(await confirmEmailChange(plinth, req.body.token)),
  );

  app.post<{ Body: { token: string; password: string } }>('/auth/invite/accept', { schema: acceptInviteSchema, preHandler: checkSessionMode }, async (req, reply) =>
    reply.headers(noStore).send(deliver(req, reply, await acceptInvite(plinth, req.body.token, req.body.password))),
  );

  const jwks = async (_req: FastifyRequest, reply: FastifyReply) =>
    // Short cache: after `plinth keys rotate`, verifiers must see the new key within a minute.
    reply.header('cache-control', 'public, max-age=60').send(plinth.keys.jwksDocument);
  app.get('/auth/jwks', { schema: noInputSchema }, jwks);
  app.get('/.well-known/jwks.json', { schema: noInputSchema }, jwks);

  app.get<{ Querystring: { q?: string; limit: number; offset: number } }>('/auth/admin/users', { config: withCaller, schema: listUsersSchema }, async (req, reply) => {
    const { users, total } = await searchUsers(plinth, callerOf(req).claims, req.query.q ?? '', req.query.limit, req.query.offset);
    return reply.headers({ ...noStore, 'x-total-count': String(total) }).send(users);
  });

  app.post<{ Body: { email: string; password?: string; email_confirmed: boolean } }>('/auth/admin/users', { config: withCaller, schema: createUserSchema }, async (req, reply) => {
    const { email, password, email_confirmed } = req.body;
    if (password !== undefined) assertAcceptablePassword(password);
    const passwordHash = password === undefined ? null : await hashPassword(password);
    return reply.code(201).headers(noStore).send(await adminCreateUser(plinth, callerOf(req).claims, email, passwordHash, email_confirmed));
  });

  app.post<{ Body: { email: string } }>('/auth/admin/invite', { config: withCaller, schema: inviteSchema }, async (req, reply) => {
    await enforceRateLimit(plinth, 'invite', req.ip, req.body.email);
    const { token, hash } = newOpaqueToken();
    const user = await adminInviteUser(plinth, callerOf(req).claims, req.body.email, hash);
    await mailLink(plinth, mailer, user.email, 'invite', token);
    return reply.code(201).headers(noStore).send(user);
  });

  app.post<{ Params: { id: string } }>('/auth/admin/users/:id/disable', { config: withCaller, schema: userIdEmptyBodySchema, preValidation: emptyBodyIsEmptyObject }, async (req) =>
    adminSetDisabled(plinth, callerOf(req).claims, req.params.id, true),
  );
  app.post<{ Params: { id: string } }>('/auth/admin/users/:id/enable', { config: withCaller, schema: userIdEmptyBodySchema, preValidation: emptyBodyIsEmptyObject }, async (req) =>
    adminSetDisabled(plinth, callerOf(req).claims, req.params.id, false),
  );
  app.delete<{ Params: { id: string } }>('/auth/admin/users/:id/sessions', { config: withCaller, schema: userIdSchema }, async (req) => ({
    ended: await adminEndSessions(plinth, callerOf(req).claims, req.params.id),
  }));
  app.delete<{ Params: { id: string } }>('/auth/admin/users/:id', { config: withCaller, schema: userIdSchema }, async (req) =>
    adminDeleteUser(plinth, callerOf(req).claims, req.params.id),
  );

  app.patch<{ Params: { id: string }; Body: { app_role: string } }>('/auth/admin/users/:id', { config: withCaller, schema: setAppRoleSchema }, async (req) =>
    setAppRole(plinth, callerOf(req).claims, req.params.id, req.body.app_role),
  );

  // Every other path under /auth/ is the sidecar's too: a clear 404, never the REST API.
  app.all('/auth/*', async (req) => {
    throw new PlinthError(404, `No route ${req.method} ${req.url.split('?')[0]}`);
  });
}
