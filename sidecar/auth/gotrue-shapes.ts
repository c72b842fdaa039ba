// GoTrue's JSON shapes for Plinth's accounts: users, sessions and errors as supabase/auth writes
// them and auth-js reads them. Pure functions, no rule in them: the routes call the same domain
// functions as Plinth's own routes and pass what comes back (or what was refused) through here.
import type { FastifyReply, FastifyRequest } from 'fastify';
import { PlinthError } from '../core/errors.js';
import { USER_AUDIENCE } from '../core/keys.js';
import { PASSWORD_MAX_BYTES, PASSWORD_MIN_CHARACTERS } from './passwords.js';
import { AccountRefusal, type RefusalReason } from './refusals.js';
import { appMetadata, type Session } from './sessions.js';
import type { UserProfile } from './users.js';

/** Far enough ahead to read as "banned until further notice", as GoTrue's ban_duration of 876000h. */
const BANNED_UNTIL = '3000-01-01T00:00:00Z';

export interface GoTrueUser {
  id: string;
  aud: string;
  role: string;
  email: string;
  email_confirmed_at?: string;
  confirmed_at?: string;
  phone: string;
  last_sign_in_at?: string;
  app_metadata: Record<string, unknown>;
  user_metadata: Record<string, unknown>;
  identities: Array<Record<string, unknown>>;
  created_at: string;
  updated_at: string;
  banned_until?: string;
  is_anonymous: boolean;
}

const iso = (d: Date | null | undefined): string | undefined => (d ? new Date(d).toISOString() : undefined);

/** A user as GoTrue shows one; `disabled_at` (admin views) becomes banned_until. */
export function gotrueUser(user: UserProfile & { disabled_at?: Date | null }, userMetadata: Record<string, unknown> = {}): GoTrueUser {
  const confirmed = iso(user.email_confirmed_at);
  const out: GoTrueUser = {
    id: user.id,
    aud: USER_AUDIENCE,
    role: 'authenticated',
    email: user.email,
    email_confirmed_at: confirmed,
    confirmed_at: confirmed,
    phone: '',
    last_sign_in_at: iso(user.last_sign_in_at),
    app_metadata: appMetadata(user),
    user_metadata: userMetadata,
    identities: [
      {
        identity_id: user.id,
        id: user.id,
        user_id: user.id,
        identity_data: { sub: user.id, email: user.email, email_verified: confirmed !== undefined, phone_verified: false },
        provider: 'email',
        last_sign_in_at: iso(user.last_sign_in_at),
        created_at: iso(user.created_at),
        updated_at: iso(user.updated_at),
        email: user.email,
      },
    ],
    created_at: iso(user.created_at)!,
    updated_at: iso(user.updated_at)!,
    is_anonymous: false,
  };
  if (user.disabled_at) out.banned_until = BANNED_UNTIL;
  return out;
}

/** The `exp` of a JWT this process minted (read, not verified). */
function expiryOf(token: string): number {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8')).exp as number;
}

/** A session as GoTrue's token endpoint answers it. */
export function gotrueSession(session: Session, userMetadata: Record<string, unknown>) {
  return {
    access_token: session.token,
    token_type: 'bearer',
    expires_in: session.expires_in,
    expires_at: expiryOf(session.token),
    refresh_token: session.refresh_token,
    user: gotrueUser(session.user, userMetadata),
  };
}

/** An error in GoTrue's terms: status, error code (what auth-js puts in AuthApiError.code) and message. */
export class GoTrueError extends Error {
  constructor(
    readonly status: number,
    readonly errorCode: string,
    message: string,
    readonly extra: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/** GoTrue's code, status and wording for each refusal of the account rules. */
const REFUSALS: Record<RefusalReason, [number, string, string, Record<string, unknown>?]> = {
  signup_closed: [422, 'signup_disabled', 'Signups not allowed for this instance'],
  signup_invite_only: [422, 'signup_disabled', 'Signups not allowed for this instance'],
  weak_password: [422, 'weak_password', `Password should be at least ${PASSWORD_MIN_CHARACTERS} characters.`, { weak_password: { reasons: ['length'] } }],
  password_too_long: [422, 'validation_failed', `Password cannot be longer than ${PASSWORD_MAX_BYTES} bytes`],
  email_taken: [422, 'email_exists', 'A user with this email address has already been registered'],
  invalid_credentials: [400, 'invalid_credentials', 'Invalid login credentials'],
  account_disabled: [400, 'user_banned', 'User is banned'],
  email_not_confirmed: [400, 'email_not_confirmed', 'Email not confirmed'],
  current_password_required: [400, 'current_password_required', 'Current password required when setting new password.'],
  current_password_wrong: [400, 'current_password_invalid', 'Current password required when setting new password.'],
};

/** The GoTrue error for anything a domain call threw. */
export function asGoTrueError(err: unknown): GoTrueError | null {
  if (err instanceof GoTrueError) return err;
  if (err instanceof AccountRefusal) {
    const [status, code, message, extra] = REFUSALS[err.reason];
    return new GoTrueError(status, code, message, extra);
  }
  if (!(err instanceof PlinthError)) return null;
  const carry: Record<string, string> = err.headers['retry-after'] ? { 'retry-after': err.headers['retry-after'] } : {};
  if (err.status === 429) return new GoTrueError(429, 'over_request_rate_limit', err.message, {}, carry);
  if (err.code === '23505') return new GoTrueError(422, 'email_exists', 'A user with this email address has already been registered');
  if (err.code === 'P0002') return new GoTrueError(404, 'user_not_found', 'User not found');
  if (err.code === 'PT403' && /disabled/.test(err.message)) return new GoTrueError(403, 'user_banned', 'User is banned');
  if (err.status === 403) return new GoTrueError(403, 'not_admin', 'User not allowed');
  if (err.status === 401) {
    // The token reader's refusals (core/caller.ts): no token at all, or one that does not verify.
    if (/No API key|Authorization header/.test(err.message)) return new GoTrueError(401, 'no_authorization', 'This endpoint requires a valid Bearer token');
    return new GoTrueError(403, 'bad_jwt', `invalid JWT: unable to parse or verify signature, ${err.message}`);
  }
  if (err.status >= 500) return new GoTrueError(err.status, 'unexpected_failure', err.message, {}, carry);
  return new GoTrueError(err.status, err.status === 400 ? 'validation_failed' : 'unknown', err.message, {}, carry);
}

const API_VERSION_HEADER = 'x-supabase-api-version';
const API_VERSION_2024 = '2024-01-01';

/**
 * Sends an error as GoTrue does: with X-Supabase-Api-Version 2024-01-01 or later (auth-js sends
 * it) `{code, message}`, the code being the error code; otherwise `{code: status, error_code, msg}`.
 */
export function sendGoTrueError(req: FastifyRequest, reply: FastifyReply, err: GoTrueError) {
  const asked = req.headers[API_VERSION_HEADER];
  const dated = typeof asked === 'string' && /^\d{4}-\d{2}-\d{2}$/.test(asked) && asked >= API_VERSION_2024;
  reply.code(err.status).headers({ ...err.headers, 'x-sb-error-code': err.errorCode });
  if (dated) {
    reply.header(API_VERSION_HEADER, API_VERSION_2024);
    return reply.send({ code: err.errorCode, message: err.message, ...err.extra });
  }
  return reply.send({ code: err.status, error_code: err.errorCode, msg: err.message, ...err.extra });
}

/** The token endpoint's OAuth-style refusal of a malformed request: `{error, error_description}`. */
export function oauthError(reply: FastifyReply, error: string, description: string) {
  return reply.code(400).send({ error, error_description: description });
}
