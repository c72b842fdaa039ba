// Everything the sidecar does not own goes to PostgREST: authenticated first, then streamed both
// ways over a keep-alive pool (a unix socket when Plinth runs PostgREST itself).
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { Pool } from 'undici';
import type { KeyRing } from '../auth/keys.js';
import type { PostgrestTarget } from '../start/postgrest.js';
import { authenticate } from './authenticate.js';
import { PlinthError, sendError } from './errors.js';

// Hop-by-hop headers, plus `expect` (undici refuses 100-continue) and our own `apikey`.
const DROP_REQUEST = new Set(['host', 'connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'expect', 'apikey', 'authorization']);
const DROP_RESPONSE = new Set(['connection', 'keep-alive', 'transfer-encoding', 'trailer', 'upgrade']);

export interface Proxy {
  handle(req: IncomingMessage, res: ServerResponse): void;
  close(): Promise<void>;
}

export function createProxy(target: PostgrestTarget, keys: KeyRing, connections: number): Proxy {
  const pool = new Pool(target.origin, {
    connections,
    socketPath: target.socketPath,
    keepAliveTimeout: 30_000,
    headersTimeout: 0,
    bodyTimeout: 0,
  });

  async function forward(req: IncomingMessage, res: ServerResponse) {
    const caller = await authenticate(keys, req);
    const headers: IncomingHttpHeaders = {};
    for (const name in req.headers) if (!DROP_REQUEST.has(name)) headers[name] = req.headers[name];
    headers.authorization = `Bearer ${caller.token}`;
    const hasBody = req.method !== 'GET' && req.method !== 'HEAD';
    const upstream = await pool.request({
      method: req.method as 'GET',
      path: req.url!,
      headers: headers as Record<string, string>,
      body: hasBody ? req : undefined,
    });
    const out: Record<string, string | string[]> = {};
    for (const name in upstream.headers) {
      const value = upstream.headers[name];
      if (value !== undefined && !DROP_RESPONSE.has(name)) out[name] = value;
    }
    res.writeHead(upstream.statusCode, out);
    await pipeline(upstream.body, res);
  }

  return {
    handle(req, res) {
      forward(req, res).catch((err) => {
        if (res.headersSent) return void res.destroy();
        if (err instanceof PlinthError) return sendError(res, err);
        sendError(res, new PlinthError(503, 'The REST API (PostgREST) is unavailable; try again shortly', 'PLINTH503', String(err?.code ?? err?.message ?? err)));
      });
    },
    close: () => pool.close(),
  };
}
