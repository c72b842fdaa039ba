// Logical-decoding capture: reads the committed changes of published tables from the database's
// replication slot (pgoutput, realtime.slot_name()) and appends them, numbered, to realtime.changes
// (realtime.append). Writers then pay nothing in their own transactions; the server's decoding is
// shared by every writer, so the slot exists only while a table is published (prepare). Tables
// captured by triggers (a database without logical WAL) need none of this: without a slot it idles.
//
// One sidecar at a time reads the slot: PostgreSQL lets one connection stream from it. The others
// stand by, looking every RETRY_MS, and take over when that one stops or dies.
//
// Nothing is lost or logged twice:
// - the slot moves on (the confirmed position sent back) only past transactions whose changes were
//   all appended, so a stream read again starts at or before the first change not yet logged;
// - realtime.state records how far the log goes (decoded_lsn, decoded_done), and changes already
//   logged are dropped when they arrive again, whether this sidecar or another logged them
//   (realtime.append refuses an overlap, and the batch is trimmed and sent again).
import type { Duplex } from 'node:stream';
import postgres from 'postgres';
import type { Sql } from '../core/db.js';
import type { Logger } from '../core/log.js';

const RETRY_MS = 1000;
/** Without a slot, how often to look whether a table was published (then decoding starts). */
const IDLE_MS = 2000;
/** The most row changes one log entry holds (as realtime.capture_function logs them). */
const ENTRY_MAX = 500;
/** Appends start at most this often while the stream is not behind: each is a commit, with its own WAL flush. */
const APPEND_EVERY_MS = 20;
/** Row changes appended in one call. */
const BATCH_MAX = 5000;
/** Row changes waiting to be appended before the stream is paused (PostgreSQL then waits too). */
const PAUSE_AT = 20_000;
/** How often the confirmed position is reported when the server does not ask. */
const STATUS_MS = 10_000;
/** realtime.append: some of these changes are logged already. */
const LOGGED_ALREADY = 'PLR01';

type Value = string | null | undefined;
type Event = 'INSERT' | 'UPDATE' | 'DELETE';

interface Relation {
  columns: string[];
  /** Which columns are json or jsonb: their text is sent parsed, or the log would hold a JSON string. */
  json: boolean[];
  /** Columns whose JSON the sidecar can give itself: integers are numbers, text and uuid strings. */
  plain: PlainType[];
}

const JSON_TYPES = new Set([114 /* json */, 3802 /* jsonb */]);

type PlainType = 'number' | 'string' | null;

const PLAIN_TYPES = new Map<number, PlainType>([
  [20 /* int8 */, 'number'],
  [21 /* int2 */, 'number'],
  [23 /* int4 */, 'number'],
  [25 /* text */, 'string'],
  [1043 /* varchar */, 'string'],
  [2950 /* uuid */, 'string'],
]);

/** One decoded row change: the `index`-th change of the transaction that committed at `lsn`. */
interface RowChange {
  lsn: bigint;
  index: number;
  relid: number;
  relation: Relation;
  event: Event;
  /** The row after an INSERT or UPDATE. */
  row: Value[] | null;
  /** The row before an UPDATE or DELETE (every column: the tables have REPLICA IDENTITY FULL). */
  old: Value[] | null;
}

/** A transaction's end: once its changes are all appended, the slot may move past `end`. */
interface Commit {
  lsn: bigint;
  end: bigint;
}

type Item = RowChange | Commit;

interface LogEntry {
  relid: number;
  event: Event;
  /** keys and old_keys hold JSON already typed (typedKeys); otherwise realtime.append types them. */
  typed: boolean;
  keys: Record<string, unknown>[];
  old_keys: Record<string, unknown>[] | null;
  old_rows: Record<string, unknown>[] | null;
}

/** A row's values with only the key columns kept (the others null). */
function keyValues(values: Value[], relation: Relation, keys: string[]): Value[] {
  const kept: Value[] = new Array(values.length).fill(null);
  for (const k of keys) {
    const i = relation.columns.indexOf(k);
    if (i >= 0) kept[i] = values[i];
  }
  return kept;
}

/** The named columns of a row as an object; an unchanged TOASTed value is taken from `fallback`. */
function picked(relation: Relation, values: Value[], names: string[], fallback?: Value[] | null): Record<string, unknown> {
  const { columns, json } = relation;
  const out: Record<string, unknown> = {};
  for (const name of names) {
    const i = columns.indexOf(name);
    const value = values[i] === undefined ? (fallback?.[i] ?? null) : values[i];
    out[name] = value !== null && json[i] ? JSON.parse(value) : value;
  }
  return out;
}

/**
 * The named columns of a row as to_jsonb gives them, when every one is an integer (within
 * JavaScript's safe range) or a text or uuid value; otherwise null, and realtime.append types them.
 * Primary keys almost always are, which spares the database a dynamic query per logged entry.
 */
function typedKeys(relation: Relation, values: Value[], names: string[], fallback?: Value[] | null): Record<string, unknown> | null {
  const out: Record<string, unknown> = {};
  for (const name of names) {
    const i = relation.columns.indexOf(name);
    if (i < 0) return null;
    const value = values[i] === undefined ? fallback?.[i] : values[i];
    const type = relation.plain[i];
    if (value == null || type === null) return null;
    if (type === 'string') {
      out[name] = value;
    } else {
      const n = Number(value);
      if (!Number.isSafeInteger(n)) return null;
      out[name] = n;
    }
  }
  return out;
}

function lsnText(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}

function parseLsn(text: string): bigint {
  const [hi, lo] = text.split('/');
  return (BigInt(`0x${hi}`) << 32n) | BigInt(`0x${lo}`);
}

/** A pgoutput TupleData at `at`: the values as text (null: SQL NULL; undefined: an unchanged TOASTed value). */
function tuple(buf: Buffer, at: number): { values: Value[]; at: number } {
  const n = buf.readUInt16BE(at);
  at += 2;
  const values: Value[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const kind = buf[at++];
    if (kind === 0x6e /* n */) values[i] = null;
    else if (kind === 0x75 /* u */) values[i] = undefined;
    else {
      const len = buf.readUInt32BE(at);
      values[i] = buf.toString('utf8', at + 4, at + 4 + len);
      at += 4 + len;
    }
  }
  return { values, at };
}

function cstring(buf: Buffer, at: number): { text: string; at: number } {
  const end = buf.indexOf(0, at);
  return { text: buf.toString('utf8', at, end), at: end + 1 };
}

export class Capture {
  private stopped = false;
  private loopDone?: Promise<void>;
  private sleeping?: { timer: NodeJS.Timeout; wake: () => void };
  private replication?: postgres.Sql;
  /**
   * The appends' own connection, whose warnings reach the sidecar's log (the shared pool drops
   * notices): realtime.append warns when a change no longer fits its table.
   */
  private appender?: postgres.Sql;
  private stream?: Duplex;
  /** Decoded items not yet appended, in commit order. */
  private queue: Item[] = [];
  private queuedChanges = 0;
  private flushing?: Promise<void>;
  private lastAppend = 0;
  private relations = new Map<number, Relation>();
  /** Key columns by table oid, from realtime.publications; reloaded when the decoder describes a table again. */
  private keyColumns = new Map<number, string[]>();
  private keysStale = true;
  /** The transaction being received: its commit position and how many changes it had so far. */
  private open: { lsn: bigint; count: number } | null = null;
  /** Changes at or before this (decoded_lsn, decoded_done) are in the log already. */
  private logged = { lsn: 0n, done: 0 };
  /** The slot may move to here: everything before it is appended. */
  private confirmed = 0n;
  /** The server's WAL end in its last keepalive. */
  private serverEnd = 0n;
  private failure?: string;
  /** Whether making a slot was refused (reported once). */
  private noSlot = false;
  /** Settles the stream being followed: with an error when it failed. */
  private ended?: (err?: Error) => void;
  /** Whether another connection reads the slot now (this sidecar stands by). */
  private standby = false;
  /** Whether the database captures by decoding (it has the slot), whichever sidecar reads it. */
  decoding = false;

  constructor(
    private readonly sql: Sql,
    private readonly url: string,
    private readonly log: Logger,
    /** Called with the log's new head after changes were appended (this sidecar's feed reads them without waiting for NOTIFY). */
    private readonly appended: (head: number) => void,
  ) {}

  /** Makes the slot if needed (before anything is served, so published tables are captured one way), then follows it. */
  async start(): Promise<void> {
    await this.prepare().catch((err: Error) => this.log.warn(`realtime: preparing the replication slot failed (retrying): ${err.message}`));
    this.loopDone = this.loop();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.sleeping) {
      clearTimeout(this.sleeping.timer);
      this.sleeping.wake();
    }
    this.end();
    await this.loopDone;
  }

  /** Ends the stream being followed (CopyDone: the server ends it cleanly), with the reason if it failed. */
  private end(err?: Error): void {
    const stream = this.stream;
    if (stream && !stream.destroyed && !stream.writableEnded) stream.end();
    const ended = this.ended;
    this.ended = undefined;
    ended?.(err);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        this.sleeping = undefined;
        resolve();
      };
      this.sleeping = { timer: setTimeout(wake, ms), wake };
    });
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      let wait = RETRY_MS;
      try {
        const slot = await this.prepare();
        if (slot === null) wait = this.standby ? RETRY_MS : IDLE_MS;
        else await this.follow(slot);
      } catch (err) {
        const e = err as { code?: string; message?: string };
        // 55006: another sidecar streams from the slot; this one stands by.
        if (e.code !== '55006' && !this.stopped) {
          const reason = e.message ?? String(err);
          if (this.failure !== reason) this.log.warn(`realtime: reading the replication slot failed (retrying): ${reason}`);
          this.failure = reason;
        }
      } finally {
        await this.replication?.end({ timeout: 1 }).catch(() => {});
        this.replication = undefined;
        this.stream = undefined;
        await this.appender?.end({ timeout: 1 }).catch(() => {});
        this.appender = undefined;
      }
      if (!this.stopped) await this.sleep(wait);
    }
  }

  /**
   * The slot to read, or null when there is nothing to decode. Decoding costs every writer of the
   * database (the server decodes all of its WAL), so the slot exists only while some table is
   * published: it is made when the first one is (that table is captured by its triggers until
   * then, and moved to the publication here), and dropped when the last one is unpublished.
   * Without logical WAL, or when this role may not make a slot, published tables keep their
   * triggers. A slot that is gone while tables are in the publication is made again
   * (realtime.recreate_slot says what that costs).
   */
  private async prepare(): Promise<string | null> {
    this.standby = false;
    const [s] = await this.sql<{ name: string; logical: boolean; present: boolean; active: boolean; lost: boolean; decoded: boolean; published: boolean }[]>`
      select realtime.slot_name() as name, current_setting('wal_level') = 'logical' as logical,
             slot.slot_name is not null and slot.wal_status is distinct from 'lost' as present,
             coalesce(slot.active, false) as active, coalesce(slot.wal_status = 'lost', false) as lost,
             exists (select from pg_catalog.pg_publication_tables where pubname = 'plinth_realtime') as decoded,
             realtime.any_published() as published
      from (select) as one
      left join pg_catalog.pg_replication_slots as slot on slot.slot_name = realtime.slot_name()`;
    if (!s.published) {
      this.decoding = false;
      if (s.present || s.lost) {
        const [{ dropped }] = await this.sql<{ dropped: boolean }[]>`select realtime.drop_unused_slot() as dropped`;
        if (dropped) this.log.info(`realtime: no table is published; the replication slot ${s.name} was dropped`);
      }
      return null;
    }
    if (!s.present && (s.lost || s.decoded)) {
      const [{ head }] = await this.sql<{ head: string }[]>`select realtime.recreate_slot()::text as head`;
      this.log.error(`realtime: the replication slot ${s.name} was ${s.lost ? 'lost (the server removed WAL it still needed)' : 'missing'} and has been made again; changes committed before that were not captured, so resuming from position ${head} or earlier is refused`);
    } else if (!s.present) {
      if (!s.logical) return null;
      try {
        // A statement of its own: PostgreSQL makes a slot only in a transaction that wrote nothing.
        await this.sql`select pg_catalog.pg_create_logical_replication_slot(realtime.slot_name(), 'pgoutput')`;
      } catch (err) {
        const e = err as { code?: string; message?: string };
        // 42710: another sidecar made it meanwhile.
        if (e.code !== '42710') {
          if (!this.noSlot) this.log.warn(`realtime: no replication slot could be made (${e.message}); published tables keep their capture triggers`);
          this.noSlot = true;
          return null;
        }
      }
    }
    // Tables published while there was no slot (or before this version) still have triggers.
    const [{ moved }] = await this.sql<{ moved: number }[]>`select realtime.capture_by_decoding() as moved`;
    if (moved > 0) this.log.info(`realtime: ${moved} published table${moved === 1 ? '' : 's'} moved from capture triggers to logical decoding`);
    this.decoding = true;
    // Another sidecar reads it: trying now would only be refused.
    if (s.active) {
      this.standby = true;
      return null;
    }
    return s.name;
  }

  /** Streams from the slot until the connection ends or the capture stops. */
  private async follow(slot: string): Promise<void> {
    this.queue = [];
    this.queuedChanges = 0;
    this.open = null;
    this.relations.clear();
    this.keysStale = true;
    await this.readLogged();
    const connection = (replication: boolean, onnotice: (notice: postgres.Notice) => void) =>
      postgres(this.url, {
        max: 1,
        onnotice,
        fetch_types: false,
        idle_timeout: null as unknown as number,
        max_lifetime: null,
        connect_timeout: 5,
        connection: { application_name: 'plinth realtime capture', ...(replication ? { replication: 'database' } : {}) } as Record<string, string>,
      });
    this.replication = connection(true, () => {});
    this.appender = connection(false, (notice) => {
      if (notice.severity === 'WARNING') this.log.warn(String(notice.message));
    });
    // The copy-both stream of the replication protocol: a Duplex, whatever the typings say.
    const query = this.replication.unsafe(`START_REPLICATION SLOT "${slot}" LOGICAL 0/0 (proto_version '1', publication_names 'plinth_realtime')`);
    // Its failure also reaches the query itself; writable() below is where it is handled.
    query.catch(() => {});
    const stream = (await query.writable()) as unknown as Duplex;
    this.stream = stream;
    if (this.failure) this.log.info('realtime: reading the replication slot again');
    this.failure = undefined;
    const status = setInterval(() => {
      this.report();
      // Once nothing is published any more, the slot is let go (prepare drops it).
      void this.sql`select realtime.any_published() as published`.then(
        ([r]) => r.published || this.end(),
        () => {},
      );
    }, STATUS_MS);
    try {
      await new Promise<void>((resolve, reject) => {
        this.ended = (err) => (err ? reject(err) : resolve());
        stream.on('data', (msg: Buffer) => {
          try {
            this.receive(msg);
          } catch (err) {
            this.end(err as Error);
          }
        });
        stream.once('error', (err) => this.end(err));
        stream.once('close', () => this.end());
      });
    } finally {
      this.ended = undefined;
      clearInterval(status);
      // What was received and not appended is read again from the slot next time.
      await this.flushing;
    }
  }

  private receive(msg: Buffer): void {
    if (msg[0] === 0x6b /* k: keepalive */) {
      this.serverEnd = msg.readBigUInt64BE(1);
      if (msg[17] === 1) this.report();
      return;
    }
    if (msg[0] !== 0x77 /* w: XLogData */) return;
    const m = msg.subarray(25);
    switch (m[0]) {
      case 0x42 /* B */:
        this.open = { lsn: m.readBigUInt64BE(1), count: 0 };
        break;
      case 0x43 /* C */: {
        const open = this.open;
        this.open = null;
        if (open && open.count > 0) this.enqueue({ lsn: open.lsn, end: m.readBigUInt64BE(10) });
        else if (!this.flushing && this.queue.length === 0) this.confirmed = m.readBigUInt64BE(10);
        break;
      }
      case 0x52 /* R */: {
        const relid = m.readUInt32BE(1);
        let at = cstring(m, 5).at;
        at = cstring(m, at).at;
        at += 1; // replica identity
        const n = m.readUInt16BE(at);
        at += 2;
        const columns: string[] = [];
        const json: boolean[] = [];
        const plain: PlainType[] = [];
        for (let i = 0; i < n; i++) {
          const name = cstring(m, at + 1);
          const type = m.readUInt32BE(name.at);
          columns.push(name.text);
          json.push(JSON_TYPES.has(type));
          plain.push(PLAIN_TYPES.get(type) ?? null);
          at = name.at + 8;
        }
        this.relations.set(relid, { columns, json, plain });
        this.keysStale = true;
        break;
      }
      case 0x49 /* I */:
        this.change(m.readUInt32BE(1), 'INSERT', null, tuple(m, 6).values);
        break;
      case 0x55 /* U */: {
        let at = 5;
        let old: Value[] | null = null;
        if (m[at] === 0x4b /* K */ || m[at] === 0x4f /* O */) {
          const t = tuple(m, at + 1);
          old = t.values;
          at = t.at;
        }
        this.change(m.readUInt32BE(1), 'UPDATE', old, tuple(m, at + 1).values);
        break;
      }
      case 0x44 /* D */:
        this.change(m.readUInt32BE(1), 'DELETE', tuple(m, 6).values, null);
        break;
      default:
      // Type, origin and truncate messages carry nothing the log keeps.
    }
  }

  private change(relid: number, event: Event, old: Value[] | null, row: Value[] | null): void {
    const open = this.open;
    const relation = this.relations.get(relid);
    if (!open || !relation) throw new Error(`the decoded stream sent a ${event} outside a transaction or before describing table ${relid}`);
    const index = open.count++;
    if (this.isLogged({ lsn: open.lsn, index })) return;
    // Of the row after the change only the key is logged
    // (and of the row before an UPDATE): keep no more of them while they wait.
    const keys = this.keysStale ? undefined : this.keyColumns.get(relid);
    if (keys) {
      if (row) row = keyValues(row, relation, keys);
      if (old && event === 'UPDATE') old = keyValues(old, relation, keys);
    }
    this.enqueue({ lsn: open.lsn, index, relid, relation, event, row, old });
  }

  private enqueue(item: Item): void {
    this.queue.push(item);
    if ('index' in item) this.queuedChanges++;
    if (this.queuedChanges >= PAUSE_AT) this.stream?.pause();
    if (!this.flushing) {
      // After the messages already received: they join the same append.
      this.flushing = new Promise<void>((resolve) => setImmediate(resolve)).then(() => this.flush());
    }
  }

  private async flush(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        const gap = this.lastAppend + APPEND_EVERY_MS - Date.now();
        if (gap > 0 && this.queuedChanges < BATCH_MAX) await new Promise((r) => setTimeout(r, gap));
        this.lastAppend = Date.now();
        let changes = 0;
        let end = 0;
        while (end < this.queue.length && changes < BATCH_MAX) if ('index' in this.queue[end++]) changes++;
        const batch = this.queue.slice(0, end);
        const rows = batch.filter((i): i is RowChange => 'index' in i);
        const commits = batch.filter((i): i is Commit => !('index' in i));
        let head = 0;
        if (rows.length > 0) {
          try {
            head = await this.append(rows);
          } catch (err) {
            if ((err as { code?: string }).code !== LOGGED_ALREADY) throw err;
            // Another sidecar logged some of these meanwhile: keep only what follows its last one.
            await this.readLogged();
            this.queue = this.queue.filter((i) => !('index' in i) || !this.isLogged(i));
            this.queuedChanges = this.queue.filter((i) => 'index' in i).length;
            continue;
          }
          const last = rows[rows.length - 1];
          this.logged = { lsn: last.lsn, done: last.index + 1 };
        }
        this.queue.splice(0, end);
        this.queuedChanges -= rows.length;
        if (commits.length > 0) this.confirmed = commits[commits.length - 1].end;
        if (this.queuedChanges < PAUSE_AT / 2 && this.stream?.isPaused()) this.stream.resume();
        if (rows.length > 0) this.appended(head);
      }
      this.report();
    } catch (err) {
      // The stream ends; the next one reads again from the slot's confirmed position.
      this.end(err as Error);
    } finally {
      this.flushing = undefined;
    }
  }

  /** How far the log goes, as realtime.state records it. */
  private async readLogged(): Promise<void> {
    const [state] = await this.sql<{ lsn: string; done: number }[]>`select decoded_lsn::text as lsn, decoded_done as done from realtime.state`;
    this.logged = { lsn: parseLsn(state.lsn), done: state.done };
  }

  private isLogged(c: { lsn: bigint; index: number }): boolean {
    return c.lsn < this.logged.lsn || (c.lsn === this.logged.lsn && c.index < this.logged.done);
  }

  private async loadKeys(relids: Iterable<number>): Promise<void> {
    if (!this.keysStale && [...relids].every((r) => this.keyColumns.has(r))) return;
    const rows = await this.sql<{ relid: string; key_columns: string[] }[]>`select relid::int8::text as relid, key_columns from realtime.publications`;
    this.keyColumns = new Map(rows.map((r) => [Number(r.relid), r.key_columns]));
    this.keysStale = false;
  }

  /**
   * Appends row changes (in commit order) as log entries of up to ENTRY_MAX changes of one table,
   * kind and typing. Returns the log's head after them.
   */
  private async append(rows: RowChange[]): Promise<number> {
    await this.loadKeys(new Set(rows.map((c) => c.relid)));
    const entries: LogEntry[] = [];
    let entry: LogEntry | null = null;
    for (const c of rows) {
      const keys = this.keyColumns.get(c.relid);
      // A table unpublished since: its changes are not logged.
      if (!keys) continue;
      const r = c.relation;
      const key = c.event === 'DELETE' ? typedKeys(r, c.old!, keys) : typedKeys(r, c.row!, keys, c.old);
      const oldKey = c.event === 'UPDATE' ? typedKeys(r, c.old ?? c.row!, keys, c.row) : null;
      const typed = key !== null && (c.event !== 'UPDATE' || oldKey !== null);
      if (!entry || entry.relid !== c.relid || entry.event !== c.event || entry.typed !== typed || entry.keys.length >= ENTRY_MAX) {
        entry = { relid: c.relid, event: c.event, typed, keys: [], old_keys: c.event === 'UPDATE' ? [] : null, old_rows: c.event === 'DELETE' ? [] : null };
        entries.push(entry);
      }
      if (c.event === 'DELETE') {
        entry.keys.push(typed ? key! : picked(r, c.old!, keys));
        entry.old_rows!.push(picked(r, c.old!, r.columns));
      } else {
        entry.keys.push(typed ? key! : picked(r, c.row!, keys, c.old));
        if (c.event === 'UPDATE') entry.old_keys!.push(typed ? oldKey! : picked(r, c.old ?? c.row!, keys, c.row));
      }
    }
    const first = rows[0];
    const last = rows[rows.length - 1];
    const [{ head }] = await (this.appender ?? this.sql)<{ head: string }[]>`
      select realtime.append(${JSON.stringify(entries)}::text::jsonb, ${lsnText(first.lsn)}::pg_lsn, ${first.index}, ${lsnText(last.lsn)}::pg_lsn, ${last.index + 1})::text as head`;
    return Number(head);
  }

  /**
   * Tells the server how far the slot may move: to the end of the last transaction appended, or,
   * when nothing received waits to be appended, to the server's WAL end (the WAL between holds
   * nothing published, and must not be kept for the slot).
   */
  private report(): void {
    const stream = this.stream;
    if (!stream || stream.destroyed || stream.writableEnded) return;
    const idle = !this.flushing && this.queue.length === 0 && this.open === null;
    if (idle && this.serverEnd > this.confirmed) this.confirmed = this.serverEnd;
    const msg = Buffer.alloc(34);
    msg[0] = 0x72; // r: standby status update
    msg.writeBigUInt64BE(this.confirmed, 1); // written
    msg.writeBigUInt64BE(this.confirmed, 9); // flushed
    msg.writeBigUInt64BE(this.confirmed, 17); // applied
    msg.writeBigInt64BE(BigInt(Date.now() - Date.UTC(2000, 0, 1)) * 1000n, 25);
    stream.write(msg);
  }
}
