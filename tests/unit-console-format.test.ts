// The console's formatting helpers (console/src/format.ts), pure functions.
import { describe, expect, it } from 'vitest';
import { microsOf } from '../console/src/format.ts';

describe('microsOf', () => {
  it('orders PostgreSQL timestamps as instants, to the microsecond', () => {
    // As PostgREST sends timestamptz: a whole second has no fraction, others up to 6 digits.
    const times = [
      '2026-11-28T12:49:29.236+00:00',
      '2026-11-28T12:49:29+00:00',
      '2026-11-28T12:49:29.236123+00:00',
      '2026-11-28T12:49:28.999999+00:00',
      '2026-11-28T13:49:29.1+01:00',
      '2026-11-28T12:49:29.000001+00:00',
    ];
    const newestFirst = [...times].sort((a, b) => microsOf(b) - microsOf(a));
    expect(newestFirst).toEqual([
      '2026-11-28T12:49:29.236123+00:00',
      '2026-11-28T12:49:29.236+00:00',
      '2026-11-28T13:49:29.1+01:00',
      '2026-11-28T12:49:29.000001+00:00',
      '2026-11-28T12:49:29+00:00',
      '2026-11-28T12:49:28.999999+00:00',
    ]);
    expect(microsOf('2026-11-28T12:49:29.236123+00:00') - microsOf('2026-11-28T12:49:29+00:00')).toBe(236_123);
  });
});
