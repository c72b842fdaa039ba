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
}

/** How long a refused socket may take to read its answer before it is dropped. */
const REFUSAL_GRACE_MS = 5000;

function refusal(limit: number): string {
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
    'retry-after: 1\r\nconnection: close\r\n\r\n' +
    body
  );
}

/** Answers 429 on a raw socket and lets it go, reading (and dropping) whatever the client still sends. */
function refuse(socket: Duplex, limit: number): void {
  socket.on('error', () => socket.destroy());
  socket.once('end', () => socket.destroy());
  setTimeout(() => socket.destroy(), REFUSAL_GRACE_MS).unref();
  socket.end(refusal(limit));
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
  const counts = new AddressCounts(maxPerAddress);
  const gate = {
    // A direct client is counted by its connection's address when it connects. A trusted proxy's
    // connections carry many clients' requests, so they are not capped here (the proxy is where
    // plain connections are limited per client).
    connection(socket: Socket): boolean {
      const peer = socket.remoteAddress;
      if (maxPerAddress === 0 || peer === undefined || trust(peer, 0)) return true;
      if (counts.admit(socket, peer)) return true;
      refuse(socket, maxPerAddress);
      return false;
    },
    // Through a trusted proxy, a WebSocket still occupies one connection for one client until it
    // closes: it is counted under the forwarded client address.
    upgrade(req: IncomingMessage, socket: Duplex): boolean {
      const peer = req.socket.remoteAddress;
      if (maxPerAddress === 0 || peer === undefined || !trust(peer, 0)) return true;
      if (counts.admit(socket, clientAddress(req, trust))) return true;
      refuse(socket, maxPerAddress);
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
    },
    handler,
    gate,
  );
  // No byte either way for this long: the connection is closed. A WebSocket is exempt: its server
  // clears the timeout at the upgrade, and realtime's heartbeat watches it instead.
  server.setTimeout(limits.idleTimeoutMs, (socket: Socket) => socket.destroy());
  return server;
}
