// How changes reach the realtime log: decoded from the WAL after commit (the replication slot that
// a sidecar holds), not by triggers in the writer's transaction; what survives a sidecar that was
// not running, a slot dropped by hand, and the last table being unpublished.
import { afterAll, beforeAll, expect, test } from 'vitest';
import { downAndUpAgain, startStack, type Stack } from './harness.ts';
import { RealtimeClient, type Message } from './realtime-client.ts';

let stack: Stack;
const clients: RealtimeClient[] = [];
beforeAll(async () => {
  stack = await startStack();
  await stack.sql.unsafe(`
    create table public.capture_items (
      id int primary key, label text not null, at timestamptz not null default '2025-01-02 03:04:05+00',
      -- A jsonb column, and a column named like the row alias of realtime.typed's first version.
      meta jsonb not null default '{"tags": ["a"]}', r int4range not null default '[1,5)'
    );
    grant select on public.capture_items to anon, authenticated, service_role;`);
  await stack.sql`select realtime.publish('public.capture_items')`;
});
afterAll(async () => {
  for (const c of clients) c.close();
  await stack?.destroy();
});

async function open(): Promise<RealtimeClient> {
  const c = await RealtimeClient.open(stack.url, stack.serviceKey);
  clients.push(c);
  return c;
}

async function until<T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function captureOf(table: string): Promise<{ triggers: number; published: boolean; identity: string; slot: boolean }> {
  const [r] = await stack.sql<{ triggers: number; published: boolean; identity: string; slot: boolean }[]>`
    select (select count(*)::int from pg_trigger where tgrelid = ${table}::regclass and tgname like 'plinth_realtime_%') as triggers,
           exists (select from pg_publication_tables where pubname = 'plinth_realtime' and format('%I.%I', schemaname, tablename)::regclass = ${table}::regclass) as published,
           (select relreplident::text from pg_class where oid = ${table}::regclass) as identity,
           exists (select from pg_replication_slots where slot_name = realtime.slot_name()) as slot`;
  return r;
}

const summary = (m: Message) => [m.event, m.event === 'DELETE' ? m.old : m.new, m.event === 'UPDATE' ? m.old : undefined];

test('a published table is decoded: no capture triggers, the writer logs nothing, and every change arrives with typed keys', async () => {
  expect(await captureOf('public.capture_items')).toEqual({ triggers: 0, published: true, identity: 'f', slot: true });
  const c = await open();
  expect((await c.subscribe({ id: 'i', table: 'capture_items' })).type).toBe('subscribed');
  // Inside the writer's transaction the log does not grow: the changes are logged after the commit.
  const grew = await stack.sql.begin(async (tx) => {
    const [before] = await tx<{ n: number }[]>`select count(*)::int as n from realtime.changes`;
    await tx`insert into public.capture_items (id, label) values (1, 'one'), (2, 'two'), (3, 'three')`;
    await tx`update public.capture_items set label = 'uno' where id = 1`;
    await tx`update public.capture_items set id = 10 where id = 2`;
    await tx`delete from public.capture_items where id = 3`;
    const [after] = await tx<{ n: number }[]>`select count(*)::int as n from realtime.changes`;
    return after.n - before.n;
  });
  expect(grew).toBe(0);
  // The log holds keys and old rows with their columns' JSON types, as the capture triggers logged them.
  type Logged = { event: string; n: number; keys: unknown[]; old_keys: unknown[] | null; old_rows: unknown[] | null };
  const log = await until('the changes logged', async () => {
    const rows = await stack.sql<Logged[]>`
      select event, n, keys, old_keys, old_rows from realtime.changes where relid = 'public.capture_items'::regclass order by position`;
    // One entry per statement, however the appends cut the transaction into batches.
    const merged: Logged[] = [];
    for (const r of rows) {
      const last = merged[merged.length - 1];
      if (last?.event !== r.event) merged.push({ ...r });
      else Object.assign(last, { n: last.n + r.n, keys: [...last.keys, ...r.keys], old_keys: r.old_keys && [...last.old_keys!, ...r.old_keys], old_rows: r.old_rows && [...last.old_rows!, ...r.old_rows] });
    }
    return merged.reduce((n, r) => n + r.n, 0) >= 6 && merged;
  });
  expect(log).toEqual([
    { event: 'INSERT', n: 3, keys: [{ id: 1 }, { id: 2 }, { id: 3 }], old_keys: null, old_rows: null },
    { event: 'UPDATE', n: 2, keys: [{ id: 1 }, { id: 10 }], old_keys: [{ id: 1 }, { id: 2 }], old_rows: null },
    { event: 'DELETE', n: 1, keys: [{ id: 3 }], old_keys: null, old_rows: [{ id: 3, label: 'three', at: '2025-01-02T03:04:05+00:00', meta: { tags: ['a'] }, r: '[1,5)' }] },
  ]);
  // Rows are read back when delivered: rows 2 and 3 are gone by then, so their INSERTs are not sent.
  await c.waitFor((m) => m.type === 'change' && m.event === 'DELETE');
  const got = c.changes('i');
  const defaults = { at: '2025-01-02T03:04:05+00:00', meta: { tags: ['a'] }, r: '[1,5)' };
  const row1 = { id: 1, label: 'uno', ...defaults };
  expect(got.map(summary)).toEqual([
    ['INSERT', row1, undefined],
    ['UPDATE', row1, { id: 1 }],
    ['UPDATE', { id: 10, label: 'two', ...defaults }, { id: 2 }],
    ['DELETE', { id: 3 }, undefined],
  ]);
  const first = got[0].position!;
  expect(got.map((m) => m.position)).toEqual([first, first + 3, first + 4, first + 5]);
});

test('changes committed while no sidecar runs are delivered once, in order, when one starts again', async () => {
  const c = await open();
  expect((await c.subscribe({ id: 'i', table: 'capture_items' })).type).toBe('subscribed');
  await stack.sql`insert into public.capture_items (id, label) values (20, 'before')`;
  const before = await c.waitFor((m) => m.type === 'change' && m.new?.id === 20);
  c.close();
  // The sidecar dies; its PostgreSQL keeps running and takes writes that nobody decodes now.
  await stack.kill();
  for (let i = 21; i <= 30; i++) await stack.sql`insert into public.capture_items (id, label) values (${i}, 'while down')`;
  await stack.restart();
  const back = await open();
  expect((await back.subscribe({ id: 'i', table: 'capture_items', from: before.position })).type).toBe('subscribed');
  await back.waitFor(() => back.changes('i').length >= 10);
  await new Promise((r) => setTimeout(r, 500));
  const got = back.changes('i');
  expect(got.map((m) => m.new?.id)).toEqual([21, 22, 23, 24, 25, 26, 27, 28, 29, 30]);
  expect(got.map((m) => m.position)).toEqual(got.map((_, i) => before.position! + 1 + i));
});

test('changes decoded after a migration altered their table are logged anyway, and the capture goes on', async () => {
  await stack.sql.unsafe(`
    create table public.capture_retyped (id int primary key, code text not null);
    grant select on public.capture_retyped to anon, authenticated, service_role;`);
  await stack.sql`select realtime.publish('public.capture_retyped')`;
  expect((await captureOf('public.capture_retyped')).published).toBe(true);
  await stack.sql`insert into public.capture_retyped values (1, 'abc'), (2, '7')`;
  // The keys and old rows logged for an event, in order (a batch boundary may split a statement's rows).
  const logged = async (event: string) => {
    const rows = await stack.sql<{ keys: unknown[]; old_rows: unknown[] | null }[]>`
      select keys, old_rows from realtime.changes where relid = 'public.capture_retyped'::regclass and event = ${event} order by position`;
    return { keys: rows.flatMap((r) => r.keys), oldRows: rows.flatMap((r) => r.old_rows ?? []) };
  };
  await until('the inserts logged', async () => (await logged('INSERT')).keys.length === 2);
  // The sidecar is away while the rows are deleted and a migration changes the column's type: the
  // deletes are decoded later, as text that the new type refuses ('abc') or takes ('7').
  await stack.kill();
  await stack.sql`delete from public.capture_retyped`;
  await stack.sql`alter table public.capture_retyped alter column code type int using 0`;
  await stack.sql`insert into public.capture_retyped values (3, 42)`;
  await stack.restart();
  const deleted = await until('the deletes logged', async () => {
    const d = await logged('DELETE');
    return d.keys.length === 2 && d;
  });
  expect(deleted).toEqual({ keys: [{ id: 1 }, { id: 2 }], oldRows: [{ id: 1, code: 'abc' }, { id: 2, code: 7 }] });
  // The sidecar's log says so, naming the table and the SQLSTATE, never the value.
  const warned = stack.output.split('\n').filter((l) => /WARN realtime: changes of public\.capture_retyped no longer fit the table \(SQLSTATE 22P02\)/.test(l));
  expect(warned.length).toBeGreaterThan(0);
  expect(warned.join('\n')).not.toContain('abc');
  // Later changes, of this table and the others, are logged as before.
  await stack.sql`insert into public.capture_retyped values (4, 5)`;
  await stack.sql`insert into public.capture_items (id, label) values (35, 'after the migration')`;
  await until('later changes logged', async () => {
    const [r] = await stack.sql<{ n: number }[]>`
      select count(*)::int as n from realtime.changes where relid = 'public.capture_items'::regclass and keys @> '[{"id": 35}]'`;
    return r.n === 1;
  });
  expect((await logged('INSERT')).keys).toEqual([{ id: 1 }, { id: 2 }, { id: 3 }, { id: 4 }]);
});

test('keys of every type are logged as to_jsonb gives them, whether the sidecar or the database types them', async () => {
  // uuid, text and integer keys are typed by the sidecar, a bigint past 2^53 and a date by the
  // database (realtime.typed); one statement's rows of both kinds keep their order.
  await stack.sql.unsafe(`
    create table public.capture_uuid_keys (id uuid primary key);
    create table public.capture_pair_keys (code text, n bigint, note text, primary key (code, n));
    create table public.capture_date_keys (day date primary key);
    grant select on public.capture_uuid_keys, public.capture_pair_keys, public.capture_date_keys to anon, authenticated, service_role;`);
  for (const t of ['capture_uuid_keys', 'capture_pair_keys', 'capture_date_keys']) await stack.sql`select realtime.publish(${`public.${t}`})`;
  await stack.sql.unsafe(`
    insert into public.capture_uuid_keys values ('A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11');
    update public.capture_uuid_keys set id = 'b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12';
    delete from public.capture_uuid_keys;
    insert into public.capture_pair_keys values ('a"b', 1, 'x'), (E'\\u00e9\\n', 9007199254740993, 'y'), ('z', -5, 'z');
    update public.capture_pair_keys set n = n + 1 where code = 'z';
    update public.capture_pair_keys set note = 'only the note' where n = 9007199254740993;
    delete from public.capture_pair_keys where n = 1;
    insert into public.capture_date_keys values ('2025-01-02');
    update public.capture_date_keys set day = '2025-03-04';
    delete from public.capture_date_keys;`);
  // Each event's keys (and old keys) in log order, across however many entries they were cut into.
  const merged = (table: string) =>
    stack.sql<{ event: string; keys: string; old_keys: string | null }[]>`
      select e.event,
             (select jsonb_agg(k order by c.position, i) from realtime.changes c, jsonb_array_elements(c.keys) with ordinality as x(k, i)
               where c.relid = ${table}::regclass and c.event = e.event)::text as keys,
             (select jsonb_agg(k order by c.position, i) from realtime.changes c, jsonb_array_elements(c.old_keys) with ordinality as x(k, i)
               where c.relid = ${table}::regclass and c.event = e.event)::text as old_keys
      from (select distinct event from realtime.changes where relid = ${table}::regclass) e
      order by array_position(array['INSERT', 'UPDATE', 'DELETE'], e.event)`;
  await until('every change logged', async () => (await merged('public.capture_date_keys')).length === 3);
  // The expected JSON, normalized by PostgreSQL as jsonb (key order, spacing), with the big number exact.
  const asJsonb = async (json: string) => (await stack.sql<{ t: string }[]>`select ${json}::text::jsonb::text as t`)[0].t;
  const expected = async (rows: [string, string, string | null][]) =>
    Promise.all(rows.map(async ([event, keys, old]) => ({ event, keys: await asJsonb(keys), old_keys: old === null ? null : await asJsonb(old) })));
  const a = '"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"';
  const b = '"b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12"';
  expect(await merged('public.capture_uuid_keys')).toEqual(
    await expected([
      ['INSERT', `[{"id": ${a}}]`, null],
      ['UPDATE', `[{"id": ${b}}]`, `[{"id": ${a}}]`],
      ['DELETE', `[{"id": ${b}}]`, null],
    ]),
  );
  const big = '{"code": "\\u00e9\\n", "n": 9007199254740993}';
  expect(await merged('public.capture_pair_keys')).toEqual(
    await expected([
      ['INSERT', `[{"code": "a\\"b", "n": 1}, ${big}, {"code": "z", "n": -5}]`, null],
      ['UPDATE', `[{"code": "z", "n": -4}, ${big}]`, `[{"code": "z", "n": -5}, ${big}]`],
      ['DELETE', '[{"code": "a\\"b", "n": 1}]', null],
    ]),
  );
  expect(await merged('public.capture_date_keys')).toEqual(
    await expected([
      ['INSERT', '[{"day": "2025-01-02"}]', null],
      ['UPDATE', '[{"day": "2025-03-04"}]', '[{"day": "2025-01-02"}]'],
      ['DELETE', '[{"day": "2025-03-04"}]', null],
    ]),
  );
});

test('the typed-keys migration has a working down step (run and re-applied inside a rolled-back transaction)', async () => {
  // An entry marked typed, with a key as text: logged as sent after the up step, typed before it.
  const append = async (tx: Parameters<Parameters<typeof downAndUpAgain>[2]>[0]) => {
    const [{ src }] = await tx<{ src: string }[]>`select prosrc as src from pg_catalog.pg_proc where oid = 'realtime.append'::regproc`;
    const [s] = await tx<{ lsn: string; done: number }[]>`select decoded_lsn::text as lsn, decoded_done as done from realtime.state`;
    const entries = JSON.stringify([{ relid: Number((await tx`select 'public.capture_items'::regclass::oid as o`)[0].o), event: 'INSERT', typed: true, keys: [{ id: '99' }], old_keys: null, old_rows: null }]);
    const [{ head }] = await tx<{ head: string }[]>`select realtime.append(${entries}::text::jsonb, ${s.lsn}::pg_lsn, ${s.done}, ${s.lsn}::pg_lsn, ${s.done + 1})::text as head`;
    const [{ keys }] = await tx<{ keys: unknown }[]>`select keys from realtime.changes where position = ${head}`;
    return { src, keys };
  };
  await downAndUpAgain(
    stack.sql,
    '20250101000922_realtime_typed_keys.sql',
    async (tx) => {
      const { src, keys } = await append(tx);
      expect(src).toContain(`pg_notify('plinth_realtime', '')`);
      expect(keys).toEqual([{ id: 99 }]);
    },
    async (tx) => {
      const { src, keys } = await append(tx);
      expect(src).toContain(`pg_notify('plinth_realtime', top::text)`);
      expect(keys).toEqual([{ id: '99' }]);
    },
  );
});

test('a slot dropped by hand is made again: resuming from before it is refused, new changes flow', async () => {
  const c = await open();
  expect((await c.subscribe({ id: 'i', table: 'capture_items' })).type).toBe('subscribed');
  await stack.sql`insert into public.capture_items (id, label) values (40, 'before the drop')`;
  const last = await c.waitFor((m) => m.type === 'change' && m.new?.id === 40);
  // The holding sidecar reconnects within a second; end its stream until the drop gets through.
  await until('the slot dropped', async () => {
    try {
      await stack.sql`select pg_terminate_backend(active_pid) from pg_replication_slots where slot_name = realtime.slot_name() and active_pid is not null`;
      await stack.sql`select pg_drop_replication_slot(realtime.slot_name())`;
      return true;
    } catch {
      return false;
    }
  });
  await until('the slot made again', async () => (await captureOf('public.capture_items')).slot);
  const late = await open();
  const refused = await late.subscribe({ id: 'old', table: 'capture_items', from: last.position });
  expect(refused).toMatchObject({ type: 'error', code: 'PLINTH410' });
  await until('the capture to read the new slot', async () => (await stack.sql`select from pg_replication_slots where slot_name = realtime.slot_name() and active`).length > 0);
  await stack.sql`insert into public.capture_items (id, label) values (41, 'after')`;
  await c.waitFor((m) => m.type === 'change' && m.new?.id === 41);
});

test('the slot is dropped when the last table is unpublished, and made again (the table moved off its triggers) when one is published', async () => {
  // A published table dropped without unpublishing leaves its row in realtime.publications: that
  // row must not keep the slot (and the WAL it holds) alive.
  await stack.sql.unsafe(`create table public.capture_gone (id int primary key); select realtime.publish('public.capture_gone'); drop table public.capture_gone;`);
  await stack.sql`select realtime.unpublish(p.relid::regclass) from realtime.publications as p join pg_class as c on c.oid = p.relid`;
  expect((await stack.sql`select from realtime.publications`).length).toBe(1);
  // Decoding would cost every writer for nothing: the slot goes.
  await until('the slot dropped', async () => !(await captureOf('public.capture_items')).slot, 40_000);
  await stack.sql`select realtime.publish('public.capture_items')`;
  // Without a slot, publish installs the capture triggers; the sidecar then makes the slot and moves the table.
  await until('the table decoded', async () => {
    const s = await captureOf('public.capture_items');
    return s.slot && s.published && s.triggers === 0;
  });
  const c = await open();
  expect((await c.subscribe({ id: 'i', table: 'capture_items' })).type).toBe('subscribed');
  await stack.sql`insert into public.capture_items (id, label) values (50, 'decoded again')`;
  const m = await c.waitFor((x) => x.type === 'change' && x.new?.id === 50);
  expect(m.event).toBe('INSERT');
});
