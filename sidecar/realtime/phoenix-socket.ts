// One WebSocket at /realtime/v1/websocket speaking the Phoenix channel protocol of Supabase's
// realtime-js: channels joined by topic, `postgres_changes` bindings, broadcast between the
// sockets of a topic, heartbeats, access-token updates. Each binding is an ordinary Subscription
// of the native change feed (hub.ts), so every change is judged by PostgreSQL as the subscriber,
// exactly as for /realtime; only the frames differ.
//
// The socket holds one credential, as realtime-js does (setAuth sends the same token to every
// channel): a join or an `access_token` message with a new token switches the whole socket to it
// once it verifies, and the change feed judges every channel's changes with it from then on. The
// socket is registered with Clients like a native one, so a retired key or an ended session closes
// it with 4001.
import { randomUUID } from 'node:crypto';
import type { WebSocket } from 'ws';
import type { Caller } from '../core/caller.js';
import type { Claims } from '../core/db.js';
import type { Plinth } from '../core/context.js';
import { PlinthError } from '../core/errors.js';
import { Client, type ChangeEvent, type Subscription } from './client.js';
import { retryable } from './hub.js';
import { BindingError, decodeFrame, encodeFrame, encodeRaw, FrameError, parsePostgresChange, type Broadcast, type Frame, type Vsn } from './phoenix.js';
import type { RealtimeService } from './service.js';
import { SubscribeError, type PublishedTable } from './tables.js';
import type { Change } from './visibility.js';

export const PHOENIX_PATH = '/realtime/v1/websocket';
const HEARTBEAT_MS = 25_000;
/** A socket opened without a token must join with one within this time, as native sockets must authenticate. */
const AUTH_TIMEOUT_MS = 10_000;
const MAX_CHANNELS = 100;
const MAX_BINDINGS = 100;

/** What a Phoenix socket needs from the realtime feature. */
export interface PhoenixContext {
  plinth: Plinth;
  realtime: RealtimeService;
  /** A request-log row for a socket action (connect, join), like the native socket's. */
  record(method: string, url: string, status: number, since: number, token: string | undefined): void;
}

interface Binding {
  id: number;
  /** The entry as the client sent it: echoed in the join reply, which realtime-js compares with its own. */
  params: Record<string, unknown>;
}

export interface Channel {
  topic: string;
  /** The topic without its `realtime:` prefix, as Supabase names it in system messages. */
  name: string;
  joinRef: string | null;
  bindings: Binding[];
  subscriptions: PhoenixSubscription[];
  broadcastSelf: boolean;
  broadcastAck: boolean;
  /** The key its presence is tracked under (config.presence.key, or a random one). */
  presenceKey: string;
  /** Sent the topic's presence_state once joined. */
  presenceEnabled: boolean;
  /** Until every binding is live: the join's ref and the subscriptions not yet acknowledged. */
  pending?: { ref: string | null; waiting: Set<string> };
}

interface PhoenixSubscription extends Subscription {
  channel: Channel;
  binding: Binding;
}

export class PhoenixClient extends Client {
  readonly channels = new Map<string, Channel>();
  /** The last change serialised, shared by the bindings of this socket that receive it. */
  private lastData: { change: Change; row: Record<string, unknown> | null; json: string } | null = null;
  onSubscribed?: (sub: PhoenixSubscription) => void;
  onSubscriptionError?: (sub: PhoenixSubscription, message: string) => void;

  constructor(
    ws: WebSocket,
    bufferLimit: number,
    readonly vsn: Vsn,
  ) {
    super(ws, bufferLimit);
  }

  override get protocol(): string {
    return 'phoenix';
  }

  sendFrame(frame: string | Buffer): boolean {
    if (typeof frame === 'string') return this.sendRaw(frame);
    if (this.closed) return false;
    if (this.ws.bufferedAmount + frame.length > this.bufferLimit) {
      this.close(4008, 'client too slow');
      return false;
    }
    this.ws.send(frame);
    return true;
  }

  push(channel: Channel, event: string, payload: unknown, ref: string | null = null): void {
    this.sendRaw(encodeFrame(this.vsn, { joinRef: channel.joinRef, ref, topic: channel.topic, event, payload }));
  }

  system(channel: Channel, extension: string, status: 'ok' | 'error', message: string): void {
    this.push(channel, 'system', { extension, status, message, channel: channel.name });
  }

  /** Supabase's postgres_changes frame: `{ids, data: {schema, table, commit_timestamp, type, columns, record, old_record, errors}}`. */
  override sendChange(sub: Subscription, change: Change, row: Record<string, unknown> | null): boolean {
    const { channel, binding, table } = sub as PhoenixSubscription;
    let data = this.lastData;
    if (!data || data.change !== change || data.row !== row) {
      const record = change.event === 'DELETE' ? '' : `,"record":${JSON.stringify(row)}`;
      const old = change.event === 'INSERT' ? '' : `,"old_record":${JSON.stringify(change.event === 'DELETE' ? change.key : change.oldKey)}`;
      const json =
        `{"schema":${JSON.stringify(table.schema)},"table":${JSON.stringify(table.name)},"commit_timestamp":${JSON.stringify(new Date(change.at).toISOString())},` +
        `"type":"${change.event}","columns":${JSON.stringify(table.columnList)}${record}${old},"errors":null}`;
      this.lastData = data = { change, row, json };
    }
    return this.sendRaw(encodeRaw(this.vsn, null, null, channel.topic, 'postgres_changes', `{"ids":[${binding.id}],"data":${data.json}}`));
  }

  /** The change feed's native messages: only a subscription's acknowledgement matters here. */
  override send(message: Record<string, unknown>): boolean {
    if (message.type === 'subscribed' && typeof message.id === 'string') {
      const sub = this.subscriptions.get(message.id) as PhoenixSubscription | undefined;
      if (sub) this.onSubscribed?.(sub);
    }
    return !this.closed;
  }

  /** Errors of the change feed or of the socket's credential, as Supabase's `system` messages. */
  override error(code: string, message: string, extra: { id?: string } = {}): void {
    if (extra.id !== undefined) {
      const sub = this.subscriptions.get(extra.id) as PhoenixSubscription | undefined;
      if (sub) this.onSubscriptionError?.(sub, message);
      return;
    }
    for (const channel of this.channels.values()) this.system(channel, 'system', 'error', message);
  }
}

export function phoenixConnected(ctx: PhoenixContext, ws: WebSocket, caller: Caller | null, vsn: Vsn): void {
  const { plinth } = ctx;
  const { hub, tables, clients, topics } = ctx.realtime;
  const client = new PhoenixClient(ws, plinth.config.realtime.clientBufferBytes, vsn);
  clients.add(client);
  let nextBindingId = 1;
  let nextSubscription = 1;

  // Supabase ends a channel, not the socket, when its token expires: a system error, then phx_close.
  const expired = () => {
    for (const channel of [...client.channels.values()]) shutdown(channel, 'Token has expired');
    client.token = null;
    client.claims = null;
    client.claimsKey = '';
  };
  let queue = caller ? clients.admit(client, caller.token, caller.claims, expired).then(() => {}) : Promise.resolve();
  const authDeadline = caller ? undefined : setTimeout(() => client.token === null && client.close(4001, 'no token'), AUTH_TIMEOUT_MS);

  const heartbeat = setInterval(() => {
    if (!client.alive) return ws.terminate();
    client.alive = false;
    ws.ping();
  }, HEARTBEAT_MS);
  ws.on('pong', () => (client.alive = true));
  ws.on('message', (data, isBinary) => {
    client.alive = true;
    const bytes = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
    queue = queue
      .then(async () => void (await handle(bytes, isBinary)))
      .catch((err) => plinth.log.warn(`realtime: handling a Phoenix frame failed: ${(err as Error).message}`));
  });
  ws.on('close', () => {
    clearInterval(heartbeat);
    clearTimeout(authDeadline);
    for (const channel of client.channels.values()) drop(channel);
    client.channels.clear();
    client.dispose();
    clients.delete(client);
  });
  ws.on('error', () => ws.terminate());

  client.onSubscribed = (sub) => {
    const { channel } = sub;
    if (!channel.pending || client.channels.get(channel.topic) !== channel) return;
    channel.pending.waiting.delete(sub.id);
    if (channel.pending.waiting.size === 0) joined(channel);
  };
  client.onSubscriptionError = (sub, message) => {
    const { channel } = sub;
    if (client.channels.get(channel.topic) !== channel) return;
    if (channel.pending) return refuseJoin(channel, channel.pending.ref, `UnableToSubscribeToPostgres: ${message}`, true);
    client.system(channel, 'postgres_changes', 'error', message);
    shutdown(channel, message);
  };

  async function handle(bytes: Buffer, isBinary: boolean) {
    if (client.closed) return;
    let frame: Frame;
    try {
      frame = decodeFrame(vsn, bytes, isBinary);
    } catch (err) {
      if (!(err instanceof FrameError)) throw err;
      return client.close(4400, `invalid frame: ${err.message}`.slice(0, 120));
    }
    const reply = (status: 'ok' | 'error', response: unknown, joinRef = frame.joinRef) =>
      client.sendRaw(encodeFrame(vsn, { joinRef, ref: frame.ref, topic: frame.topic, event: 'phx_reply', payload: { status, response } }));
    if (frame.topic === 'phoenix') {
      if (frame.event === 'heartbeat') reply('ok', {}, null);
      return;
    }
    if (frame.event === 'phx_join') return join(frame);
    const channel = client.channels.get(frame.topic);
    if (!channel || (frame.joinRef !== null && frame.joinRef !== channel.joinRef)) {
      return reply('error', { reason: 'unmatched topic' }, null);
    }
    switch (frame.event) {
      case 'phx_leave':
        drop(channel);
        client.channels.delete(channel.topic);
        return reply('ok', {});
      case 'access_token':
        return accessToken(channel, frame.payload);
      case 'broadcast': {
        const b = isBinary ? (frame.payload as Broadcast) : broadcastOf(frame.payload);
        if (!b) return reply('error', { reason: 'a broadcast needs {"type":"broadcast","event":<string>,"payload":…}' });
        try {
          await topics.publish(channel.topic, b, channel);
        } catch (err) {
          if (channel.broadcastAck && frame.ref !== null) reply('error', { reason: err instanceof PlinthError ? err.message : 'the broadcast could not reach the other servers' });
          return;
        }
        if (channel.broadcastAck && frame.ref !== null) reply('ok', {});
        return;
      }
      case 'presence':
        return presence(channel, frame.payload, reply);
      default:
        // Supabase ignores events it does not know.
        return;
    }
  }

  async function join(frame: Frame) {
    const since = performance.now();
    const { topic } = frame;
    const fail = (reason: string, close = true) => {
      client.sendRaw(encodeFrame(vsn, { joinRef: frame.joinRef, ref: frame.ref, topic, event: 'phx_reply', payload: { status: 'error', response: { reason } } }));
      // A join that cannot succeed as asked is closed, so that the client does not retry it forever.
      if (close) client.sendRaw(encodeFrame(vsn, { joinRef: frame.joinRef, ref: frame.joinRef, topic, event: 'phx_close', payload: {} }));
    };
    if (!topic.startsWith('realtime:') || topic === 'realtime:') return fail('TopicNameRequired: You must provide a topic name');
    const previous = client.channels.get(topic);
    if (previous) {
      // Phoenix closes the older join of the same topic.
      drop(previous);
      client.channels.delete(topic);
      client.sendRaw(encodeFrame(vsn, { joinRef: previous.joinRef, ref: previous.joinRef, topic, event: 'phx_close', payload: {} }));
    }
    if (client.channels.size >= MAX_CHANNELS) return fail(`ChannelRateLimitReached: Too many channels (at most ${MAX_CHANNELS} per connection)`);
    const payload = isObject(frame.payload) ? frame.payload : {};
    const config = isObject(payload.config) ? payload.config : {};
    if (config.private === true) {
      return fail('PrivateChannelsNotSupported: private channels (authorised by policies on realtime.messages) are not supported by this server; join without `private: true`');
    }
    const token = typeof payload.access_token === 'string' ? payload.access_token : typeof payload.user_token === 'string' ? payload.user_token : client.token;
    if (token === null) return fail('Unauthorized: no token: connect with ?apikey=<anon key> or send access_token in the join');
    if (token !== client.token || client.claims === null) {
      const refused = await switchToken(token);
      if (refused !== null) {
        ctx.record('JOIN', `/realtime/v1/join?topic=${encodeURIComponent(topic)}`, 401, since, undefined);
        return fail(refused);
      }
      if (client.closed) return;
    }
    const entries = Array.isArray(config.postgres_changes) ? config.postgres_changes.filter((e) => e !== null && e !== undefined) : [];
    if (entries.length > MAX_BINDINGS) return fail(`TooManyBindings: at most ${MAX_BINDINGS} postgres_changes per channel`);
    const channel: Channel = {
      topic,
      name: topic.slice('realtime:'.length),
      joinRef: frame.joinRef,
      bindings: [],
      subscriptions: [],
      broadcastSelf: isObject(config.broadcast) && config.broadcast.self === true,
      broadcastAck: isObject(config.broadcast) && config.broadcast.ack === true,
      presenceKey: isObject(config.presence) && typeof config.presence.key === 'string' && config.presence.key !== '' ? config.presence.key : randomUUID(),
      presenceEnabled: isObject(config.presence) && config.presence.enabled === true,
    };
    const claims = client.claims!;
    const wanted: Array<{ binding: Binding; table: PublishedTable; events: ChangeEvent[]; filter: string; conditions: Awaited<ReturnType<typeof tables.checkFilter>> }> = [];
    try {
      for (const entry of entries) {
        const request = parsePostgresChange(entry);
        const binding: Binding = { id: nextBindingId++, params: entry as Record<string, unknown> };
        channel.bindings.push(binding);
        for (const table of await resolveTables(request.schema, request.table, claims)) {
          const conditions = request.filter === '' ? [] : await tables.checkFilter(table, request.filter, claims);
          wanted.push({ binding, table, events: request.events, filter: request.filter, conditions });
        }
      }
    } catch (err) {
      if (err instanceof BindingError || err instanceof SubscribeError) {
        ctx.record('JOIN', `/realtime/v1/join?topic=${encodeURIComponent(topic)}`, err instanceof SubscribeError && err.code === '42501' ? 403 : err instanceof SubscribeError && err.code === '42P01' ? 404 : 400, since, client.token ?? undefined);
        const message = err instanceof SubscribeError && err.hint ? `${err.message}. ${err.hint}` : err.message;
        // Supabase reports a binding it cannot subscribe as a system message; the join fails here too, so the subscribe callback sees it.
        client.push(channel, 'system', { extension: 'postgres_changes', status: 'error', message, channel: channel.name });
        return fail(`UnableToSubscribeToPostgres: ${message}`);
      }
      if (retryable(err)) return fail('RealtimeRestarting: the database is unavailable; the client joins again in a moment', false);
      throw err;
    }
    if (client.closed || client.claims !== claims) return fail('Unauthorized: the token changed during the join; join again', false);
    client.channels.set(topic, channel);
    topics.join(topic, { client, channel });
    channel.pending = { ref: frame.ref, waiting: new Set() };
    for (const w of wanted) {
      const sub: PhoenixSubscription = {
        id: `p${nextSubscription++}`,
        client,
        table: w.table,
        events: new Set(w.events),
        filter: w.filter,
        conditions: w.conditions,
        after: 0,
        active: false,
        acknowledged: false,
        channel,
        binding: w.binding,
      };
      channel.subscriptions.push(sub);
      channel.pending.waiting.add(sub.id);
      client.subscriptions.set(sub.id, sub);
      hub.add(sub);
    }
    ctx.record('JOIN', `/realtime/v1/join?topic=${encodeURIComponent(topic)}`, 200, since, client.token ?? undefined);
    if (channel.pending.waiting.size === 0) joined(channel);
  }

  /** Every binding is live: the join's reply, then Supabase's "Subscribed to PostgreSQL". */
  function joined(channel: Channel) {
    const ref = channel.pending?.ref ?? null;
    channel.pending = undefined;
    const postgresChanges = channel.bindings.map((b) => ({ ...b.params, id: b.id }));
    client.push(channel, 'phx_reply', { status: 'ok', response: { postgres_changes: postgresChanges } }, ref);
    if (channel.bindings.length > 0) client.system(channel, 'postgres_changes', 'ok', 'Subscribed to PostgreSQL');
    if (channel.presenceEnabled) {
      topics
        .state(channel.topic)
        .then((state) => client.channels.get(channel.topic) === channel && client.push(channel, 'presence_state', state))
        .catch((err) => {
          plinth.log.warn(`realtime: reading the presence of a topic failed: ${(err as Error).message}`);
          if (client.channels.get(channel.topic) === channel) shutdown(channel, 'Presence could not be read; join again in a moment');
        });
    }
  }

  /** `track(payload)` / `untrack()`: {type: "presence", event, payload}. */
  async function presence(channel: Channel, payload: unknown, reply: (status: 'ok' | 'error', response: unknown) => unknown) {
    const event = isObject(payload) && typeof payload.event === 'string' ? payload.event.toLowerCase() : '';
    try {
      if (event === 'track') {
        const meta = isObject(payload) && payload.payload !== undefined ? payload.payload : {};
        if (!isObject(meta)) return reply('error', { reason: 'Presence track payload must be a map' });
        await topics.track(channel.topic, channel, channel.presenceKey, meta);
      } else if (event === 'untrack') {
        await topics.untrack(channel);
      } else {
        return reply('error', { reason: 'a presence message needs "event": "track" or "untrack"' });
      }
    } catch (err) {
      if (err instanceof PlinthError) return reply('error', { reason: err.message });
      plinth.log.warn(`realtime: presence ${event} failed: ${(err as Error).message}`);
      return reply('error', { reason: 'Presence could not be updated; try again in a moment' });
    }
    reply('ok', {});
  }

  function refuseJoin(channel: Channel, ref: string | null, reason: string, close: boolean) {
    drop(channel);
    client.channels.delete(channel.topic);
    client.push(channel, 'phx_reply', { status: 'error', response: { reason } }, ref);
    if (close) client.push(channel, 'phx_close', {}, channel.joinRef);
  }

  /** The tables one binding covers: a published table, or every published one of a schema for `*`. */
  async function resolveTables(schema: string, table: string, claims: Claims): Promise<PublishedTable[]> {
    if (table !== '*' && schema !== '*') {
      const found = await tables.find(`${schema}.${table}`);
      await tables.assertReadable(found, claims);
      return [found];
    }
    const rows = await plinth.sql<{ schema: string; name: string }[]>`
      select table_schema as schema, table_name as name from realtime.publications
      where (${schema} = '*' or table_schema = ${schema}) and (${table} = '*' or table_name = ${table})
      order by 1, 2`;
    const out: PublishedTable[] = [];
    for (const r of rows) {
      const found = await tables.find(`${r.schema}.${r.name}`);
      // A wildcard covers the tables the role may read; the others are simply not part of it.
      if ((await tables.predicate(found, claims.role)) !== null) out.push(found);
    }
    return out;
  }

  /**
   * Makes `token` the socket's credential: verified, every live binding checked again under it
   * (a binding the new role may not read ends its channel), then admitted (key and session).
   * Null when switched; otherwise the reason it was refused.
   */
  async function switchToken(token: string): Promise<string | null> {
    let claims: Claims;
    try {
      claims = await plinth.keys.verify(token);
    } catch (err) {
      const e = err instanceof PlinthError ? err : new PlinthError(401, 'JWT invalid');
      return `InvalidJWTToken: ${e.message}`;
    }
    const lost = new Set<Channel>();
    for (const channel of client.channels.values()) {
      for (const sub of channel.subscriptions) {
        try {
          await tables.assertReadable(sub.table, claims);
          if (sub.filter !== '') await tables.checkFilter(sub.table, sub.filter, claims);
        } catch (err) {
          if (!(err instanceof SubscribeError)) throw err;
          lost.add(channel);
        }
      }
    }
    if (!(await clients.admit(client, token, claims, expired))) return 'Unauthorized: the session of this token has ended or its key was retired';
    for (const channel of lost) shutdown(channel, `You no longer have permission to read from this Channel topic: ${channel.name}`);
    return null;
  }

  async function accessToken(channel: Channel, payload: unknown) {
    const token = isObject(payload) ? payload.access_token : undefined;
    if (typeof token !== 'string' || token === client.token) return;
    const refused = await switchToken(token);
    if (refused !== null && client.channels.get(channel.topic) === channel) shutdown(channel, refused.replace(/^InvalidJWTToken: /, ''));
  }

  /** Ends a channel from the server side, as Supabase does: a system error, then phx_close. */
  function shutdown(channel: Channel, message: string) {
    if (client.channels.get(channel.topic) !== channel) return;
    client.system(channel, 'system', 'error', message);
    client.push(channel, 'phx_close', {}, channel.joinRef);
    drop(channel);
    client.channels.delete(channel.topic);
  }

  /** Stops a channel's deliveries. */
  function drop(channel: Channel) {
    for (const sub of channel.subscriptions) {
      hub.remove(sub);
      client.subscriptions.delete(sub.id);
    }
    channel.subscriptions = [];
    channel.pending = undefined;
    topics.leave(channel.topic, channel);
    topics.untrack(channel).catch((err) => plinth.log.warn(`realtime: removing a presence failed: ${(err as Error).message}`));
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A JSON broadcast push: {type: "broadcast", event, payload}. */
function broadcastOf(payload: unknown): Broadcast | null {
  if (!isObject(payload) || payload.type !== 'broadcast' || typeof payload.event !== 'string') return null;
  return { event: payload.event, json: payload.payload ?? {}, meta: '' };
}
