// The two metrics every request adds to, kept as plain numbers per label value and turned into
// prom-client's shape only when /metrics is scraped. prom-client's own inc/observe hash their
// label object on every call (profiled: a few per cent of the front door's CPU); here a request
// costs two map lookups and a few additions, and the text rendered is the same.
import type { Registry } from 'prom-client';

interface Value {
  value: number;
  labels: Record<string, string | number>;
  metricName?: string;
  sharedLabels?: Record<string, string>;
}

/** What prom-client's Registry renders: a metric is anything with a name, help, type and get(). */
interface Rendered {
  name: string;
  help: string;
  type: 'counter' | 'histogram';
  aggregator: 'sum';
  get(): { name: string; help: string; type: string; values: Value[]; aggregator: 'sum' };
  reset(): void;
}

/** A counter whose values are kept here and handed to prom-client only when the registry is read. */
function registerCounter(registry: Registry, name: string, help: string, counts: { clear(): void }, values: () => Value[]): void {
  const metric: Rendered = {
    name,
    help,
    type: 'counter',
    aggregator: 'sum',
    get: () => ({ name, help, type: 'counter', values: values(), aggregator: 'sum' }),
    reset: () => counts.clear(),
  };
  registry.registerMetric(metric as never);
}

/** A counter labelled by route kind and status. */
export function kindStatusCounter(registry: Registry, name: string, help: string): (kind: string, status: number) => void {
  const counts = new Map<string, Map<number, number>>();
  registerCounter(registry, name, help, counts, () => {
    const values: Value[] = [];
    for (const [kind, byStatus] of counts) for (const [status, value] of byStatus) values.push({ value, labels: { kind, status: String(status) } });
    return values;
  });
  return (kind, status) => {
    let byStatus = counts.get(kind);
    if (byStatus === undefined) counts.set(kind, (byStatus = new Map()));
    byStatus.set(status, (byStatus.get(status) ?? 0) + 1);
  };
}

/** A counter with any labels; one map lookup by the label values joined, per call. */
export function labelledCounter(registry: Registry, name: string, help: string, labelNames: readonly string[]): (labels: Record<string, string>, n?: number) => void {
  const counts = new Map<string, { labels: Record<string, string>; value: number }>();
  registerCounter(registry, name, help, counts, () => [...counts.values()].map(({ labels, value }) => ({ value, labels })));
  return (labels, n = 1) => {
    let key = '';
    for (let i = 0; i < labelNames.length; i++) key += `${labels[labelNames[i]]}\u0001`;
    const entry = counts.get(key);
    if (entry !== undefined) entry.value += n;
    else counts.set(key, { labels: { ...labels }, value: n });
  };
}

interface Series {
  /** Observations per bucket (not cumulative); the last slot is +Inf. */
  buckets: Float64Array;
  sum: number;
  count: number;
}

/** A histogram with at most one label; `observe(value, labelValue)`. */
export function histogram(registry: Registry, name: string, help: string, bounds: readonly number[], labelName?: string): (value: number, labelValue?: string) => void {
  const series = new Map<string, Series>();
  const metric: Rendered = {
    name,
    help,
    type: 'histogram',
    aggregator: 'sum',
    get() {
      const values: Value[] = [];
      for (const [labelValue, s] of series) {
        const shared: Record<string, string> = labelName === undefined ? {} : { [labelName]: labelValue };
        let acc = 0;
        for (let i = 0; i < bounds.length; i++) {
          acc += s.buckets[i];
          values.push({ value: acc, labels: { le: bounds[i] }, metricName: `${name}_bucket`, sharedLabels: shared });
        }
        values.push({ value: s.count, labels: { le: '+Inf' }, metricName: `${name}_bucket`, sharedLabels: shared });
        values.push({ value: s.sum, labels: {}, metricName: `${name}_sum`, sharedLabels: shared });
        values.push({ value: s.count, labels: {}, metricName: `${name}_count`, sharedLabels: shared });
      }
      return { name, help, type: 'histogram', values, aggregator: 'sum' };
    },
    reset: () => series.clear(),
  };
  registry.registerMetric(metric as never);
  // Unlabelled, it reads zero before the first observation, as prom-client's does.
  if (labelName === undefined) series.set('', { buckets: new Float64Array(bounds.length + 1), sum: 0, count: 0 });
  return (value, labelValue = '') => {
    if (!Number.isFinite(value)) return;
    let s = series.get(labelValue);
    if (s === undefined) series.set(labelValue, (s = { buckets: new Float64Array(bounds.length + 1), sum: 0, count: 0 }));
    let i = 0;
    while (i < bounds.length && value > bounds[i]) i++;
    s.buckets[i]++;
    s.sum += value;
    s.count++;
  };
}
