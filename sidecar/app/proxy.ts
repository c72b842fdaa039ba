// Everything the sidecar does not own goes to PostgREST: authenticated first, then streamed both
// ways over a keep-alive pool (a unix socket when Plinth runs PostgREST itself).
//
// This is the hot path (it must keep up with PostgREST's own throughput on 2 cores), so it talks to
// undici's dispatcher directly: response headers arrive raw and go to writeHead as one flat
// array, body chunks go straight to res.write, and backpressure pauses the upstream socket.
// No Readable body, no stream.pipeline, no AbortSignal per request (profiled: those were a
// third of the proxy's CPU).
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Pool } from 'undici';
import { presentedToken } from '../core/caller.js';
import type { PostgrestTarget } from '../core/context.js';
import { PlinthError, sendError } from '../core/errors.js';
import type { KeyRing } from '../core/keys.js';

// Hop-by-hop headers, plus `expect` (undici refuses 100-continue) and our own `apikey`.
const DROP_REQUEST = new Set(['host', 'connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'expect', 'apikey', 'authorization']);
const DROP_RESPONSE = new Set(['connection', 'keep-alive', 'transfer-encoding', 'trailer', 'upgrade']);

export interface Proxy {
  handle(req: IncomingMessage, res: ServerResponse): void;
  close(): Promise<void>;
}

function unavailable(err: { code?: unknown; message?: unknown } | undefined): PlinthError {
  return new PlinthError(503, 'The REST API (PostgREST) is unavailable; try again shortly', 'PLINTH503', String(err?.code ?? err?.message ?? err));
}

const uncork = (res: ServerResponse) => res.uncork();

/** One proxied exchange, as an undici dispatch handler: PostgREST's response is written to `res` as it arrives. */
class Exchange {
  private abort: ((err?: Error) => void) | null = null;
  private done = false;

  constructor(private readonly res: ServerResponse) {
    // The client went away before the response ended: stop PostgREST's side too.
    res.once('close', () => {
      if (!this.done) this.abort?.(new Error('client closed the connection'));
    });
  }

  onConnect(abort: (err?: Error) => void) {
    if (this.res.destroyed) return abort(new Error('client closed the connection'));
    this.abort = abort;
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
    const out: string[] = [];
    for (let i = 0; i < rawHeaders.length; i += 2) {
      // latin1 both ways: header bytes pass through unchanged, as Node writes headers in latin1.
      const name = rawHeaders[i].toString('latin1');
      if (!DROP_RESPONSE.has(name.toLowerCase())) out.push(name, rawHeaders[i + 1].toString('latin1'));
    }
    this.res.writeHead(statusCode, out);
    this.res.on('drain', resume);
    // Headers, the chunks that came with them and (for small responses) the end go out in one
    // write instead of three: syscalls are most of the proxy's cost.
    this.res.cork();
    process.nextTick(uncork, this.res);
    return true;
  }

  onData(chunk: Buffer): boolean {
    // false pauses the upstream socket until the client drains (flat memory for big responses).
    return this.res.write(chunk);
  }

  onComplete() {
    this.done = true;
    this.res.end();
  }

  onError(err: Error) {
    this.done = true;
    if (this.res.headersSent) this.res.destroy();
    else if (!this.res.destroyed) sendError(this.res, unavailable(err as never));
  }
}

export function createProxy(target: PostgrestTarget, keys: KeyRing, connections: number): Proxy {
  const pool = new Pool(target.origin, {
    connections,
    socketPath: target.socketPath,
    keepAliveTimeout: 30_000,
    headersTimeout: 0,
    bodyTimeout: 0,
  });

  function forward(req: IncomingMessage, res: ServerResponse, token: string) {
    const headers: string[] = [];
    const incoming = req.headers;
    for (const name in incoming) {
      if (DROP_REQUEST.has(name)) continue;
      const value = incoming[name]!;
      if (typeof value === 'string') headers.push(name, value);
      else for (const v of value) headers.push(name, v);
    }
    headers.push('authorization', `Bearer ${token}`);
    const hasBody = req.method !== 'GET' && req.method !== 'HEAD';
    pool.dispatch({ method: req.method as 'GET', path: req.url!, headers, body: hasBody ? req : null }, new Exchange(res));
  }

  return {
    handle(req, res) {
      // 401 before PostgREST: only tokens the sidecar verified (or verified recently) are
      // forwarded, as the same claims signed with the secret PostgREST trusts.
      let token: string;
      try {
        token = presentedToken(req);
      } catch (err) {
        return sendError(res, err as PlinthError);
      }
      const verified = keys.forPostgrest(token);
      if (verified) return forward(req, res, verified);
      keys.verifyForPostgrest(token).then(
        (v) => forward(req, res, v.forPostgrest),
        (err) => sendError(res, err instanceof PlinthError ? err : unavailable(err)),
      );
    },
    close: () => pool.close(),
  };
}
