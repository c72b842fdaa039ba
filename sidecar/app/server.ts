// The front door. Paths the sidecar owns go to fastify (schemas, handlers); every other path
// goes straight to the PostgREST proxy, without fastify's per-request work on the hot path.
// Which paths are owned is learned from the routes as the features register them.
import Fastify, { type FastifyError, type FastifyInstance } from 'fastify';
import { callerPlugin } from '../core/caller.js';
import { proxyTrust } from '../core/client-address.js';
import type { Plinth } from '../core/context.js';
import { databaseUnavailable, PlinthError, resourceExhausted } from '../core/errors.js';
import { createGuardedServer } from './connections.js';
import { OwnedPaths } from './owned-paths.js';
import { createProxy } from './proxy.js';
import { toOriginForm } from './request-target.js';

export interface Server {
  app: FastifyInstance;
  owned: OwnedPaths;
}

/** The fastify app with Plinth's error shape and caller plugin; features register their routes on it. */
export async function createServer(plinth: Plinth): Promise<Server> {
  const { frontDoor } = plinth.config;
  const proxy = createProxy(plinth.postgrest, plinth.keys, plinth.config.postgrest.poolSize, { maxBody: frontDoor.maxRestBody, queueTimeoutMs: plinth.config.postgrest.queueTimeoutMs });
  const owned = new OwnedPaths();
  // One trust rule for every reader of the client's address: request.ip here, the connection caps below.
  const trust = proxyTrust(plinth.config.trustProxy);
  const limits = { maxPerAddress: frontDoor.maxConnectionsPerAddress, headersTimeoutMs: frontDoor.headersTimeoutMs, idleTimeoutMs: frontDoor.idleTimeoutMs, trust };
  const app = Fastify({
    bodyLimit: 64 * 1024,
    forceCloseConnections: 'idle',
    trustProxy: trust,
    ajv: { customOptions: { removeAdditional: false, allErrors: false } },
    serverFactory: (handler) =>
      createGuardedServer(limits, (req, res) => {
        // Anything but a plain path is rewritten (or answered) before the owner is chosen.
        if (req.url!.charCodeAt(0) !== 47 /* / */ && !toOriginForm(req, res)) return;
        if (owned.owns(req.url!)) handler(req, res);
        else proxy.handle(req, res);
      }),
  });
  app.addHook('onRoute', (route) => owned.add(route.url));

  app.setErrorHandler((thrown: FastifyError | PlinthError, req, reply) => {
    // Work outside asCaller (the sidecar's own bookkeeping) can meet a lost database too, and any
    // route a full disk or a lack of file descriptors.
    const err = databaseUnavailable(thrown) ?? resourceExhausted(thrown) ?? thrown;
    if (err instanceof PlinthError) return reply.code(err.status).headers(err.headers).send(err.body());
    if (err.validation) {
      return reply.code(400).send({ code: 'PLINTH400', details: null, hint: null, message: `Invalid request: ${err.message}` });
    }
    const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500;
    if (status === 500) plinth.log.error(`${req.method} ${req.url.split('?')[0]}: ${err.stack ?? err.message}`);
    const message = status === 500 ? 'Internal error; the server log has details' : err.message;
    return reply.code(status).send({ code: `PLINTH${status}`, details: null, hint: null, message });
  });
  app.setNotFoundHandler((req, reply) =>
    reply.code(404).send({ code: 'PLINTH404', details: null, hint: null, message: `No route ${req.method} ${req.url.split('?')[0]}` }),
  );
  await app.register(callerPlugin(plinth.keys));

  app.addHook('onClose', async () => {
    await proxy.close();
  });
  return { app, owned };
}
