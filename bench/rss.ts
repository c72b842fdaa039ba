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

/** CPU seconds (user + system) a process has used so far, from /proc/<pid>/stat. */
export function cpuSeconds(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the parenthesised command name; utime and stime are the 14th and 15th overall.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** The pid of a direct child with the given command name (the stack's own PostgREST). */
export function childPid(parent: number, comm: string): number | undefined {
  for (const task of fs.readdirSync(`/proc/${parent}/task`)) {
    let children = '';
    try {
      children = fs.readFileSync(`/proc/${parent}/task/${task}/children`, 'utf8');
    } catch {
      continue;
    }
    for (const pid of children.trim().split(/\s+/).filter(Boolean).map(Number)) {
      if (fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === comm) return pid;
    }
  }
  return undefined;
}
