// Rate limits for login, signup and magic links: one fixed-window counter per client address and
// one per email, kept in PostgreSQL (auth.rate_limits) so every sidecar of a deployment counts
// together. Every attempt counts, successful or not, so a guesser cannot reset the window.
import { createHash } from 'node:crypto';
import type { Plinth } from '../core/context.js';
import { PlinthError } from '../core/errors.js';
import { normalizeEmail } from './users.js';

export type LimitedAction = 'login' | 'signup' | 'magic_link' | 'recover' | 'email_change' | 'password_change' | 'invite';

export async function enforceRateLimit(plinth: Plinth, action: LimitedAction, clientAddress: string, email: string): Promise<void> {
  const [row] = await plinth.sql<Hits[]>`select ${hits(plinth, action, clientAddress, email)}`;
  refuseOver(Math.max(row.by_address, row.by_email));
}

/** What a password sign-in checks of an account. */
export interface SignInAccount {
  id: string;
  password_hash: string | null;
  disabled: boolean;
  email_confirmed: boolean;
}

/**
 * enforceRateLimit for a password sign-in, and the account of that email read in the same call
 * (auth.password_sign_in_attempt): one round trip, one statement, before the password check. The
 * attempt counts whether or not the account exists.
 */
export async function enforceRateLimitFindingAccount(plinth: Plinth, action: LimitedAction, clientAddress: string, email: string): Promise<SignInAccount | undefined> {
  const { rateLimitWindow, rateLimitPerIp, rateLimitPerEmail } = plinth.config.auth;
  const normalized = normalizeEmail(email);
  const [row] = await plinth.sql<(SignInAccount & { retry_after: number; user_id: string | null })[]>`
    select * from auth.password_sign_in_attempt(${`${action}:ip:${clientAddress}`}, ${rateLimitPerIp},
      ${`${action}:email:${emailBucketKey(normalized)}`}, ${rateLimitPerEmail}, ${rateLimitWindow}, ${normalized})`;
  refuseOver(row.retry_after);
  if (row.user_id === null) return undefined;
  return { id: row.user_id, password_hash: row.password_hash, disabled: row.disabled, email_confirmed: row.email_confirmed };
}

interface Hits {
  by_address: number;
  by_email: number;
}

/** Counts the attempt in both buckets: the select list giving by_address and by_email. */
function hits(plinth: Plinth, action: LimitedAction, clientAddress: string, email: string) {
  const { rateLimitWindow, rateLimitPerIp, rateLimitPerEmail } = plinth.config.auth;
  return plinth.sql`auth.rate_limit_hit(${`${action}:ip:${clientAddress}`}, ${rateLimitPerIp}, ${rateLimitWindow}) as by_address,
           auth.rate_limit_hit(${`${action}:email:${emailBucketKey(normalizeEmail(email))}`}, ${rateLimitPerEmail}, ${rateLimitWindow}) as by_email`;
}

/** The bucket names an email only by its hash: the table is not a list of who tried what. */
function emailBucketKey(normalizedEmail: string): string {
  return createHash('sha256').update(normalizedEmail).digest('base64url');
}

function refuseOver(retryAfter: number): void {
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
