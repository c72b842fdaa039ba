// Every call of a function, whatever triggered it: counted in /metrics at once, and recorded in
// functions.invocations off the call's path (queued, written in batches, pruned after
// PLINTH_FUNCTION_LOG_RETENTION days). A full queue drops rows rather than slow calls down.
import type { Plinth } from '../core/context.js';

export type Trigger = 'http' | 'schedule' | 'change';

export interface Invocation {
  name: string;
  version: number | null;
  trigger: Trigger;
  status: number;
  durationMs: number;
  error: string | null;
}

const MAX_QUEUED = 20_000;
const FLUSH_MS = 250;
const PRUNE_EVERY_MS = 3600_000;

/** A lone surrogate would make the JSON batch unreadable to PostgreSQL: it becomes U+FFFD, as UTF-8 encoding does. */
function wellFormed(text: string): string {
  return text.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd');
}

export class Invocations {
  private queue: Invocation[] = [];
  private writing: Promise<void> | null = null;
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly count: (labels: Record<string, string>, n?: number) => void;
  private readonly countError: (labels: Record<string, string>, n?: number) => void;

  constructor(private readonly plinth: Plinth) {
    const audit = plinth.audit;
    this.count = audit?.counter('plinth_function_invocations_total', 'Function calls, by function, trigger and status', ['function', 'trigger', 'status']) ?? (() => {});
    this.countError = audit?.counter('plinth_function_errors_total', 'Function calls that failed (threw, timed out, crashed or could not load), by function and trigger', ['function', 'trigger']) ?? (() => {});
    this.timers.push(setInterval(() => void this.flush(), FLUSH_MS));
    this.timers.push(setInterval(() => void this.prune(), PRUNE_EVERY_MS));
    for (const t of this.timers) t.unref();
  }

  record(i: Invocation): void {
    this.count({ function: i.name, trigger: i.trigger, status: String(i.status) });
    if (i.status >= 500) this.countError({ function: i.name, trigger: i.trigger });
    if (this.queue.length < MAX_QUEUED) this.queue.push(i);
  }

  flush(): Promise<void> {
    if (this.writing || this.queue.length === 0) return this.writing ?? Promise.resolve();
    // One JSON parameter per batch: the statement is the same whatever the batch size, prepared once.
    const batch = this.queue.splice(0, 1000);
    const rows = batch.map((i) => ({ n: i.name, v: i.version, t: i.trigger, s: i.status, d: i.durationMs, e: i.error === null ? null : wellFormed(i.error) }));
    const sql = this.plinth.sql;
    this.writing = sql`
      insert into functions.invocations (name, version, trigger, status, duration_ms, error)
      select n, v, t, s, d, e from json_to_recordset(${JSON.stringify(rows)}::text::json) as x(n text, v int, t text, s int, d double precision, e text)`
      .then(() => {})
      .catch((err) => this.plinth.log.warn(`functions: ${batch.length} invocation record(s) lost: ${(err as Error).message}`))
      .finally(() => (this.writing = null));
    return this.writing;
  }

  private async prune(): Promise<void> {
    const days = this.plinth.config.functions.retentionDays;
    if (days === 0) return;
    await this.plinth.sql`delete from functions.invocations where at < now() - make_interval(days => ${days})`.catch(() => {});
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    await this.flush();
    await this.flush();
  }
}
