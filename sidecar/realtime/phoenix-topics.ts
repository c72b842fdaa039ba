// Broadcast and presence between the Phoenix channels of a topic, on every sidecar of the database.
// A broadcast is delivered at once to this sidecar's channels and announced with NOTIFY to the
// others, which deliver it to theirs; nothing is stored. Presence is kept in realtime.presences
// (the state a joining channel is sent), and each join or leave is announced the same way. Every
// sidecar marks itself seen in realtime.sidecars; the presences of one not seen for GONE_AFTER_S
// (it crashed) are removed by the others, who announce them as leaves.
import { randomUUID } from 'node:crypto';
import type { Sql } from '../core/db.js';
import { PlinthError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { encodeBroadcast, encodeRaw, type Broadcast, type Vsn } from './phoenix.js';

export const BROADCAST_CHANNEL = 'plinth_broadcast';
export const PRESENCE_CHANNEL = 'plinth_presence';
/** The largest presence payload one track may carry (it is announced whole with NOTIFY). */
export const PRESENCE_MAX_BYTES = 6000;
const SEEN_EVERY_MS = 5_000;
const GONE_AFTER_S = 30;
/** NOTIFY payloads must stay under 8000 bytes; this leaves room for the envelope's own escaping. */
export const BROADCAST_MAX_BYTES = 7500;

/** A joined channel, as broadcast sees it: its socket and whether it hears itself. */
interface Channel {
  broadcastSelf: boolean;
}
type Metas = Record<string, { metas: Record<string, unknown>[] }>;
/** Phoenix's presence_diff payload. */
interface Diff {
  joins: Metas;
  leaves: Metas;
}
interface Tracked {
  topic: string;
  key: string;
  ref: string;
  meta: Record<string, unknown>;
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
  private readonly tracked = new Map<Channel, Tracked>();
  private refs = 0;
  private timer?: NodeJS.Timeout;
  private failing = false;
  private unlisten: Array<() => Promise<void>> = [];

  constructor(
    private readonly sql: Sql,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    await this.sql`insert into realtime.sidecars (id) values (${this.id})`;
    this.unlisten.push((await this.sql.listen(BROADCAST_CHANNEL, (payload) => this.received(payload))).unlisten);
    this.unlisten.push((await this.sql.listen(PRESENCE_CHANNEL, (payload) => this.receivedDiff(payload))).unlisten);
    this.timer = setInterval(() => void this.beat(), SEEN_EVERY_MS);
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    // This sidecar's presences leave, for the sockets of the others.
    try {
      const gone = await this.sql<Tracked[]>`delete from realtime.presences where sidecar = ${this.id} returning topic, key, ref, meta`;
      await this.sql`delete from realtime.sidecars where id = ${this.id}`;
      for (const [topic, diff] of leavesByTopic(gone)) await this.notifyDiff(topic, diff);
    } catch (err) {
      this.log.warn(`realtime: removing this server's presences failed (the others remove them within ${GONE_AFTER_S} s): ${(err as Error).message}`);
    }
    for (const u of this.unlisten) await u().catch(() => {});
  }

  /** Marks this sidecar seen, and removes the presences of sidecars that are gone. */
  private async beat(): Promise<void> {
    try {
      const seen = await this.sql`update realtime.sidecars set seen_at = now() where id = ${this.id}`;
      if (seen.count === 0) await this.rejoin();
      const gone = await this.sql.begin(async (tx) => {
        const stale = tx`select id from realtime.sidecars where seen_at < now() - make_interval(secs => ${GONE_AFTER_S})`;
        const rows = await tx<Tracked[]>`delete from realtime.presences where sidecar in (${stale}) returning topic, key, ref, meta`;
        await tx`delete from realtime.sidecars where id in (${stale})`;
        return rows;
      });
      for (const [topic, diff] of leavesByTopic(gone)) await this.announce(topic, diff);
      if (this.failing) this.log.info('realtime: presence bookkeeping is running again');
      this.failing = false;
    } catch (err) {
      if (!this.failing) this.log.warn(`realtime: presence bookkeeping failed (retrying): ${(err as Error).message}`);
      this.failing = true;
    }
  }

  /** After an outage long enough for the others to remove this sidecar: its presences come back. */
  private async rejoin(): Promise<void> {
    await this.sql`insert into realtime.sidecars (id) values (${this.id}) on conflict (id) do update set seen_at = now()`;
    for (const t of this.tracked.values()) {
      await this.sql`insert into realtime.presences (ref, topic, key, sidecar, meta) values (${t.ref}, ${t.topic}, ${t.key}, ${this.id}, ${this.sql.json(t.meta as never)}) on conflict (ref) do nothing`;
      await this.announce(t.topic, { joins: { [t.key]: { metas: [t.meta] } }, leaves: {} });
    }
  }

  /** Tracks (or re-tracks, replacing) the channel's presence under `key`; others see a join (and the old one's leave). */
  async track(topic: string, channel: Channel, key: string, payload: Record<string, unknown>): Promise<void> {
    if (Buffer.byteLength(JSON.stringify(payload)) > PRESENCE_MAX_BYTES) {
      throw new PlinthError(413, `a presence payload may carry at most ${PRESENCE_MAX_BYTES} bytes on this server`, 'PLINTH413');
    }
    const previous = this.tracked.get(channel);
    const ref = `${this.id.slice(0, 8)}.${++this.refs}`;
    const meta = { ...payload, phx_ref: ref, ...(previous ? { phx_ref_prev: previous.ref } : {}) };
    await this.sql.begin(async (tx) => {
      if (previous) await tx`delete from realtime.presences where ref = ${previous.ref}`;
      await tx`insert into realtime.presences (ref, topic, key, sidecar, meta) values (${ref}, ${topic}, ${key}, ${this.id}, ${tx.json(meta as never)})`;
    });
    this.tracked.set(channel, { topic, key, ref, meta });
    // The old presence's leave goes first, in its own diff: realtime-js's join callback strips
    // phx_ref from the presences already listed under a key, after which a leave in the same diff
    // no longer finds the one it removes.
    if (previous) await this.announce(topic, { joins: {}, leaves: { [previous.key]: { metas: [previous.meta] } } });
    await this.announce(topic, { joins: { [key]: { metas: [meta] } }, leaves: {} });
  }

  async untrack(channel: Channel): Promise<void> {
    const t = this.tracked.get(channel);
    if (!t) return;
    this.tracked.delete(channel);
    await this.sql`delete from realtime.presences where ref = ${t.ref}`;
    await this.announce(t.topic, { joins: {}, leaves: { [t.key]: { metas: [t.meta] } } });
  }

  /** Everyone tracked on the topic, in Phoenix's presence_state shape. */
  async state(topic: string): Promise<Metas> {
    const rows = await this.sql<{ key: string; meta: Record<string, unknown> }[]>`select key, meta from realtime.presences where topic = ${topic} order by tracked_at, ref`;
    const state: Metas = {};
    for (const r of rows) (state[r.key] ??= { metas: [] }).metas.push(r.meta);
    return state;
  }

  private async announce(topic: string, diff: Diff): Promise<void> {
    this.deliverDiff(topic, diff);
    await this.notifyDiff(topic, diff);
  }

  private async notifyDiff(topic: string, diff: Diff): Promise<void> {
    await this.sql`select pg_notify(${PRESENCE_CHANNEL}, ${JSON.stringify({ from: this.id, topic, diff })})`;
  }

  private deliverDiff(topic: string, diff: Diff): void {
    const members = this.members.get(topic);
    if (!members) return;
    const json = JSON.stringify(diff);
    for (const { client } of members) client.sendFrame(encodeRaw(client.vsn, null, null, topic, 'presence_diff', json));
  }

  private receivedDiff(payload: string): void {
    let e: { from: string; topic: string; diff: Diff };
    try {
      e = JSON.parse(payload);
    } catch {
      return this.log.warn('realtime: a presence announcement was not JSON');
    }
    if (e.from !== this.id) this.deliverDiff(e.topic, e.diff);
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

/** Removed presences as one leave diff per topic (one per presence: each fits a NOTIFY). */
function leavesByTopic(rows: Tracked[]): Array<[string, Diff]> {
  return rows.map((r) => [r.topic, { joins: {}, leaves: { [r.key]: { metas: [r.meta] } } }]);
}
