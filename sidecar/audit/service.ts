// The audit writer and the metrics. Requests are queued (bounded) and written in batches, one
// statement with one JSON parameter each, on the audit's own connection, off the request path: a
// request never waits for its row, and when the database cannot take them rows are dropped and
// counted, never blocking.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Audit, Plinth, RequestEntry, Service } from '../core/context.js';
import { connect, type Claims, type Sql } from '../core/db.js';
import { redactTarget, routeKind } from './redact.js';
import { histogram, kindStatusCounter, labelledCounter } from './request-metrics.js';

/** Rows waiting beyond this are dropped: memory stays bounded whatever the database does. */
const MAX_QUEUED = 20_000;
const BATCH = 1000;
const FLUSH_MS = 200;
/** One insert may wait this long (a locked table, a stalled server) before its batch is dropped. */
const WRITE_TIMEOUT = '10s';
const PRUNE_EVERY_MS = 3600_000;
const PRUNE_BATCH = 5000;

interface ActivityEntry {
  action: string;
  target: string | null;
  details: Record<string, unknown> | null;
  actorId: string | null;
}

export interface AuditService extends Audit, Service {
  registry: Registry;
  /** Rows dropped so far (queue full or the database unreachable). */
  readonly dropped: number;
  /** Writes what is queued now; resolves when that attempt has ended. */
  flush(): Promise<void>;
}

export function startAudit(plinth: Plinth, databaseUrl: string): AuditService {
  const { config, keys, log } = plinth;
  const sql: Sql = connect(databaseUrl, 1, 'plinth audit');
  const registry = new Registry();
  const countRequest = kindStatusCounter(registry, 'plinth_http_requests_total', 'API requests answered, by route kind and status');
  const observeDuration = histogram(
    registry,
    'plinth_http_request_duration_seconds',
    'Time from request to the end of its answer, by route kind',
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    'kind',
  );
  const observeUpstream = histogram(
    registry,
    'plinth_postgrest_upstream_seconds',
    'Time PostgREST took to answer a proxied request with headers',
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
  );
  const droppedTotal = new Counter({ name: 'plinth_audit_rows_dropped_total', help: 'Audit rows lost: the queue was full or the database could not take them', registers: [registry] });
  const writtenTotal = new Counter({ name: 'plinth_audit_rows_written_total', help: 'Audit rows written', registers: [registry] });
  new Gauge({ name: 'plinth_audit_queue_rows', help: 'Audit rows waiting to be written', registers: [registry], collect() { this.set(queue.length + activities.length); } });

  // Read at scrape time from the database: connections per pool and state, stored bytes, uploads in flight.
  const pool = new Gauge({ name: 'plinth_db_connections', help: 'Database connections by application (pool) and state', labelNames: ['application', 'state'], registers: [registry] });
  const storedBytes = new Gauge({ name: 'plinth_storage_bytes', help: 'Bytes of stored files', registers: [registry] });
  const uploading = new Gauge({ name: 'plinth_storage_uploads_in_flight', help: 'Uploads reserved and still being written', registers: [registry] });

  let queue: RequestEntry[] = [];
  let activities: ActivityEntry[] = [];
  let dropped = 0;
  let writing: Promise<void> | null = null;
  let lastWarned = 0;
  let stopped = false;

  function drop(n: number, why: string) {
    dropped += n;
    droppedTotal.inc(n);
    if (Date.now() - lastWarned > 60_000) {
      lastWarned = Date.now();
      log.warn(`audit: ${n} row(s) dropped (${why}); ${dropped} dropped since start`);
    }
  }

  function identity(credential: string | undefined): { userId: string | null; role: string | null; appRole: string | null } {
    if (credential === undefined) return { userId: null, role: null, appRole: null };
    const m = /^Bearer +(\S+)\s*$/i.exec(credential);
    const claims: Claims | undefined = keys.claimsOf(m ? m[1] : credential);
    if (!claims) return { userId: null, role: null, appRole: null };
    return { userId: typeof claims.sub === 'string' ? claims.sub : null, role: claims.role, appRole: typeof claims.app_role === 'string' ? claims.app_role : null };
  }

  // Consecutive rows usually share a caller and often a target: each is resolved once per run.
  let lastCredential: string | undefined;
  let lastWho = identity(undefined);
  let lastUrl = '';
  let lastTarget = { path: '', query: null as string | null, kind: 'tables' };

  /**
   * The batch as one JSON array of rows (short keys, the timestamp in epoch milliseconds): one
   * parameter, so the statement is the same for every batch, prepared once, and neither side
   * binds or describes a parameter per column per row.
   */
  function batchJson(requests: RequestEntry[]): string {
    const rows = new Array<unknown>(requests.length);
    for (let i = 0; i < requests.length; i++) {
      const e = requests[i];
      if (e.url !== lastUrl) {
        const { path, query } = redactTarget(e.url);
        lastUrl = e.url;
        lastTarget = { path, query, kind: routeKind(path) };
      }
      // A credential the key ring did not know is looked up again: it may have been verified since.
      if (e.credential !== lastCredential || lastWho.role === null) {
        lastCredential = e.credential;
        lastWho = identity(e.credential);
      }
      rows[i] = {
        t: e.at,
        i: e.requestId,
        u: lastWho.userId,
        r: lastWho.role,
        a: lastWho.appRole,
        c: e.clientAddr ?? null,
        k: lastTarget.kind,
        m: e.method,
        p: lastTarget.path,
        q: lastTarget.query,
        s: e.status,
        d: e.durationMs,
        n: e.rows,
        bi: e.bytesIn,
        bo: e.bytesOut,
      };
    }
    return JSON.stringify(rows);
  }

  async function write(requests: RequestEntry[], acts: ActivityEntry[]) {
    const rows = requests.length > 0 ? batchJson(requests) : null;
    await sql.begin(async (tx) => {
      await tx`select set_config('statement_timeout', ${WRITE_TIMEOUT}, true)`;
      if (rows !== null) {
        await tx`
          insert into audit.requests (at, request_id, user_id, role, app_role, client_addr, kind, method, path, query, status, duration_ms, rows, bytes_in, bytes_out)
          select to_timestamp(t / 1000.0), i, u, r, a, c, k, m, p, q, s, d, n, bi, bo
            from json_to_recordset(${rows}::text::json)
              as x(t double precision, i text, u uuid, r text, a text, c text, k text, m text, p text, q text, s int, d double precision, n bigint, bi bigint, bo bigint)`;
      }
      for (const a of acts) {
        await tx`select audit.log(${a.action}, ${a.target}, ${a.details === null ? null : tx.json(a.details as never)}, ${a.actorId})`;
      }
    });
    writtenTotal.inc(requests.length + acts.length);
  }

  function flush(): Promise<void> {
    if (writing !== null) return writing;
    if (queue.length === 0 && activities.length === 0) return Promise.resolve();
    const requests = queue.length > BATCH ? queue.splice(0, BATCH) : queue;
    if (requests === queue) queue = [];
    const acts = activities;
    activities = [];
    writing = write(requests, acts)
      .catch((err) => drop(requests.length + acts.length, `the database did not take them: ${(err as Error).message}`))
      .finally(() => {
        writing = null;
      });
    return writing;
  }

  const timer = setInterval(() => void flush(), FLUSH_MS);
  timer.unref();

  async function prune() {
    const days = config.audit.retentionDays;
    if (days === 0) return;
    for (;;) {
      const [{ n }] = await sql<{ n: string }[]>`select audit.prune(${days}, ${PRUNE_BATCH}) as n`;
      if (Number(n) < PRUNE_BATCH) return;
    }
  }
  const pruning = setInterval(() => void prune().catch((err) => log.warn(`audit: pruning failed: ${(err as Error).message}`)), PRUNE_EVERY_MS);
  pruning.unref();
  const firstPrune = setTimeout(() => void prune().catch(() => {}), 10_000);
  firstPrune.unref();

  const service: AuditService = {
    registry,
    requests: config.audit.enabled,
    get dropped() {
      return dropped;
    },
    record(entry) {
      const kind = routeKind(pathOf(entry.url));
      countRequest(kind, entry.status);
      observeDuration(entry.durationMs / 1000, kind);
      if (entry.upstreamMs !== undefined) observeUpstream(entry.upstreamMs / 1000);
      if (stopped) return;
      if (queue.length >= MAX_QUEUED) return drop(1, 'the queue is full');
      queue.push(entry);
      if (queue.length >= BATCH) void flush();
    },
    activity(action, target, details = null, actorId = null) {
      if (stopped) return;
      if (activities.length >= MAX_QUEUED) return drop(1, 'the queue is full');
      activities.push({ action, target, details, actorId });
    },
    gauge(name, help, read) {
      new Gauge({ name, help, registers: [registry], collect() { this.set(read()); } });
    },
    histogram(name, help, buckets, labelNames = []) {
      const h = new Histogram({ name, help, buckets, labelNames, registers: [registry] });
      return (value, labels) => (labels ? h.observe(labels, value) : h.observe(value));
    },
    counter(name, help, labelNames) {
      return labelledCounter(registry, name, help, labelNames);
    },
    flush,
    async stop() {
      clearInterval(timer);
      clearInterval(pruning);
      clearTimeout(firstPrune);
      // What is queued gets one last chance, bounded, then the connection closes.
      await Promise.race([flush().then(flush), new Promise((r) => setTimeout(r, 3000).unref())]);
      stopped = true;
      await sql.end({ timeout: 2 });
    },
  };

  // Before the registry renders: one query for the database-side gauges; a failure leaves them as they were.
  const render = registry.metrics.bind(registry);
  registry.metrics = async () => {
    try {
      const owner = plinth.sql;
      const [conns, [files]] = await Promise.all([
        owner<{ application: string; state: string; n: number }[]>`
          select coalesce(nullif(application_name, ''), 'other') as application, coalesce(state, 'unknown') as state, count(*)::int as n
          from pg_stat_activity where datname = current_database() and backend_type = 'client backend' group by 1, 2`,
        owner<{ bytes: string; writing: number }[]>`
          select coalesce(sum(size) filter (where state = 'ready'), 0)::text as bytes, count(*) filter (where state = 'writing')::int as writing from storage.blobs`,
      ]);
      pool.reset();
      for (const c of conns) pool.set({ application: c.application, state: c.state }, c.n);
      storedBytes.set(Number(files.bytes));
      uploading.set(files.writing);
    } catch {
      /* the database is down: the request metrics still render */
    }
    return render();
  };
  return service;
}

function pathOf(url: string): string {
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}
