// The public listener's defences against clients that hold connections rather than use them: a cap
// on open connections per client address (a WebSocket is an upgraded connection, so it counts),
// a deadline for a request's headers, and an idle timeout that cuts a connection on which no byte
// moves either way (a stalled body or a client that stopped reading). Long uploads keep working:
// only silence is cut, never duration.
import http, { type IncomingMessage, type RequestListener } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { clientAddress, type ProxyTrust } from '../core/client-address.js';

export interface ConnectionLimits {
  /** Open connections per client address; 0: no cap. */
  maxPerAddress: number;
  headersTimeoutMs: number;
  idleTimeoutMs: number;
  trust: ProxyTrust;
  /** CORS header lines for answers written before a request is parsed ('' when they depend on the Origin). */
  rawCorsLines?: string;
}

/**
 * The request line and headers Node reads before it gives up (431). Above what PostgREST accepts
 * (about 50 KiB), so a long URL for the REST API reaches the proxy and is told its exact size.
 */
export const MAX_REQUEST_HEAD = 64 * 1024;

/** How long a refused socket may take to read its answer before it is dropped. */
const REFUSAL_GRACE_MS = 5000;

function refusal(limit: number, corsLines: string): string {
  const body = JSON.stringify({
    code: 'PLINTH429',
    details: null,
    hint: 'Close idle connections or WebSockets, or ask the operator to raise PLINTH_MAX_CONNECTIONS_PER_ADDRESS',
    message: `Too many open connections from your address (the limit is ${limit})`,
  });
  return (
    'HTTP/1.1 429 Too Many Requests\r\n' +
    'content-type: application/json; charset=utf-8\r\n' +
    `content-length: ${Buffer.byteLength(body)}\r\n` +
    'retry-after: 1\r\nconnection: close\r\n' +
    corsLines +
    '\r\n' +
    body
  );
}

/** Node's own answers to requests it cannot parse, in PostgREST's JSON error shape. */
function parseRefusal(code: string | undefined, corsLines: string): string {
  const [status, reason, message, hint] =
    code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'Request Header Fields Too Large', `The request's URL and headers are longer than ${MAX_REQUEST_HEAD} bytes in all`, 'Send long lists of values in the body of a POST to an /rpc function, or split the request into several']
      : code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'Request Timeout', 'The request did not arrive in time', 'Send the request line and headers without pausing']
        : [400, 'Bad Request', 'The request is not valid HTTP/1.1', null];
  const body = JSON.stringify({ code: `PLINTH${status}`, details: null, hint, message });
  return (
    `HTTP/1.1 ${status} ${reason}\r\n` +
    'content-type: application/json; charset=utf-8\r\n' +
    `content-length: ${Buffer.byteLength(body)}\r\n` +
    'connection: close\r\n' +
    corsLines +
    '\r\n' +
    body
  );
}

/** Answers on a raw socket and lets it go, reading (and dropping) whatever the client still sends. */
function refuse(socket: Duplex, answer: string): void {
  socket.on('error', () => socket.destroy());
  socket.once('end', () => socket.destroy());
  setTimeout(() => socket.destroy(), REFUSAL_GRACE_MS).unref();
  socket.end(answer);
  socket.resume();
}

/** Open connections per address; a socket counts from its admission until it closes. */
class AddressCounts {
  private readonly open = new Map<string, number>();

  constructor(private readonly max: number) {}

  /** Counts `socket` under `address`, or returns false when that address is at the cap. */
  admit(socket: Duplex, address: string): boolean {
    const n = this.open.get(address) ?? 0;
    if (n >= this.max) return false;
    this.open.set(address, n + 1);
    socket.once('close', () => {
      const left = this.open.get(address)! - 1;
      if (left === 0) this.open.delete(address);
      else this.open.set(address, left);
    });
    return true;
  }
}

/**
 * An http.Server whose connections and WebSocket upgrades pass a gate before Node or any listener
 * sees them: a refused one never reaches the HTTP parser or the realtime endpoint.
 */
class GuardedServer extends http.Server {
  constructor(
    options: http.ServerOptions,
    handler: RequestListener,
    private readonly gate: { connection(socket: Socket): boolean; upgrade(req: IncomingMessage, socket: Duplex): boolean },
  ) {
    super(options, handler);
  }

  override emit(event: string | symbol, ...args: unknown[]): boolean {
    if (event === 'connection' && !this.gate.connection(args[0] as Socket)) return true;
    if (event === 'upgrade' && !this.gate.upgrade(args[0] as IncomingMessage, args[1] as Duplex)) return true;
    return super.emit(event as string, ...args);
  }
}

/** The public HTTP server with the caps and timeouts of `limits`. */
export function createGuardedServer(limits: ConnectionLimits, handler: RequestListener): http.Server {
  const { maxPerAddress, trust } = limits;
  const corsLines = limits.rawCorsLines ?? '';
  const counts = new AddressCounts(maxPerAddress);
  const gate = {
    // A direct client is counted by its connection's address when it connects. A trusted proxy's
    // connections carry many clients' requests, so they are not capped here (the proxy is where
    // plain connections are limited per client).
    connection(socket: Socket): boolean {
      const peer = socket.remoteAddress;
      if (maxPerAddress === 0 || peer === undefined || trust(peer, 0)) return true;
      if (counts.admit(socket, peer)) return true;
      refuse(socket, refusal(maxPerAddress, corsLines));
      return false;
    },
    // Through a trusted proxy, a WebSocket still occupies one connection for one client until it
    // closes: it is counted under the forwarded client address.
    upgrade(req: IncomingMessage, socket: Duplex): boolean {
      const peer = req.socket.remoteAddress;
      if (maxPerAddress === 0 || peer === undefined || !trust(peer, 0)) return true;
      if (counts.admit(socket, clientAddress(req, trust))) return true;
      refuse(socket, refusal(maxPerAddress, corsLines));
      return false;
    },
  };
  const server = new GuardedServer(
    {
      // Long uploads may take any time (requestTimeout 0); silence is what is cut, by the idle timeout.
      requestTimeout: 0,
      headersTimeout: limits.headersTimeoutMs,
      // Node checks the headers deadline on this interval: keep the cut close to the deadline.
      connectionsCheckingInterval: Math.max(250, Math.min(5000, limits.headersTimeoutMs / 4)),
      // Above the 60 s idle timeout of common load balancers, so they close first.
      keepAliveTimeout: 65_000,
      maxHeaderSize: MAX_REQUEST_HEAD,
    },
    handler,
    gate,
  );
  // Node's own answers (431, 408, 400) are bare; these say what was wrong, in the API's JSON shape.
  // As Node does, only when nothing of a response was written yet.
  const answered = new WeakSet<Duplex>();
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    if (answered.has(socket)) return;
    answered.add(socket);
    const inFlight = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
    if (err.code === 'ECONNRESET' || !socket.writable || inFlight?.headersSent) socket.destroy();
    else refuse(socket, parseRefusal(err.code, corsLines));
  });
  // No byte either way for this long: the connection is closed. A WebSocket is exempt: its server
  // clears the timeout at the upgrade, and realtime's heartbeat watches it instead.
  server.setTimeout(limits.idleTimeoutMs, (socket: Socket) => socket.destroy());
  return server;
}
