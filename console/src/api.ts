// Every call the console makes goes through here: same origin only, the bearer token attached,
// one retry after a refresh when the token was refused, and failures turned into sentences.
import { freshToken, refresh, session } from './session';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** The message a failure shows: what went wrong in a few words, then the server's reason when it gave one. */
export function failureMessage(status: number, serverMessage?: string): string {
  const reason = serverMessage ? ` ${serverMessage.replace(/\.?$/, '.')}` : '';
  switch (status) {
    case 0:
      return 'Network error: the server could not be reached. Check the connection and try again.';
    case 401:
      return `Not allowed: you are not signed in or your session expired.${reason}`;
    case 403:
      return `Not allowed: your account may not do this.${reason}`;
    case 413:
      return `Too large: the file is bigger than the server accepts.${reason}`;
    case 429:
      return `Too many attempts: wait a little and try again.${reason}`;
    default:
      if (status >= 500) return `The server failed (${status}).${reason} Try again; the server log has details.`;
      return reason ? reason.trim() : `The request was refused (${status}).`;
  }
}

/** The `message` of an error body: Plinth and PostgREST both answer `{code, details, hint, message}`. */
export async function serverMessage(res: Response): Promise<string | undefined> {
  try {
    const body = (await res.json()) as { message?: unknown } | null;
    const m = body?.message;
    return typeof m === 'string' && m ? m : undefined;
  } catch {
    // Not JSON (a proxy in front of Plinth, say): the status alone tells what happened.
    return undefined;
  }
}

export interface CallOptions {
  method?: string;
  json?: unknown;
  headers?: Record<string, string>;
  /** false for the calls made before signing in (login, signup, magic link). */
  auth?: boolean;
}

/** fetch with the session's token; resolves with an ok Response or throws an ApiError. */
export async function call(path: string, opts: CallOptions = {}): Promise<Response> {
  const useAuth = opts.auth !== false;
  const send = async (token: string | null) => {
    const headers: Record<string, string> = { accept: 'application/json', ...opts.headers };
    if (useAuth && token) headers.authorization = `Bearer ${token}`;
    if (opts.json !== undefined) headers['content-type'] = 'application/json';
    try {
      return await fetch(path, {
        method: opts.method ?? 'GET',
        headers,
        body: opts.json === undefined ? undefined : JSON.stringify(opts.json),
      });
    } catch {
      throw new ApiError(0, failureMessage(0));
    }
  };

  let res = await send(useAuth ? await freshToken() : null);
  // A token refused mid-session (e.g. keys rotated): refresh once and try again. A refused
  // refresh signs the console out by itself.
  if (res.status === 401 && useAuth && session()) {
    const next = await refresh().catch(() => null);
    if (next) res = await send(next.token);
  }
  if (res.ok) return res;
  throw new ApiError(res.status, failureMessage(res.status, await serverMessage(res)));
}

export async function callJson<T>(path: string, opts: CallOptions = {}): Promise<T> {
  const res = await call(path, opts);
  const text = await res.text();
  return (text ? JSON.parse(text) : null) as T;
}
