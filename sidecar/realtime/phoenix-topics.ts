// Broadcast between the Phoenix channels of a topic, on every sidecar of the database: a broadcast
// is delivered at once to this sidecar's channels and announced with NOTIFY to the others, which
// deliver it to theirs. Nothing is stored: a channel receives what is sent while it is joined.
import { randomUUID } from 'node:crypto';
import type { Sql } from '../core/db.js';
import { PlinthError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { encodeBroadcast, type Broadcast, type Vsn } from './phoenix.js';

export const BROADCAST_CHANNEL = 'plinth_broadcast';
/** NOTIFY payloads must stay under 8000 bytes; this leaves room for the envelope's own escaping. */
export const BROADCAST_MAX_BYTES = 7500;

/** A joined channel, as broadcast sees it: its socket and whether it hears itself. */
interface Channel {
  broadcastSelf: boolean;
}
interface Member {
  client: { vsn: Vsn; sendFrame(frame: string | Buffer): boolean };
  channel: Channel;
}

/** A broadcast as announced to the other sidecars. */
interface Envelope {
  /** The sidecar that sent it (it has delivered it already). */
  from: string;
  topic: string;
  event: string;
  meta: string;
  json?: unknown;
  base64?: string;
}

export class Topics {
  private readonly members = new Map<string, Set<Member>>();
  private readonly id = randomUUID();
  private unlisten?: () => Promise<void>;

  constructor(
    private readonly sql: Sql,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    const listening = await this.sql.listen(BROADCAST_CHANNEL, (payload) => this.received(payload));
    this.unlisten = listening.unlisten;
  }

  async stop(): Promise<void> {
    await this.unlisten?.().catch(() => {});
  }

  join(topic: string, member: Member): void {
    let set = this.members.get(topic);
    if (!set) this.members.set(topic, (set = new Set()));
    set.add(member);
  }

  leave(topic: string, channel: Channel): void {
    const set = this.members.get(topic);
    if (!set) return;
    for (const m of set) if (m.channel === channel) set.delete(m);
    if (set.size === 0) this.members.delete(topic);
  }

  /**
   * Delivers to this sidecar's channels of the topic (the sender's own only when it asked for
   * `self`), then announces it to the other sidecars. Refused whole when too large to announce.
   */
  async publish(topic: string, b: Broadcast, from: Channel): Promise<void> {
    const envelope: Envelope = { from: this.id, topic, event: b.event, meta: b.meta, ...(b.bytes ? { base64: b.bytes.toString('base64') } : { json: b.json ?? {} }) };
    const text = JSON.stringify(envelope);
    if (Buffer.byteLength(text) > BROADCAST_MAX_BYTES) {
      throw new PlinthError(413, `a broadcast may carry at most about ${BROADCAST_MAX_BYTES} bytes on this server`, 'PLINTH413');
    }
    this.deliver(topic, b, from);
    await this.sql`select pg_notify(${BROADCAST_CHANNEL}, ${text})`;
  }

  private deliver(topic: string, b: Broadcast, from: Channel | null): void {
    for (const { client, channel } of this.members.get(topic) ?? []) {
      if (channel === from && !from.broadcastSelf) continue;
      const frame = encodeBroadcast(client.vsn, topic, b);
      if (frame !== null) client.sendFrame(frame);
    }
  }

  private received(payload: string): void {
    let e: Envelope;
    try {
      e = JSON.parse(payload);
    } catch {
      return this.log.warn('realtime: a broadcast announcement was not JSON');
    }
    if (e.from === this.id || !this.members.has(e.topic)) return;
    this.deliver(e.topic, { event: e.event, meta: e.meta, ...(e.base64 !== undefined ? { bytes: Buffer.from(e.base64, 'base64') } : { json: e.json }) }, null);
  }
}
