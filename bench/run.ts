// `npm run bench`: boots the real stack (tests/harness.ts), measures every figure against a
// baseline taken in the same run, prints one table and writes JSON to bench/results/.
// `npm run bench -- frontdoor upload` runs only the named sections.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startStack, type Stack } from '../tests/harness.ts';
import { startDirectPostgrest, type DirectPostgrest } from './direct-postgrest.ts';
import { benchFrontDoor, seedTodos } from './front-door.ts';
import { renderTable, skippedRow, writeResults, type Row } from './report.ts';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const MIGRATIONS = path.join(BENCH_DIR, 'fixtures', 'migrations');
const RESULTS = path.join(BENCH_DIR, 'results');

const only = new Set(process.argv.slice(2));
const wanted = (name: string) => only.size === 0 || only.has(name);

async function main() {
  const started = Date.now();
  const rows: Row[] = [];
  const log = (msg: string) => process.stderr.write(`[${((Date.now() - started) / 1000).toFixed(0).padStart(3)} s] ${msg}\n`);

  log('starting the stack');
  const stack: Stack = await startStack({ appMigrations: MIGRATIONS, env: { PLINTH_LOG_LEVEL: 'warn' } });
  let direct: DirectPostgrest | undefined;
  try {
    direct = await startDirectPostgrest(stack);
    if (wanted('frontdoor')) {
      log('1 front door');
      const token = await seedTodos(stack);
      rows.push(...(await benchFrontDoor(stack, direct, token, { connections: 32, seconds: 3, rounds: 5 })));
    }
  } finally {
    await direct?.stop();
    await stack.destroy();
  }

  const table = renderTable(rows);
  console.log(`\n${table}\n`);
  const file = writeResults(RESULTS, rows, { seconds: Math.round((Date.now() - started) / 1000), sections: only.size ? [...only] : 'all' });
  log(`done; results in ${path.relative(process.cwd(), file)}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
