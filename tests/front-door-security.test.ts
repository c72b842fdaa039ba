// The front door against clients that abuse HTTP itself: oversized REST bodies, forged forwarded
// addresses, hop-by-hop headers, unusual request targets, and connections held open rather than used.
// Raw sockets (node:net) where an ordinary client would not send what an attacker sends.
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { Readable } from 'node:stream';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startStack, type Stack } from './harness.ts';

/** What a raw exchange saw: everything the server sent, and how the connection ended. */
interface RawResult {
  text: string;
  status: number | null;
  closed: boolean;
  error?: string;
}

/** Writes `request` on a fresh socket and collects the answer until the server closes or `waitMs` passes. */
function raw(port: number, request: string | null, opts: { localAddress?: string; waitMs?: number } = {}): Promise<RawResult> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1', localAddress: opts.localAddress });
    let text = '';
    let error: string | undefined;
    const finish = (closed: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      const m = /^HTTP\/1\.1 (\d{3})/.exec(text);
      resolve({ text, status: m ? Number(m[1]) : null, closed, error });
    };
    const timer = setTimeout(() => finish(false), opts.waitMs ?? 20_000);
    socket.on('connect', () => request !== null && socket.write(request));
    socket.on('data', (d) => (text += d.toString('latin1')));
    socket.on('error', (e) => (error = (e as NodeJS.ErrnoException).code ?? e.message));
    socket.on('close', () => finish(true));
  });
}

/** The JSON body of a raw HTTP/1.1 answer (content-length framed). */
function jsonBody(text: string): any {
  return JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4));
}

/** A socket that has been answered once and stays open (keep-alive), from `localAddress`. */
function heldConnection(port: number, localAddress: string): Promise<{ socket: net.Socket; status: number | null }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1', localAddress });
    socket.once('error', reject);
    socket.on('connect', () => socket.write('GET /health HTTP/1.1\r\nHost: plinth\r\n\r\n'));
    let text = '';
    socket.on('data', (d) => {
      text += d.toString('latin1');
      if (/\r\n\r\n[\s\S]*\}$/.test(text)) resolve({ socket, status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0) });
    });
    socket.on('close', () => resolve({ socket, status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0) || null }));
  });
}

/** Opens a realtime WebSocket; resolves with the socket once open, or with the refusal's status. */
function openSocket(url: string, opts: { localAddress?: string; headers?: Record<string, string> } = {}): Promise<{ ws?: WebSocket; status?: number; body?: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { localAddress: opts.localAddress, headers: opts.headers });
    ws.once('open', () => resolve({ ws }));
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode, body }));
      res.on('error', () => resolve({ status: res.statusCode, body }));
    });
    ws.once('error', reject);
  });
}

/** PostgREST's process id, from the pid file the stack keeps in its data directory. */
function postgrestPid(stack: Stack): number {
  const pids = fs.readFileSync(path.join(stack.dataDir, 'plinth.pid'), 'utf8').split('\n').filter(Boolean).map(Number);
  const pid = pids.find((p) => fs.existsSync(`/proc/${p}/comm`) && /postgrest/.test(fs.readFileSync(`/proc/${p}/comm`, 'utf8')));
  if (!pid) throw new Error(`no running PostgREST among ${pids.join(', ')}`);
  return pid;
}

function rssMiB(pid: number): number {
  return Number(/VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
}

describe('behind one proxy (PLINTH_TRUST_PROXY=1), with a 1 MiB REST body limit', () => {
  let stack: Stack;
  const LIMIT = 1024 * 1024;

  beforeAll(async () => {
    stack = await startStack({
      env: { PLINTH_TRUST_PROXY: '1', PLINTH_RATE_LIMIT_PER_IP: '3', PLINTH_MAX_REST_BODY: '1MiB' },
    });
  });
  afterAll(() => stack?.destroy());

  const port = () => Number(new URL(stack.url).port);

  test('an anon body declared larger than the limit is refused with 413 and never forwarded', async () => {
    const head =
      `POST /guestbook HTTP/1.1\r\nHost: plinth\r\napikey: ${stack.anonKey}\r\n` +
      `Content-Type: application/json\r\nContent-Length: ${100 * 1024 * 1024}\r\n\r\n[{"note":"declared"`;
    const r = await raw(port(), head);
    expect(r.status).toBe(413);
    expect(r.closed).toBe(true); // the rest of the body never came: the connection is let go
    expect(jsonBody(r.text)).toMatchObject({ code: 'PLINTH413', message: expect.stringMatching(/larger than the REST API accepts/) });
    const [{ n }] = await stack.sql`select count(*)::int as n from guestbook`;
    expect(n).toBe(0);
  });

  test('a chunked anon body that grows past the limit is cut off: 413, PostgREST inserts nothing and its memory stays flat', async () => {
    const postgrestBefore = rssMiB(postgrestPid(stack));
    // A JSON array of 32 MiB of rows, streamed without a length: PostgREST would buffer it all
    // (about eight times its size in memory) before looking at a grant.
    const row = JSON.stringify({ note: `chunked-flood ${'x'.repeat(1000)}` });
    let sent = 0;
    const body = new Readable({
      read() {
        if (sent >= 32 * LIMIT) return this.push(null);
        const chunk = (sent === 0 ? '[' : ',') + Array.from({ length: 64 }, () => row).join(',');
        sent += chunk.length;
        this.push(sent >= 32 * LIMIT ? `${chunk}]` : chunk);
      },
    });
    const outcome = await new Promise<{ status?: number; body?: string; error?: string }>((resolve) => {
      const req = http.request(`${stack.url}/guestbook`, { method: 'POST', headers: { apikey: stack.anonKey, 'content-type': 'application/json' } }, (res) => {
        let text = '';
        res.on('data', (d) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode, body: text }));
        res.on('error', () => resolve({ status: res.statusCode, body: text }));
      });
      req.on('error', (e) => resolve({ error: (e as NodeJS.ErrnoException).code ?? e.message }));
      body.pipe(req);
    });
    expect(outcome.status, JSON.stringify(outcome)).toBe(413);
    expect(JSON.parse(outcome.body!)).toMatchObject({ code: 'PLINTH413' });
    const [{ n }] = await stack.sql`select count(*)::int as n from guestbook where note like 'chunked-flood%'`;
    expect(n).toBe(0);
    expect(sent).toBeGreaterThan(LIMIT); // the body did pass the limit (how far depends on how fast the 413 comes back)
    expect(rssMiB(postgrestPid(stack)) - postgrestBefore).toBeLessThan(64);
  });

  test('bodies within the limit still pass, with a length or chunked', async () => {
    const rows = Array.from({ length: 200 }, (_, i) => ({ note: `fits ${i} ${'y'.repeat(2000)}` }));
    const withLength = await stack.fetch('/guestbook', { method: 'POST', apikey: stack.anonKey, json: rows });
    expect(withLength.status).toBe(201);
    const chunked = await stack.fetch('/guestbook', {
      method: 'POST',
      apikey: stack.anonKey,
      headers: { 'content-type': 'application/json' },
      body: Readable.toWeb(Readable.from([Buffer.from('[{"note":"chunked '), Buffer.from('fits"}]')])) as ReadableStream,
      duplex: 'half',
    } as RequestInit);
    expect(chunked.status).toBe(201);
    const [{ n }] = await stack.sql`select count(*)::int as n from guestbook where note like 'fits %' or note = 'chunked fits'`;
    expect(n).toBe(201);
  });

  test('a forged X-Forwarded-For prefix does not escape the per-address login limit', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) {
      // The proxy appends the address it saw (203.0.113.7); everything left of it is the client's word.
      const r = await stack.fetch('/rpc/login', {
        method: 'POST',
        json: { email: `nobody-${i}@example.test`, password: 'wrong password' },
        headers: { 'x-forwarded-for': `198.51.100.${i}, 10.0.${i}.1, 203.0.113.7` },
      });
      statuses.push(r.status);
    }
    expect(statuses).toEqual([400, 400, 400, 429, 429]);
    // Another client behind the same proxy is counted on its own.
    const other = await stack.fetch('/rpc/login', {
      method: 'POST',
      json: { email: 'nobody-else@example.test', password: 'wrong password' },
      headers: { 'x-forwarded-for': '203.0.113.8' },
    });
    expect(other.status).toBe(400);
  });

  test('a header named in the request Connection header does not reach PostgREST', async () => {
    const seen = await new Promise<Record<string, string>>((resolve, reject) => {
      const req = http.request(`${stack.url}/rpc/received_headers`, {
        headers: { apikey: stack.anonKey, connection: 'close, X-Secret-Hop', 'x-secret-hop': '1', 'x-visible': '1' },
      });
      req.on('response', (res) => {
        let text = '';
        res.on('data', (d) => (text += d));
        res.on('end', () => resolve(JSON.parse(text)));
      });
      req.on('error', reject);
      req.end();
    });
    expect(seen['x-visible']).toBe('1');
    expect(seen).not.toHaveProperty('x-secret-hop');
  });

  test('a header named in PostgREST\'s Connection header does not reach the client', async () => {
    const r = await stack.fetch('/rpc/hop_by_hop_reply', { apikey: stack.anonKey });
    expect(r.status).toBe(200);
    expect(r.headers.get('x-kept')).toBe('yes');
    expect(r.headers.get('x-upstream-hop')).toBeNull();
  });

  test('an absolute-form request target is routed and forwarded by its path', async () => {
    const rest = await raw(port(), `GET http://plinth.example/guestbook?select=id&limit=1 HTTP/1.1\r\nHost: plinth.example\r\napikey: ${stack.anonKey}\r\nConnection: close\r\n\r\n`);
    expect(rest.status).toBe(200);
    expect(rest.text).toMatch(/\r\ncontent-range: /i); // PostgREST's answer to a table read
    // A path the sidecar owns, in absolute form, is the sidecar's, not PostgREST's.
    const health = await raw(port(), 'GET http://plinth.example/health HTTP/1.1\r\nHost: plinth.example\r\nConnection: close\r\n\r\n');
    expect(health.status).toBe(200);
    expect(jsonBody(health.text)).toMatchObject({ status: 'ok' });
  });

  test('OPTIONS * is answered by the front door with the methods it accepts, and is never forwarded as a path', async () => {
    const r = await raw(port(), `OPTIONS * HTTP/1.1\r\nHost: plinth\r\napikey: ${stack.anonKey}\r\nConnection: close\r\n\r\n`);
    expect(r.status).toBe(204);
    expect(r.text).toMatch(/\r\nallow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS\r\n/i);
    const get = await raw(port(), `GET * HTTP/1.1\r\nHost: plinth\r\napikey: ${stack.anonKey}\r\nConnection: close\r\n\r\n`);
    expect(get.status).toBe(400);
  });
});

describe('caps and timeouts (5 connections per address, 2 s headers timeout, 5 s idle timeout)', () => {
  let stack: Stack;
  const PROXY = '127.0.0.3';

  beforeAll(async () => {
    stack = await startStack({
      env: {
        PLINTH_MAX_CONNECTIONS_PER_ADDRESS: '5',
        PLINTH_HEADERS_TIMEOUT: '2',
        // The held connections below are idle between their answer and the sixth connection: the
        // idle timeout must not close them meanwhile, however slow the machine.
        PLINTH_IDLE_TIMEOUT: '5',
        PLINTH_TRUST_PROXY: PROXY,
      },
    });
  });
  afterAll(() => stack?.destroy());

  const port = () => Number(new URL(stack.url).port);
  const wsUrl = () => `${stack.url.replace(/^http/, 'ws')}/realtime?apikey=${stack.anonKey}`;

  test('a sixth concurrent connection from one address is refused with 429 while another address is served', async () => {
    // 127.0.0.4 and .5 are loopback addresses no other client of this stack uses.
    const held = await Promise.all(Array.from({ length: 5 }, () => heldConnection(port(), '127.0.0.4')));
    try {
      expect(held.map((h) => h.status)).toEqual([200, 200, 200, 200, 200]);
      const sixth = await raw(port(), 'GET /health HTTP/1.1\r\nHost: plinth\r\n\r\n', { localAddress: '127.0.0.4' });
      expect(sixth.status).toBe(429);
      expect(sixth.closed).toBe(true);
      expect(jsonBody(sixth.text)).toMatchObject({ code: 'PLINTH429', message: expect.stringMatching(/Too many open connections/) });
      const other = await raw(port(), 'GET /health HTTP/1.1\r\nHost: plinth\r\nConnection: close\r\n\r\n', { localAddress: '127.0.0.5' });
      expect(other.status).toBe(200);
    } finally {
      for (const h of held) h.socket.destroy();
    }
    // Closed connections free their places.
    await expect.poll(async () => (await raw(port(), 'GET /health HTTP/1.1\r\nHost: plinth\r\nConnection: close\r\n\r\n', { localAddress: '127.0.0.4' })).status, { timeout: 10_000 }).toBe(200);
  });

  test('WebSockets count as connections: the sixth from one address is refused', async () => {
    const sockets: WebSocket[] = [];
    try {
      for (let i = 0; i < 5; i++) {
        const r = await openSocket(wsUrl(), { localAddress: '127.0.0.6' });
        expect(r.ws).toBeDefined();
        sockets.push(r.ws!);
      }
      const sixth = await openSocket(wsUrl(), { localAddress: '127.0.0.6' }).catch((e) => ({ error: String(e) }));
      expect(sixth).toMatchObject({ status: 429 });
    } finally {
      for (const ws of sockets) ws.terminate();
    }
  });

  test('through a trusted proxy, WebSockets are counted per forwarded client address', async () => {
    const sockets: WebSocket[] = [];
    const through = (client: string) => openSocket(wsUrl(), { localAddress: PROXY, headers: { 'x-forwarded-for': `${client}` } });
    try {
      for (let i = 0; i < 5; i++) {
        const r = await through('198.51.100.20');
        expect(r.ws).toBeDefined();
        sockets.push(r.ws!);
      }
      expect(await through('198.51.100.20')).toMatchObject({ status: 429 });
      // A forged prefix does not make a new client: the proxy appended the real one.
      expect(await through('192.0.2.1, 198.51.100.20')).toMatchObject({ status: 429 });
      const other = await through('198.51.100.21');
      expect(other.ws).toBeDefined();
      sockets.push(other.ws!);
    } finally {
      for (const ws of sockets) ws.terminate();
    }
  });

  test('a client that sends half its headers and stalls is cut after the headers timeout', async () => {
    const started = Date.now();
    const r = await raw(port(), 'GET /health HTTP/1.1\r\nHost: plinth\r\nX-Slow: ', { localAddress: '127.0.0.7', waitMs: 30_000 });
    expect(r.closed).toBe(true);
    expect(Date.now() - started).toBeLessThan(25_000);
    expect(r.status === null || r.status === 408).toBe(true);
  });

  test('a body that stalls is cut after the idle timeout, and PostgREST commits nothing', async () => {
    const started = Date.now();
    const r = await raw(
      port(),
      `POST /guestbook HTTP/1.1\r\nHost: plinth\r\napikey: ${stack.anonKey}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n[{"note":"stalled"`,
      { localAddress: '127.0.0.7', waitMs: 30_000 },
    );
    expect(r.closed).toBe(true);
    expect(Date.now() - started).toBeLessThan(25_000);
    const [{ n }] = await stack.sql`select count(*)::int as n from guestbook where note = 'stalled'`;
    expect(n).toBe(0);
  });

  test('a slow body that keeps moving is not cut, however long it takes', async () => {
    // One piece every 200 ms for about 7 s: longer than the idle timeout, never silent for anything
    // near it (a loaded machine can hold either process back for a second or more).
    const parts = ['[{"note":', '"slow', ' but', ' steady"', '}', ...Array<string>(30).fill(' '), ']'];
    const body = parts.join('');
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request(`${stack.url}/guestbook`, {
        method: 'POST',
        headers: { apikey: stack.anonKey, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      });
      req.on('response', (res) => {
        res.resume();
        resolve(res.statusCode!);
      });
      req.on('error', reject);
      let i = 0;
      const next = () => {
        if (i === parts.length) return req.end();
        req.write(parts[i++]);
        setTimeout(next, 200);
      };
      next();
    });
    expect(status).toBe(201);
    const [{ n }] = await stack.sql`select count(*)::int as n from guestbook where note = 'slow but steady'`;
    expect(n).toBe(1);
  });

  test('a quiet WebSocket outlives the idle timeout', async () => {
    const r = await openSocket(wsUrl(), { localAddress: '127.0.0.8' });
    const ws = r.ws!;
    try {
      const messages: any[] = [];
      ws.on('message', (d) => messages.push(JSON.parse(d.toString())));
      await new Promise((resolve) => setTimeout(resolve, 8000)); // well past the 5 s idle timeout
      expect(ws.readyState).toBe(WebSocket.OPEN);
      ws.send(JSON.stringify({ type: 'ping', ref: 7 }));
      await expect.poll(() => messages.find((m) => m.type === 'pong'), { timeout: 10_000 }).toMatchObject({ ref: 7 });
    } finally {
      ws.terminate();
    }
  });
});
