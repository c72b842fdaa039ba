// GET /metrics: Prometheus text for the operator only, parsed here by a small text-format parser,
// counting what the test did.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { eventually, startStack, type Stack } from './harness.ts';

const METRICS_TOKEN = 'metrics-token-for-tests-0123456789';
let stack: Stack;

beforeAll(async () => {
  stack = await startStack({ env: { PLINTH_METRICS_TOKEN: METRICS_TOKEN } });
}, 120_000);
afterAll(async () => {
  await stack?.destroy();
});

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The Prometheus text exposition format (0.0.4): HELP/TYPE comments and `name{labels} value` lines; throws on anything else. */
function parsePrometheus(text: string): { types: Map<string, string>; samples: Sample[] } {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
      if (!m) throw new Error(`bad comment line: ${line}`);
      if (m[1] === 'TYPE') {
        if (!['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(m[3])) throw new Error(`bad type: ${line}`);
        types.set(m[2], m[3]);
      }
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`bad sample line: ${line}`);
    const labels: Record<string, string> = {};
    if (m[2]) {
      const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/y;
      let pos = 0;
      while (pos < m[2].length) {
        re.lastIndex = pos;
        const l = re.exec(m[2]);
        if (!l) throw new Error(`bad labels: ${line}`);
        labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
        pos = re.lastIndex;
      }
    }
    const value = m[3] === '+Inf' ? Infinity : m[3] === '-Inf' ? -Infinity : Number(m[3]);
    if (Number.isNaN(value) && m[3] !== 'NaN') throw new Error(`bad value: ${line}`);
    samples.push({ name: m[1], labels, value });
  }
  return { types, samples };
}

const value = (samples: Sample[], name: string, labels: Record<string, string> = {}) =>
  samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((sum, s) => sum + s.value, 0);

async function scrape(token = stack.serviceKey) {
  const r = await stack.fetch('/metrics', { token });
  expect(r.status).toBe(200);
  expect(r.headers.get('content-type')).toMatch(/^text\/plain/);
  return parsePrometheus(await r.text());
}

describe('/metrics', () => {
  test('only the service key or PLINTH_METRICS_TOKEN may read it', async () => {
    expect((await stack.fetch('/metrics')).status).toBe(401);
    expect((await stack.fetch('/metrics', { apikey: stack.anonKey })).status).toBe(403);
    const user = await stack.createUser({ app_role: 'admin' });
    expect((await stack.fetch('/metrics', { token: user.token })).status).toBe(403);
    expect((await stack.fetch('/metrics', { token: 'not-the-metrics-token' })).status).toBe(401);
    await scrape(METRICS_TOKEN);
  });

  test('counts requests by kind and status, with latency histograms', async () => {
    const user = await stack.createUser();
    const before = (await scrape()).samples;
    for (let i = 0; i < 3; i++) expect((await stack.fetch('/todos?select=id', { token: user.token })).status).toBe(200);
    for (let i = 0; i < 2; i++) expect((await stack.fetch('/todos')).status).toBe(401);
    const { types, samples } = await scrape();
    expect(types.get('plinth_http_requests_total')).toBe('counter');
    expect(types.get('plinth_http_request_duration_seconds')).toBe('histogram');
    const delta = (labels: Record<string, string>) => value(samples, 'plinth_http_requests_total', labels) - value(before, 'plinth_http_requests_total', labels);
    expect(delta({ kind: 'tables', status: '200' })).toBe(3);
    expect(delta({ kind: 'tables', status: '401' })).toBe(2);
    // Every observed request falls in the +Inf bucket; PostgREST answered the three 200s.
    const count = value(samples, 'plinth_http_request_duration_seconds_count', { kind: 'tables' }) - value(before, 'plinth_http_request_duration_seconds_count', { kind: 'tables' });
    expect(count).toBe(5);
    expect(value(samples, 'plinth_http_request_duration_seconds_bucket', { kind: 'tables', le: '+Inf' })).toBe(value(samples, 'plinth_http_request_duration_seconds_count', { kind: 'tables' }));
    expect(value(samples, 'plinth_postgrest_upstream_seconds_count') - value(before, 'plinth_postgrest_upstream_seconds_count')).toBe(3);
  });

  test('database pools, storage, realtime and the audit writer are reported', async () => {
    // The writer flushes in batches, off the request path (its connection opens with the first
    // batch): the earlier requests' rows arrive soon.
    await eventually('the audit writer to report written rows', async () => (value((await scrape()).samples, 'plinth_audit_rows_written_total') > 0 ? true : undefined));
    const { samples, types } = await scrape();
    expect(value(samples, 'plinth_db_connections', { application: 'plinth audit' })).toBeGreaterThanOrEqual(1);
    expect(types.get('plinth_storage_bytes')).toBe('gauge');
    expect(types.get('plinth_storage_uploads_in_flight')).toBe('gauge');
    expect(types.get('plinth_realtime_connections')).toBe('gauge');
    expect(value(samples, 'plinth_audit_rows_dropped_total')).toBe(0);
  });
});
