// How a request's token is read, without a stack: fake requests (headers and a URL) → the token
// found, where it came from, or the 401 a malformed header gets.
import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import { identify, presentedToken, readToken, type CallerRule } from '../sidecar/core/caller.js';
import { PlinthError, unauthorized } from '../sidecar/core/errors.js';
import type { KeyRing } from '../sidecar/core/keys.js';

const request = (headers: Record<string, string | string[]>, url = '/x') => ({ headers, url }) as unknown as IncomingMessage;

describe('readToken', () => {
  it.each<[string, Record<string, string | string[]>, string, readonly string[], { token: string; fromQuery: boolean } | null]>([
    ['Authorization: Bearer', { authorization: 'Bearer abc.def.ghi' }, '/x', [], { token: 'abc.def.ghi', fromQuery: false }],
    ['the scheme in any case', { authorization: 'bearer abc' }, '/x', [], { token: 'abc', fromQuery: false }],
    ['several spaces after Bearer, trailing space', { authorization: 'Bearer   abc  ' }, '/x', [], { token: 'abc', fromQuery: false }],
    ['Authorization wins over apikey', { authorization: 'Bearer user', apikey: 'anon' }, '/x', [], { token: 'user', fromQuery: false }],
    ['Authorization wins over the query', { authorization: 'Bearer user' }, '/x?apikey=anon', ['apikey'], { token: 'user', fromQuery: false }],
    ['apikey header alone', { apikey: 'anon' }, '/x', [], { token: 'anon', fromQuery: false }],
    ['apikey header wins over the query', { apikey: 'anon' }, '/x?apikey=other', ['apikey'], { token: 'anon', fromQuery: false }],
    ['an empty apikey header is no key', { apikey: '' }, '/x?apikey=q', ['apikey'], { token: 'q', fromQuery: true }],
    ['a repeated apikey header is no key', { apikey: ['a', 'b'] }, '/x', [], null],
    ['a query name the route allows', {}, '/x?apikey=anon', ['apikey'], { token: 'anon', fromQuery: true }],
    ['query names in the route\'s order', {}, '/x?apikey=anon&access_token=user', ['access_token', 'apikey'], { token: 'user', fromQuery: true }],
    ['the next name when the first is absent', {}, '/x?apikey=anon', ['access_token', 'apikey'], { token: 'anon', fromQuery: true }],
    ['the next name when the first is empty', {}, '/x?access_token=&apikey=anon', ['access_token', 'apikey'], { token: 'anon', fromQuery: true }],
    ['a percent-encoded query value', {}, '/x?apikey=a%2Bb', ['apikey'], { token: 'a+b', fromQuery: true }],
    ['the first of a repeated query name', {}, '/x?apikey=one&apikey=two', ['apikey'], { token: 'one', fromQuery: true }],
    ['a query token the route does not allow', {}, '/x?apikey=anon', [], null],
    ['a query name the route does not list', {}, '/x?token=anon', ['apikey'], null],
    ['no query string', {}, '/x', ['apikey'], null],
    ['nothing at all', {}, '/x', [], null],
  ])('%s', (_name, headers, url, query, expected) => {
    expect(readToken(request(headers, url), query)).toEqual(expected);
  });

  it.each<[string, string]>([
    ['Basic credentials', 'Basic dXNlcjpwYXNz'],
    ['Bearer without a token', 'Bearer'],
    ['Bearer and a space', 'Bearer '],
    ['a token without the scheme', 'abc.def.ghi'],
    ['two tokens', 'Bearer abc def'],
    ['an empty header', ''],
    ['no space after Bearer', 'Bearerabc'],
  ])('refuses a malformed Authorization header (%s) with 401, even beside an apikey', (_name, authorization) => {
    let thrown: unknown;
    try {
      readToken(request({ authorization, apikey: 'anon' }, '/x?apikey=anon'), ['apikey']);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(PlinthError);
    expect(thrown).toMatchObject({ status: 401, code: 'PGRST301', message: 'Authorization header must be "Bearer <token>"', headers: { 'www-authenticate': 'Bearer' } });
  });
});

describe('presentedToken (the REST API: headers only)', () => {
  it('returns the header token', () => {
    expect(presentedToken(request({ apikey: 'anon' }))).toBe('anon');
    expect(presentedToken(request({ authorization: 'Bearer user', apikey: 'anon' }))).toBe('user');
  });

  it.each(['/todos', '/todos?apikey=anon', '/todos?access_token=user'])('refuses %s without a key header with 401', (url) => {
    expect(() => presentedToken(request({}, url))).toThrow(/^No API key found in request: send the anon key in an apikey header/);
    try {
      presentedToken(request({}, url));
    } catch (err) {
      expect(err).toMatchObject({ status: 401, code: 'PGRST301', headers: { 'www-authenticate': 'Bearer' } });
    }
  });
});

describe('identify (read, verify, then the route\'s rule)', () => {
  // Tokens name their role: "anon", "service_role"; anything else fails verification.
  const keys = {
    verify: async (token: string) => {
      if (token === 'anon' || token === 'service_role') return { role: token };
      throw unauthorized('JWT invalid: malformed token');
    },
  } as unknown as KeyRing;
  const imgRule: CallerRule = { query: ['apikey'], queryRoles: ['anon'] };

  it.each<[string, Record<string, string>, string, CallerRule, string | null]>([
    ['a header token', { apikey: 'service_role' }, '/x', {}, 'service_role'],
    ['the anon key in the URL, where allowed', {}, '/x?apikey=anon', imgRule, 'anon'],
    ['the service key in a header, on a route that limits URL roles', { apikey: 'service_role' }, '/x?apikey=anon', imgRule, 'service_role'],
    ['no token on an optional route', {}, '/x', { optional: true }, null],
  ])('accepts %s', async (_name, headers, url, rule, role) => {
    const caller = await identify(keys, request(headers, url), rule);
    expect(caller?.claims.role ?? null).toBe(role);
  });

  it.each<[string, Record<string, string>, string, CallerRule, string]>([
    ['no token', {}, '/x', {}, 'No API key found in request: send the anon key in an apikey header, or a user token as Authorization: Bearer <token>'],
    ['a token in a URL the route does not read', {}, '/x?apikey=anon', {}, 'No API key found in request: send the anon key in an apikey header, or a user token as Authorization: Bearer <token>'],
    ['a token that does not verify', { apikey: 'forged' }, '/x', { optional: true }, 'JWT invalid: malformed token'],
    ['the service key in the URL', {}, '/x?apikey=service_role', imgRule, 'Only the anon key may be passed in the URL; send tokens in the Authorization header'],
  ])('refuses %s with 401', async (_name, headers, url, rule, message) => {
    await expect(identify(keys, request(headers, url), rule)).rejects.toMatchObject({ status: 401, code: 'PGRST301', message });
  });
});
