// The realtime feature's long-lived work: the change feed (Hub), which follows realtime.changes and
// hands each subscriber the rows it may see.
import type { Plinth, Service } from '../core/context.js';
import { Hub } from './hub.js';
import { Tables } from './tables.js';

export interface RealtimeService extends Service {
  hub: Hub;
  tables: Tables;
}

export async function startRealtime(plinth: Plinth): Promise<RealtimeService> {
  const tables = new Tables(plinth.sql);
  const hub = new Hub(plinth.sql, plinth.callerSql, tables, plinth.log, plinth.config.realtime.retention);
  await hub.start();
  return { hub, tables, stop: () => hub.stop() };
}
