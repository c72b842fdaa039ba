// The front door. Paths the sidecar owns go to fastify (schemas, handlers); every other path
// goes straight to the PostgREST proxy, without fastify's per-request work on the hot path.
// Which paths are owned is learned from the routes as the features register them.
import type { IncomingMessage, ServerResponse } from 'node:http';
import Fastify, { type FastifyError, type FastifyInstance } from 'fastify';
import { callerPlugin } from '../core/caller.js';
import { randomBytes } from 'node:crypto';
import { clientAddress, proxyTrust, type ProxyTrust } from '../core/client-address.js';
import type { Audit, Plinth } from '../core/context.js';
import { databaseUnavailable, PlinthError, resourceExhausted } from '../core/errors.js';
import { createGuardedServer } from './connections.js';
import { createCors, isPreflight, type FlatHeaders } from './cors.js';
import { OwnedPaths } from './owned-paths.js';
import { createProxy, type OpenApiServer, type Tracked } from './proxy.js';
import { restPath, toOriginForm, type RestPrefixed } from './request-target.js';

export interface Server {
  app: FastifyInstance;
  owned: OwnedPaths;
}

/**
 * A feature's hot path served before any routing, like the proxy: true when it took the request
 * (and answers it, errors included, with the CORS headers given).
 */
export type DirectHandler = (req: IncomingMessage, res: ServerResponse, cors: FlatHeaders | null) => boolean;

/** The fastify app with Plinth's error shape and caller plugin; features register their routes on it. */
export async function createServer(plinth: Plinth, direct: readonly DirectHandler[] = []): Promise<Server> {
  const { frontDoor } = plinth.config;
  // One trust rule for every reader of the client's address: request.ip here, the connection caps below.
  const trust = proxyTrust(plinth.config.trustProxy);
  const cors = createCors(frontDoor.corsOrigins);
  const proxy = createProxy(plinth.postgrest, plinth.keys, plinth.config.postgrest.poolSize, {
    maxBody: frontDoor.maxRestBody,
    queueTimeoutMs: plinth.config.postgrest.queueTimeoutMs,
    // The PostgREST Plinth runs is told PLINTH_PUBLIC_URL itself; otherwise the sidecar rewrites the document.
    openApiServer: plinth.config.publicUrlSet && !plinth.config.postgrest.url ? undefined : openApiServer(plinth.config, trust),
  });
  const owned = new OwnedPaths();
  const audit = plinth.audit?.requests ? plinth.audit : undefined;
  const limits = {
    maxPerAddress: frontDoor.maxConnectionsPerAddress,
    headersTimeoutMs: frontDoor.headersTimeoutMs,
    idleTimeoutMs: frontDoor.idleTimeoutMs,
    trust,
    rawCorsLines: cors.rawLines,
  };
  const app = Fastify({
    bodyLimit: 64 * 1024,
    forceCloseConnections: 'idle',
    trustProxy: trust,
    ajv: { customOptions: { removeAdditional: false, allErrors: false } },
    serverFactory: (handler) =>
      createGuardedServer(limits, (req, res) => {
        track(req, res as Tracked, audit, trust);
        // CORS first, for every path and every answer (errors included); a preflight never carries
        // a key, so it is answered here and reaches neither the routes nor PostgREST.
        const origin = req.headers.origin;
        let headers: FlatHeaders | null = null;
        if (origin !== undefined) {
          if (isPreflight(req.method, req.headers)) {
            const answer = cors.preflight(origin, req.headers['access-control-request-headers']);
            res.setHeader('x-request-id', req.headers['x-request-id']!);
            res.writeHead(answer.status, answer.headers);
            res.end(answer.body);
            return;
          }
          headers = cors.forOrigin(origin);
        }
        // Anything but a plain path is rewritten (or answered) before the owner is chosen.
        if (req.url!.charCodeAt(0) !== 47 /* / */) {
          if (headers !== null) setAll(res, headers);
          headers = null;
          if (!toOriginForm(req, res)) return;
        }
        // /rest/v1/* is the table API of the root paths. Of the sidecar's own routes only those
        // that are part of that API (/rpc/*) answer there; the rest of it goes to PostgREST.
        const rest = restPath(req.url!);
        if (rest !== null) {
          req.url = rest;
          (req as RestPrefixed).viaRestPrefix = true;
        }
        if (rest === null) for (let i = 0; i < direct.length; i++) if (direct[i](req, res, headers)) return;
        if (owned.owns(req.url!) && (rest === null || rest.startsWith('/rpc/'))) {
          res.setHeader('x-request-id', req.headers['x-request-id']!);
          // fastify merges headers set on the raw response into every answer it writes.
          if (headers !== null) setAll(res, headers);
          handler(req, res);
        } else proxy.handle(req, res, headers);
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
    if (status === 500) plinth.log.error(`${req.method} ${req.url.split('?')[0]}: ${err.stack ?? err.message}`, { request_id: req.headers['x-request-id'] as string });
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

const ID_PREFIX = randomBytes(4).toString('hex');
let lastId = 0;
const GIVEN_ID = /^[\x21-\x7e]{1,128}$/;

/**
 * Gives the request an id (a sane incoming X-Request-Id is kept), which PostgREST receives and every
 * answer carries, and records the request when its answer is over: a listener and a small object,
 * all the front door adds per request; the redaction and the write happen off the request path.
 */
function track(req: IncomingMessage, res: Tracked, audit: Audit | undefined, trust: ProxyTrust): void {
  let id = req.headers['x-request-id'];
  if (typeof id !== 'string' || !GIVEN_ID.test(id)) req.headers['x-request-id'] = id = `${ID_PREFIX}-${(++lastId).toString(36)}`;
  if (audit === undefined) return;
  const started = performance.now();
  const at = Date.now();
  const socket = req.socket;
  const readBefore = socket.bytesRead;
  const writtenBefore = socket.bytesWritten;
  const url = req.url!;
  // Now: the socket is gone from the request by the time it closes.
  const clientAddr = clientAddress(req, trust);
  res.once('close', () => {
    const declared = req.headers['content-length'];
    audit.record({
      at,
      requestId: id as string,
      credential: req.headers.authorization ?? (req.headers.apikey as string | undefined),
      clientAddr,
      method: req.method!,
      url,
      // 499: the client went away before its answer was complete.
      status: res.writableFinished ? res.statusCode : 499,
      durationMs: performance.now() - started,
      rows: res.auditRows ?? null,
      bytesIn: declared !== undefined ? Number(declared) : socket.bytesRead - readBefore,
      bytesOut: socket.bytesWritten - writtenBefore,
      upstreamMs: res.auditUpstreamMs,
    });
  });
}

function setAll(res: ServerResponse, headers: FlatHeaders): void {
  for (let i = 0; i < headers.length; i += 2) res.setHeader(headers[i], headers[i + 1]);
}

/**
 * Where the OpenAPI document says the API is: PLINTH_PUBLIC_URL when set, else the host the
 * request was sent to (over HTTPS when a trusted proxy says so).
 */
function openApiServer(config: Plinth['config'], trust: ReturnType<typeof proxyTrust>): (req: IncomingMessage) => OpenApiServer {
  if (config.publicUrlSet) {
    const u = new URL(config.publicUrl);
    const fixed = { scheme: u.protocol.slice(0, -1), host: u.host, basePath: u.pathname === '' ? '/' : u.pathname };
    return () => fixed;
  }
  const fallback = new URL(config.publicUrl).host;
  return (req) => {
    const proto = req.headers['x-forwarded-proto'];
    const https = typeof proto === 'string' && trust(req.socket.remoteAddress ?? '', 0) && proto.slice(proto.lastIndexOf(',') + 1).trim().toLowerCase() === 'https';
    return { scheme: https ? 'https' : 'http', host: req.headers.host || fallback, basePath: '/' };
  };
}
