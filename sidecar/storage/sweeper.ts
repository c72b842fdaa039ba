// Removes bytes nobody can reach any more:
//  - objects queued in storage.deletions (a file deleted or overwritten; NOTIFY plinth_storage
//    wakes us right after the commit, the periodic sweep catches anything missed);
//  - reservations still 'writing' after PLINTH_SWEEP_AGE seconds (an upload that was aborted, or
//    a sidecar killed mid-stream), except those this process is writing right now;
//  - entity-linked files whose row is gone or whose field no longer names them;
//  - small objects written whole (backend.whole) by an upload that never committed; and the move
//    into place of those that did commit, if a crash interrupted it.
// Runs once at start, then every sweep interval; safe with several sidecars (SKIP LOCKED).
import type { Storage } from './types.js';
import { wholeGraceSeconds } from './upload.js';

const BATCH = 100;

export interface Sweeper {
  /** Runs a full sweep now (also used at start); resolves when it is done. */
  sweep(): Promise<void>;
  stop(): Promise<void>;
}

export async function startSweeper(storage: Storage): Promise<Sweeper> {
  const { plinth, backend } = storage;
  const { sql, log, config } = plinth;
  let stopped = false;
  let deleting: Promise<void> | null = null;
  let deleteAgain = false;

  async function deleteQueued(): Promise<void> {
    for (;;) {
      const n = await sql.begin(async (tx) => {
        const rows = await tx<{ id: string; key: string }[]>`
          select o.id, o.key from storage.deletions d join storage.blobs o on o.id = d.object_id
          where o.backend = ${backend.name}
          order by d.queued_at limit ${BATCH} for update of d, o skip locked`;
        for (const row of rows) await backend.delete(row.key);
        if (rows.length) await tx`delete from storage.blobs where id in ${tx(rows.map((r) => r.id))}`;
        return rows.length;
      });
      if (n < BATCH || stopped) return;
    }
  }

  /** Coalesces bursts of notifications into one pass plus at most one more. */
  function wakeDeleter(): Promise<void> {
    if (deleting) {
      deleteAgain = true;
      return deleting;
    }
    deleting = (async () => {
      do {
        deleteAgain = false;
        await deleteQueued();
      } while (deleteAgain && !stopped);
    })()
      .catch((err) => log.warn(`storage: deleting queued objects failed (will retry): ${(err as Error).message}`))
      .finally(() => (deleting = null));
    return deleting;
  }

  async function sweepAbandoned(): Promise<void> {
    for (;;) {
      const n = await sql.begin(async (tx) => {
        const rows = await tx<{ id: string; key: string }[]>`
          select id, key from storage.blobs
          where state = 'writing' and backend = ${backend.name}
            and created_at < clock_timestamp() - make_interval(secs => ${config.storage.sweepAge})
            ${storage.writing.size ? tx`and key not in ${tx([...storage.writing])}` : tx``}
          order by created_at limit ${BATCH} for update skip locked`;
        for (const row of rows) await backend.delete(row.key);
        if (rows.length) await tx`delete from storage.blobs where id in ${tx(rows.map((r) => r.id))}`;
        return rows.length;
      });
      if (n < BATCH || stopped) return;
    }
  }

  async function sweepWhole(): Promise<void> {
    const whole = backend.whole;
    if (!whole) return;
    const grace = wholeGraceSeconds(config.storage.sweepAge);
    const keys = (await whole.pending(grace)).filter((key) => !storage.writing.has(key));
    for (let i = 0; i < keys.length && !stopped; i += BATCH) {
      const batch = keys.slice(i, i + BATCH);
      // A key no row names: its upload never committed, and after this it never will (its commit
      // inserts the same key first). The row makes it an abandoned reservation, removed below.
      await sql`
        insert into storage.blobs (id, backend, key, created_at)
        select k::uuid, ${backend.name}, k, clock_timestamp() - make_interval(secs => ${grace + 1}) from unnest(${batch}::text[]) k
        on conflict do nothing`;
      // Committed, but a crash came before the move into place.
      const ready = await sql<{ key: string }[]>`select key from storage.blobs where key = any(${batch}::text[]) and state = 'ready'`;
      for (const { key } of ready) await whole.publish(key);
    }
  }

  /** Entity rows deleted (or their field changed) through PostgREST leave links behind: drop them. */
  async function sweepUnlinked(): Promise<void> {
    const pairs = await sql<{ table_name: string; field: string }[]>`select distinct table_name, field from storage.entity_files`;
    for (const { table_name, field } of pairs) {
      const [exists] = await sql`
        select 1 from pg_catalog.pg_attribute a
        where a.attrelid = to_regclass(format('public.%I', ${table_name}::text)) and a.attname = ${field} and not a.attisdropped`;
      if (!exists) {
        await sql`delete from storage.entity_files where table_name = ${table_name} and field = ${field}`;
        continue;
      }
      await sql`
        delete from storage.entity_files e
        where e.table_name = ${table_name} and e.field = ${field}
          and e.updated_at < now() - make_interval(secs => ${config.storage.sweepAge})
          and not exists (select 1 from public.${sql(table_name)} t where t.id::text = e.row_id and t.${sql(field)}::text = e.filename)`;
    }
  }

  let sweeping: Promise<void> | null = null;
  function sweep(): Promise<void> {
    sweeping ??= (async () => {
      try {
        await sweepUnlinked();
        await sweepWhole();
        await sweepAbandoned();
        await wakeDeleter();
      } catch (err) {
        log.warn(`storage: sweep failed (will retry): ${(err as Error).message}`);
      }
    })().finally(() => (sweeping = null));
    return sweeping;
  }

  const listener = await sql.listen('plinth_storage', () => void wakeDeleter(), () => void wakeDeleter());
  const intervalSeconds = Math.min(Math.max(config.storage.sweepAge, 10), 300);
  const timer = setInterval(() => void sweep(), intervalSeconds * 1000);
  timer.unref();
  void sweep();

  return {
    sweep,
    async stop() {
      stopped = true;
      clearInterval(timer);
      await listener.unlisten().catch(() => {});
      await Promise.allSettled([sweeping, deleting]);
    },
  };
}
