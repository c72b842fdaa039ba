// One row per figure: Plinth's number, the baseline's number measured in the same run, their
// ratio, and the target. The table and the JSON are both built from these rows.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describeLoad, rounds, type MachineLoad } from './machine-load.ts';

export interface Row {
  section: string;
  metric: string;
  unit: string;
  plinth: number | null;
  /** The baseline measured in the same run; null when the row has none. */
  baseline: number | null;
  /** plinth / baseline (or baseline / plinth for "lower is better" units), when both exist. */
  ratio: number | null;
  /** Human-readable target, e.g. "≥ 0.9×" or "≤ 64 MiB"; empty when informational. */
  target: string;
  met: boolean | null;
  note?: string;
  /** The machine's load over the section that measured this row (bench/machine-load.ts). */
  load?: MachineLoad;
}

export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/**
 * Runs `round` up to `max` times (at least once), stopping early once `budgetSeconds` are spent:
 * on a busy machine the run still ends in time, with fewer rounds (the JSON records how many).
 */
export async function repeat(max: number, budgetSeconds: number, round: (i: number) => Promise<void>): Promise<number> {
  const deadline = Date.now() + budgetSeconds * 1000;
  let i = 0;
  do await round(i++);
  while (i < max && Date.now() < deadline);
  return i;
}

export function ratioRow(r: Omit<Row, 'ratio' | 'met'> & { minRatio?: number; lowerIsBetter?: boolean }): Row {
  const { minRatio, lowerIsBetter, ...rest } = r;
  let ratio: number | null = null;
  if (r.plinth !== null && r.baseline !== null && r.plinth > 0 && r.baseline > 0) {
    ratio = lowerIsBetter ? r.baseline / r.plinth : r.plinth / r.baseline;
  }
  const met = minRatio === undefined || ratio === null ? null : ratio >= minRatio;
  return { ...rest, ratio, met };
}

export function skippedRow(section: string, metric: string, reason: string): Row {
  return { section, metric, unit: '', plinth: null, baseline: null, ratio: null, target: '', met: null, note: `skipped: ${reason}` };
}

function num(n: number | null): string {
  if (n === null) return '—';
  if (n >= 100) return Math.round(n).toLocaleString('en-US');
  if (n >= 10) return n.toFixed(1);
  return n.toFixed(2);
}

export function renderTable(rows: Row[]): string {
  const head = ['section', 'metric', 'Plinth', 'baseline', 'unit', 'ratio', 'target', 'met', 'load (1-min avg · CPU busy)', 'note'];
  const body = rows.map((r) => [
    r.section,
    r.metric,
    num(r.plinth),
    num(r.baseline),
    r.unit,
    r.ratio === null ? '—' : `${r.ratio.toFixed(2)}×`,
    r.target || '—',
    r.met === null ? '' : r.met ? 'met' : 'MISSED',
    r.load ? describeLoad(r.load) : '',
    r.note ?? '',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  return [line(head), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...body.map(line)].join('\n');
}

export function writeResults(dir: string, rows: Row[], extra: Record<string, unknown>): string {
  fs.mkdirSync(dir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const doc = {
    date: new Date().toISOString(),
    machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, memoryGiB: Math.round(os.totalmem() / 1024 ** 3), node: process.version },
    ...extra,
    rows,
    // Every timed round (autocannon runs, timed transfers) with the machine's load during it.
    rounds,
  };
  const file = path.join(dir, `${stamp}.json`);
  fs.writeFileSync(file, JSON.stringify(doc, null, 2) + '\n');
  fs.writeFileSync(path.join(dir, 'latest.json'), JSON.stringify(doc, null, 2) + '\n');
  return file;
}
