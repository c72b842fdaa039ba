// The request metrics kept as plain numbers render exactly as prom-client's own counter and
// histogram would for the same observations.
import { Counter, Histogram, Registry } from 'prom-client';
import { expect, test } from 'vitest';
import { histogram, kindStatusCounter, labelledCounter } from '../sidecar/audit/request-metrics.ts';

const BOUNDS = [0.001, 0.01, 0.1, 1];
const SEEN: [string, number, number][] = [
  ['tables', 200, 0.0004],
  ['tables', 200, 0.001],
  ['tables', 404, 0.05],
  ['rpc', 200, 3],
  ['tables', 200, 0.2],
  ['accounts', 429, 0.01],
];

test('counter and labelled histogram render as prom-client renders them', async () => {
  const ours = new Registry();
  const count = kindStatusCounter(ours, 'req_total', 'requests');
  const observe = histogram(ours, 'req_seconds', 'durations', BOUNDS, 'kind');
  const theirs = new Registry();
  const counter = new Counter({ name: 'req_total', help: 'requests', labelNames: ['kind', 'status'], registers: [theirs] });
  const hist = new Histogram({ name: 'req_seconds', help: 'durations', labelNames: ['kind'], buckets: BOUNDS, registers: [theirs] });
  for (const [kind, status, seconds] of SEEN) {
    count(kind, status);
    observe(seconds, kind);
    counter.inc({ kind, status });
    hist.observe({ kind }, seconds);
  }
  const text = await ours.metrics();
  expect(text).toBe(await theirs.metrics());
  expect(text).toContain('req_total{kind="tables",status="200"} 3');
  expect(text).toContain('req_seconds_bucket{le="0.001",kind="tables"} 2');
});

test('an unlabelled histogram reads zero before its first observation, then counts', async () => {
  const ours = new Registry();
  const observe = histogram(ours, 'up_seconds', 'upstream', BOUNDS);
  const theirs = new Registry();
  const hist = new Histogram({ name: 'up_seconds', help: 'upstream', buckets: BOUNDS, registers: [theirs] });
  expect(await ours.metrics()).toBe(await theirs.metrics());
  for (const [, , seconds] of SEEN) {
    observe(seconds);
    hist.observe(seconds);
  }
  expect(await ours.metrics()).toBe(await theirs.metrics());
  expect(await ours.metrics()).toContain('up_seconds_count 6');
});

test('a counter with any labels renders as prom-client renders it', async () => {
  const ours = new Registry();
  const inc = labelledCounter(ours, 'calls_total', 'calls', ['function', 'trigger', 'status']);
  const theirs = new Registry();
  const counter = new Counter({ name: 'calls_total', help: 'calls', labelNames: ['function', 'trigger', 'status'], registers: [theirs] });
  const calls: [Record<string, string>, number][] = [
    [{ function: 'hello', trigger: 'http', status: '200' }, 1],
    [{ function: 'hello', trigger: 'http', status: '500' }, 1],
    [{ function: 'hello', trigger: 'http', status: '200' }, 2],
    [{ function: 'nightly', trigger: 'schedule', status: '200' }, 1],
  ];
  for (const [labels, n] of calls) {
    inc(labels, n);
    counter.inc(labels, n);
  }
  expect(await ours.metrics()).toBe(await theirs.metrics());
  expect(await ours.metrics()).toContain('calls_total{function="hello",trigger="http",status="200"} 3');
});
