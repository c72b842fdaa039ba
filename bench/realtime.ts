// 8. Realtime: delivery latency from an insert to 1,000 WebSocket subscribers (p50/p99), and the
// writer's insert rate on a published table against the same table unpublished (the baseline).
// Standalone: `npx tsx bench/realtime.ts` boots the stack; `npm run bench` calls runRealtimeBench.
// Its tables (rt_bench_on / rt_bench_off) are created and dropped here, so any app migrations do.
import { pathToFileURL } from 'node:url';
import WebSocket from 'ws';
import { startStack, type Stack } from '../tests/harness.ts';
import { withLoad } from './machine-load.ts';
import { median, ratioRow, renderTable, type Row } from './report.ts';

const SECTION = '8 realtime';

export interface RealtimeBenchOptions {
  subscribers: number;
  /** Distinct users among the subscribers of the per-user scenario. */
  users: number;
  /** Inserts timed per latency scenario. */
  samples: number;
  /** Inserts per writer connection per round, and writer connections. */
  inserts: number;
  writers: number;
  rounds: number;
}

const DEFAULTS: RealtimeBenchOptions = { subscribers: 1000, users: 100, samples: 40, inserts: 1500, writers: 4, rounds: 3 };

interface Ctx {
  stack: Stack;
  log?: (msg: string) => void;
}

function percentile(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

async function until(what: string, probe: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`realtime bench: timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function createTables(stack: Stack): Promise<void> {
  for (const t of ['rt_bench_on', 'rt_bench_off']) {
    await stack.sql.unsafe(`
      drop table if exists public.${t};
      create table public.${t} (
        id bigint generated always as identity primary key,
        user_id uuid,
        public boolean not null default false,
        title text not null,
        sent_at float8 not null
      );
      alter table public.${t} enable row level security;
      create policy ${t}_public on public.${t} for select to anon, authenticated using (public);
      create policy ${t}_owner on public.${t} for select to authenticated using (user_id = auth.uid());
      grant select on public.${t} to anon, authenticated;`);
  }
  await stack.sql`select realtime.publish('public.rt_bench_on')`;
}

async function dropTables(stack: Stack): Promise<void> {
  await stack.sql`select realtime.unpublish('public.rt_bench_on')`.catch(() => {});
  await stack.sql.unsafe('drop table if exists public.rt_bench_on; drop table if exists public.rt_bench_off');
}

interface Subscriber {
  ws: WebSocket;
  received: Map<number, number>;
}

async function subscribe(stack: Stack, token: string): Promise<Subscriber> {
  const url = `${stack.url.replace(/^http/, 'ws')}/realtime?access_token=${encodeURIComponent(token)}`;
  const ws = new WebSocket(url);
  const sub: Subscriber = { ws, received: new Map() };
  await new Promise<void>((resolve, reject) => {
    ws.on('message', (data) => {
      const m = JSON.parse(data.toString());
      if (m.type === 'subscribed') resolve();
      else if (m.type === 'error') reject(new Error(`subscribe failed: ${m.message}`));
      else if (m.type === 'change') sub.received.set(m.new.id, performance.now());
    });
    ws.once('open', () => ws.send(JSON.stringify({ type: 'subscribe', id: 'b', table: 'rt_bench_on', events: ['INSERT'] })));
    ws.once('error', reject);
  });
  return sub;
}

/** Inserts one row at a time and waits until every expected subscriber has it; returns latencies (ms). */
async function measureLatency(
  stack: Stack,
  subs: Subscriber[],
  samples: number,
  row: (i: number) => { userId: string | null; isPublic: boolean; receivers: Subscriber[] },
): Promise<number[]> {
  const latencies: number[] = [];
  for (let i = 0; i < samples; i++) {
    const { userId, isPublic, receivers } = row(i);
    const sent = performance.now();
    const [{ id }] = await stack.sql<{ id: string }[]>`
      insert into public.rt_bench_on (user_id, public, title, sent_at) values (${userId}, ${isPublic}, 'latency', ${sent}) returning id`;
    const key = Number(id);
    const deadline = Date.now() + 30_000;
    while (receivers.some((s) => !s.received.has(key))) {
      if (Date.now() > deadline) throw new Error(`realtime bench: change ${key} not delivered to every subscriber within 30 s`);
      await new Promise((r) => setTimeout(r, 2));
    }
    for (const s of receivers) latencies.push(s.received.get(key)! - sent);
    // Nobody else may have received it (RLS), or the scenario measures the wrong thing.
    if (subs.some((s) => s.received.has(key) && !receivers.includes(s))) throw new Error('realtime bench: a change reached a subscriber RLS should hide it from');
  }
  return latencies;
}

/** Single-row autocommit inserts from `writers` connections; rows per second. */
async function insertRate(stack: Stack, table: string, inserts: number, writers: number): Promise<number> {
  return withLoad(`single-row inserts into ${table}`, () => insertRateNow(stack, table, inserts, writers));
}

async function insertRateNow(stack: Stack, table: string, inserts: number, writers: number): Promise<number> {
  const started = performance.now();
  await Promise.all(
    Array.from({ length: writers }, async () => {
      for (let i = 0; i < inserts; i++) {
        await stack.sql.unsafe(`insert into public.${table} (title, sent_at) values ('rate', 0)`);
      }
    }),
  );
  return (inserts * writers) / ((performance.now() - started) / 1000);
}

async function bulkRate(stack: Stack, table: string, rows: number): Promise<number> {
  const started = performance.now();
  await withLoad(`bulk insert into ${table}`, () => stack.sql.unsafe(`insert into public.${table} (title, sent_at) select 'bulk', 0 from generate_series(1, ${rows})`));
  return rows / ((performance.now() - started) / 1000);
}

export async function runRealtimeBench(ctx: Ctx, options: Partial<RealtimeBenchOptions> = {}): Promise<Row[]> {
  const opts = { ...DEFAULTS, ...options };
  const { stack } = ctx;
  const log = ctx.log ?? ((m: string) => process.stderr.write(`${m}\n`));
  const rows: Row[] = [];
  const subs: Subscriber[] = [];
  await createTables(stack);
  try {
    // Writer cost first, with no subscriber connected, alternating on/off to share any drift.
    log(`  insert rate: ${opts.writers} writers × ${opts.inserts} single-row inserts, published vs not, ${opts.rounds} rounds`);
    const on: number[] = [];
    const off: number[] = [];
    const bulkOn: number[] = [];
    const bulkOff: number[] = [];
    await insertRate(stack, 'rt_bench_off', 200, opts.writers);
    await insertRate(stack, 'rt_bench_on', 200, opts.writers);
    // Each timed run starts once the sidecar has read the previous run's changes (2 cores: its
    // work would otherwise land on whichever run comes next, published or not).
    const settle = () => new Promise((r) => setTimeout(r, 1500));
    for (let r = 0; r < opts.rounds; r++) {
      await settle();
      off.push(await insertRate(stack, 'rt_bench_off', opts.inserts, opts.writers));
      await settle();
      on.push(await insertRate(stack, 'rt_bench_on', opts.inserts, opts.writers));
      await settle();
      bulkOff.push(await bulkRate(stack, 'rt_bench_off', 50_000));
      await settle();
      bulkOn.push(await bulkRate(stack, 'rt_bench_on', 50_000));
    }
    rows.push(
      ratioRow({ section: SECTION, metric: 'insert rate, published (vs unpublished)', unit: 'rows/s', plinth: median(on), baseline: median(off), target: '≥ 0.8×', minRatio: 0.8, note: `${opts.writers} writers, 1 row per transaction` }),
      ratioRow({ section: SECTION, metric: 'bulk insert, published (vs unpublished)', unit: 'rows/s', plinth: median(bulkOn), baseline: median(bulkOff), target: '≥ 0.5×', minRatio: 0.5, note: '50,000 rows in one statement' }),
    );
    // What decoding costs writers of tables nobody follows: the server decodes all of its WAL while
    // a table is published. The unpublished table's insert rate with rt_bench_on published (so
    // decoded), against the same with nothing published (the slot dropped).
    log(`  decoding's cost to other writers: inserts into the unpublished table, with and without a published one, ${opts.rounds} rounds`);
    const decodedOthers: number[] = [];
    const nothingPublished: number[] = [];
    // The stack's other published tables (the sample app's) leave for this part, and come back after.
    const others = await stack.sql<{ name: string }[]>`select relid::regclass::text as name from realtime.publications where relid <> 'public.rt_bench_on'::regclass`;
    for (const o of others) await stack.sql`select realtime.unpublish(${o.name}::regclass)`;
    for (let r = 0; r < opts.rounds; r++) {
      await settle();
      decodedOthers.push(await insertRate(stack, 'rt_bench_off', opts.inserts, opts.writers));
      await stack.sql`select realtime.unpublish('public.rt_bench_on')`;
      await until('the replication slot dropped', async () => (await stack.sql`select from pg_replication_slots where slot_name = realtime.slot_name()`).length === 0);
      await settle();
      nothingPublished.push(await insertRate(stack, 'rt_bench_off', opts.inserts, opts.writers));
      await stack.sql`select realtime.publish('public.rt_bench_on')`;
      await until('the published table decoded', async () =>
        (await stack.sql`select from pg_publication_tables where pubname = 'plinth_realtime' and tablename = 'rt_bench_on'`).length > 0 &&
        (await stack.sql`select from pg_replication_slots where slot_name = realtime.slot_name() and active`).length > 0);
    }
    for (const o of others) await stack.sql`select realtime.publish(${o.name}::regclass)`;
    rows.push(
      ratioRow({ section: SECTION, metric: 'unpublished inserts while a table is published (vs none published)', unit: 'rows/s', plinth: median(decodedOthers), baseline: median(nothingPublished), target: '', note: 'what logical decoding costs writers of other tables' }),
    );
    // Let the sidecar number and skip the backlog before subscribers arrive.
    await stack.sql`truncate public.rt_bench_on`;
    await new Promise((r) => setTimeout(r, 1500));

    log(`  latency: ${opts.subscribers} subscribers with the anon key (one claims group), ${opts.samples} inserts`);
    for (let i = 0; i < opts.subscribers; i++) subs.push(await subscribe(stack, stack.anonKey));
    const anonLat = await withLoad('realtime latency, anon', () => measureLatency(stack, subs, opts.samples, () => ({ userId: null, isPublic: true, receivers: subs })));
    rows.push(
      { section: SECTION, metric: `delivery p50, ${opts.subscribers} anon subscribers`, unit: 'ms', plinth: percentile(anonLat, 50), baseline: null, ratio: null, target: '', met: null, note: 'insert sent → message received, every subscriber' },
      { section: SECTION, metric: `delivery p99, ${opts.subscribers} anon subscribers`, unit: 'ms', plinth: percentile(anonLat, 99), baseline: null, ratio: null, target: '≤ 1000 ms', met: percentile(anonLat, 99) <= 1000 },
    );
    for (const s of subs.splice(0)) s.ws.close();

    log(`  latency: ${opts.subscribers} subscribers as ${opts.users} users (RLS per user: ${opts.users} visibility queries per change)`);
    const users = await Promise.all(Array.from({ length: opts.users }, () => stack.createUser()));
    const byUser = new Map<string, Subscriber[]>();
    for (let i = 0; i < opts.subscribers; i++) {
      const u = users[i % users.length];
      const s = await subscribe(stack, u.token);
      subs.push(s);
      if (!byUser.has(u.id)) byUser.set(u.id, []);
      byUser.get(u.id)!.push(s);
    }
    const userLat = await withLoad('realtime latency, per user', () => measureLatency(stack, subs, opts.samples, (i) => {
      const u = users[i % users.length];
      return { userId: u.id, isPublic: false, receivers: byUser.get(u.id)! };
    }));
    rows.push(
      { section: SECTION, metric: `delivery p50, ${opts.subscribers} subscribers / ${opts.users} users`, unit: 'ms', plinth: percentile(userLat, 50), baseline: null, ratio: null, target: '', met: null, note: 'each change visible to one user only' },
      { section: SECTION, metric: `delivery p99, ${opts.subscribers} subscribers / ${opts.users} users`, unit: 'ms', plinth: percentile(userLat, 99), baseline: null, ratio: null, target: '< 100 ms', met: percentile(userLat, 99) < 100 },
    );
  } finally {
    for (const s of subs) s.ws.close();
    await dropTables(stack);
  }
  return rows;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  // The 1,000 subscribers all connect from one address: no per-address cap.
  const stack = await startStack({ env: { PLINTH_LOG_LEVEL: 'warn', PLINTH_MAX_CONNECTIONS_PER_ADDRESS: '0' } });
  try {
    const rows = await runRealtimeBench({ stack });
    console.log(`\n${renderTable(rows)}\n`);
  } finally {
    await stack.destroy();
  }
}
