// The load generator for request-rate figures: autocannon, run in this process for both sides
// of every comparison (same connections, same duration), rounds alternating between the sides.
import { createRequire } from 'node:module';
import { withLoad } from './machine-load.ts';

const require = createRequire(import.meta.url);
// autocannon ships no types; only the fields used here are described.
const autocannon = require('autocannon') as (opts: Record<string, unknown>) => Promise<AutocannonResult>;

interface AutocannonResult {
  requests: { average: number; total: number };
  latency: { p50: number; p99: number; average: number };
  errors: number;
  timeouts: number;
  non2xx: number;
  '2xx': number;
  duration: number;
}

export interface LoadTarget {
  url: string;
  method?: string;
  headers?: Record<string, string>;
  body?: Buffer | string;
  /** Per-request factory (unique paths for uploads); overrides method/body/path when given. */
  requests?: Array<Record<string, unknown>>;
}

export interface LoadResult {
  completed: number;
  rps: number;
  p50: number;
  p99: number;
  errors: number;
}

export async function load(target: LoadTarget, connections: number, seconds: number): Promise<LoadResult> {
  const label = `${target.requests?.[0]?.method ?? target.method ?? 'GET'} ${new URL(target.url).host}${new URL(target.url).pathname} c=${connections}`;
  const r = await withLoad(label, () => autocannon({
    url: target.url,
    method: target.method ?? 'GET',
    headers: target.headers,
    body: target.body,
    requests: target.requests,
    connections,
    duration: seconds,
    pipelining: 1,
  }));
  const completed = r['2xx'];
  return { completed, rps: completed / r.duration, p50: r.latency.p50, p99: r.latency.p99, errors: r.errors + r.timeouts + r.non2xx };
}

/**
 * Both targets warmed for a second, then `rounds` rounds of `seconds` each, alternating, so the
 * machine's noise falls on both sides alike.
 */
export async function alternating(a: LoadTarget, b: LoadTarget, opts: { connections: number; seconds: number; rounds: number }): Promise<[LoadResult[], LoadResult[]]> {
  await load(a, opts.connections, 1);
  await load(b, opts.connections, 1);
  const runsA: LoadResult[] = [];
  const runsB: LoadResult[] = [];
  for (let i = 0; i < opts.rounds; i++) {
    runsA.push(await load(a, opts.connections, opts.seconds));
    runsB.push(await load(b, opts.connections, opts.seconds));
  }
  return [runsA, runsB];
}
