// 1. Front door: the same PostgREST queries through the sidecar (auth + proxy over a unix
// socket) and straight to a PostgREST on loopback TCP, same load generator and concurrency.
import * as jose from 'jose';
import { addSigningKey, KeyRing } from '../sidecar/core/keys.ts';
import { startStack, type Stack, type StackOptions } from '../tests/harness.ts';
import type { DirectPostgrest } from './direct-postgrest.ts';
import { alternating, load, type LoadResult } from './load.ts';
import { median, ratioRow, type Row } from './report.ts';
import { childPid, cpuSeconds } from './rss.ts';

const SECTION = '1 front door';

export const QUERIES = {
  'GET /todos?limit=10': '/todos?limit=10',
  'filtered query': '/todos?select=id,title,priority,done&done=eq.false&priority=gte.3&order=priority.desc,id&limit=10',
};

export interface FrontDoorOptions {
  connections: number;
  seconds: number;
  rounds: number;
}

/** 2,000 todos for one user (half done, priorities 0-9), written as the owner. */
export async function seedTodos(stack: Stack): Promise<string> {
  const user = await stack.createUser({ email: 'bench-todos@example.test' });
  await stack.sql`
    insert into public.todos (user_id, title, done, priority)
    select ${user.id}, 'todo number ' || n, n % 2 = 0, n % 10 from generate_series(1, 2000) as n`;
  await stack.sql`analyze public.todos`;
  return user.token;
}

/** The user's claims signed with Plinth's internal secret: what the sidecar forwards to PostgREST. */
export async function internalTokenFor(stack: Stack, token: string): Promise<string> {
  const [{ secret }] = await stack.sql<{ secret: string }[]>`select secret from auth.postgrest_secret`;
  return new jose.SignJWT(jose.decodeJwt(token)).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).sign(new TextEncoder().encode(secret));
}

/** One PostgREST to compare the front door with, and the token it accepts for the same user. */
export interface FrontDoorBaseline {
  label: string;
  direct: DirectPostgrest;
  token: string;
  target: string;
  minRatio: number;
}

export async function benchFrontDoor(stack: Stack, baselines: FrontDoorBaseline[], token: string, opts: FrontDoorOptions): Promise<Row[]> {
  const rows: Row[] = [];
  for (const baseline of baselines) rows.push(...(await againstBaseline(stack, baseline, token, opts)));
  return rows;
}

async function againstBaseline(stack: Stack, { label, direct, token: directToken, target, minRatio }: FrontDoorBaseline, token: string, opts: FrontDoorOptions): Promise<Row[]> {
  const headers = { authorization: `Bearer ${token}` };
  const directHeaders = { authorization: `Bearer ${directToken}` };
  const rows: Row[] = [];
  const cpu: Record<string, { sidecar: number; postgrestBehindSidecar: number | null; postgrestDirect: number }> = {};
  for (const [name, path] of Object.entries(QUERIES)) {
    // Both sides must answer the same thing before their speed means anything.
    const [a, b] = await Promise.all([fetch(stack.url + path, { headers }), fetch(direct.url + path, { headers: directHeaders })]);
    const [ta, tb] = [await a.text(), await b.text()];
    if (a.status !== 200 || b.status !== 200 || ta !== tb) throw new Error(`front door: ${name} differs: ${a.status} ${ta.slice(0, 200)} vs ${b.status} ${tb.slice(0, 200)}`);

    await load({ url: stack.url + path, headers }, opts.connections, 1);
    await load({ url: direct.url + path, headers: directHeaders }, opts.connections, 1);
    const plinth: LoadResult[] = [];
    const base: LoadResult[] = [];
    // CPU time per request of each process: unlike req/s, barely moved by other load on the machine.
    const sidecarCpu: number[] = [];
    const directCpu: number[] = [];
    const stackPostgrest = childPid(stack.proc.pid!, 'postgrest');
    const stackPostgrestCpu: number[] = [];
    for (let i = 0; i < opts.rounds; i++) {
      let [s0, p0] = [cpuSeconds(stack.proc.pid!), stackPostgrest ? cpuSeconds(stackPostgrest) : 0];
      const a = await load({ url: stack.url + path, headers }, opts.connections, opts.seconds);
      plinth.push(a);
      sidecarCpu.push(((cpuSeconds(stack.proc.pid!) - s0) * 1e6) / a.completed);
      if (stackPostgrest) stackPostgrestCpu.push(((cpuSeconds(stackPostgrest) - p0) * 1e6) / a.completed);
      s0 = cpuSeconds(direct.pid);
      const b = await load({ url: direct.url + path, headers: directHeaders }, opts.connections, opts.seconds);
      base.push(b);
      directCpu.push(((cpuSeconds(direct.pid) - s0) * 1e6) / b.completed);
    }
    cpu[name] = { sidecar: median(sidecarCpu), postgrestBehindSidecar: stackPostgrestCpu.length ? median(stackPostgrestCpu) : null, postgrestDirect: median(directCpu) };
    const errors = [...plinth, ...base].reduce((n, r) => n + r.errors, 0);
    const note = `c=${opts.connections}, ${opts.rounds}×${opts.seconds}s` + (errors ? `, ${errors} errors` : '');
    rows.push(
      ratioRow({ section: SECTION, metric: `${name} req/s vs ${label}`, unit: 'req/s', plinth: median(plinth.map((r) => r.rps)), baseline: median(base.map((r) => r.rps)), target, minRatio, note }),
      ratioRow({ section: SECTION, metric: `${name} p50 vs ${label}`, unit: 'ms', plinth: median(plinth.map((r) => r.p50)), baseline: median(base.map((r) => r.p50)), target: '', lowerIsBetter: true }),
      ratioRow({ section: SECTION, metric: `${name} p99 vs ${label}`, unit: 'ms', plinth: median(plinth.map((r) => r.p99)), baseline: median(base.map((r) => r.p99)), target: '', lowerIsBetter: true }),
      {
        section: SECTION,
        metric: `${name} CPU per request vs ${label}`,
        unit: 'µs',
        plinth: cpu[name].sidecar,
        baseline: cpu[name].postgrestDirect,
        ratio: null,
        target: '',
        met: null,
        note: `Plinth: the sidecar's own CPU per proxied request; baseline: PostgREST's CPU per request` + (cpu[name].postgrestBehindSidecar ? ` (${Math.round(cpu[name].postgrestBehindSidecar!)} µs behind the sidecar)` : ''),
      },
    );
    process.stderr.write(`  ${name}: Plinth ${plinth.map((r) => Math.round(r.rps)).join('/')} vs ${label} ${base.map((r) => Math.round(r.rps)).join('/')} req/s\n`);
  }
  return rows;
}

/**
 * Right after `plinth keys rotate`, users' tokens come from the new key while the old one still
 * verifies. The front door picks the key by `kid` and PostgREST checks only the internal HS256
 * token, so a rotation must not slow requests down. Same user, same query: rounds with the old
 * key's token before the rotation, then rounds with the new key's token after it.
 */
/**
 * The front door right after `plinth keys rotate`, with a token of the new key, against a twin
 * stack (same data, same configuration) that was never rotated: rounds alternate between the
 * two, so the machine's noise falls on both instead of on whichever was measured later.
 */
export async function benchAfterRotation(stack: Stack, stackOptions: StackOptions, token: string, opts: FrontDoorOptions): Promise<Row[]> {
  const path = QUERIES['GET /todos?limit=10'];
  const twin = await startStack(stackOptions);
  try {
    const twinToken = await seedTodos(twin);
    await addSigningKey(stack.sql, 'ES256');
    // A token of the same user from the new key, once every part has seen the rotation.
    const ring = await KeyRing.load(stack.sql);
    const { sub, email, app_role } = jose.decodeJwt(token) as { sub: string; email: string; app_role: string };
    const rotated = await ring.mint({ sub, email, app_role, role: 'authenticated' }, 3600);
    for (let i = 0; i < 50 && (await fetch(stack.url + path, { headers: { authorization: `Bearer ${rotated}` } })).status !== 200; i++) await new Promise((r) => setTimeout(r, 100));
    const after = { url: stack.url + path, headers: { authorization: `Bearer ${rotated}` } };
    const before = { url: twin.url + path, headers: { authorization: `Bearer ${twinToken}` } };
    const [rotatedRuns, twinRuns] = await alternating(after, before, opts);
    const rotatedRps = median(rotatedRuns.map((r) => r.rps));
    const twinRps = median(twinRuns.map((r) => r.rps));
    process.stderr.write(`  after keys rotate: ${Math.round(rotatedRps)} vs ${Math.round(twinRps)} req/s on the stack never rotated\n`);
    return [
      ratioRow({ section: SECTION, metric: 'GET /todos?limit=10 req/s right after keys rotate', unit: 'req/s', plinth: rotatedRps, baseline: twinRps, target: '≥ 0.95×', minRatio: 0.95, note: `new key's token; baseline: a twin stack never rotated; c=${opts.connections}, ${opts.rounds}×${opts.seconds}s alternating` }),
    ];
  } finally {
    await twin.destroy();
  }
}
