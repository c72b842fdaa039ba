// 10. The audit log's cost: the same query through a stack with the request log on and one with
// PLINTH_AUDIT=off, rounds alternating so machine noise falls on both. "On" pays the whole cost:
// the hook on the front door and the writer's inserts into the same PostgreSQL.
import { startStack, type Stack, type StackOptions } from '../tests/harness.ts';
import { QUERIES, seedTodos, type FrontDoorOptions } from './front-door.ts';
import { alternating } from './load.ts';
import { median, ratioRow, type Row } from './report.ts';

const SECTION = '10 audit';

export async function benchAudit(on: Stack, onToken: string, stackOptions: StackOptions, opts: FrontDoorOptions): Promise<Row[]> {
  const off = await startStack({ ...stackOptions, env: { ...stackOptions.env, PLINTH_AUDIT: 'off' } });
  try {
    const offToken = await seedTodos(off);
    const path = QUERIES['GET /todos?limit=10'];
    const targetOn = { url: on.url + path, headers: { authorization: `Bearer ${onToken}` } };
    const targetOff = { url: off.url + path, headers: { authorization: `Bearer ${offToken}` } };
    const [withLog, without] = await alternating(targetOn, targetOff, opts);
    const [{ rows }] = await on.sql<{ rows: number }[]>`select count(*)::int as rows from audit.requests`;
    const errors = [...withLog, ...without].reduce((n, r) => n + r.errors, 0);
    process.stderr.write(`  audit on: ${Math.round(median(withLog.map((r) => r.rps)))} req/s, off: ${Math.round(median(without.map((r) => r.rps)))} req/s; ${rows} request rows written\n`);
    return [
      ratioRow({
        section: SECTION,
        metric: 'GET /todos?limit=10 req/s with the request log on',
        unit: 'req/s',
        plinth: median(withLog.map((r) => r.rps)),
        baseline: median(without.map((r) => r.rps)),
        target: '≥ 0.95×',
        minRatio: 0.95,
        note: `baseline: a stack with PLINTH_AUDIT=off; c=${opts.connections}, ${opts.rounds}×${opts.seconds}s alternating; ${rows} rows written` + (errors ? `, ${errors} errors` : ''),
      }),
    ];
  } finally {
    await off.destroy();
  }
}
