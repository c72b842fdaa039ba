// One error type, rendered in PostgREST's JSON error shape ({ code, details, hint, message }),
// and the one map from a database error to HTTP, as PostgREST maps them.
import type { ServerResponse } from 'node:http';

export class PlinthError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly code = `PLINTH${status}`,
    readonly details: string | null = null,
    readonly hint: string | null = null,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }

  body() {
    return { code: this.code, details: this.details, hint: this.hint, message: this.message };
  }
}

/** Writes an error straight to a raw response (the proxy and WebSocket paths, outside fastify). */
export function sendError(res: ServerResponse, err: PlinthError): void {
  const body = JSON.stringify(err.body());
  res.writeHead(err.status, {
    ...err.headers,
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
  });
  res.end(body);
}

/** 401 with PostgREST's code and a WWW-Authenticate challenge: no usable credentials. */
export function unauthorized(message: string, hint: string | null = null): PlinthError {
  return new PlinthError(401, message, 'PGRST301', null, hint, { 'www-authenticate': 'Bearer' });
}

const STATUS_BY_SQLSTATE: Record<string, number> = {
  P0002: 404, // no_data_found
  '22P02': 400, // invalid_text_representation (an id that is not a uuid)
  '22003': 400, // numeric_value_out_of_range
  '22023': 400, // invalid_parameter_value
  '23514': 400, // check_violation
  '23502': 400, // not_null_violation
  '23503': 409, // foreign_key_violation
  '23505': 409, // unique_violation
  '55000': 409, // object_not_in_prerequisite_state
};

interface DatabaseError {
  code?: string;
  message?: string;
  detail?: string;
  hint?: string;
}

/** Errors that mean the database cannot be reached right now, not that the request was wrong. */
const UNREACHABLE = new Set(['CONNECTION_CLOSED', 'CONNECTION_DESTROYED', 'CONNECTION_ENDED', 'CONNECT_TIMEOUT']);
/** Socket errors: the database's, or the file store's when it is S3. */
const SOCKET_FAILURES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT']);

/**
 * 503 with Retry-After for an error that says the database is unreachable (a lost connection, a
 * server shutting down or starting: SQLSTATE classes 08 and 57P); undefined for anything else.
 */
export function databaseUnavailable(err: unknown): PlinthError | undefined {
  const code = (err as DatabaseError | undefined)?.code;
  if (typeof code !== 'string') return undefined;
  const retry = { 'retry-after': '1' };
  if (UNREACHABLE.has(code) || code.startsWith('08') || code.startsWith('57P')) {
    return new PlinthError(503, 'The database is unavailable; try again shortly', 'PLINTH503', code, null, retry);
  }
  if (SOCKET_FAILURES.has(code)) return new PlinthError(503, 'The database or the file store did not answer; try again shortly', 'PLINTH503', code, null, retry);
  return undefined;
}

/**
 * The truthful HTTP answer for a resource of the server running out, from a system error code;
 * undefined for anything else. A full disk is 507 (nothing was stored, and retrying will not help
 * until space is freed); too many open files is 503 with Retry-After (it passes as requests end).
 */
export function resourceExhausted(err: unknown): PlinthError | undefined {
  const code = (err as { code?: unknown } | undefined)?.code;
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new PlinthError(507, 'Storage is full: the server has no disk space left, so nothing was stored', 'PLINTH507', code, 'The operator must free space or enlarge the disk; GET /health shows the free bytes');
  }
  if (code === 'EMFILE' || code === 'ENFILE') {
    return new PlinthError(503, 'The server has too many open files at the moment; try again shortly', 'PLINTH503', code, null, { 'retry-after': '1' });
  }
  return undefined;
}

/**
 * A database error met while running SQL as `claims`, as HTTP. Insufficient privilege is 401 for
 * the anonymous role (signing in may help) and 403 for anyone else; a function may pick its own
 * 4xx/5xx status with SQLSTATE PTnnn; an unreachable database is 503. Anything unknown is returned
 * as it is (a 500 for the error handler). Only the role is read, typed structurally so that
 * errors.ts needs nothing from db.ts (which imports it).
 */
export function fromDatabase(err: unknown, claims: { role: string }): unknown {
  if (err instanceof PlinthError) return err;
  const unavailable = databaseUnavailable(err);
  if (unavailable) return unavailable;
  const e = err as DatabaseError;
  const code = typeof e?.code === 'string' ? e.code : undefined;
  if (!code || typeof e.message !== 'string') return err;
  const hint = e.hint ?? null;
  if (code === '42501') {
    return claims.role === 'anon'
      ? new PlinthError(401, e.message, code, null, hint ?? 'Sign in and send the user token as Authorization: Bearer <token>', { 'www-authenticate': 'Bearer' })
      : new PlinthError(403, e.message, code, null, hint);
  }
  if (code === '57014' && /statement timeout/.test(e.message)) {
    // PostgREST answers 500 with the database's message: so does the sidecar, with the cause.
    return new PlinthError(500, e.message, code, null, 'The statement ran longer than PLINTH_STATEMENT_TIMEOUT allows: make it cheaper (an index, a narrower filter) or ask the operator to raise the limit');
  }
  const custom = /^PT([45]\d\d)$/.exec(code);
  const status = custom ? Number(custom[1]) : STATUS_BY_SQLSTATE[code];
  return status ? new PlinthError(status, e.message, code, e.detail ?? null, hint) : err;
}
