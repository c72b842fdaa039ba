// What every feature of the sidecar is handed: configuration, the database, the keys, PostgREST.
import type { KeyRing } from './auth/keys.js';
import type { Config } from './config.js';
import type { Sql } from './db/sql.js';
import type { Logger } from './log.js';
import type { PostgrestTarget } from './start/postgrest.js';

/** One named component of GET /health: resolves with details when healthy, throws when not. */
export type HealthCheck = () => Promise<Record<string, unknown>>;

export interface Plinth {
  config: Config;
  sql: Sql;
  keys: KeyRing;
  postgrest: PostgrestTarget;
  log: Logger;
  health: Map<string, HealthCheck>;
  /** Work to run when the sidecar stops (timers, listeners), in reverse order of registration. */
  onClose: Array<() => Promise<void> | void>;
}
