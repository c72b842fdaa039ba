// Pure parts of the Supabase faces: where /rest/v1 targets go, and how a refusal of the account
// rules reads in GoTrue's terms.
import { describe, expect, test } from 'vitest';
import { restPath } from '../sidecar/app/request-target.js';
import { PlinthError } from '../sidecar/core/errors.js';
import { asGoTrueError, gotrueUser } from '../sidecar/auth/gotrue-shapes.js';
import { AccountRefusal } from '../sidecar/auth/refusals.js';

describe('restPath', () => {
  test.each([
    ['/rest/v1/todos?select=id', '/todos?select=id'],
    ['/rest/v1/', '/'],
    ['/rest/v1', '/'],
    ['/rest/v1?a=1', '/?a=1'],
    ['/rest/v1/rpc/whoami', '/rpc/whoami'],
    ['/rest/v12/todos', null],
    ['/rest/v1x', null],
    ['/rest/todos', null],
    ['/todos', null],
  ])('%s → %s', (target, expected) => {
    expect(restPath(target)).toBe(expected);
  });
});

describe('asGoTrueError', () => {
  test.each([
    [new AccountRefusal('invalid_credentials', 400, 'Invalid email or password'), 400, 'invalid_credentials'],
    [new AccountRefusal('weak_password', 400, 'short'), 422, 'weak_password'],
    [new AccountRefusal('signup_closed', 403, 'closed'), 422, 'signup_disabled'],
    [new AccountRefusal('account_disabled', 403, 'disabled'), 400, 'user_banned'],
    [new AccountRefusal('email_not_confirmed', 403, 'confirm'), 400, 'email_not_confirmed'],
    [new PlinthError(429, 'Too many attempts', 'PLINTH429', null, null, { 'retry-after': '30' }), 429, 'over_request_rate_limit'],
    [new PlinthError(409, 'taken', '23505'), 422, 'email_exists'],
    [new PlinthError(404, 'No user with id x', 'P0002'), 404, 'user_not_found'],
    [new PlinthError(403, 'Listing users needs the service key', 'PT403'), 403, 'not_admin'],
    [new PlinthError(401, 'No API key found in request', 'PGRST301'), 401, 'no_authorization'],
    [new PlinthError(401, 'JWT expired', 'PGRST301'), 403, 'bad_jwt'],
    [new PlinthError(400, 'bad', 'PLINTH400'), 400, 'validation_failed'],
    [new PlinthError(503, 'down', 'PLINTH503'), 503, 'unexpected_failure'],
  ])('%s', (err, status, code) => {
    expect(asGoTrueError(err)).toMatchObject({ status, errorCode: code });
  });

  test('a rate limit keeps its Retry-After; a weak password names its reason; anything else is not known', () => {
    expect(asGoTrueError(new PlinthError(429, 'x', 'PLINTH429', null, null, { 'retry-after': '30' }))!.headers).toEqual({ 'retry-after': '30' });
    expect(asGoTrueError(new AccountRefusal('weak_password', 400, 'x'))!.extra).toEqual({ weak_password: { reasons: ['length'] } });
    expect(asGoTrueError(new Error('boom'))).toBeNull();
  });
});

test('gotrueUser: GoTrue\'s fields, confirmation and ban derived from Plinth\'s', () => {
  const at = new Date('2026-01-02T03:04:05Z');
  const base = { id: 'u1', email: 'a@b.c', app_role: 'admin' as const, email_confirmed_at: null, last_sign_in_at: null, created_at: at, updated_at: at };
  const user = gotrueUser(base, { name: 'A' });
  expect(user).toMatchObject({ id: 'u1', aud: 'authenticated', role: 'authenticated', email: 'a@b.c', phone: '', is_anonymous: false });
  expect(user.app_metadata).toEqual({ provider: 'email', providers: ['email'], app_role: 'admin' });
  expect(user.user_metadata).toEqual({ name: 'A' });
  expect(JSON.parse(JSON.stringify(user))).not.toHaveProperty('email_confirmed_at');
  expect(user.banned_until).toBeUndefined();
  const confirmedAndDisabled = gotrueUser({ ...base, email_confirmed_at: at, disabled_at: at });
  expect(confirmedAndDisabled).toMatchObject({ email_confirmed_at: at.toISOString(), confirmed_at: at.toISOString(), banned_until: expect.any(String) });
});
