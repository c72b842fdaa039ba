// The realtime feature's long-lived work: the capture, which logs the decoded changes of published
// tables in realtime.changes; the change feed (Hub), which follows that log and hands each
// subscriber the rows it may see; and the set of open sockets, which follows key
// retirements and ended sessions so that a withdrawn credential stops receiving at once.
import type { Plinth, Service } from '../core/context.js';
import { Capture } from './capture.js';
import { Clients } from './clients.js';
import { Hub } from './hub.js';
import { Topics } from './phoenix-topics.js';
import { Tables } from './tables.js';

export interface RealtimeService extends Service {
  hub: Hub;
  tables: Tables;
  clients: Clients;
  /** Broadcast between the Phoenix channels of a topic, across sidecars. */
  topics: Topics;
}

/** `databaseUrl`: the owner's connection string, for the replication connection of the capture. */
export async function startRealtime(plinth: Plinth, databaseUrl: string): Promise<RealtimeService> {
  const tables = new Tables(plinth.sql);
  const hub = new Hub(plinth.sql, plinth.callerSql, tables, plinth.log, plinth.config.realtime.retention);
  const clients = new Clients(plinth.sql, plinth.keys, plinth.log);
  const topics = new Topics(plinth.sql, plinth.log);
  const capture = new Capture(plinth.sql, databaseUrl, plinth.log, (head) => hub.wake(head));
  hub.decoded = () => capture.decoding;
  await clients.start();
  try {
    await capture.start();
    await topics.start();
    await hub.start();
  } catch (err) {
    await hub.stop();
    await capture.stop();
    await topics.stop();
    await clients.stop();
    throw err;
  }
  return {
    hub,
    tables,
    clients,
    topics,
    stop: async () => {
      await capture.stop();
      await hub.stop();
      await topics.stop();
      await clients.stop();
    },
  };
}
