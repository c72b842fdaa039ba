// The account routes' input validation without a stack: each schema compiled by the accounts'
// validator compiler, a table of inputs, and the one sentence a refused input is answered with.
import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import {
  accountValidatorCompiler,
  credentialsSchema,
  describeSchemaErrors,
  listUsersSchema,
  logoutSchema,
  magicLinkSchema,
  noInputSchema,
  refreshSchema,
  setAppRoleSchema,
  verifyGetSchema,
  verifyPostSchema,
} from '../sidecar/auth/schemas.js';

type HttpPart = 'body' | 'querystring' | 'params';

/** Validates `data` as fastify would for that part of a request: 'accepted', or the error's message. */
function validate(schema: Record<string, unknown>, httpPart: HttpPart, data: unknown): string {
  const check = accountValidatorCompiler({ schema: schema[httpPart] as object, httpPart, method: 'POST', url: '/test' }) as ((d: unknown) => boolean) & {
    errors: Parameters<typeof describeSchemaErrors>[0];
  };
  return check(data) ? 'accepted' : describeSchemaErrors(check.errors, httpPart).message;
}

const SCHEMAS = {
  credentials: credentialsSchema,
  refresh: refreshSchema,
  logout: logoutSchema,
  'magic link': magicLinkSchema,
  'verify (GET)': verifyGetSchema,
  'verify (POST)': verifyPostSchema,
  'no input': noInputSchema,
  'list users': listUsersSchema,
  'set app role': setAppRoleSchema,
} as Record<string, Record<string, unknown>>;

const UUID = '0f8fad5b-d9cb-469f-a165-70867728950e';

describe('account schemas', () => {
  it.each<[keyof typeof SCHEMAS, HttpPart, unknown, string]>([
    // signup and login
    ['credentials', 'body', { email: 'ada@example.com', password: 'correct horse' }, 'accepted'],
    ['credentials', 'body', { email: 'a@b', password: 'x' }, 'accepted'],
    ['credentials', 'body', {}, 'body is missing the field "email"'],
    ['credentials', 'body', { email: 'ada@example.com' }, 'body is missing the field "password"'],
    ['credentials', 'body', { email: 'ada@example.com', password: 'x', app_role: 'admin' }, 'body has an unknown field "app_role"'],
    ['credentials', 'body', { email: 'ada@example.com', password: 12345678 }, 'body.password must be of type string'],
    ['credentials', 'body', { email: ['ada@example.com'], password: 'x' }, 'body.email must be of type string'],
    ['credentials', 'body', null, 'body must be of type object'],
    ['credentials', 'body', [], 'body must be of type object'],
    ['credentials', 'body', 'ada@example.com', 'body must be of type object'],
    ['credentials', 'body', { email: 'not-an-email', password: 'x' }, 'body.email is not an email address'],
    ['credentials', 'body', { email: 'ada@b@c', password: 'x' }, 'body.email is not an email address'],
    ['credentials', 'body', { email: 'ada lovelace@example.com', password: 'x' }, 'body.email is not an email address'],
    ['credentials', 'body', { email: 'ada\u0000@example.com', password: 'x' }, 'body.email is not an email address'],
    ['credentials', 'body', { email: 'ada\u007f@example.com', password: 'x' }, 'body.email is not an email address'],
    ['credentials', 'body', { email: '@b', password: 'x' }, 'body.email must NOT have fewer than 3 characters'],
    ['credentials', 'body', { email: `${'a'.repeat(310)}@example.com`, password: 'x' }, 'body.email must NOT have more than 320 characters'],
    ['credentials', 'body', { email: 'ada@example.com', password: '' }, 'body.password must NOT have fewer than 1 characters'],
    ['credentials', 'body', { email: 'ada@example.com', password: 'p'.repeat(4096) }, 'accepted'],
    ['credentials', 'body', { email: 'ada@example.com', password: 'p'.repeat(4097) }, 'body.password must NOT have more than 4096 characters'],
    // refresh, logout, magic links
    ['refresh', 'body', { refresh_token: 'abc' }, 'accepted'],
    ['refresh', 'body', { refresh_token: 123 }, 'body.refresh_token must be of type string'],
    ['refresh', 'body', { refresh_token: 't'.repeat(257) }, 'body.refresh_token must NOT have more than 256 characters'],
    ['logout', 'body', {}, 'accepted'],
    ['logout', 'body', { scope: 'global' }, 'accepted'],
    ['logout', 'body', { scope: 'everywhere' }, 'body.scope must be one of "local", "global"'],
    ['magic link', 'body', { email: 'ada@example.com' }, 'accepted'],
    ['magic link', 'body', { email: 'ada@example.com', redirect_to: 'https://evil.example' }, 'body has an unknown field "redirect_to"'],
    ['verify (GET)', 'querystring', { token: 'abc' }, 'accepted'],
    ['verify (GET)', 'querystring', {}, 'querystring is missing the field "token"'],
    ['verify (GET)', 'querystring', { token: '' }, 'querystring.token must NOT have fewer than 1 characters'],
    ['verify (POST)', 'body', {}, 'accepted'],
    ['verify (POST)', 'querystring', { token: 'abc' }, 'accepted'],
    ['verify (POST)', 'body', { token: 7 }, 'body.token must be of type string'],
    // routes that take no input, and the admin routes
    ['no input', 'querystring', {}, 'accepted'],
    ['no input', 'querystring', { apikey: 'x' }, 'querystring has an unknown field "apikey"'],
    ['list users', 'querystring', {}, 'accepted'],
    ['list users', 'querystring', { limit: '1000', offset: '0' }, 'accepted'],
    ['list users', 'querystring', { limit: '0' }, 'querystring.limit must be >= 1'],
    ['list users', 'querystring', { limit: '1001' }, 'querystring.limit must be <= 1000'],
    ['list users', 'querystring', { limit: 'ten' }, 'querystring.limit must be of type integer'],
    ['list users', 'querystring', { limit: '1.5' }, 'querystring.limit must be of type integer'],
    ['list users', 'querystring', { offset: '-1' }, 'querystring.offset must be >= 0'],
    ['list users', 'querystring', { page: '2' }, 'querystring has an unknown field "page"'],
    ['set app role', 'params', { id: UUID }, 'accepted'],
    ['set app role', 'params', { id: UUID.toUpperCase() }, 'accepted'],
    ['set app role', 'params', { id: 'not-a-uuid' }, 'params.id is not a UUID'],
    ['set app role', 'body', { app_role: 'editor' }, 'accepted'],
    ['set app role', 'body', { app_role: 'owner' }, 'body.app_role must be one of "editor", "admin"'],
    ['set app role', 'body', { app_role: null }, 'body.app_role must be of type string'],
    ['set app role', 'body', {}, 'body is missing the field "app_role"'],
  ])('%s %s %j: %s', (name, part, data, expected) => {
    expect(validate(SCHEMAS[name], part, data)).toBe(expected);
  });

  it('coerces and defaults the query string, but never a JSON body', () => {
    const query: Record<string, unknown> = { limit: '5' };
    expect(validate(listUsersSchema, 'querystring', query)).toBe('accepted');
    expect(query).toEqual({ limit: 5, offset: 0 });
    const body = { email: 'ada@example.com', password: 12345678 };
    expect(validate(credentialsSchema, 'body', body)).toBe('body.password must be of type string');
    expect(body.password).toBe(12345678);
  });
});

describe('describeSchemaErrors', () => {
  const error = (keyword: string, instancePath: string, params: Record<string, unknown>, message = 'fails') => [{ keyword, instancePath, schemaPath: '#', params, message }];

  it.each<[ReturnType<typeof error>, string, string]>([
    [error('pattern', '/nickname', { pattern: '^x' }), 'body', 'body.nickname is not well formed'],
    [error('pattern', '/contact_email', { pattern: '^x' }), 'body', 'body.contact_email is not an email address'],
    [error('pattern', '/owner_id', { pattern: '^x' }), 'params', 'params.owner_id is not a UUID'],
    [error('additionalProperties', '/profile', { additionalProperty: 'x' }), 'body', 'body.profile has an unknown field "x"'],
    [error('required', '/a/b', { missingProperty: 'c' }), 'body', 'body.a.b is missing the field "c"'],
    [error('format', '/when', { format: 'date-time' }, 'must match format "date-time"'), 'body', 'body.when must match format "date-time"'],
  ])('%j in %s: %s', (errors, dataVar, message) => {
    expect(describeSchemaErrors(errors, dataVar).message).toBe(message);
  });

  it('words only the first error', () => {
    const errors = [...error('required', '', { missingProperty: 'email' }), ...error('required', '', { missingProperty: 'password' })];
    expect(describeSchemaErrors(errors, 'body').message).toBe('body is missing the field "email"');
  });
});

describe('the compiler and wording in a fastify route, as the accounts plugin installs them', () => {
  it('refuses before the handler with the field named', async () => {
    const app = Fastify();
    let handled = 0;
    app.setValidatorCompiler(accountValidatorCompiler);
    app.addHook('onRoute', (route) => {
      route.schemaErrorFormatter ??= describeSchemaErrors;
    });
    app.post('/rpc/login', { schema: credentialsSchema }, async () => {
      handled++;
      return { ok: true };
    });
    const post = (payload: unknown) => app.inject({ method: 'POST', url: '/rpc/login', payload: payload as object });
    const refused = await post({ email: 'ada@example.com', password: 'x', app_role: 'admin' });
    expect(refused.statusCode).toBe(400);
    expect(refused.json().message).toBe('body has an unknown field "app_role"');
    expect((await post({ email: 'ada@example.com', password: 'x' })).statusCode).toBe(200);
    expect(handled).toBe(1);
    await app.close();
  });
});
