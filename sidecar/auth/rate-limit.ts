// Rate limits for login, signup and magic links: one fixed-window counter per client address and
// one per email, kept in PostgreSQL (auth.rate_limits) so every sidecar of a deployment counts
// together. Every attempt counts, successful or not, so a guesser cannot reset the window.
import { createHash } from 'node:crypto';
import type { Plinth } from '../core/context.js';
import { PlinthError } from '../core/errors.js';
import { normalizeEmail, storedUserByEmail, type StoredUser } from './users.js';

export type LimitedAction = 'login' | 'signup' | 'magic_link' | 'recover' | 'email_change' | 'password_change' | 'invite';

export async function enforceRateLimit(plinth: Plinth, action: LimitedAction, clientAddress: string, email: string): Promise<void> {
  const [row] = await plinth.sql<Hits[]>`select ${hits(plinth, action, clientAddress, email)}`;
  refuseOver(row);
}

/**
 * enforceRateLimit for a login, and the account of that email read in the same statement: one
 * round trip (and one statement for PostgreSQL) before the password check. The attempt counts
 * whether or not the account exists.
 */
export async function enforceRateLimitFindingUser(plinth: Plinth, action: LimitedAction, clientAddress: string, email: string): Promise<StoredUser | undefined> {
  const sql = plinth.sql;
  const [row] = await sql<(Hits & Partial<StoredUser>)[]>`
    select h.*, u.* from (select ${hits(plinth, action, clientAddress, email)}) h
      left join lateral (${storedUserByEmail(sql, email)}) u on true`;
  refuseOver(row);
  const { by_address: _a, by_email: _e, ...user } = row;
  return user.id == null ? undefined : (user as StoredUser);
}

interface Hits {
  by_address: number;
  by_email: number;
}

/** Counts the attempt in both buckets: the select list giving by_address and by_email. */
function hits(plinth: Plinth, action: LimitedAction, clientAddress: string, email: string) {
  const { rateLimitWindow, rateLimitPerIp, rateLimitPerEmail } = plinth.config.auth;
  // The bucket names an email only by its hash: the table is not a list of who tried what.
  const emailKey = createHash('sha256').update(normalizeEmail(email)).digest('base64url');
  return plinth.sql`auth.rate_limit_hit(${`${action}:ip:${clientAddress}`}, ${rateLimitPerIp}, ${rateLimitWindow}) as by_address,
           auth.rate_limit_hit(${`${action}:email:${emailKey}`}, ${rateLimitPerEmail}, ${rateLimitWindow}) as by_email`;
}

function refuseOver({ by_address, by_email }: Hits): void {
  const retryAfter = Math.max(by_address, by_email);
  if (retryAfter > 0) {
    throw new PlinthError(429, `Too many attempts; try again in ${retryAfter} seconds`, 'PLINTH429', null, null, {
      'retry-after': String(retryAfter),
    });
  }
}

/** Deletes finished windows and dead tokens now and then, so the tables stay small. Returns the stop. */
export function sweepPeriodically(plinth: Plinth, everyMs = 10 * 60_000): () => void {
  const sweep = () =>
    plinth.sql`select auth.sweep_expired(${plinth.config.auth.rateLimitWindow})`.catch((err) =>
      plinth.log.warn(`accounts sweep failed: ${(err as Error).message}`),
    );
  const timer = setInterval(sweep, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
