// The console reads a session only from the exact shapes Plinth's accounts routes send in cookie
// mode: `{token, expires_in, user}` (signup, verify, refresh) and that object alone in an array
// (login). Other shapes (other products' field names, envelopes, a refresh token in the body)
// sign nobody in.
import { describe, expect, test } from 'vitest';
import { sessionFrom, sessionFromLogin } from '../console/src/session-body.ts';

const b64url = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
const jwt = (claims: Record<string, unknown>) => `${b64url({ alg: 'ES256', typ: 'JWT' })}.${b64url(claims)}.sig`;
const token = jwt({ sub: 'u1', iat: 1_800_000_000, exp: 1_800_003_600 });
const user = { id: 'u1', email: 'ada@example.com', app_role: 'editor', email_confirmed_at: null, last_sign_in_at: null, created_at: 'x', updated_at: 'x' };
const body = { token, expires_in: 3600, user };

describe('sessionFrom: the answer of /rpc/signup, /auth/verify and /auth/refresh', () => {
  test('reads the token, its lifetime from iat/exp, and the user', () => {
    expect(sessionFrom(body)).toEqual({
      token,
      issuedAt: 1_800_000_000_000,
      expiresAt: 1_800_003_600_000,
      user: { id: 'u1', email: 'ada@example.com', app_role: 'editor' },
    });
  });

  test.each([
    ['an array (the login shape)', [body]],
    ['access_token instead of token', { access_token: token, expires_in: 3600, user }],
    ['a session envelope', { session: body, user }],
    ['a refresh token in the body', { ...body, refresh_token: 'r' }],
    ['no user', { token, expires_in: 3600 }],
    ['a user without app_role', { token, expires_in: 3600, user: { id: 'u1', email: 'ada@example.com' } }],
    ['expires_in as text', { token, expires_in: '3600', user }],
    ['a token that is not text', { token: 42, expires_in: 3600, user }],
    ['null', null],
    ['text', 'eyJ…'],
  ])('refuses %s', (_what, answer) => {
    expect(sessionFrom(answer)).toBeNull();
  });
});

describe('sessionFromLogin: the answer of /rpc/login', () => {
  test('reads the one session in the array', () => {
    expect(sessionFromLogin([body])?.user.email).toBe('ada@example.com');
  });

  test.each([
    ['the bare object', body],
    ['an empty array', []],
    ['two sessions', [body, body]],
    ['an array of something else', [{ access_token: token, user }]],
  ])('refuses %s', (_what, answer) => {
    expect(sessionFromLogin(answer)).toBeNull();
  });
});
