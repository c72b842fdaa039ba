// Database-change triggers, fed from the realtime change log (realtime.changes: the table must be
// published). Each function has a cursor in functions.change_cursors, the last position it
// handled, and one sidecar at a time holds it (a lease renewed while it works, taken over when it
// expires). Changes are delivered one at a time in position order; the cursor moves only after the
// function answered 2xx, or after its retries were used up and the change was recorded in
// functions.failed_changes. A sidecar killed mid-call leaves the cursor before that change, so it
// is delivered again: at least once, in order, resumed wherever the cursor is.
import os from 'node:os';
import type { Plinth } from '../core/context.js';
import type { ChangeEvent, Declared } from './declared.js';
import type { EventResult } from './invoke.js';

const LEASE_SECONDS = 10;
const POLL_MS = 250;
const ROWS_PER_READ = 50;
const BACKOFF_MAX_MS = 30_000;

export interface ChangeEventBody {
  type: ChangeEvent;
  schema: string;
  table: string;
  record: Record<string, unknown> | null;
  old_record: Record<string, unknown> | null;
  /** UPDATE: the row's key before the change (the log keeps keys, not whole old rows). */
  old_keys?: Record<string, unknown>;
  position: number;
}

type Call = (name: string, event: ChangeEventBody) => Promise<EventResult>;

/** Whether a lease holder (`host:pid`) is a process of this machine that no longer runs. */
function deadHere(holder: string): boolean {
  const at = holder.lastIndexOf(':');
  if (holder.slice(0, at) !== os.hostname()) return false;
  const pid = Number(holder.slice(at + 1));
  if (!Number.isInteger(pid) || pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

function quoteIdent(s: string): string {
  return `"${s.replace(/"/g, '""')}"`;
}

class Consumer {
  private stopped = false;
  private wakeUp: (() => void) | null = null;
  readonly done: Promise<void>;
  private warned = '';

  constructor(
    private readonly plinth: Plinth,
    private readonly name: string,
    readonly on: NonNullable<Declared['on']>,
    private readonly call: Call,
    private readonly me: string,
  ) {
    this.done = this.loop();
  }

  wake(): void {
    const w = this.wakeUp;
    this.wakeUp = null;
    w?.();
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      this.wakeUp = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }

  private warnOnce(msg: string): void {
    if (this.warned === msg) return;
    this.warned = msg;
    this.plinth.log.warn(`function ${this.name}: ${msg}`);
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      try {
        const more = await this.step();
        if (!more) await this.sleep(POLL_MS);
      } catch (err) {
        if (this.stopped) break;
        this.warnOnce(`change trigger: ${(err as Error).message}; retrying`);
        await this.sleep(1000);
      }
    }
    // Let a restarted (or another) sidecar take over at once.
    await this.plinth.sql`update functions.change_cursors set lease_until = null where name = ${this.name} and leased_by = ${this.me}`.catch(() => {});
  }

  /** One read and delivery; true when there may be more to read right away. */
  private async step(): Promise<boolean> {
    const sql = this.plinth.sql;
    const [table] = await sql<{ relid: string; key_columns: string[] }[]>`
      select p.relid::int8::text as relid, p.key_columns from realtime.publications p
      join pg_class c on c.oid = p.relid join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = ${this.on.schema} and c.relname = ${this.on.table}`;
    if (!table) {
      this.warnOnce(`table ${this.on.schema}.${this.on.table} is not published; publish it in a migration with SELECT realtime.publish('${this.on.table}')`);
      await this.sleep(5000);
      return false;
    }
    const [cursor] = await sql<{ position: string }[]>`
      insert into functions.change_cursors (name, position, leased_by, lease_until)
      values (${this.name}, (select realtime.stamp()), ${this.me}, now() + make_interval(secs => ${LEASE_SECONDS}))
      on conflict (name) do update set leased_by = excluded.leased_by, lease_until = excluded.lease_until
        where functions.change_cursors.leased_by = excluded.leased_by
           or functions.change_cursors.lease_until is null or functions.change_cursors.lease_until < now()
      returning position::text`;
    if (!cursor) {
      // Held by a process of this machine that is gone (this sidecar before a crash): take it now.
      const [holder] = await sql<{ leased_by: string }[]>`select leased_by from functions.change_cursors where name = ${this.name}`;
      if (holder && deadHere(holder.leased_by)) {
        await sql`update functions.change_cursors set lease_until = null where name = ${this.name} and leased_by = ${holder.leased_by}`;
        return true;
      }
      await this.sleep(1000); // another sidecar holds it
      return false;
    }
    let position = Number(cursor.position);
    const [{ head, pruned }] = await sql<{ head: string; pruned: string }[]>`select realtime.stamp()::text as head, pruned_through::text as pruned from realtime.state`;
    if (Number(head) < position) {
      // The log was numbered afresh (a restore into a new database): follow it from its head.
      this.plinth.log.warn(`function ${this.name}: its change cursor (${position}) is past the change log's head (${head}); continuing from the head`);
      await sql`update functions.change_cursors set position = ${Number(head)} where name = ${this.name} and leased_by = ${this.me}`;
      return true;
    }
    if (Number(pruned) > position) {
      this.plinth.log.error(`function ${this.name}: changes up to position ${pruned} were pruned from the change log before it handled them (PLINTH_REALTIME_RETENTION); continuing after them`);
      position = Number(pruned);
    }
    const entries = await sql<{ position: string; n: number; event: ChangeEvent; keys: Record<string, unknown>[]; old_keys: Record<string, unknown>[] | null; old_rows: Record<string, unknown>[] | null }[]>`
      select c.position::text as position, c.n, c.event, c.keys, c.old_keys, c.old_rows from realtime.changes c
      where c.relid = ${table.relid}::oid and c.position is not null and c.position + c.n - 1 > ${position} and c.event = any(${this.on.events})
      order by c.position limit ${ROWS_PER_READ}`;
    if (entries.length === 0) return false;
    const qualified = `${quoteIdent(this.on.schema)}.${quoteIdent(this.on.table)}`;
    const keyMatch = table.key_columns.map((k) => `t.${quoteIdent(k)} = k.${quoteIdent(k)}`).join(' and ');
    const renew = setInterval(() => {
      void sql`update functions.change_cursors set lease_until = now() + make_interval(secs => ${LEASE_SECONDS}) where name = ${this.name} and leased_by = ${this.me}`.catch(() => {});
    }, (LEASE_SECONDS * 1000) / 3);
    try {
      for (const e of entries) {
        for (let i = 0; i < e.n; i++) {
          const at = Number(e.position) + i;
          if (at <= position) continue;
          if (this.stopped) return false;
          let record: Record<string, unknown> | null = null;
          if (e.event !== 'DELETE') {
            const [row] = await sql.unsafe<{ r: Record<string, unknown> }[]>(
              `select to_jsonb(t) as r from ${qualified} t, jsonb_populate_record(null::${qualified}, $1::jsonb) k where ${keyMatch}`,
              [e.keys[i] as never],
            );
            // Gone since: its key is what is known of it.
            record = row?.r ?? e.keys[i];
          }
          const event: ChangeEventBody = {
            type: e.event,
            schema: this.on.schema,
            table: this.on.table,
            record,
            old_record: e.event === 'DELETE' ? (e.old_rows?.[i] ?? e.keys[i]) : null,
            ...(e.event === 'UPDATE' && e.old_keys ? { old_keys: e.old_keys[0] } : {}),
            position: at,
          };
          const delivered = await this.deliver(event);
          this.plinth.log.debug(`function ${this.name}: change at ${at}: ${delivered === null ? 'interrupted' : delivered.ok ? 'delivered' : delivered.error}`);
          if (delivered === null) return false; // stopping: the cursor stays before this change
          if (!delivered.ok) {
            await sql`insert into functions.failed_changes (name, position, attempts, error, event)
                      values (${this.name}, ${at}, ${this.plinth.config.functions.retries + 1}, ${delivered.error}, ${sql.json(event as never)})
                      on conflict do nothing`;
            this.plinth.log.error(`function ${this.name}: change at position ${at} failed after ${this.plinth.config.functions.retries + 1} attempts (${delivered.error}); recorded in functions.failed_changes`);
          }
          const moved = await sql`update functions.change_cursors set position = ${at}, lease_until = now() + make_interval(secs => ${LEASE_SECONDS})
                                  where name = ${this.name} and leased_by = ${this.me} returning 1`;
          if (moved.length === 0) return false; // the lease was lost: whoever holds it continues
          position = at;
        }
      }
    } finally {
      clearInterval(renew);
    }
    return true;
  }

  /** The call, retried with a growing delay; null if stopping interrupted it. */
  private async deliver(event: ChangeEventBody): Promise<EventResult | null> {
    const retries = this.plinth.config.functions.retries;
    let last: EventResult | null = null;
    for (let attempt = 0; attempt <= retries; attempt++) {
      if (this.stopped) return null;
      if (attempt > 0) {
        await new Promise((r) => setTimeout(r, Math.min(500 * 2 ** (attempt - 1), BACKOFF_MAX_MS)));
        if (this.stopped) return null;
      }
      last = await this.call(this.name, event);
      if (last.ok) return last;
    }
    return last;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wake();
    await this.done;
  }
}

export class ChangeTriggers {
  private readonly consumers = new Map<string, Consumer>();
  private readonly me = `${os.hostname()}:${process.pid}`;
  private unlisten: (() => Promise<void>) | null = null;

  constructor(
    private readonly plinth: Plinth,
    private readonly call: Call,
  ) {}

  async start(): Promise<void> {
    // The realtime feed's wake-up; the poll covers what it skips while writers are busy.
    const l = await this.plinth.sql.listen('plinth_realtime', () => {
      for (const c of this.consumers.values()) c.wake();
    });
    this.unlisten = l.unlisten;
  }

  /** Starts, restarts or (with undefined) stops a function's change trigger. */
  async set(name: string, on: Declared['on']): Promise<void> {
    const old = this.consumers.get(name);
    if (old && JSON.stringify(old.on) === JSON.stringify(on)) return;
    this.consumers.delete(name);
    await old?.stop();
    if (on) this.consumers.set(name, new Consumer(this.plinth, name, on, this.call, this.me));
  }

  async stop(): Promise<void> {
    await Promise.all([...this.consumers.values()].map((c) => c.stop()));
    this.consumers.clear();
    await this.unlisten?.().catch(() => {});
  }
}
