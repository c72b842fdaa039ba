// The accounts feature as one fastify plugin: signup, login, refresh, logout, the caller's
// profile, magic links, the public signing keys, and the two admin routes. Handlers stay thin:
// validation is in schemas.ts, the work in the modules named after it.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { callerOf } from '../core/caller.js';
import type { Plinth } from '../core/context.js';
import { PlinthError, unauthorized } from '../core/errors.js';
import { callerProfile, endSession, listUsers, setAppRole } from './account-functions.js';
import { followMagicLink, magicLinkAccount, sendMagicLink } from './magic-link.js';
import { assertAcceptablePassword, hashPassword, verifyPassword } from './passwords.js';
import { enforceRateLimit } from './rate-limit.js';
import {
  accountValidatorCompiler,
  credentialsSchema,
  describeSchemaErrors,
  listUsersSchema,
  logoutSchema,
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
import { refreshSession, startSession, type Session } from './sessions.js';
import { createUser, findUserByEmail, recordSignIn } from './users.js';

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
    await enforceRateLimit(plinth, 'signup', req.ip, email);
    assertAcceptablePassword(password);
    const user = await createUser(plinth.sql, email, await hashPassword(password));
    const session = await startSession(plinth, await recordSignIn(plinth.sql, user.id, false), 'signup');
    return reply.code(201).headers(noStore).send(deliver(req, reply, session));
  });

  app.post<{ Body: Credentials }>('/rpc/login', { schema: credentialsSchema, preHandler: checkSessionMode }, async (req, reply) => {
    const { email, password } = req.body;
    await enforceRateLimit(plinth, 'login', req.ip, email);
    const user = await findUserByEmail(plinth.sql, email);
    // Always one argon2 verification, so an unknown email answers as slowly as a wrong password.
    const valid = await verifyPassword(user?.password_hash, password);
    if (!user || !valid) {
      // The one auth event no row change shows.
      plinth.audit?.activity('auth.sign_in_failed', email, { reason: user ? 'wrong password' : 'unknown email', client_addr: req.ip }, user?.id ?? null);
      return reply.code(400).send(INVALID_CREDENTIALS);
    }
    const session = await startSession(plinth, await recordSignIn(plinth.sql, user.id, false), 'password');
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

  const jwks = async (_req: FastifyRequest, reply: FastifyReply) =>
    // Short cache: after `plinth keys rotate`, verifiers must see the new key within a minute.
    reply.header('cache-control', 'public, max-age=60').send(plinth.keys.jwksDocument);
  app.get('/auth/jwks', { schema: noInputSchema }, jwks);
  app.get('/.well-known/jwks.json', { schema: noInputSchema }, jwks);

  app.get<{ Querystring: { limit: number; offset: number } }>('/auth/admin/users', { config: withCaller, schema: listUsersSchema }, async (req, reply) => {
    return reply.headers(noStore).send(await listUsers(plinth, callerOf(req).claims, req.query.limit, req.query.offset));
  });

  app.patch<{ Params: { id: string }; Body: { app_role: string } }>('/auth/admin/users/:id', { config: withCaller, schema: setAppRoleSchema }, async (req) =>
    setAppRole(plinth, callerOf(req).claims, req.params.id, req.body.app_role),
  );

  // Every other path under /auth/ is the sidecar's too: a clear 404, never the REST API.
  app.all('/auth/*', async (req) => {
    throw new PlinthError(404, `No route ${req.method} ${req.url.split('?')[0]}`);
  });
}
