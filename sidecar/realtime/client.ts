// One WebSocket client: who it is (its token and that token's claims), its subscriptions, and a
// bounded outgoing buffer. The token itself is kept so that it can be verified again when the
// signing keys change.
// Sends never wait: a client whose unsent bytes pass config.realtime.clientBufferBytes is closed
// (4008 "client too slow") and gets nothing more, so it can neither grow memory nor hold up others.
import type { WebSocket } from 'ws';
import type { Claims } from '../core/db.js';
import type { Condition } from './filter.js';
import type { PublishedTable } from './tables.js';
import type { Change } from './visibility.js';

export const CLOSE_UNAUTHORIZED = 4001;
export const CLOSE_TOO_SLOW = 4008;
export const CLOSE_PROTOCOL = 4400;
/** The change feed was interrupted: reconnect and subscribe with "from" to get every change missed. */
export const CLOSE_RESUME = 4503;

export type ChangeEvent = 'INSERT' | 'UPDATE' | 'DELETE';

export interface Subscription {
  id: string;
  client: Client;
  table: PublishedTable;
  events: Set<ChangeEvent>;
  /** The filter text as given (subscriptions with the same text share one SQL expression). */
  filter: string;
  conditions: Condition[];
  /** Everything at or below this position was judged for this subscription: sent, or not for it to see. */
  after: number;
  /** Resume point asked for; undefined: start from the live stream. */
  from?: number;
  active: boolean;
  /** The client was told `subscribed` (activation may be retried after a database error). */
  acknowledged: boolean;
}

export class Client {
  token: string | null = null;
  claims: Claims | null = null;
  /** Identical claims share visibility queries (see visibility.ts). */
  claimsKey = '';
  readonly subscriptions = new Map<string, Subscription>();
  closed = false;
  alive = true;
  private expiry?: NodeJS.Timeout;

  constructor(
    readonly ws: WebSocket,
    protected readonly bufferLimit: number,
  ) {}

  authenticate(token: string, claims: Claims, onExpired: () => void): void {
    this.token = token;
    this.claims = claims;
    this.claimsKey = JSON.stringify(claims);
    clearTimeout(this.expiry);
    if (typeof claims.exp === 'number') this.armExpiry(claims.exp * 1000, onExpired);
  }

  /** The session the token belongs to (user tokens from a sign-in), if any. */
  get sessionId(): string | undefined {
    const id = this.claims?.session_id;
    return typeof id === 'string' ? id : undefined;
  }

  /** setTimeout takes at most 2^31-1 ms (24.8 days); long-lived API keys are re-armed then. */
  private armExpiry(at: number, onExpired: () => void): void {
    const wait = at - Date.now();
    if (wait <= 0) return onExpired();
    this.expiry = setTimeout(() => this.armExpiry(at, onExpired), Math.min(wait, 2 ** 31 - 1));
  }

  /** Sends a message already serialised; false once the client is closed. */
  sendRaw(text: string): boolean {
    if (this.closed) return false;
    if (this.ws.bufferedAmount + Buffer.byteLength(text) > this.bufferLimit) {
      this.close(CLOSE_TOO_SLOW, 'client too slow');
      return false;
    }
    this.ws.send(text);
    return true;
  }

  /** Which protocol this client speaks (a metrics label). */
  get protocol(): string {
    return 'plinth';
  }

  /**
   * Sends one change of `sub` that the client may see. `body` is the rest of the native message,
   * serialised once per group by the hub; other protocols build their own frame from change and row.
   */
  sendChange(sub: Subscription, _change: Change, _row: Record<string, unknown> | null, body: string): boolean {
    return this.sendRaw(`{"type":"change","id":${JSON.stringify(sub.id)}${body}`);
  }

  send(message: Record<string, unknown>): boolean {
    return this.sendRaw(JSON.stringify(message));
  }

  error(code: string, message: string, extra: { id?: string; hint?: string | null; details?: string | null } = {}): void {
    this.send({ type: 'error', ...(extra.id !== undefined ? { id: extra.id } : {}), code, message, details: extra.details ?? null, hint: extra.hint ?? null });
  }

  close(code: number, reason: string): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.expiry);
    this.ws.close(code, reason);
    // A stalled peer never completes the closing handshake; do not keep its socket forever.
    setTimeout(() => this.ws.terminate(), 10_000).unref();
  }

  dispose(): void {
    this.closed = true;
    clearTimeout(this.expiry);
  }
}
