// The backup schedule's cron expressions, as a table: expression, after, the next run (UTC).
import { describe, expect, test } from 'vitest';
import { CronError, parseCron } from '../sidecar/core/cron.ts';

describe('parseCron(...).next', () => {
  test.each([
    ['* * * * *', '2026-01-01T10:00:30Z', '2026-01-01T10:01:00Z'],
    ['0 3 * * *', '2026-01-01T03:00:00Z', '2026-01-02T03:00:00Z'],
    ['0 3 * * *', '2026-01-01T02:59:59Z', '2026-01-01T03:00:00Z'],
    ['*/15 * * * *', '2026-01-01T10:16:00Z', '2026-01-01T10:30:00Z'],
    ['30 1-5/2 * * *', '2026-01-01T02:00:00Z', '2026-01-01T03:30:00Z'],
    ['0 0 1 * *', '2026-01-15T00:00:00Z', '2026-02-01T00:00:00Z'],
    ['0 0 * * 0', '2026-01-01T00:00:00Z', '2026-01-04T00:00:00Z'], // 2026-01-01 is a Thursday
    ['0 0 * * 7', '2026-01-01T00:00:00Z', '2026-01-04T00:00:00Z'],
    ['0 0 13 * 5', '2026-01-01T00:00:00Z', '2026-01-02T00:00:00Z'], // either day field: Friday the 2nd
    ['0 0 29 2 *', '2026-03-01T00:00:00Z', '2028-02-29T00:00:00Z'],
    ['5,10 12 * * 1-5', '2026-01-03T00:00:00Z', '2026-01-05T12:05:00Z'],
    ['@daily', '2026-12-31T23:59:00Z', '2027-01-01T00:00:00Z'],
    ['@hourly', '2026-01-01T10:00:00Z', '2026-01-01T11:00:00Z'],
    ['*/10 * * * * *', '2026-01-01T10:00:00.500Z', '2026-01-01T10:00:10Z'],
    ['30 0 3 * * *', '2026-01-01T03:00:30Z', '2026-01-02T03:00:30Z'],
  ])('%s after %s → %s', (expr, after, next) => {
    expect(parseCron(expr).next(new Date(after)).toISOString()).toBe(new Date(next).toISOString());
  });

  test.each(['', '* * * *', '60 * * * *', '* 24 * * *', '* * 0 * *', '* * * 13 *', '* * * * 8', 'a * * * *', '*/0 * * * *', '5-1 * * * *', '60 * * * * *', '* * * * * * *'])(
    'refuses %j',
    (expr) => {
      expect(() => parseCron(expr)).toThrow(CronError);
    },
  );

  test('refuses a date that never comes', () => {
    expect(() => parseCron('0 0 31 2 *').next(new Date('2026-01-01T00:00:00Z'))).toThrow(/never matches/);
  });
});
