// Five-field cron expressions (minute hour day-of-month month day-of-week), evaluated in UTC:
// numbers, `*`, ranges `a-b`, steps `*/n` and `a-b/n`, lists `a,b`, and @hourly/@daily/@weekly/
// @monthly. As in cron, when both day fields are restricted a day matching either one runs.
// An optional sixth, leading field gives seconds (`*/10 * * * * *`), as several cron libraries allow.
export class CronError extends Error {}

interface Field {
  values: Set<number>;
  any: boolean;
}

const BOUNDS: [number, number][] = [
  [0, 59],
  [0, 59],
  [0, 23],
  [1, 31],
  [1, 12],
  [0, 7],
];
const NAMES = ['second', 'minute', 'hour', 'day of month', 'month', 'day of week'];
const ALIASES: Record<string, string> = { '@hourly': '0 * * * *', '@daily': '0 0 * * *', '@midnight': '0 0 * * *', '@weekly': '0 0 * * 0', '@monthly': '0 0 1 * *' };

function parseField(text: string, index: number): Field {
  const [min, max] = BOUNDS[index];
  const values = new Set<number>();
  for (const part of text.split(',')) {
    const m = /^(\*|(\d+)(?:-(\d+))?)(?:\/(\d+))?$/.exec(part);
    if (!m) throw new CronError(`cron ${NAMES[index]} field ${JSON.stringify(text)} is not understood`);
    const from = m[1] === '*' ? min : Number(m[2]);
    const to = m[1] === '*' ? max : m[3] !== undefined ? Number(m[3]) : m[4] !== undefined ? max : from;
    const step = m[4] !== undefined ? Number(m[4]) : 1;
    if (from < min || to > max || from > to || step < 1) throw new CronError(`cron ${NAMES[index]} field ${JSON.stringify(text)} is out of range ${min}-${max}`);
    for (let v = from; v <= to; v += step) values.add(index === 5 && v === 7 ? 0 : v);
  }
  return { values, any: text === '*' };
}

export interface Cron {
  /** The first matching minute strictly after `after`. */
  next(after: Date): Date;
}

export function parseCron(expression: string): Cron {
  const text = ALIASES[expression.trim()] ?? expression.trim();
  const parts = text.split(/\s+/);
  if (parts.length === 5) parts.unshift('0');
  if (parts.length !== 6) throw new CronError(`a cron expression has five fields (minute hour day-of-month month day-of-week), got ${JSON.stringify(expression)}`);
  const [second, minute, hour, dom, month, dow] = parts.map(parseField);
  const dayMatches = (d: Date) => {
    const byDom = dom.values.has(d.getUTCDate());
    const byDow = dow.values.has(d.getUTCDay());
    if (dom.any && dow.any) return true;
    if (dom.any) return byDow;
    if (dow.any) return byDom;
    return byDom || byDow;
  };
  return {
    next(after) {
      const t = new Date(after.getTime());
      t.setUTCMilliseconds(0);
      t.setUTCSeconds(t.getUTCSeconds() + 1);
      // Skip whole months, days and hours that cannot match; five years covers every valid expression.
      const limit = after.getTime() + 5 * 366 * 86400_000;
      while (t.getTime() <= limit) {
        if (!month.values.has(t.getUTCMonth() + 1)) {
          t.setUTCMonth(t.getUTCMonth() + 1, 1);
          t.setUTCHours(0, 0, 0);
          continue;
        }
        if (!dayMatches(t)) {
          t.setUTCDate(t.getUTCDate() + 1);
          t.setUTCHours(0, 0, 0);
          continue;
        }
        if (!hour.values.has(t.getUTCHours())) {
          t.setUTCHours(t.getUTCHours() + 1, 0, 0);
          continue;
        }
        if (!minute.values.has(t.getUTCMinutes())) {
          t.setUTCMinutes(t.getUTCMinutes() + 1, 0);
          continue;
        }
        if (!second.values.has(t.getUTCSeconds())) {
          t.setUTCSeconds(t.getUTCSeconds() + 1);
          continue;
        }
        return t;
      }
      throw new CronError(`cron expression ${JSON.stringify(expression)} never matches`);
    },
  };
}
