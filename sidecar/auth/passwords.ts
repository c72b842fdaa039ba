// Password hashing: argon2id with OWASP's recommended parameters (m = 19 MiB, t = 2, p = 1).
// Hashing runs on libuv's thread pool, so it does not block the event loop.
import { availableParallelism } from 'node:os';
import { Algorithm, hash, verify } from '@node-rs/argon2';
import { AccountRefusal } from './refusals.js';

const ARGON2ID = { algorithm: Algorithm.Argon2id, memoryCost: 19456, timeCost: 2, parallelism: 1 } as const;

export const PASSWORD_MIN_CHARACTERS = 8;
export const PASSWORD_MAX_BYTES = 1024;

/**
 * Runs `work` once fewer than `limit` runs are under way, in arrival order. Exported for its unit test.
 */
export function gate(limit: number): <T>(work: () => Promise<T>) => Promise<T> {
  let running = 0;
  const waiting: Array<() => void> = [];
  const release = () => {
    const next = waiting.shift();
    if (next) next();
    else running--;
  };
  return async <T>(work: () => Promise<T>): Promise<T> => {
    if (running < limit) running++;
    else await new Promise<void>((resolve) => waiting.push(resolve));
    try {
      return await work();
    } finally {
      release();
    }
  };
}

// At most one argon2 run per core: more (libuv's pool has 4 threads) time-slice 19 MiB working
// sets on the same cores, each run then costs about a fifth more CPU, and file I/O queued on the
// pool waits behind a burst of sign-ins. The waiting happens in this queue, in arrival order.
const argon2Slot = gate(availableParallelism());

export function hashPassword(password: string): Promise<string> {
  return argon2Slot(() => hash(password, ARGON2ID));
}

// A hash of nothing anyone knows: checked when the email has no account (or no password), so a
// wrong email costs the same time as a wrong password and timing does not reveal who signed up.
let dummyHash: Promise<string> | undefined;

/** True only when `stored` is a hash of `password`; a missing hash still costs one argon2 run. */
export async function verifyPassword(stored: string | null | undefined, password: string): Promise<boolean> {
  dummyHash ??= hashPassword(`plinth-no-such-account-${Math.random()}`);
  const target = stored ?? (await dummyHash);
  try {
    const ok = await argon2Slot(() => verify(target, password));
    return ok && Boolean(stored);
  } catch {
    return false; // a malformed stored hash matches nothing
  }
}

/** Refuses passwords too short to resist guessing, or long enough to make hashing a DoS lever. */
export function assertAcceptablePassword(password: string): void {
  if ([...password].length < PASSWORD_MIN_CHARACTERS) {
    throw new AccountRefusal('weak_password', 400, `Password must be at least ${PASSWORD_MIN_CHARACTERS} characters long`, 'PLINTH400', 'Choose a longer password');
  }
  if (Buffer.byteLength(password, 'utf8') > PASSWORD_MAX_BYTES) {
    throw new AccountRefusal('password_too_long', 400, `Password must be at most ${PASSWORD_MAX_BYTES} bytes long`);
  }
}
