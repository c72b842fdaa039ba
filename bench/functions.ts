// 11. Functions: a trivial HTTP function called through Plinth (front door, caller check, the
// worker's unix socket) against the same handler under `deno serve` directly, rounds alternating;
// and cold start: a new file in PLINTH_FUNCTIONS_DIR until its first answer (load, permissions
// check, worker start), against `deno serve` from spawn to first answer.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { denoBinary } from '../sidecar/functions/deno.ts';
import { freePort } from '../sidecar/start/process.ts';
import { childPid, cpuSeconds } from './rss.ts';
import { startStack, type StackOptions } from '../tests/harness.ts';
import { load, type LoadResult } from './load.ts';
import { median, ratioRow, type Row } from './report.ts';

const SECTION = '11 functions';
const HANDLER = `export default function handler(_req: Request): Response { return new Response('ok', { headers: { 'content-type': 'text/plain' } }); }\n`;

export interface FunctionsBenchOptions {
  connections: number;
  seconds: number;
  rounds: number;
}

async function firstAnswer(url: string, headers: Record<string, string>, deadlineMs = 30_000): Promise<void> {
  const until = Date.now() + deadlineMs;
  for (;;) {
    try {
      if ((await fetch(url, { headers })).status === 200) return;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > until) throw new Error(`no answer from ${url}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

export async function benchFunctions(stackOptions: StackOptions, opts: FunctionsBenchOptions): Promise<Row[]> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'plinth-bench-fn-'));
  fs.writeFileSync(path.join(dir, 'ping.ts'), HANDLER);
  const serveFile = path.join(dir, 'serve.ts');
  fs.writeFileSync(serveFile, `${HANDLER}export const server = { fetch: handler };\n`.replace('export default function', 'function') + 'export default server;\n');
  const stack = await startStack({ ...stackOptions, env: { ...stackOptions.env, PLINTH_FUNCTIONS_DIR: dir } });
  const port = await freePort();
  const t0 = performance.now();
  const direct = spawn(denoBinary(), ['serve', '--quiet', `--port=${port}`, '--host=127.0.0.1', serveFile], { stdio: 'ignore', env: { ...process.env, NO_COLOR: '1' } });
  try {
    await firstAnswer(`http://127.0.0.1:${port}/`, {});
    const directCold = performance.now() - t0;

    const viaPlinth = { url: `${stack.url}/functions/v1/ping`, headers: { apikey: stack.anonKey } };
    const viaDeno = { url: `http://127.0.0.1:${port}/` };
    await load(viaPlinth, opts.connections, 1);
    await load(viaDeno, opts.connections, 1);
    const plinth: LoadResult[] = [];
    const deno: LoadResult[] = [];
    // CPU time per request of each process: unlike req/s, barely moved by other load on the machine.
    const worker = childPid(stack.proc.pid!, 'deno');
    const cpu = { sidecar: [] as number[], worker: [] as number[], direct: [] as number[] };
    for (let i = 0; i < opts.rounds; i++) {
      const [s0, w0] = [cpuSeconds(stack.proc.pid!), worker ? cpuSeconds(worker) : 0];
      const a = await load(viaPlinth, opts.connections, opts.seconds);
      plinth.push(a);
      cpu.sidecar.push(((cpuSeconds(stack.proc.pid!) - s0) * 1e6) / a.completed);
      if (worker) cpu.worker.push(((cpuSeconds(worker) - w0) * 1e6) / a.completed);
      const d0 = cpuSeconds(direct.pid!);
      const b = await load(viaDeno, opts.connections, opts.seconds);
      deno.push(b);
      cpu.direct.push(((cpuSeconds(direct.pid!) - d0) * 1e6) / b.completed);
    }

    // Cold start through Plinth: a new function file until its first 200.
    const colds: number[] = [];
    for (let i = 0; i < 3; i++) {
      const t = performance.now();
      fs.writeFileSync(path.join(dir, `cold${i}.ts`), HANDLER.replace("'ok'", `'cold ${i}'`));
      await firstAnswer(`${stack.url}/functions/v1/cold${i}`, { apikey: stack.anonKey });
      colds.push(performance.now() - t);
    }
    const errors = [...plinth, ...deno].reduce((n, r) => n + r.errors, 0);
    const rps = median(plinth.map((r) => r.rps));
    const base = median(deno.map((r) => r.rps));
    const [sidecarUs, workerUs, directUs] = [median(cpu.sidecar), cpu.worker.length ? median(cpu.worker) : NaN, median(cpu.direct)];
    process.stderr.write(
      `  function via Plinth: ${Math.round(rps)} req/s, deno serve: ${Math.round(base)} req/s; CPU per request: sidecar ${Math.round(sidecarUs)} µs + worker ${Math.round(workerUs)} µs, deno serve ${Math.round(directUs)} µs; cold start ${Math.round(median(colds))} ms\n`,
    );
    const note = `baseline: the same handler under deno serve; c=${opts.connections}, ${opts.rounds}×${opts.seconds}s alternating` + (errors ? `, ${errors} errors` : '');
    return [
      ratioRow({ section: SECTION, metric: 'trivial HTTP function req/s', unit: 'req/s', plinth: rps, baseline: base, target: '≥ 0.7×', minRatio: 0.7, note }),
      ratioRow({
        section: SECTION,
        metric: 'trivial HTTP function CPU per request',
        unit: 'µs',
        plinth: sidecarUs + workerUs,
        baseline: directUs,
        target: '',
        lowerIsBetter: true,
        note: `Plinth: the sidecar's CPU (${Math.round(sidecarUs)} µs) plus the function's Deno worker's (${Math.round(workerUs)} µs) per request; baseline: deno serve's, from /proc/<pid>/stat`,
      }),
      ratioRow({ section: SECTION, metric: 'trivial HTTP function p99', unit: 'ms', plinth: median(plinth.map((r) => r.p99)), baseline: median(deno.map((r) => r.p99)), target: '', lowerIsBetter: true, note }),
      ratioRow({
        section: SECTION,
        metric: 'cold start: new file → first answer',
        unit: 'ms',
        plinth: median(colds),
        baseline: directCold,
        target: '',
        lowerIsBetter: true,
        note: 'Plinth: file written, watched, loaded for its config, worker started (median of 3); baseline: deno serve spawn → first answer',
      }),
    ];
  } finally {
    direct.kill('SIGTERM');
    await stack.destroy();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
