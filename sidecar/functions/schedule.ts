// Scheduled functions. Every sidecar computes the same ticks from a function's cron expression; the
// one whose insert of (function, tick) into functions.schedule_runs succeeds runs it, so each tick
// runs exactly once however many sidecars share the database. A tick missed while no sidecar was
// running is not made up.
import os from 'node:os';
import type { Plinth } from '../core/context.js';
import { parseCron, type Cron } from '../core/cron.js';

interface Entry {
  expression: string;
  cron: Cron;
  next: Date;
  timer?: NodeJS.Timeout;
}

/** How long claimed ticks are remembered (a sidecar whose clock lags by less cannot run one twice). */
const KEEP_CLAIMS = '1 day';

export class Schedules {
  private readonly entries = new Map<string, Entry>();
  private readonly running = new Set<Promise<void>>();
  private stopped = false;
  private readonly me = `${os.hostname()}:${process.pid}`;

  constructor(
    private readonly plinth: Plinth,
    private readonly run: (name: string, event: { type: 'schedule'; scheduled_at: string }) => Promise<void>,
  ) {}

  /** Starts, changes or (with undefined) removes a function's schedule. */
  set(name: string, expression: string | undefined): void {
    const old = this.entries.get(name);
    if (old && old.expression === expression) return;
    if (old) clearTimeout(old.timer);
    this.entries.delete(name);
    if (!expression || this.stopped) return;
    const cron = parseCron(expression);
    const entry: Entry = { expression, cron, next: cron.next(new Date()) };
    this.entries.set(name, entry);
    this.plan(name, entry);
  }

  // Wakes at most once a minute, so that a long wait survives timer limits and clock changes.
  private plan(name: string, entry: Entry): void {
    const wait = Math.max(0, Math.min(entry.next.getTime() - Date.now(), 60_000));
    entry.timer = setTimeout(() => {
      if (this.stopped || this.entries.get(name) !== entry) return;
      if (Date.now() < entry.next.getTime()) return this.plan(name, entry);
      const tick = entry.next;
      entry.next = entry.cron.next(tick);
      const p = this.claim(name, tick)
        .catch((err) => this.plinth.log.error(`function ${name}: scheduled run at ${tick.toISOString()}: ${(err as Error).message}`))
        .finally(() => this.running.delete(p));
      this.running.add(p);
      this.plan(name, entry);
    }, wait);
  }

  private async claim(name: string, tick: Date): Promise<void> {
    const sql = this.plinth.sql;
    const claimed = await sql`insert into functions.schedule_runs (name, tick, claimed_by) values (${name}, ${tick}, ${this.me})
                              on conflict do nothing returning tick`;
    if (claimed.length === 0) return; // another sidecar has this tick
    await sql`delete from functions.schedule_runs where name = ${name} and tick < now() - ${KEEP_CLAIMS}::interval`;
    await this.run(name, { type: 'schedule', scheduled_at: tick.toISOString() });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const e of this.entries.values()) clearTimeout(e.timer);
    this.entries.clear();
    await Promise.allSettled([...this.running]);
  }
}
