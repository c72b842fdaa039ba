import fs from 'node:fs';
import { startStack } from '/work/wt/reqpath/tests/harness.ts';
import { load } from '/work/wt/reqpath/bench/load.ts';
import { seedTodos } from '/work/wt/reqpath/bench/front-door.ts';
const which = process.argv[2] ?? 'get';
const env: Record<string, string> = {};
if (process.env.AUDIT) env.PLINTH_AUDIT = process.env.AUDIT;
const stack = await startStack({ env });
const token = await seedTodos(stack);
const headers = { authorization: `Bearer ${token}` };
const url = which === 'fn' ? `${stack.url}/functions/v1/hello` : `${stack.url}/todos?limit=10`;
const stat = (pid: number) => { const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' '); return [Number(f[11]), Number(f[12])]; };
await load({ url, headers }, 32, 2);
for (let round = 0; round < 3; round++) {
  const [u0, s0] = stat(stack.proc.pid!);
  const r = await load({ url, headers }, 32, 4);
  const [u1, s1] = stat(stack.proc.pid!);
  console.log(`rps ${r.rps.toFixed(0)} user ${((u1 - u0) * 1e4 / r.completed).toFixed(0)} µs sys ${((s1 - s0) * 1e4 / r.completed).toFixed(0)} µs per request`);
}
await stack.stop();
