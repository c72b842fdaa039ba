// The change feed of one sidecar. It numbers committed changes (realtime.stamp), reads the log in
// position order and hands each batch to this sidecar's subscriptions. It wakes on NOTIFY; for a
// second after any new change it also polls every BUSY_POLL_MS (with capture triggers, writers
// skip the NOTIFY while the sidecars are busy: see the wake step of realtime.capture_function;
// decoded changes always notify), and otherwise every POLL_MS (a notification can be lost while
// the listening connection reconnects). While every change is decoded, a wake-up that says where
// the log's head now is (realtime.append's notification, this sidecar's own capture) is trusted
// without asking the database; the poll, a notification without a position and a new
// subscription still read the head from realtime.state. Every sidecar on the database does the
// same for its own clients. One loop does all the work in order, so a
// subscription's catch-up and the live stream never overlap or reorder.
//
// A change is never skipped. A subscription's position moves past a batch only once the batch was
// judged for it; when the database cannot be reached (a lost connection, a restart) the same batch
// is tried again, and subscriptions that already received it are not sent it twice. If the feed
// stays broken for RESUME_AFTER_MS, the sockets with subscriptions are closed with CLOSE_RESUME:
// their clients come back (here or on another sidecar) and resume from their last position.
import type { CallerSql, Sql } from '../core/db.js';
import { databaseUnavailable, PlinthError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { CLOSE_RESUME, type Client, type Subscription } from './client.js';
import type { Tables } from './tables.js';
import type { Condition } from './filter.js';
import { judgeGroups, type Change, type Verdict } from './visibility.js';

export const CHANNEL = 'plinth_realtime';
const BATCH = 500;
const POLL_MS = 1000;
const BUSY_POLL_MS = 10;
const BUSY_FOR_MS = 1000;
const PRUNE_MS = 60_000;
/** Never prune what a lagging sidecar may still have to read, whatever the retention. */
const MIN_KEEP_SECONDS = 60;
/** Visibility queries in flight at once (they share the sidecar's connection pool). */
const PARALLEL_QUERIES = 4;
/** Claims groups judged in one pipelined transaction (visibility.ts, judgeGroups). */
const GROUPS_PER_TRANSACTION = 50;
/** Retry delays after a failed step grow to this: delivery resumes within about a second of the database's return. */
const RETRY_MAX_MS = 1000;
/** A feed failing this long closes its subscribers' sockets with CLOSE_RESUME (see the top of this file). */
const RESUME_AFTER_MS = 10_000;

/**
 * Whether a failure may pass if the same work is tried again: the database unreachable, restarting
 * or out of connections, or a transaction rolled back by a deadlock or serialization conflict.
 */
export function retryable(err: unknown): boolean {
  if (err instanceof PlinthError && err.status === 503) return true;
  if (databaseUnavailable(err)) return true;
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^(40|53)/.test(code);
}

/** A log entry: n row changes (a bulk statement) at positions position .. position + n - 1. */
interface EntryRow {
  position: string;
  n: number;
  relid: string;
  event: Change['event'];
  keys: Record<string, unknown>[];
  old_keys: Record<string, unknown>[] | null;
  old_rows: Record<string, unknown>[] | null;
  at: number;
}
/** The most row changes one log entry holds (realtime.capture_function). */
const ENTRY_MAX = 500;
/** Log entries read at once (so at most ENTRIES_PER_READ × ENTRY_MAX changes in memory). */
const ENTRIES_PER_READ = 100;

/** A notification's payload as a log position; undefined when it names none (capture triggers send ''). */
function headOf(payload: string): number | undefined {
  const n = Number(payload);
  return payload !== '' && Number.isSafeInteger(n) ? n : undefined;
}

export class Hub {
  private readPos = 0;
  private prunedThrough = 0;
  private head = 0;
  private live = new Map<number, Set<Subscription>>();
  private pending: Subscription[] = [];
  private dirty = true;
  /** The next step reads the head from the database: it was woken without being told where the head is. */
  private mustRead = true;
  /** The highest head reported by the wake-ups since the last step (0: none). */
  private reported = 0;
  private wakeUp: (() => void) | null = null;
  private stopped = false;
  private busyUntil = 0;
  private failures = 0;
  private failingSince = 0;
  private loopDone?: Promise<void>;
  private timers: NodeJS.Timeout[] = [];
  private unlisten?: () => Promise<void>;
  /**
   * Whether the database captures by logical decoding: every change then reaches the log through a
   * capture that notifies the feeds (realtime.append), so there is nothing to poll for.
   */
  decoded: () => boolean = () => false;
  /** Called for every change frame sent (the delivery-lag metric). */
  delivered?: (change: Change, client: Client) => void;

  constructor(
    private readonly sql: Sql,
    /** Where subscribers' visibility is judged, as each of them. */
    private readonly callerSql: CallerSql,
    private readonly tables: Tables,
    private readonly log: Logger,
    private readonly retentionSeconds: number,
  ) {}

  /** The last position this sidecar has handed out. */
  get position(): number {
    return this.readPos;
  }

  async start(): Promise<void> {
    const [state] = await this.sql<{ head: string; pruned: string }[]>`select realtime.stamp() as head, pruned_through as pruned from realtime.state`;
    this.readPos = this.head = Number(state.head);
    this.prunedThrough = Number(state.pruned);
    const listening = await this.sql.listen(CHANNEL, (payload) => this.wake(headOf(payload)), () => this.wake());
    this.unlisten = listening.unlisten;
    this.timers.push(setInterval(() => this.wake(), POLL_MS));
    this.timers.push(setInterval(() => void this.prune(), PRUNE_MS));
    this.loopDone = this.loop();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    this.wake();
    await this.loopDone;
    await this.unlisten?.().catch(() => {});
  }

  /** `head`: where the log's head is, when the waker knows (changes up to it are committed). */
  wake(head?: number): void {
    if (head === undefined) this.mustRead = true;
    else if (head > this.reported) this.reported = head;
    this.dirty = true;
    const w = this.wakeUp;
    this.wakeUp = null;
    w?.();
  }

  /** Queues a subscription; the loop acknowledges it (or reports why not) and starts delivering. */
  add(sub: Subscription): void {
    this.pending.push(sub);
    this.wake();
  }

  remove(sub: Subscription): void {
    sub.active = false;
    this.live.get(sub.table.relid)?.delete(sub);
    this.pending = this.pending.filter((s) => s !== sub);
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      if (!this.dirty) {
        const busy = Date.now() < this.busyUntil;
        await new Promise<void>((r) => {
          this.wakeUp = r;
          if (busy) setTimeout(() => this.wake(), BUSY_POLL_MS);
        });
      }
      if (this.stopped) break;
      this.dirty = false;
      try {
        await this.step();
        if (this.failures > 0) this.log.info('realtime: the change feed is running again');
        this.failures = 0;
      } catch (err) {
        // Once per outage in the log. Nothing was skipped: the next step starts where this one failed.
        if (this.failures++ === 0) {
          this.failingSince = Date.now();
          this.log.warn(`realtime: delivering changes failed (retrying): ${(err as Error).message}`);
        }
        if (Date.now() - this.failingSince >= RESUME_AFTER_MS) {
          this.interrupt(err);
          this.failingSince = Date.now();
        }
        this.dirty = true;
        await new Promise((r) => setTimeout(r, Math.min(RETRY_MAX_MS, 100 * 2 ** (this.failures - 1))));
      }
    }
  }

  private async step(): Promise<void> {
    const reported = this.reported;
    this.reported = 0;
    if (this.mustRead || this.pending.length > 0 || !this.decoded()) {
      this.mustRead = false;
      try {
        const [state] = await this.sql<{ head: string; pruned: string }[]>`select realtime.stamp() as head, pruned_through as pruned from realtime.state`;
        if (Number(state.head) > this.head && !this.decoded()) this.busyUntil = Date.now() + BUSY_FOR_MS;
        this.head = Number(state.head);
        this.prunedThrough = Number(state.pruned);
      } catch (err) {
        this.mustRead = true;
        throw err;
      }
    } else if (reported > this.head) {
      this.head = reported;
    }
    // One at a time, removed only once done: after a failure the loop retries where it stopped.
    while (this.pending.length > 0) {
      const sub = this.pending[0];
      await this.activate(sub);
      this.pending = this.pending.filter((s) => s !== sub);
    }
    while (this.readPos < this.head && !this.stopped) {
      // Only the tables someone here follows: the rest would be read, parsed and dropped. A table
      // subscribed to later catches up from the log itself (activate).
      const followed = [...this.live].filter(([, subs]) => subs.size > 0).map(([relid]) => relid);
      if (followed.length === 0) {
        this.readPos = this.head;
        break;
      }
      const to = Math.min(this.head, this.readPos + BATCH);
      const { changes, through } = await this.read(this.readPos, to, followed);
      await this.deliver(changes, (relid) => this.live.get(relid));
      this.readPos = through;
    }
  }

  /**
   * Closes every socket with a subscription with CLOSE_RESUME. Its client reconnects and
   * subscribes with "from", which replays what this sidecar could not deliver.
   */
  private interrupt(err: unknown): void {
    const waiting = new Set<Client>();
    for (const subs of this.live.values()) for (const s of subs) if (!s.client.closed) waiting.add(s.client);
    for (const s of this.pending) if (!s.client.closed) waiting.add(s.client);
    if (waiting.size === 0) return;
    this.log.warn(`realtime: no change delivered for ${RESUME_AFTER_MS / 1000} s (${(err as Error).message}); closing ${waiting.size} sockets so their clients resume from their last position`);
    for (const c of waiting) c.close(CLOSE_RESUME, 'changes interrupted; resume from your last position');
  }

  /** A new subscription: replay (from, readPos] if it resumes, then join the live stream. */
  private async activate(sub: Subscription): Promise<void> {
    const { client } = sub;
    if (client.closed || client.subscriptions.get(sub.id) !== sub) return;
    if (sub.from !== undefined && !sub.acknowledged) {
      if (sub.from < this.prunedThrough) {
        client.subscriptions.delete(sub.id);
        client.error('PLINTH410', `position ${sub.from} is older than the retention window; changes after it are gone`, {
          id: sub.id,
          hint: `Reload the table and subscribe again without "from" (the oldest position you can resume from is ${this.prunedThrough}).`,
        });
        return;
      }
      if (sub.from > this.head) {
        client.subscriptions.delete(sub.id);
        client.error('PLINTH400', `position ${sub.from} has not been reached yet (the latest is ${this.head})`, { id: sub.id });
        return;
      }
    }
    if (!sub.acknowledged) {
      sub.after = sub.from ?? this.readPos;
      sub.acknowledged = true;
      client.send({ type: 'subscribed', id: sub.id, table: sub.table.name, position: sub.after });
    }
    // Catch up to where the live stream stands, in batches, for this table only.
    const only = new Set([sub]);
    const current = () => !client.closed && client.subscriptions.get(sub.id) === sub;
    while (sub.after < this.readPos && current()) {
      const { changes } = await this.read(sub.after, this.readPos, [sub.table.relid]);
      if (changes.length === 0) break;
      await this.deliver(changes, () => only);
    }
    if (!current()) return;
    sub.after = Math.max(sub.after, this.readPos);
    sub.active = true;
    let set = this.live.get(sub.table.relid);
    if (!set) this.live.set(sub.table.relid, (set = new Set()));
    set.add(sub);
  }

  /**
   * The row changes of these tables at positions (after, through], in order, where `through` is
   * upTo unless ENTRIES_PER_READ entries ended earlier.
   */
  private async read(after: number, upTo: number, relids: number[]): Promise<{ changes: Change[]; through: number }> {
    const rows = await this.sql<EntryRow[]>`
      select position, n, relid::int8 as relid, event, keys, old_keys, old_rows, (extract(epoch from stamped_at) * 1000)::float8 as at
      from realtime.changes
      where position > ${after - ENTRY_MAX} and position + n - 1 > ${after} and position <= ${upTo}
        and relid = any(${relids.map(String)}::oid[])
      order by position
      limit ${ENTRIES_PER_READ}`;
    const changes: Change[] = [];
    for (const r of rows) {
      const first = Number(r.position);
      for (let i = 0; i < r.n; i++) {
        const position = first + i;
        if (position <= after || position > upTo) continue;
        changes.push({
          position,
          relid: Number(r.relid),
          event: r.event,
          key: r.keys[i],
          oldKey: r.old_keys?.[i] ?? null,
          oldRow: r.old_rows?.[i] ?? null,
          at: r.at,
        });
      }
    }
    const last = rows.at(-1);
    const through = rows.length === ENTRIES_PER_READ && last ? Math.min(upTo, Number(last.position) + last.n - 1) : upTo;
    return { changes, through };
  }

  /** Judges each table's changes once per group of identical claims, then sends in position order. */
  private async deliver(changes: Change[], subscribersOf: (relid: number) => Set<Subscription> | undefined): Promise<void> {
    const byTable = new Map<number, Change[]>();
    for (const c of changes) {
      if (!byTable.has(c.relid)) byTable.set(c.relid, []);
      byTable.get(c.relid)!.push(c);
    }
    const jobs: Array<() => Promise<void>> = [];
    for (const [relid, tableChanges] of byTable) {
      const subs = subscribersOf(relid);
      if (!subs || subs.size === 0) continue;
      const groups = new Map<string, Subscription[]>();
      for (const s of subs) {
        if (s.client.closed || !s.client.claims) continue;
        const g = groups.get(s.client.claimsKey);
        if (g) g.push(s);
        else groups.set(s.client.claimsKey, [s]);
      }
      const all = [...groups.values()];
      for (let i = 0; i < all.length; i += GROUPS_PER_TRANSACTION) {
        const chunk = all.slice(i, i + GROUPS_PER_TRANSACTION);
        jobs.push(() => this.deliverToGroups(tableChanges, chunk));
      }
    }
    // Every job runs to its end before a failure is reported: a retry must not overlap a job
    // still sending, or one subscriber could get changes out of order.
    let next = 0;
    let failure: { err: unknown } | undefined;
    const worker = async () => {
      while (next < jobs.length) {
        try {
          await jobs[next++]();
        } catch (err) {
          failure ??= { err };
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(PARALLEL_QUERIES, jobs.length) }, worker));
    if (failure) throw failure.err;
  }

  /**
   * Groups (subscriptions sharing claims) of one table, judged together, then sent to in order.
   * A group moves past these changes only once they were judged for it. A group the database could
   * not judge for a passing reason throws (the loop tries the batch again); for any other reason its
   * subscriptions end with an error, so that none of them continues past a gap.
   */
  private async deliverToGroups(changes: Change[], groups: Subscription[][]): Promise<void> {
    const table = groups[0][0].table;
    const subs = groups.flat();
    const last = changes[changes.length - 1].position;
    const lowest = Math.min(...subs.map((s) => s.after));
    const wanted = changes.filter((c) => c.position > lowest && subs.some((s) => s.events.has(c.event)));
    if (wanted.length === 0) {
      for (const s of subs) s.after = Math.max(s.after, last);
      return;
    }
    const plans = groups.map((group) => {
      // Subscriptions with the same filter text share one SQL expression.
      const filterIndex = new Map<string, number>();
      const filters: Condition[][] = [];
      for (const s of group) {
        if (s.conditions.length > 0 && !filterIndex.has(s.filter)) {
          filterIndex.set(s.filter, filters.length);
          filters.push(s.conditions);
        }
      }
      return { group, filterIndex, filters };
    });
    let results: Array<Map<number, Verdict> | Error>;
    try {
      results = await judgeGroups(
        this.callerSql,
        this.tables,
        table,
        plans.map((p) => ({ claims: p.group[0].client.claims!, filters: p.filters })),
        wanted,
      );
    } catch (err) {
      results = plans.map(() => (err instanceof Error ? err : new Error(String(err))));
    }
    let again: Error | undefined;
    for (let i = 0; i < plans.length; i++) {
      const verdicts = results[i];
      const { group, filterIndex } = plans[i];
      if (verdicts instanceof Error) {
        if (retryable(verdicts)) again ??= verdicts;
        else this.end(table.name, group, verdicts);
        continue;
      }
      this.send(table.name, wanted, verdicts, group, filterIndex);
      for (const s of group) s.after = Math.max(s.after, last);
    }
    if (again) throw again;
  }

  /**
   * Ends subscriptions whose changes cannot be judged (e.g. the table changed under them): they
   * stop where they are rather than continue past a gap, and the other groups go on.
   */
  private end(tableName: string, group: Subscription[], err: Error): void {
    this.log.warn(`realtime: visibility check on ${tableName} failed: ${err.message}`);
    for (const s of group) {
      if (s.client.subscriptions.get(s.id) !== s) continue;
      this.remove(s);
      s.client.subscriptions.delete(s.id);
      s.client.error('PLINTH500', `changes of ${tableName} could not be checked, so this subscription has ended; the server log has details`, {
        id: s.id,
        hint: 'Subscribe again with "from": <the last position you processed> to continue without a gap.',
      });
    }
  }

  private send(tableName: string, changes: Change[], verdicts: Map<number, Verdict>, group: Subscription[], filterIndex: Map<string, number>): void {
    for (const c of changes) {
      const verdict = verdicts.get(c.position);
      if (!verdict) continue;
      // The shared part of the message is serialised once for the whole group.
      const body =
        `,"event":"${c.event}","table":${JSON.stringify(tableName)},"position":${c.position}` +
        (c.event === 'DELETE' ? `,"old":${JSON.stringify(c.key)}` : `,"new":${JSON.stringify(verdict.row)}`) +
        (c.event === 'UPDATE' ? `,"old":${JSON.stringify(c.oldKey)}` : '') +
        '}';
      for (const s of group) {
        if (c.position <= s.after || !s.events.has(c.event)) continue;
        const f = filterIndex.get(s.filter);
        if (f !== undefined && !verdict.matches[f]) continue;
        if (s.client.sendChange(s, c, verdict.row, body)) this.delivered?.(c, s.client);
      }
    }
  }

  private async prune(): Promise<void> {
    try {
      const keep = Math.max(this.retentionSeconds, MIN_KEEP_SECONDS);
      await this.sql`select realtime.prune(make_interval(secs => ${keep}))`;
    } catch (err) {
      this.log.warn(`realtime: pruning the change log failed: ${(err as Error).message}`);
    }
  }
}
