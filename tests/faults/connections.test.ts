// The sidecar's database pools (sidecar/core/db.ts `connect`, with Plinth's patch of postgres.js)
// when PostgreSQL ends a connection under them: the statement in flight fails as "database
// unavailable" (503), and the connection's next statement, on a new socket, runs normally; a
// reserved connection (file uploads, the SQL editor, migrations) is neither lost nor handed out dead.
import type postgres from 'postgres';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { connect, type Sql } from '../../sidecar/core/db.ts';
import { fromDatabase } from '../../sidecar/core/errors.ts';
import { eventually, startStack, type Stack } from '../harness.ts';

let stack: Stack;
let pool: Sql;
beforeAll(async () => {
  stack = await startStack();
  // One connection, so every statement below runs on the connection that was terminated.
  pool = connect(stack.databaseUrl, 1, 'plinth-fault-test');
}, 120_000);
afterAll(async () => {
  await pool?.end({ timeout: 1 });
  await stack?.destroy();
});

async function backendPid(): Promise<number> {
  const [{ pid }] = await pool<{ pid: number }[]>`select pg_backend_pid() as pid`;
  return pid;
}

/** Terminates `pid` once it is running `query` (seen in pg_stat_activity). */
async function terminateWhileRunning(pid: number, query: string): Promise<void> {
  await eventually(`backend ${pid} to run ${query}`, async () => {
    const [row] = await stack.sql<{ query: string; state: string }[]>`select query, state from pg_stat_activity where pid = ${pid}`;
    return row?.state === 'active' && row.query.includes(query) ? true : undefined;
  });
  await stack.sql`select pg_terminate_backend(${pid})`;
}

test('a connection terminated in the middle of a statement: that statement is a 503, the next one on the pool succeeds', async () => {
  for (let round = 0; round < 3; round++) {
    const pid = await backendPid();
    const slow = pool`select pg_sleep(30)`.then(
      () => null,
      (err: unknown) => err,
    );
    await terminateWhileRunning(pid, 'pg_sleep(30)');
    const err = await slow;
    expect(err, `round ${round}`).not.toBeNull();
    expect((fromDatabase(err, { role: 'authenticated' }) as { status: number }).status, `round ${round}`).toBe(503);
    // The FATAL error of the old backend must not be handed to the first statement of the new one.
    const [{ one }] = await pool<{ one: number }[]>`select 1 as one`;
    expect(one).toBe(1);
    expect(await backendPid()).not.toBe(pid);
  }
});

test('the same inside a transaction: the transaction fails with 503, and the next transaction commits', async () => {
  const pid = await backendPid();
  const failed = pool
    .begin(async (tx) => {
      await tx`select 1`;
      await tx`select pg_sleep(30)`;
    })
    .then(
      () => null,
      (err: unknown) => err,
    );
  await terminateWhileRunning(pid, 'pg_sleep(30)');
  expect((fromDatabase(await failed, { role: 'authenticated' }) as { status: number }).status).toBe(503);
  const result = await pool.begin(async (tx) => {
    const [{ n }] = await tx<{ n: number }[]>`select 41 + 1 as n`;
    return n;
  });
  expect(result).toBe(42);
});

test('a connection terminated while idle: the next statement reconnects and succeeds', async () => {
  const pid = await backendPid();
  await stack.sql`select pg_terminate_backend(${pid})`;
  // Give the FATAL message and the close time to arrive, as they would between two requests.
  await new Promise((r) => setTimeout(r, 200));
  const [{ one }] = await pool<{ one: number }[]>`select 1 as one`;
  expect(one).toBe(1);
  expect(await backendPid()).not.toBe(pid);
});

test('a reserved connection terminated mid-statement and then released: the pool serves the next statement', async () => {
  const one = connect(stack.databaseUrl, 1, 'plinth-fault-reserve');
  try {
    const reserved = await one.reserve();
    const [{ pid }] = await reserved<{ pid: number }[]>`select pg_backend_pid() as pid`;
    const slow = reserved`select pg_sleep(30)`.then(
      () => null,
      (err: unknown) => err,
    );
    await terminateWhileRunning(pid, 'pg_sleep(30)');
    expect((fromDatabase(await slow, { role: 'authenticated' }) as { status: number }).status).toBe(503);
    // The lost connection refuses statements instead of sending them on whatever socket comes next.
    expect((fromDatabase(await reserved`select 1`.then(() => null, (err: unknown) => err), { role: 'authenticated' }) as { status: number }).status).toBe(503);
    reserved.release();
    const [{ two }] = await one<{ two: number }[]>`select 2 as two`;
    expect(two).toBe(2);
    const again = await one.reserve();
    expect((await again<{ three: number }[]>`select 3 as three`)[0].three).toBe(3);
    again.release();
  } finally {
    await one.end({ timeout: 1 });
  }
});

test('a reserve() waiting for the pool when its connection is terminated gets a new connection', async () => {
  const one = connect(stack.databaseUrl, 1, 'plinth-fault-waiting');
  try {
    const holder = one`select pg_sleep(30)`.catch(() => 'cut');
    const [{ pid }] = await eventually('the holder to run', async () => {
      const rows = await stack.sql<{ pid: number }[]>`select pid from pg_stat_activity where application_name = 'plinth-fault-waiting' and state = 'active'`;
      return rows.length ? rows : undefined;
    });
    const waiting = one.reserve();
    await stack.sql`select pg_terminate_backend(${pid})`;
    expect(await holder).toBe('cut');
    // Without the fix this promise never settles: the test would time out here.
    const reserved = await waiting;
    expect((await reserved<{ one: number }[]>`select 1 as one`)[0].one).toBe(1);
    reserved.release();
    expect((await one<{ two: number }[]>`select 2 as two`)[0].two).toBe(2);
  } finally {
    await one.end({ timeout: 1 });
  }
});

test('statements queued behind a cut connection settle (a reserved connection, and a transaction)', async () => {
  // 150 statements sent at once: past the pipeline's depth, the rest wait in the handle's own queue.
  const many = (sql: postgres.Sql | postgres.TransactionSql | postgres.ReservedSql) => [sql`select pg_sleep(30)`, ...Array.from({ length: 150 }, (_, i) => sql`select ${i}::int as i`)];
  const one = connect(stack.databaseUrl, 1, 'plinth-fault-queued');
  try {
    const reserved = await one.reserve();
    const [{ pid }] = await reserved<{ pid: number }[]>`select pg_backend_pid() as pid`;
    const settled = Promise.allSettled(many(reserved).map((q) => q.execute()));
    await terminateWhileRunning(pid, 'pg_sleep(30)');
    // Without the fix the queued ones never settle, and this waits until the test times out.
    const outcomes = await settled;
    expect(outcomes.every((o) => o.status === 'rejected')).toBe(true);
    reserved.release();

    const txPid = await one<{ pid: number }[]>`select pg_backend_pid() as pid`.then(([r]) => r.pid);
    let inner: Promise<PromiseSettledResult<unknown>[]> | undefined;
    const tx = one
      .begin((t) => (inner = Promise.allSettled(many(t))))
      .then(
        () => null,
        (err: unknown) => err,
      );
    await terminateWhileRunning(txPid, 'pg_sleep(30)');
    expect((fromDatabase(await tx, { role: 'authenticated' }) as { status: number }).status).toBe(503);
    expect((await inner!).every((o) => o.status === 'rejected')).toBe(true);
    expect((await one<{ one: number }[]>`select 1 as one`)[0].one).toBe(1);
  } finally {
    await one.end({ timeout: 1 });
  }
});
