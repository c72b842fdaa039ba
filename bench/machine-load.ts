// How busy the machine was while a figure was measured, so a reader can trust or discard it:
// the load average, the share of all CPUs in use, and how much of that was not this benchmark
// (its own process and every process it started: the stack, PostgREST, PostgreSQL, s3rver).
import fs from 'node:fs';
import os from 'node:os';

export interface MachineLoad {
  /** os.loadavg() at the end of the interval: 1, 5 and 15 minutes. */
  loadavg: [number, number, number];
  /** Share of all CPUs busy over the interval, in percent (100 = every core busy). */
  cpuBusyPct: number;
  /** Of that, the part spent by processes outside this benchmark's process tree, in percent. */
  othersPct: number;
  seconds: number;
}


function machineTicks(): { busy: number; total: number } {
  const line = fs.readFileSync('/proc/stat', 'utf8').split('\n', 1)[0];
  const v = line.trim().split(/\s+/).slice(1, 9).map(Number);
  const total = v.reduce((a, b) => a + b, 0);
  return { busy: total - v[3] - v[4], total };
}

/** utime + stime of this process and each of its descendants now alive, in ticks, by pid. */
function treeTicks(): Map<number, number> {
  const parent = new Map<number, number>();
  const ticks = new Map<number, number>();
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      parent.set(Number(name), Number(f[1]));
      ticks.set(Number(name), Number(f[11]) + Number(f[12]));
    } catch {
      /* exited while listed */
    }
  }
  const mine = (pid: number): boolean => {
    for (let p = pid, hops = 0; p > 1 && hops < 64; p = parent.get(p) ?? 0, hops++) if (p === process.pid) return true;
    return false;
  };
  const tree = new Map<number, number>();
  for (const [pid, t] of ticks) if (mine(pid)) tree.set(pid, t);
  return tree;
}

/** CPU ticks the tree spent between two snapshots (processes started meanwhile count whole). */
function treeDelta(before: Map<number, number>, after: Map<number, number>): number {
  let sum = 0;
  for (const [pid, t] of after) sum += t - (before.get(pid) ?? 0);
  return sum;
}

/** Starts measuring; stop() gives the machine's load over the interval. */
export function loadMeter(): { stop(): MachineLoad } {
  const m0 = machineTicks();
  const t0 = treeTicks();
  const started = performance.now();
  return {
    stop() {
      const m1 = machineTicks();
      const t1 = treeTicks();
      const seconds = (performance.now() - started) / 1000;
      const total = Math.max(1, m1.total - m0.total);
      const busy = m1.busy - m0.busy;
      // Descendants that exited during the interval are missed: "others" errs on the high side.
      const others = Math.min(busy, Math.max(0, busy - treeDelta(t0, t1)));
      const [a, b, c] = os.loadavg();
      return { loadavg: [round(a), round(b), round(c)], cpuBusyPct: round((100 * busy) / total), othersPct: round((100 * others) / total), seconds: round(seconds) };
    },
  };
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}

/** Every timed round of the run, in order, with the load seen during it (written to the JSON). */
export const rounds: Array<{ label: string } & MachineLoad> = [];

/** Times nothing itself: records the machine's load while `fn` runs, under `label`. */
export async function withLoad<T>(label: string, fn: () => Promise<T>): Promise<T> {
  const meter = loadMeter();
  try {
    return await fn();
  } finally {
    rounds.push({ label, ...meter.stop() });
  }
}

/** "1.9 · 62% (31% others)": load average, CPU busy, and the part not ours. */
export function describeLoad(l: MachineLoad): string {
  return `${l.loadavg[0].toFixed(1)} · ${Math.round(l.cpuBusyPct)}% (${Math.round(l.othersPct)}% others)`;
}
