// Functions over HTTP, on real Deno workers: what a caller sees (status, headers, bodies streamed
// both ways, the 401/404/413/500/503/504 answers), what a function may reach (its caller's RLS
// when it calls back, only declared hosts, files and secrets), and the records it leaves.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { createClient } from '@supabase/supabase-js';
import WebSocket from 'ws';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { eventually, REPO_ROOT, runCli, startStack, type Stack } from './harness.ts';

const FUNCTIONS: Record<string, string> = {
  'hello.ts': `
    export default async function handler(req: Request) {
      const u = new URL(req.url);
      return { method: req.method, path: u.pathname, query: u.search, claims: JSON.parse(req.headers.get('x-plinth-claims') ?? 'null'),
               authorization: req.headers.get('authorization'), body: req.body ? await req.text() : null };
    }`,
  'echo.ts': `
    export default (req: Request) => new Response(req.body, { status: 201, headers: { 'content-type': 'application/octet-stream', 'x-echo': 'yes' } });`,
  'mytodos.ts': `
    export default async function handler(req: Request) {
      const r = await fetch(Deno.env.get('PLINTH_URL') + '/todos?select=title&order=title', {
        headers: { apikey: Deno.env.get('PLINTH_ANON_KEY')!, authorization: req.headers.get('authorization')! },
      });
      return new Response(await r.text(), { status: r.status, headers: { 'content-type': 'application/json' } });
    }`,
  'throws.ts': `
    export default function handler() { throw new Error('boom at the secret place'); }`,
  'slow.ts': `
    export default async function handler() { await new Promise((r) => setTimeout(r, 60_000)); return 'late'; }`,
  'broken.ts': `export default (`,
  'versioned.ts': `export default () => ({ v: 1 });`,
  'sneaky.ts': `
    async function attempt(f: () => Promise<unknown> | unknown) {
      try { await f(); return 'allowed'; } catch (e) { return (e as Error).name; }
    }
    export default async function handler() {
      return {
        file: await attempt(() => Deno.readTextFile('/etc/hostname')),
        otherFunction: await attempt(() => Deno.readTextFile(${JSON.stringify('FUNCTIONS_DIR/hello.ts')})),
        net: await attempt(() => fetch('http://example.com/')),
        serviceKey: await attempt(() => Deno.env.get('PLINTH_SERVICE_KEY')),
        secret: await attempt(() => Deno.env.get('API_TOKEN')),
        write: await attempt(() => Deno.writeTextFile('/tmp/plinth-fn-escape', 'x')),
        run: await attempt(() => new Deno.Command('/bin/true').output()),
      };
    }`,
  'secretive.ts': `
    export const config = { secrets: ['API_TOKEN'], service: true };
    export default () => ({ token: Deno.env.get('API_TOKEN') ?? null, hasServiceKey: Boolean(Deno.env.get('PLINTH_SERVICE_KEY')) });`,
};

let stack: Stack;
let dir: string;
beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'plinth-functions-'));
  for (const [file, text] of Object.entries(FUNCTIONS)) fs.writeFileSync(path.join(dir, file), text.replace('FUNCTIONS_DIR', dir));
  // The timeout bounds every call here, including those that call Plinth back: short enough for
  // the 504 test, long enough that a loaded machine does not turn an ordinary call into a 504.
  stack = await startStack({ env: { PLINTH_FUNCTIONS_DIR: dir, PLINTH_FUNCTION_TIMEOUT: '5', PLINTH_FUNCTION_MAX_BODY: '64KiB', PLINTH_LOG_LEVEL: 'info' } });
});
afterAll(async () => {
  await stack?.destroy();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('a function gets the request, the caller verified claims and token, and answers JSON', async () => {
  const user = await stack.createUser();
  const r = await stack.fetch('/functions/v1/hello/sub/path?x=1', { method: 'POST', token: user.token, headers: { 'x-plinth-claims': '{"role":"service_role"}' }, body: 'payload' });
  expect(r.status).toBe(200);
  expect(r.headers.get('content-type')).toMatch(/application\/json/);
  const body = await r.json();
  expect(body).toMatchObject({ method: 'POST', path: '/functions/v1/hello/sub/path', query: '?x=1', body: 'payload', authorization: `Bearer ${user.token}` });
  // The claims are the verified ones, not what the client sent under that header.
  expect(body.claims).toMatchObject({ role: 'authenticated', sub: user.id, email: user.email });
});

test('without a key: 401; an unknown function: 404', async () => {
  const none = await stack.fetch('/functions/v1/hello');
  expect(none.status).toBe(401);
  const unknown = await stack.fetch('/functions/v1/nothing-here', { apikey: stack.anonKey });
  expect(unknown.status).toBe(404);
  expect((await unknown.json()).code).toBe('PLINTH404');
});

test('a call passes the front door like any request: its request id, CORS on answers and errors, a request row', async () => {
  const origin = 'https://app.example';
  const ok = await stack.fetch('/functions/v1/echo/x?y=1', { method: 'POST', apikey: stack.anonKey, headers: { origin, 'x-request-id': 'fn-trace-1' }, body: 'abc' });
  expect(ok.status).toBe(201);
  expect(await ok.text()).toBe('abc');
  expect(ok.headers.get('x-echo')).toBe('yes');
  expect(ok.headers.get('x-request-id')).toBe('fn-trace-1');
  expect(ok.headers.get('access-control-allow-origin')).toBe('*');
  expect(ok.headers.get('access-control-expose-headers')).toContain('Content-Range');
  const missing = await stack.fetch('/functions/v1/nothing-here', { apikey: stack.anonKey, headers: { origin, 'x-request-id': 'fn-trace-2' } });
  expect(missing.status).toBe(404);
  expect(missing.headers.get('x-request-id')).toBe('fn-trace-2');
  expect(missing.headers.get('access-control-allow-origin')).toBe('*');
  expect(await missing.json()).toMatchObject({ code: 'PLINTH404', message: 'No function named nothing-here' });
  const noKey = await stack.fetch('/functions/v1/echo', { headers: { origin, 'x-request-id': 'fn-trace-3' } });
  expect(noKey.status).toBe(401);
  expect(noKey.headers.get('www-authenticate')).toBe('Bearer');
  expect(noKey.headers.get('access-control-allow-origin')).toBe('*');
  expect(noKey.headers.get('x-request-id')).toBe('fn-trace-3');
  const badToken = await stack.fetch('/functions/v1/echo', { token: 'not-a-jwt' });
  expect(badToken.status).toBe(401);
  expect((await badToken.json()).code).toBe('PGRST301');
  const noName = await stack.fetch('/functions/v1/', { apikey: stack.anonKey });
  expect(noName.status).toBe(404);
  const rows = await eventually('the calls in the request log', async () => {
    const r = await stack.sql`select request_id, kind, method, path, status, role from audit.requests where request_id like 'fn-trace-%' order by request_id`;
    return r.length === 3 ? r : undefined;
  });
  expect(rows.map((r) => ({ ...r }))).toEqual([
    { request_id: 'fn-trace-1', kind: 'functions', method: 'POST', path: '/functions/v1/echo/x', status: 201, role: 'anon' },
    { request_id: 'fn-trace-2', kind: 'functions', method: 'GET', path: '/functions/v1/nothing-here', status: 404, role: 'anon' },
    { request_id: 'fn-trace-3', kind: 'functions', method: 'GET', path: '/functions/v1/echo', status: 401, role: null },
  ]);
});

test('supabase-js functions.invoke works unmodified', async () => {
  const client = createClient(stack.url, stack.anonKey, { auth: { persistSession: false }, realtime: { transport: WebSocket as never } });
  const { data, error } = await client.functions.invoke('hello', { body: { greeting: 'hi' } });
  expect(error).toBeNull();
  expect(data.method).toBe('POST');
  expect(JSON.parse(data.body)).toEqual({ greeting: 'hi' });
  expect(data.claims.role).toBe('anon');
});

test('request and response bodies stream: each chunk comes back before the next is sent', async () => {
  const url = new URL(`${stack.url}/functions/v1/echo`);
  const received: string[] = [];
  const status = await new Promise<number>((resolve, reject) => {
    const req = http.request(url, { method: 'POST', headers: { apikey: stack.anonKey, 'content-type': 'application/octet-stream' } }, (res) => {
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        received.push(chunk);
        // The next chunk goes out only once this one came back through function and sidecar.
        if (received.length < 3) req.write(`chunk-${received.length + 1};`);
        else req.end();
      });
      res.on('end', () => resolve(res.statusCode!));
      expect(res.headers['x-echo']).toBe('yes');
    });
    req.on('error', reject);
    req.flushHeaders();
    req.write('chunk-1;');
  });
  expect(status).toBe(201);
  expect(received.join('')).toBe('chunk-1;chunk-2;chunk-3;');
});

test('a function calling Plinth back as its caller sees only what RLS lets the caller see', async () => {
  const alice = await stack.createUser();
  const bob = await stack.createUser();
  await stack.sql`insert into public.todos (user_id, title) values (${alice.id}, 'alice 1'), (${alice.id}, 'alice 2'), (${bob.id}, 'bob 1')`;
  const asAlice = await stack.fetch('/functions/v1/mytodos', { token: alice.token });
  expect(asAlice.status).toBe(200);
  expect(await asAlice.json()).toEqual([{ title: 'alice 1' }, { title: 'alice 2' }]);
  expect(await (await stack.fetch('/functions/v1/mytodos', { token: bob.token })).json()).toEqual([{ title: 'bob 1' }]);
  // The anon key has no grant on todos: the database's refusal comes back through the function.
  const anon = await stack.fetch('/functions/v1/mytodos', { apikey: stack.anonKey });
  expect(anon.status).toBeGreaterThanOrEqual(401);
  expect((await anon.json()).code).toBe('42501');
});

test('a handler that throws: 500 with the fixed message; the stack only in the log', async () => {
  const r = await stack.fetch('/functions/v1/throws', { apikey: stack.anonKey });
  expect(r.status).toBe(500);
  const body = await r.json();
  expect(body).toMatchObject({ code: 'PLINTH500', message: 'function throws failed' });
  expect(JSON.stringify(body)).not.toMatch(/secret place/);
  await eventually('the stack in the log', async () => (/function throws failed: Error: boom at the secret place\n?.*at handler/s.test(stack.output) ? true : undefined));
});

test('a call past PLINTH_FUNCTION_TIMEOUT: 504, and the function still answers afterwards', async () => {
  const r = await stack.fetch('/functions/v1/slow', { apikey: stack.anonKey });
  expect(r.status).toBe(504);
  expect((await r.json()).code).toBe('PLINTH504');
  expect((await stack.fetch('/functions/v1/hello', { apikey: stack.anonKey })).status).toBe(200);
});

test('a body over PLINTH_FUNCTION_MAX_BODY: 413, declared or streamed', async () => {
  const big = Buffer.alloc(100 * 1024, 1);
  const declared = await stack.fetch('/functions/v1/echo', { method: 'POST', apikey: stack.anonKey, body: big });
  expect(declared.status).toBe(413);
  // Streamed without a length, to a function that reads it whole before answering.
  const streamed = await stack.fetch('/functions/v1/hello', {
    method: 'POST',
    apikey: stack.anonKey,
    body: new ReadableStream({ start(c) { for (let i = 0; i < 10; i++) c.enqueue(new Uint8Array(16 * 1024)); c.close(); } }),
    duplex: 'half',
  } as RequestInit);
  expect(streamed.status).toBe(413);
  // The next call (a fresh connection or a reused one) is answered normally.
  expect((await stack.fetch('/functions/v1/hello', { apikey: stack.anonKey, signal: AbortSignal.timeout(10_000) })).status).toBe(200);
});

test('a module that does not load is reported in one line and answers 503; the rest runs', async () => {
  expect(stack.output).toMatch(new RegExp(`${path.join(dir, 'broken.ts').replace(/[.]/g, '\\.')}:1:\\d+: SyntaxError`));
  const r = await stack.fetch('/functions/v1/broken', { apikey: stack.anonKey });
  expect(r.status).toBe(503);
  // Fixed on disk: picked up without a restart.
  fs.writeFileSync(path.join(dir, 'broken.ts'), 'export default () => ({ fixed: true });');
  const fixed = await eventually('the fixed module', async () => {
    const res = await stack.fetch('/functions/v1/broken', { apikey: stack.anonKey, signal: AbortSignal.timeout(5000) });
    return res.status === 200 ? res.json() : undefined;
  });
  expect(fixed).toEqual({ fixed: true });
});

test('a function cannot read files, reach undeclared hosts, run programs or read undeclared variables', async () => {
  const r = await stack.fetch('/functions/v1/sneaky', { apikey: stack.anonKey });
  expect(r.status).toBe(200);
  expect(await r.json()).toEqual({ file: 'NotCapable', otherFunction: 'NotCapable', net: 'NotCapable', serviceKey: 'NotCapable', secret: 'NotCapable', write: 'NotCapable', run: 'NotCapable' });
  expect(fs.existsSync('/tmp/plinth-fn-escape')).toBe(false);
});

function cli(args: string[], stdin?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'sidecar', 'cli.ts'), ...args], { cwd: REPO_ROOT, env: { ...process.env, ...stack.env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.once('exit', (code) => resolve({ code: code ?? 1, stdout, stderr }));
    child.stdin.end(stdin ?? '');
  });
}

test('secrets: set from stdin, visible only to functions that declare them, listed without values, unset', async () => {
  const value = 'tok-' + Math.random().toString(36).slice(2);
  const set = await cli(['secrets', 'set', 'API_TOKEN'], `${value}\n`);
  expect(set.code, set.stderr).toBe(0);
  const seen = await eventually('the secret in the declaring function', async () => {
    const body = await (await stack.fetch('/functions/v1/secretive', { apikey: stack.anonKey })).json();
    return body.token === value ? body : undefined;
  });
  expect(seen.hasServiceKey).toBe(true);
  // Undeclared: still refused.
  expect((await (await stack.fetch('/functions/v1/sneaky', { apikey: stack.anonKey })).json()).secret).toBe('NotCapable');

  const list = await cli(['secrets', 'list', '--json']);
  expect(list.code, list.stderr).toBe(0);
  const listed = JSON.parse(list.stdout);
  expect(listed.map((s: { name: string }) => s.name)).toEqual(['API_TOKEN']);
  expect(list.stdout).not.toContain(value);
  // Encrypted at rest; the activity log names it without its value.
  const [row] = await stack.sql<{ value: Buffer }[]>`select value from functions.secrets where name = 'API_TOKEN'`;
  expect(row.value.includes(Buffer.from(value))).toBe(false);
  const acts = await stack.sql<{ action: string; target: string; details: unknown }[]>`select action, target, details from audit.activity where action like 'functions.secret%'`;
  expect(acts).toEqual([{ action: 'functions.secret_set', target: 'API_TOKEN', details: null }]);

  const unset = await cli(['secrets', 'unset', 'API_TOKEN']);
  expect(unset.code, unset.stderr).toBe(0);
  await eventually('the secret gone', async () => ((await (await stack.fetch('/functions/v1/secretive', { apikey: stack.anonKey })).json()).token === null ? true : undefined));
  expect(stack.output).not.toContain(value);
}, 120_000);

test('invocations are counted in /metrics and deploys recorded in the activity log', async () => {
  await stack.fetch('/functions/v1/hello', { apikey: stack.anonKey });
  const metrics = await (await stack.fetch('/metrics', { token: stack.serviceKey })).text();
  expect(metrics).toMatch(/plinth_function_invocations_total\{function="hello",trigger="http",status="200"\} \d+/);
  expect(metrics).toMatch(/plinth_function_errors_total\{function="throws",trigger="http"\} [1-9]/);
  const deploys = await stack.sql<{ target: string }[]>`select target from audit.activity where action = 'functions.deployed' order by target`;
  expect(deploys.map((d) => d.target)).toEqual(expect.arrayContaining(['hello', 'echo', 'sneaky']));
});

test('the CLI check: `plinth new function` writes a working example', async () => {
  const r = await runCli(['new', 'function', 'example-fn'], { ...stack.env });
  expect(r.code, r.stderr).toBe(0);
  const res = await eventually('the new function', async () => {
    const x = await stack.fetch('/functions/v1/example-fn', { method: 'POST', apikey: stack.anonKey, json: { name: 'Ada' } });
    return x.status === 200 ? x.json() : undefined;
  });
  expect(res.message).toMatch(/Ada/);
}, 120_000);

test('versions, logs and rollback: CLI and admin API (service key or admin, decided in SQL)', async () => {
  const call = async () => (await (await stack.fetch('/functions/v1/versioned', { apikey: stack.anonKey })).json()).v;
  expect(await call()).toBe(1);
  fs.writeFileSync(path.join(dir, 'versioned.ts'), 'export default () => ({ v: 2 });');
  await eventually('version 2 running', async () => ((await call()) === 2 ? true : undefined));

  const versions = await (await stack.fetch('/functions/admin/versioned/versions', { token: stack.serviceKey })).json();
  expect(versions.map((v: { version: number }) => v.version)).toEqual([2, 1]);
  expect(versions[0].sha256).toMatch(/^[0-9a-f]{64}$/);

  const rolled = await cli(['functions', 'rollback', 'versioned', '1']);
  expect(rolled.code, rolled.stderr).toBe(0);
  await eventually('version 1 running again', async () => ((await call()) === 1 ? true : undefined));
  const listed = JSON.parse((await cli(['functions', 'list', '--json'])).stdout);
  expect(listed.find((f: { name: string }) => f.name === 'versioned')).toMatchObject({ version: 1, latest: 2, pinned: true });

  // The admin API: the service key and an admin may; a user gets 403, the anon key 401.
  const admin = await stack.createUser({ app_role: 'admin' });
  const user = await stack.createUser();
  const asAdmin = await stack.fetch('/functions/admin', { token: admin.token });
  expect(asAdmin.status).toBe(200);
  const fnList = await asAdmin.json();
  expect(fnList.find((f: { name: string }) => f.name === 'versioned')).toMatchObject({ version: 1, latest_version: 2, pinned: true, triggers: { http: true } });
  expect(fnList.find((f: { name: string }) => f.name === 'secretive').secrets).toEqual(['API_TOKEN']);
  expect((await stack.fetch('/functions/admin', { token: user.token })).status).toBe(403);
  expect((await stack.fetch('/functions/admin', { apikey: stack.anonKey })).status).toBe(401);
  expect((await stack.fetch('/functions/admin/versioned/rollback', { method: 'POST', token: user.token, json: { version: 2 } })).status).toBe(403);

  const back = await stack.fetch('/functions/admin/versioned/rollback', { method: 'POST', token: stack.serviceKey, json: { version: 2 } });
  expect(back.status).toBe(204);
  await eventually('version 2 running after the API rollback', async () => ((await call()) === 2 ? true : undefined));
  expect((await stack.fetch('/functions/admin/versioned/rollback', { method: 'POST', token: stack.serviceKey, json: { version: 9 } })).status).toBe(404);

  // Invocations are recorded (trigger, status, duration) and shown by the CLI and the API.
  await eventually('invocations recorded', async () => {
    const rows = await (await stack.fetch('/functions/admin/versioned/invocations?limit=5', { token: stack.serviceKey })).json();
    return rows.length >= 3 && rows.every((r: { trigger: string; status: number }) => r.trigger === 'http' && r.status === 200) ? rows : undefined;
  });
  const logs = await cli(['functions', 'logs', 'throws']);
  expect(logs.code, logs.stderr).toBe(0);
  expect(logs.stdout).toMatch(/http\s+500\s+[\d.]+ ms\s+boom at the secret place/);
  const acts = await stack.sql<{ target: string }[]>`select target from audit.activity where action = 'functions.rolled_back'`;
  expect(acts.length).toBeGreaterThanOrEqual(2);
}, 120_000);
