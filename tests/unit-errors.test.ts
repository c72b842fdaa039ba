// The one map from a database error to HTTP, without a stack: a table of SQLSTATEs and roles →
// the PlinthError (status, code, hint, headers) a caller would receive.
import { describe, expect, it } from 'vitest';
import { fromDatabase, PlinthError, unauthorized } from '../sidecar/core/errors.js';

const anon = { role: 'anon' };
const user = { role: 'authenticated' };
const service = { role: 'service_role' };

/** An error shaped like the ones postgres.js throws for a failed statement. */
const dbError = (code: string, message = 'it failed', extra: { detail?: string; hint?: string } = {}) => Object.assign(new Error(message), { code, ...extra });

const SIGN_IN = 'Sign in and send the user token as Authorization: Bearer <token>';

describe('fromDatabase', () => {
  it.each<[string, { role: string }, ReturnType<typeof dbError>, { status: number; code: string; details: string | null; hint: string | null; headers: Record<string, string> }]>([
    ['42501 as anon', anon, dbError('42501', 'permission denied for table todos'), { status: 401, code: '42501', details: null, hint: SIGN_IN, headers: { 'www-authenticate': 'Bearer' } }],
    ['42501 as anon, its own hint kept', anon, dbError('42501', 'no', { hint: 'ask an admin' }), { status: 401, code: '42501', details: null, hint: 'ask an admin', headers: { 'www-authenticate': 'Bearer' } }],
    ['42501 as authenticated', user, dbError('42501', 'permission denied for table todos'), { status: 403, code: '42501', details: null, hint: null, headers: {} }],
    ['42501 as service_role', service, dbError('42501'), { status: 403, code: '42501', details: null, hint: null, headers: {} }],
    ['42501 drops the detail', user, dbError('42501', 'no', { detail: 'row 7', hint: 'h' }), { status: 403, code: '42501', details: null, hint: 'h', headers: {} }],
    ['PT403 (a function picks 403)', anon, dbError('PT403', 'only the owner may'), { status: 403, code: 'PT403', details: null, hint: null, headers: {} }],
    ['PT404', user, dbError('PT404'), { status: 404, code: 'PT404', details: null, hint: null, headers: {} }],
    ['PT599 (highest custom status)', user, dbError('PT599'), { status: 599, code: 'PT599', details: null, hint: null, headers: {} }],
    ['P0002 no_data_found', user, dbError('P0002', 'no such file', { detail: 'd', hint: 'h' }), { status: 404, code: 'P0002', details: 'd', hint: 'h', headers: {} }],
    ['22P02 not a uuid', anon, dbError('22P02'), { status: 400, code: '22P02', details: null, hint: null, headers: {} }],
    ['22003 out of range', user, dbError('22003'), { status: 400, code: '22003', details: null, hint: null, headers: {} }],
    ['22023 invalid parameter', user, dbError('22023'), { status: 400, code: '22023', details: null, hint: null, headers: {} }],
    ['23514 check_violation', user, dbError('23514'), { status: 400, code: '23514', details: null, hint: null, headers: {} }],
    ['23502 not_null_violation', user, dbError('23502'), { status: 400, code: '23502', details: null, hint: null, headers: {} }],
    ['23503 foreign_key_violation', user, dbError('23503', 'fk', { detail: 'Key (x)=(1) is not present' }), { status: 409, code: '23503', details: 'Key (x)=(1) is not present', hint: null, headers: {} }],
    ['23505 unique_violation', user, dbError('23505'), { status: 409, code: '23505', details: null, hint: null, headers: {} }],
    ['55000 prerequisite state', user, dbError('55000'), { status: 409, code: '55000', details: null, hint: null, headers: {} }],
  ])('%s', (_name, claims, err, expected) => {
    const mapped = fromDatabase(err, claims);
    expect(mapped).toBeInstanceOf(PlinthError);
    const e = mapped as PlinthError;
    expect({ status: e.status, code: e.code, details: e.details, hint: e.hint, headers: e.headers }).toEqual(expected);
    expect(e.message).toBe(err.message);
  });

  it.each<[string, unknown]>([
    ['an unknown SQLSTATE', dbError('XX000', 'internal error')],
    ['a SQLSTATE-like code outside PT100..PT599', dbError('PT600')],
    ['PT with letters', dbError('PTABC')],
    ['a code that is not a string', Object.assign(new Error('x'), { code: 42501 })],
    ['no code (a bug in the sidecar)', new TypeError('cannot read properties of undefined')],
    ['a code without a message', { code: '42501' }],
    ['null', null],
    ['a string', 'boom'],
  ])('passes %s through unchanged', (_name, err) => {
    expect(fromDatabase(err, user)).toBe(err);
  });

  it.each([
    ['a lost connection', Object.assign(new Error('write CONNECTION_CLOSED'), { code: 'CONNECTION_CLOSED' }), 'The database is unavailable; try again shortly'],
    ['an administrator shutdown', { code: '57P01', message: 'terminating connection due to administrator command' }, 'The database is unavailable; try again shortly'],
    ['a connection failure', { code: '08006', message: 'connection failure' }, 'The database is unavailable; try again shortly'],
    ['a refused socket', Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }), 'The database or the file store did not answer; try again shortly'],
    ['a reset socket', Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }), 'The database or the file store did not answer; try again shortly'],
  ])('%s → 503 with Retry-After, whatever the role', (_name, err, message) => {
    for (const who of [anon, user]) {
      const mapped = fromDatabase(err, who) as PlinthError;
      expect(mapped).toBeInstanceOf(PlinthError);
      expect(mapped.status).toBe(503);
      expect(mapped.message).toBe(message);
      expect(mapped.headers).toEqual({ 'retry-after': '1' });
    }
  });

  it('passes a PlinthError through unchanged, whatever the role', () => {
    const err = new PlinthError(413, 'too large');
    expect(fromDatabase(err, anon)).toBe(err);
    const challenge = unauthorized('JWT expired');
    expect(fromDatabase(challenge, user)).toBe(challenge);
  });
});

describe('PlinthError and unauthorized', () => {
  it('render in PostgREST\'s error shape', () => {
    expect(new PlinthError(404, 'No route GET /x').body()).toEqual({ code: 'PLINTH404', details: null, hint: null, message: 'No route GET /x' });
    const e = unauthorized('JWT expired', 'sign in again');
    expect({ status: e.status, headers: e.headers, body: e.body() }).toEqual({
      status: 401,
      headers: { 'www-authenticate': 'Bearer' },
      body: { code: 'PGRST301', details: null, hint: 'sign in again', message: 'JWT expired' },
    });
  });
});
