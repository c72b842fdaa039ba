// Sessions: an access token (a short-lived JWT signed by the KeyRing) plus an opaque refresh token
// that rotates on every use. All refresh tokens of one sign-in share the session row (the family);
// presenting a token that was already exchanged revokes the whole family (reuse detection), save
// a token one rotation behind coming back within seconds (see refreshSession).
import { createHmac } from 'node:crypto';
import type { Plinth } from '../core/context.js';
import type { Tx } from '../core/db.js';
import { fromDatabase, unauthorized } from '../core/errors.js';
import { USER_AUDIENCE } from '../core/keys.js';
import { hashOpaqueToken, newOpaqueToken } from './opaque-tokens.js';
import { PROFILE_COLUMNS, type UserProfile } from './users.js';

/** The body every sign-in returns (inside a one-element array for /rpc/login, as clients of that route expect). */
export interface Session {
  token: string;
  refresh_token: string;
  expires_in: number;
  user: UserProfile;
}

export type SignInMethod = 'password' | 'magic_link' | 'signup' | 'invite' | 'confirm_email' | 'recovery';

/** GoTrue's names for how a session began (its `amr` claim), which supabase-js reads. */
const AMR_METHOD: Record<SignInMethod, string> = {
  password: 'password',
  signup: 'password',
  magic_link: 'otp',
  confirm_email: 'otp',
  invite: 'invite',
  recovery: 'recovery',
};

interface SessionFacts {
  id: string;
  method: SignInMethod;
  created_at: Date;
  user_metadata: Record<string, unknown>;
}

/**
 * Plinth's claims (sub, email, role, app_role, session_id) plus the ones GoTrue puts in every
 * access token, so supabase-js and policies written for Supabase read them where they expect.
 */
function mintAccessToken(plinth: Plinth, user: UserProfile, session: SessionFacts): Promise<string> {
  return plinth.keys.mint(
    {
      sub: user.id,
      aud: USER_AUDIENCE,
      email: user.email,
      phone: '',
      role: 'authenticated',
      app_role: user.app_role,
      app_metadata: appMetadata(user),
      user_metadata: session.user_metadata,
      session_id: session.id,
      is_anonymous: false,
      aal: 'aal1',
      amr: [{ method: AMR_METHOD[session.method], timestamp: Math.floor(session.created_at.getTime() / 1000) }],
    },
    plinth.config.auth.accessTokenTtl,
  );
}

/** GoTrue's app_metadata, derived: accounts sign in by email, and the app role rides along. */
export function appMetadata(user: Pick<UserProfile, 'app_role'>): { provider: string; providers: string[]; app_role: string } {
  return { provider: 'email', providers: ['email'], app_role: user.app_role };
}

/**
 * The session row and its first refresh token for the one user row `userRow` yields (its profile
 * columns and user_metadata), in one statement: one round trip, and both exist together or not at
 * all. A disabled account is refused by a trigger on auth.sessions (PT403), whichever way it signs in.
 * The parameters: $1 the method, $2 the refresh token's hash, $3 its lifetime, then userRow's own.
 */
function openSessionStatement(userRow: string): string {
  return `with u as (${userRow}),
       s as (insert into auth.sessions (user_id, method) select u.id, $1 from u returning id, created_at),
       r as (insert into auth.refresh_tokens (token_hash, session_id, expires_at)
             select $2, s.id, now() + make_interval(secs => $3) from s)
  select u.*, s.id as session_id, s.created_at as session_created_at from u, s`;
}

// Written out once: every sign-in runs one of these, and a fixed text costs postgres.js no
// fragment building or identifier escaping per call (each is still a prepared statement).
const PROFILE = PROFILE_COLUMNS.map((c) => `"${c}"`).join(', ');
const START_SESSION = openSessionStatement(`select ${PROFILE}, user_metadata from auth.users where id = $4`);
const SIGN_IN = openSessionStatement(`update auth.users
           set last_sign_in_at = now(),
               email_confirmed_at = case when $5 then coalesce(email_confirmed_at, now()) else email_confirmed_at end
         where id = $4
        returning ${PROFILE}, user_metadata`);

/** A new session for a user whose sign-in was already recorded (a mailed link, a password change). */
export function startSession(plinth: Plinth, user: UserProfile, method: SignInMethod): Promise<Session> {
  return openSession(plinth, method, START_SESSION, [user.id]);
}

/**
 * A sign-in: the user's last_sign_in_at (and email_confirmed_at when the sign-in proves the
 * address) recorded, and a new session, in the same statement.
 */
export function signIn(plinth: Plinth, userId: string, confirmsEmail: boolean, method: SignInMethod): Promise<Session> {
  return openSession(plinth, method, SIGN_IN, [userId, confirmsEmail]);
}

async function openSession(plinth: Plinth, method: SignInMethod, statement: string, userParams: unknown[]): Promise<Session> {
  const refresh = newOpaqueToken();
  const ttl = plinth.config.auth.refreshTokenTtl;
  const rows = await plinth.sql
    .unsafe<(UserProfile & { user_metadata: Record<string, unknown>; session_id: string; session_created_at: Date })[]>(
      statement,
      [method, refresh.hash, ttl, ...userParams] as never[],
      { prepare: true },
    )
    .catch((err: unknown) => {
      throw fromDatabase(err, { role: 'authenticated' });
    });
  const row = rows[0];
  if (!row) throw new Error('starting a session: the user does not exist');
  const { session_id, session_created_at, user_metadata, ...user } = row;
  return {
    token: await mintAccessToken(plinth, user, { id: session_id, method, created_at: session_created_at, user_metadata }),
    refresh_token: refresh.token,
    expires_in: plinth.config.auth.accessTokenTtl,
    user,
  };
}

const REFRESH_REFUSED = 'Invalid refresh token: it is unknown, expired, already used or its session has ended; sign in again';

/**
 * The token a refresh token is exchanged for: an HMAC of it under a secret that never leaves the
 * database and the sidecar, so it is unguessable, and the same however often it is computed.
 */
async function successorOf(tx: Tx, refreshToken: string): Promise<{ token: string; hash: Buffer }> {
  const [{ value }] = await tx<{ value: Buffer }[]>`select value from auth.secrets where name = 'refresh_token_successor'`;
  const token = createHmac('sha256', value).update(refreshToken, 'utf8').digest('base64url');
  return { token, hash: hashOpaqueToken(token) };
}

/**
 * Exchanges a refresh token for a new pair. The user row is read again, so a new app role applies.
 *
 * A token already exchanged is reuse, and revokes the whole family, except within the reuse
 * interval (PLINTH_REFRESH_TOKEN_REUSE_INTERVAL) while its successor is still unused: a browser
 * with two tabs may send the same token twice within moments (one tab has not yet seen the other
 * tab's new session: localStorage reaches other tabs asynchronously), and that must not sign the
 * user out. Such a late exchange gets the very same successor again, never a second one: a copy
 * spent within the interval cannot fork the session into a branch of its own. A token whose
 * successor has been used, or that comes back later, is still reuse.
 */
export async function refreshSession(plinth: Plinth, refreshToken: string): Promise<Session> {
  const presented = hashOpaqueToken(refreshToken);
  const ttl = plinth.config.auth.refreshTokenTtl;
  const grace = plinth.config.auth.refreshTokenReuseInterval;
  const outcome = await plinth.sql.begin(async (tx) => {
    // Claiming the token is one UPDATE: of two concurrent exchanges, exactly one wins; the other
    // waits for it to commit and then finds the token used.
    let [claimed] = await tx<{ session_id: string; user_id: string }[]>`
      update auth.refresh_tokens t set used_at = now()
        from auth.sessions s
       where t.token_hash = ${presented} and t.used_at is null and t.expires_at > now()
         and s.id = t.session_id and s.revoked_at is null
      returning t.session_id, s.user_id`;
    if (!claimed) {
      // FOR UPDATE: grace decisions about one token are taken one at a time.
      const [seen] = await tx<{ session_id: string; user_id: string; in_grace: boolean }[]>`
        select t.session_id, s.user_id,
               s.revoked_at is null and t.expires_at > now()
               and t.used_at > now() - make_interval(secs => ${grace})
               and not exists (select from auth.refresh_tokens c where c.parent_hash = t.token_hash and c.used_at is not null) as in_grace
          from auth.refresh_tokens t join auth.sessions s on s.id = t.session_id
         where t.token_hash = ${presented} and t.used_at is not null
           for update of t`;
      if (!seen) return { refused: true as const };
      if (!seen.in_grace) {
        await tx`
          update auth.sessions set revoked_at = now(), revoked_reason = 'reuse'
           where id = ${seen.session_id} and revoked_at is null`;
        return { reused: seen.session_id };
      }
      claimed = seen;
    }
    const next = await successorOf(tx, refreshToken);
    // Within the grace the successor exists already: the same row, handed out again.
    await tx`
      insert into auth.refresh_tokens (token_hash, session_id, expires_at, parent_hash)
      values (${next.hash}, ${claimed.session_id}, now() + make_interval(secs => ${ttl}), ${presented})
      on conflict (token_hash) do nothing`;
    await tx`update auth.sessions set refreshed_at = now() where id = ${claimed.session_id}`;
    const [user] = await tx<UserProfile[]>`select ${tx(PROFILE_COLUMNS)} from auth.users where id = ${claimed.user_id}`;
    const [session] = await tx<SessionFacts[]>`
      select s.id, s.method, s.created_at, u.user_metadata
        from auth.sessions s join auth.users u on u.id = s.user_id where s.id = ${claimed.session_id}`;
    return { session, user, next: next.token };
  });
  if ('reused' in outcome) {
    // Never log the token itself: the session id is enough to investigate.
    plinth.log.warn(`refresh token reuse detected: session ${outcome.reused} revoked`);
    throw unauthorized(REFRESH_REFUSED);
  }
  if ('refused' in outcome) throw unauthorized(REFRESH_REFUSED);
  return {
    token: await mintAccessToken(plinth, outcome.user, outcome.session),
    refresh_token: outcome.next,
    expires_in: plinth.config.auth.accessTokenTtl,
    user: outcome.user,
  };
}
