// GET /realtime: the WebSocket endpoint (protocol in the README, "Realtime"), and
// /realtime/v1/websocket, the same feed in the Phoenix protocol of Supabase's clients
// (phoenix-socket.ts). The upgrade arrives on the http server's 'upgrade' event; a plain GET gets
// 426 with an explanation.
import type { FastifyInstance } from 'fastify';
import { STATUS_CODES, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { randomUUID } from 'node:crypto';
import { identify, type Caller } from '../core/caller.js';
import { clientAddress, proxyTrust } from '../core/client-address.js';
import type { Claims } from '../core/db.js';
import type { Plinth } from '../core/context.js';
import { PlinthError } from '../core/errors.js';
import { Client, CLOSE_PROTOCOL, CLOSE_UNAUTHORIZED, type Subscription } from './client.js';
import { MessageError, parseMessage, type ClientMessage } from './messages.js';
import { retryable } from './hub.js';
import type { RealtimeService } from './service.js';
import { SubscribeError } from './tables.js';
import { PHOENIX_PATH, phoenixConnected, type PhoenixContext } from './phoenix-socket.js';
import { VSN_1, VSN_2, type Vsn } from './phoenix.js';

const HEARTBEAT_MS = 25_000;
const AUTH_TIMEOUT_MS = 10_000;
const MAX_SUBSCRIPTIONS = 100;
const MAX_MESSAGE_BYTES = 64 * 1024;

// A browser's WebSocket cannot send headers: the token may come in the URL instead, or later in
// an auth message.
const SOCKET_CALLER = { query: ['access_token', 'apikey'], optional: true } as const;

export async function realtimeRoutes(app: FastifyInstance, { plinth, realtime }: { plinth: Plinth; realtime: RealtimeService }) {
  const { hub, tables, clients } = realtime;
  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_MESSAGE_BYTES });

  plinth.health.set('realtime', async () => ({ clients: clients.size, position: hub.position }));
  plinth.audit?.gauge('plinth_realtime_connections', 'Open realtime sockets', () => clients.size);
  plinth.audit?.gauge('plinth_realtime_subscriptions', 'Live realtime subscriptions', () => {
    let n = 0;
    for (const c of clients) n += c.subscriptions.size;
    return n;
  });

  // From the change being numbered (just after its commit) to its frame being handed to the socket.
  const lag = plinth.audit?.histogram(
    'plinth_realtime_delivery_lag_seconds',
    'Time from a change being numbered after its commit to its frame being sent, by protocol',
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    ['protocol'],
  );
  if (lag) hub.delivered = (change, client) => lag(Math.max(0, Date.now() - change.at) / 1000, { protocol: client.protocol });

  // Connects and subscriptions go to the request log like HTTP requests (the upgrade never reaches the front door's hook).
  const audit = plinth.audit?.requests ? plinth.audit : undefined;
  const trust = proxyTrust(plinth.config.trustProxy);
  interface SocketRequest {
    id: string;
    clientAddr: string;
  }
  function record(req: SocketRequest, method: string, url: string, status: number, since: number, token: string | undefined) {
    audit?.record({ at: Date.now(), requestId: req.id, credential: token, clientAddr: req.clientAddr, method, url, status, durationMs: performance.now() - since, rows: null, bytesIn: null, bytesOut: null });
  }

  app.get('/realtime', { schema: { querystring: { type: 'object', properties: { apikey: { type: 'string' }, access_token: { type: 'string' } }, additionalProperties: false } } }, async () => {
    throw new PlinthError(426, 'GET /realtime is a WebSocket endpoint: connect with a WebSocket client', 'PLINTH426', null, 'new WebSocket("ws://<host>/realtime?apikey=<anon key>")', {
      upgrade: 'websocket',
    });
  });

  app.get(PHOENIX_PATH, async () => {
    throw new PlinthError(426, `GET ${PHOENIX_PATH} is a WebSocket endpoint for Supabase's realtime clients: connect with a WebSocket client`, 'PLINTH426', null,
      'createClient(url, anonKey).channel("room").on("postgres_changes", …).subscribe()', { upgrade: 'websocket' });
  });


  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const isPhoenix = url.pathname === PHOENIX_PATH;
    // Phoenix's server reads frames as vsn 1.0.0 when the client names none.
    const vsn = (url.searchParams.get('vsn') ?? VSN_1) as Vsn;
    if (isPhoenix && vsn !== VSN_1 && vsn !== VSN_2) return refuse(socket, new PlinthError(400, `vsn ${JSON.stringify(vsn)} is not supported: use ${VSN_1} or ${VSN_2}`, 'PLINTH400'));
    if (url.pathname !== '/realtime' && !isPhoenix) {
      // Only realtime speaks WebSocket; anything else is refused rather than left hanging.
      if (app.server.listenerCount('upgrade') === 1) refuse(socket, new PlinthError(404, `No WebSocket endpoint at ${url.pathname}`));
      return;
    }
    const since = performance.now();
    const given = req.headers['x-request-id'];
    const socketRequest: SocketRequest = { id: typeof given === 'string' && given.length <= 128 ? given : randomUUID(), clientAddr: clientAddress(req, trust) };
    const refused = (err: PlinthError) => {
      record(socketRequest, 'CONNECT', req.url ?? '/realtime', err.status, since, undefined);
      refuse(socket, err);
    };
    void (async () => {
      // A token in the URL or headers is checked before the upgrade, so a bad one gets a real 401.
      let caller: Caller | null = null;
      try {
        caller = await identify(plinth.keys, req, SOCKET_CALLER);
      } catch (err) {
        return refused(err instanceof PlinthError ? err : new PlinthError(401, 'JWT invalid'));
      }
      // Every socket may hold up to PLINTH_REALTIME_CLIENT_BUFFER unsent: the cap bounds their sum.
      const { maxClients } = plinth.config.realtime;
      if (maxClients > 0 && clients.size >= maxClients) {
        return refused(new PlinthError(503, `This server has as many realtime connections as it accepts (${maxClients}); try again shortly`, 'PLINTH503', null,
          'The operator may raise PLINTH_REALTIME_MAX_CLIENTS or run more sidecars', { 'retry-after': '5' }));
      }
      wss.handleUpgrade(req, socket, head, (ws) => {
        record(socketRequest, 'CONNECT', req.url ?? '/realtime', 101, since, caller?.token);
        if (isPhoenix) {
          const context: PhoenixContext = { plinth, realtime, record: (method, u, status, t0, token) => record(socketRequest, method, u, status, t0, token) };
          phoenixConnected(context, ws, caller, vsn);
        } else connected(ws, caller, socketRequest);
      });
    })().catch((err) => {
      plinth.log.warn(`realtime: upgrade failed: ${(err as Error).message}`);
      socket.destroy();
    });
  };
  app.server.on('upgrade', onUpgrade);

  function connected(ws: WebSocket, caller: Caller | null, socketRequest: SocketRequest) {
    const client = new Client(ws, plinth.config.realtime.clientBufferBytes);
    clients.add(client);
    const expired = () => client.close(CLOSE_UNAUTHORIZED, 'token expired');
    const welcome = () => client.send({ type: 'ready', role: client.claims!.role, position: hub.position, heartbeat: HEARTBEAT_MS / 1000 });
    // A socket that never authenticates is closed; one with a token in the URL is admitted before
    // any of its messages is handled (its session may have ended since the token was minted).
    const authDeadline = caller ? undefined : setTimeout(() => client.close(CLOSE_UNAUTHORIZED, 'no auth message'), AUTH_TIMEOUT_MS);
    let queue = caller ? clients.admit(client, caller.token, caller.claims, expired).then((ok) => void (ok && welcome())) : Promise.resolve();

    // Liveness: a ws ping each interval; no pong since the last one means the peer is gone.
    // The app-level heartbeat message lets browser code (which cannot see pings) notice too.
    const heartbeat = setInterval(() => {
      if (!client.alive) return ws.terminate();
      client.alive = false;
      ws.ping();
      if (client.claims) client.send({ type: 'heartbeat', position: hub.position });
    }, HEARTBEAT_MS);
    ws.on('pong', () => (client.alive = true));

    // Messages are handled one at a time, in arrival order.
    ws.on('message', (data, isBinary) => {
      client.alive = true;
      queue = queue
        .then(() => handle(isBinary ? '' : data.toString()))
        .catch((err) => {
          plinth.log.warn(`realtime: handling a client message failed: ${(err as Error).message}`);
          client.error('PLINTH500', 'Internal error; the server log has details');
        });
    });
    ws.on('close', () => {
      clearInterval(heartbeat);
      clearTimeout(authDeadline);
      for (const sub of client.subscriptions.values()) hub.remove(sub);
      client.subscriptions.clear();
      client.dispose();
      clients.delete(client);
    });
    ws.on('error', () => ws.terminate());

    async function handle(text: string) {
      if (client.closed) return;
      let msg: ClientMessage;
      try {
        msg = parseMessage(text);
      } catch (err) {
        if (!(err instanceof MessageError)) throw err;
        client.error('PLINTH400', `Invalid message: ${err.message}`, { id: err.id });
        if (!client.claims) client.close(CLOSE_PROTOCOL, 'the first message must be {"type":"auth","token":...}');
        return;
      }
      if (msg.type === 'auth') {
        let next: Claims;
        try {
          next = await plinth.keys.verify(msg.token);
        } catch (err) {
          const e = err instanceof PlinthError ? err : new PlinthError(401, 'JWT invalid');
          client.error(e.code, e.message);
          if (!client.claims) client.close(CLOSE_UNAUTHORIZED, 'unauthorized');
          return;
        }
        // A refreshed token may not switch identity under live subscriptions.
        if (client.claims && client.subscriptions.size > 0 && (next.role !== client.claims.role || next.sub !== client.claims.sub)) {
          return client.error('PLINTH400', 'a new token must be for the same user and role; reconnect to switch users');
        }
        const first = !client.claims;
        if (!(await clients.admit(client, msg.token, next, expired))) return;
        clearTimeout(authDeadline);
        if (first) welcome();
        else client.send({ type: 'auth', ok: true });
        return;
      }
      if (!client.claims) {
        client.error('PGRST301', 'Authenticate first: send {"type":"auth","token":"<anon key or user token>"}');
        return client.close(CLOSE_UNAUTHORIZED, 'unauthorized');
      }
      if (msg.type === 'ping') return void client.send({ type: 'pong', ...(msg.ref !== undefined ? { ref: msg.ref } : {}) });
      if (msg.type === 'unsubscribe') {
        const sub = client.subscriptions.get(msg.id);
        if (!sub) return client.error('PLINTH404', `no subscription "${msg.id}"`, { id: msg.id });
        hub.remove(sub);
        client.subscriptions.delete(msg.id);
        return void client.send({ type: 'unsubscribed', id: msg.id });
      }
      await subscribe(msg);
    }

    async function subscribe(msg: Extract<ClientMessage, { type: 'subscribe' }>) {
      if (client.subscriptions.has(msg.id)) return client.error('PLINTH409', `subscription "${msg.id}" already exists; unsubscribe first or pick another id`, { id: msg.id });
      if (client.subscriptions.size >= MAX_SUBSCRIPTIONS) return client.error('PLINTH429', `at most ${MAX_SUBSCRIPTIONS} subscriptions per connection`, { id: msg.id });
      const since = performance.now();
      const url = `/realtime/subscribe?table=${encodeURIComponent(msg.table)}${msg.filter ? `&filter=${encodeURIComponent(msg.filter)}` : ''}`;
      const token = client.token ?? undefined;
      try {
        // One set of claims for every check; if the token changed meanwhile, the checks are made
        // again for the new one, so a subscription is never admitted on claims the client no longer holds.
        let claims: Claims;
        let table, conditions;
        const filter = msg.filter ?? '';
        do {
          claims = client.claims!;
          table = await tables.find(msg.table);
          await tables.assertReadable(table, claims);
          conditions = filter === '' ? [] : await tables.checkFilter(table, filter, claims);
          if (client.closed) return;
        } while (client.claims !== claims);
        const sub: Subscription = {
          id: msg.id,
          client,
          table,
          events: new Set(msg.events ?? ['INSERT', 'UPDATE', 'DELETE']),
          filter,
          conditions,
          after: 0,
          from: msg.from,
          active: false,
          acknowledged: false,
        };
        client.subscriptions.set(sub.id, sub);
        hub.add(sub);
        record(socketRequest, 'SUBSCRIBE', url, 200, since, token);
      } catch (err) {
        if (retryable(err)) {
          record(socketRequest, 'SUBSCRIBE', url, 503, since, token);
          return client.error('PLINTH503', 'The database is unavailable; subscribe again in a moment', { id: msg.id });
        }
        if (!(err instanceof SubscribeError)) throw err;
        record(socketRequest, 'SUBSCRIBE', url, /\d{3}$/.test(err.code) ? Number(err.code.slice(-3)) : 400, since, token);
        client.error(err.code, err.message, { id: msg.id, hint: err.hint });
      }
    }
  }

  // Sockets are connections of the http server: they are closed before it waits for its
  // connections to end (the change feed itself stops with the realtime service, afterwards).
  app.addHook('preClose', async () => {
    app.server.off('upgrade', onUpgrade);
    const closed = [...clients].map((c) => new Promise((resolve) => c.ws.once('close', resolve)));
    for (const c of clients) c.close(1001, 'server shutting down');
    // The close frames get a moment to reach the clients; sockets that do not answer are cut.
    await Promise.race([Promise.all(closed), new Promise((resolve) => setTimeout(resolve, 1000).unref())]);
    for (const c of clients) c.ws.terminate();
    wss.close();
  });
}

function refuse(socket: Duplex, err: PlinthError): void {
  const body = JSON.stringify(err.body());
  const status = `${err.status} ${STATUS_CODES[err.status] ?? 'Error'}`;
  const headers = { ...err.headers, 'content-type': 'application/json; charset=utf-8', 'content-length': String(Buffer.byteLength(body)), connection: 'close' };
  socket.end(`HTTP/1.1 ${status}\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}`).join('\r\n')}\r\n\r\n${body}`);
}
