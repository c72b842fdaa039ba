// Scheduled and database-change triggers with two sidecars on one database: each schedule tick
// runs exactly once across both; table changes reach their function at least once, in order,
// and a sidecar killed mid-stream resumes from the cursor stored in the database.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { eventually, startStack, type Stack } from './harness.ts';

const RECORD = `
  async function record(source: string, payload: unknown) {
    const key = Deno.env.get('PLINTH_SERVICE_KEY')!;
    const r = await fetch(Deno.env.get('PLINTH_URL') + '/function_events', {
      method: 'POST',
      headers: { apikey: key, authorization: 'Bearer ' + key, 'content-type': 'application/json' },
      body: JSON.stringify({ source, payload }),
    });
    if (r.status !== 201) throw new Error('record failed: ' + r.status + ' ' + await r.text());
  }`;

const TICK = `${RECORD}
  export const config = { schedule: '* * * * * *', service: true };
  export default async function handler(req: Request) {
    const event = await req.json();
    await record('tick', { type: event.type, scheduled_at: event.scheduled_at });
    return { ok: true };
  }`;

const ON_TODO = `${RECORD}
  export const config = { on: { table: 'todos', events: ['INSERT'] }, service: true };
  export default async function handler(req: Request) {
    const event = await req.json();
    await new Promise((r) => setTimeout(r, 100));
    await record('todo', { type: event.type, table: event.table, title: event.record.title, position: event.position, old: event.old_record });
    return null;
  }`;

let first: Stack;
let second: Stack;
const dirs: string[] = [];
function functionsDir(files: Record<string, string>): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'plinth-fn-triggers-'));
  for (const [f, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, f), text);
  dirs.push(dir);
  return dir;
}

beforeAll(async () => {
  first = await startStack({ env: { PLINTH_FUNCTIONS_DIR: functionsDir({ 'tick.ts': TICK }) } });
  // Only the second runs the change trigger, so the resume after its kill is its own.
  second = await startStack({ env: { DATABASE_URL: first.databaseUrl, PLINTH_FUNCTIONS_DIR: functionsDir({ 'tick.ts': TICK, 'ontodo.ts': ON_TODO }) } });
});
afterAll(async () => {
  await second?.destroy();
  await first?.destroy();
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

test('a schedule tick runs exactly once across two sidecars', async () => {
  // Ticks from now on: both sidecars are up and both try each one.
  const since = new Date().toISOString();
  const ticks = await eventually('four scheduled runs', async () => {
    const rows = await first.sql<{ scheduled_at: string; n: number }[]>`
      select payload->>'scheduled_at' as scheduled_at, count(*)::int as n from function_events
      where source = 'tick' and (payload->>'scheduled_at')::timestamptz > ${since}::timestamptz group by 1 order by 1`;
    return rows.length >= 4 ? rows : undefined;
  });
  for (const t of ticks) expect(t, t.scheduled_at).toMatchObject({ n: 1 });
  // Both sidecars were there to try: each tick has one claim, whichever sidecar made it.
  const claims = await first.sql<{ n: number }[]>`select count(*)::int as n from functions.schedule_runs where name = 'tick' and tick = any(${ticks.map((t) => t.scheduled_at)}::timestamptz[])`;
  expect(claims[0].n).toBe(ticks.length);
});

test('table changes reach the function at least once and in order, across a kill of its sidecar', async () => {
  const owner = await first.createUser();
  const titles = Array.from({ length: 16 }, (_, i) => `todo-${String(i + 1).padStart(2, '0')}`);
  const seen = async () =>
    (await first.sql<{ title: string; position: string }[]>`select payload->>'title' as title, payload->>'position' as position from function_events where source = 'todo' order by id`);

  for (const t of titles.slice(0, 10)) await first.sql`insert into todos (user_id, title) values (${owner.id}, ${t})`;
  await eventually('a few changes delivered', async () => ((await seen()).length >= 3 ? true : undefined));
  await second.kill();
  // Written while the only sidecar that runs the trigger is down.
  for (const t of titles.slice(10)) await first.sql`insert into todos (user_id, title) values (${owner.id}, ${t})`;
  await second.launch();

  const delivered = await eventually('every change delivered', async () => {
    const rows = await seen();
    return new Set(rows.map((r) => r.title)).size === titles.length ? rows : undefined;
  }, 40_000);
  // At least once: a change may come twice (the one cut by the kill); in order: first arrivals follow the inserts.
  const firstArrivals = [...new Map(delivered.map((r) => [r.title, r])).keys()];
  const order: string[] = [];
  for (const r of delivered) if (!order.includes(r.title)) order.push(r.title);
  expect(order).toEqual(titles);
  expect(firstArrivals.sort()).toEqual(titles);
  const positions = order.map((t) => Number(delivered.find((r) => r.title === t)!.position));
  expect(positions).toEqual([...positions].sort((a, b) => a - b));
  // The cursor is in the database, at the last change handled. It moves once the handler has
  // returned, which can be just after its side effect is visible: wait for it, don't race it.
  const last = positions[positions.length - 1];
  await eventually('the cursor at the last change', async () => {
    const [cursor] = await first.sql<{ position: string }[]>`select position::text from functions.change_cursors where name = 'ontodo'`;
    return Number(cursor?.position) === last ? true : undefined;
  });
});
