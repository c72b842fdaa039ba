// The front door. Paths the sidecar owns go to fastify (schemas, handlers); every other path
// goes straight to the PostgREST proxy, without fastify's per-request work on the hot path.
import Fastify, { type FastifyError } from 'fastify';
import http from 'node:http';
import { consoleRoutes } from '../console/routes.js';
import type { Plinth } from '../context.js';
import { PlinthError } from './errors.js';
import { accountRoutes } from '../auth/routes.js';
import { healthRoutes } from './health.js';
import { createProxy } from './proxy.js';
import { storageRoutes } from '../storage/routes.js';
import { realtimeRoutes } from '../realtime/routes.js';

/** Exact paths and path prefixes served by the sidecar itself (DESIGN.md, "request path"). */
const OWNED_PATHS = new Set(['/health', '/rpc/login', '/rpc/signup', '/rpc/store_file', '/rpc/retrieve_file', '/realtime', '/console']);
const OWNED_PREFIXES = ['/auth/', '/.well-known/', '/storage/', '/console/'];

export function ownsPath(url: string): boolean {
  const q = url.indexOf('?');
  const path = q === -1 ? url : url.slice(0, q);
  return OWNED_PATHS.has(path) || OWNED_PREFIXES.some((p) => path.startsWith(p));
}

export async function buildServer(plinth: Plinth) {
  const proxy = createProxy(plinth.postgrest, plinth.keys, plinth.config.postgrest.poolSize);
  const app = Fastify({
    bodyLimit: 64 * 1024,
    forceCloseConnections: 'idle',
    trustProxy: plinth.config.trustProxy,
    ajv: { customOptions: { removeAdditional: false, allErrors: false } },
    serverFactory: (handler) =>
      // requestTimeout 0: a multi-GiB upload over a slow link may take longer than Node's default 300 s;
      // headersTimeout still bounds clients that never finish their headers.
      http.createServer({ keepAliveTimeout: 65_000, requestTimeout: 0 }, (req, res) => (ownsPath(req.url!) ? handler(req, res) : proxy.handle(req, res))),
  });

  app.setErrorHandler((err: FastifyError | PlinthError, _req, reply) => {
    if (err instanceof PlinthError) return reply.code(err.status).headers(err.headers).send(err.body());
    if (err.validation) {
      return reply.code(400).send({ code: 'PLINTH400', details: null, hint: null, message: `Invalid request: ${err.message}` });
    }
    const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500;
    if (status === 500) plinth.log.error(`${_req.method} ${_req.url.split('?')[0]}: ${err.stack ?? err.message}`);
    const message = status === 500 ? 'Internal error; the server log has details' : err.message;
    return reply.code(status).send({ code: `PLINTH${status}`, details: null, hint: null, message });
  });
  app.setNotFoundHandler((req, reply) =>
    reply.code(404).send({ code: 'PLINTH404', details: null, hint: null, message: `No route ${req.method} ${req.url.split('?')[0]}` }),
  );

  await app.register(healthRoutes, { plinth });
  await app.register(storageRoutes, { plinth });
  await app.register(realtimeRoutes, { plinth });
  await app.register(consoleRoutes, { plinth });
  await app.register(accountRoutes, { plinth });

  app.addHook('onClose', async () => {
    await proxy.close();
  });
  return app;
}
