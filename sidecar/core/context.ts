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
}

/**
 * What a feature starts and stops (a sweeper, a change feed, a mail transport, a build). The app
 * starts services in order and stops them in reverse, once, whatever made it stop.
 */
export interface Service {
  stop(): Promise<void> | void;
}
