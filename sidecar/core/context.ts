// What every feature of the sidecar is handed: configuration, the database, the keys, PostgREST.
import type { Config } from './config.js';
import type { CallerSql, Sql } from './db.js';
import type { KeyRing } from './keys.js';
import type { Logger } from './log.js';

/** One named component of GET /health: resolves with details when healthy, throws when not. */
export type HealthCheck = () => Promise<Record<string, unknown>>;

/** How the proxy reaches PostgREST: an origin, and a unix socket path when there is one. */
export interface PostgrestTarget {
  origin: string;
  socketPath?: string;
  /** PostgREST's admin server (/live, /ready), when Plinth runs PostgREST itself. */
  adminUrl?: string;
}

export interface Plinth {
  config: Config;
  /** The owner's pool: migrations, bookkeeping, the auth tables. Never used to act as a caller. */
  sql: Sql;
  /** The caller pool (plinth_caller): the only pool asCaller and becomeCaller run on. */
  callerSql: CallerSql;
  keys: KeyRing;
  postgrest: PostgrestTarget;
  log: Logger;
  health: Map<string, HealthCheck>;
  /** The audit trail and metrics; absent when nothing records (tools, PLINTH_AUDIT=off for requests). */
  audit?: Audit;
}

/** One finished API request, as the front door saw it; redacted and resolved off the request path. */
export interface RequestEntry {
  /** Epoch milliseconds when the request arrived. */
  at: number;
  requestId: string;
  /** The Authorization or apikey header as sent; only used to find the verified caller, never stored. */
  credential: string | undefined;
  clientAddr: string | undefined;
  method: string;
  /** The request target with its query string, before redaction. */
  url: string;
  status: number;
  durationMs: number;
  rows: number | null;
  bytesIn: number | null;
  bytesOut: number | null;
  /** Milliseconds PostgREST took to answer with headers, for proxied requests. */
  upstreamMs?: number;
}

/** What the app and features record into; it never blocks nor throws. */
export interface Audit {
  /** Queues a request's row (when request logging is on) and counts it in the metrics. */
  record(entry: RequestEntry): void;
  /** Records an event SQL cannot see (a failed sign-in), by whom and on what. */
  activity(action: string, target: string | null, details?: Record<string, unknown> | null, actorId?: string | null): void;
  /** A gauge read when /metrics is scraped. */
  gauge(name: string, help: string, read: () => number): void;
  /** A histogram; the returned function records one observation (in the unit the name says). */
  histogram(name: string, help: string, buckets: number[], labelNames?: string[]): (value: number, labels?: Record<string, string>) => void;
  /** A labelled counter in /metrics; returns how to add to it. */
  counter(name: string, help: string, labelNames: string[]): (labels: Record<string, string>, n?: number) => void;
  /** Whether request rows are recorded (PLINTH_AUDIT). */
  readonly requests: boolean;
}

/**
 * What a feature starts and stops (a sweeper, a change feed, a mail transport, a build). The app
 * starts services in order and stops them in reverse, once, whatever made it stop.
 */
export interface Service {
  stop(): Promise<void> | void;
}
