// `plinth audit export`: the request and activity logs as JSON lines, oldest first, read with a
// cursor so memory stays flat however much is exported.
import type { Sql } from '../core/db.js';
import { ConfigError } from '../core/config.js';

export const AUDIT_HELP = `Usage: plinth audit export --since <time> [--until <time>] [--log requests|activity|all]

Writes the audit logs to stdout as JSON lines, oldest first: one object per request (log: "request")
or event (log: "activity"). A time is an ISO 8601 date or timestamp (2025-01-31, 2025-01-31T12:00Z)
or an age: 30m, 12h, 7d.`;

/** An ISO date/time, or an age before now (30m, 12h, 7d). */
export function parseSince(raw: string, now = Date.now()): Date {
  const age = /^(\d+)\s*([mhd])$/.exec(raw.trim());
  if (age) return new Date(now - Number(age[1]) * { m: 60_000, h: 3600_000, d: 86400_000 }[age[2] as 'm' | 'h' | 'd']);
  const t = Date.parse(raw);
  if (!/^\d{4}-\d{2}-\d{2}/.test(raw.trim()) || Number.isNaN(t)) throw new ConfigError(`not a time: ${JSON.stringify(raw)}; use an ISO date or timestamp (2025-01-31T12:00Z) or an age (30m, 12h, 7d)`);
  return new Date(t);
}

export async function exportAudit(sql: Sql, opts: { since?: string; until?: string; log?: string }, write: (line: string) => Promise<void> | void): Promise<number> {
  if (!opts.since) throw new ConfigError('plinth audit export needs --since (e.g. --since 7d or --since 2025-01-31)');
  const since = parseSince(opts.since);
  const until = opts.until ? parseSince(opts.until) : new Date('9999-12-31T00:00:00Z');
  const which = opts.log ?? 'all';
  if (!['requests', 'activity', 'all'].includes(which)) throw new ConfigError(`--log must be requests, activity or all, got ${JSON.stringify(which)}`);
  let n = 0;
  const cursor = sql`
    select * from (
      select 'request' as log, at, id, to_jsonb(r) - 'id' - 'at' as row from audit.requests r
        where ${which !== 'activity'} and at >= ${since} and at < ${until}
      union all
      select 'activity', at, id, to_jsonb(a) - 'id' - 'at' from audit.activity a
        where ${which !== 'requests'} and at >= ${since} and at < ${until}
    ) x order by at, log, id`.cursor(500);
  for await (const rows of cursor) {
    for (const r of rows) {
      await write(`${JSON.stringify({ log: r.log, id: String(r.id), at: (r.at as Date).toISOString(), ...(r.row as object) })}\n`);
      n++;
    }
  }
  return n;
}
