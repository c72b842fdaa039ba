// Peak resident memory of a process, sampled from /proc/<pid>/status while a benchmark runs.
import fs from 'node:fs';

export function rssBytes(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = /VmRSS:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) * 1024 : 0;
}

/** Samples every `everyMs` until stopped; `stop()` returns the baseline and the peak seen. */
export function sampleRss(pid: number, everyMs = 20): { stop(): { start: number; peak: number } } {
  const start = rssBytes(pid);
  let peak = start;
  const timer = setInterval(() => {
    try {
      peak = Math.max(peak, rssBytes(pid));
    } catch {
      /* the process exited */
    }
  }, everyMs);
  return {
    stop() {
      clearInterval(timer);
      try {
        peak = Math.max(peak, rssBytes(pid));
      } catch {
        /* exited */
      }
      return { start, peak };
    },
  };
}
