// Realtime through database and sidecar faults: connections terminated again and again, PostgreSQL
// restarted (a clean stop, then a crash), PostgreSQL away for longer than the sidecar waits, and a
// sidecar killed. Each time a stream of inserts runs, and every subscriber must end with every
// change exactly once, in order, reconnecting and resuming from its last position when the server
// closed its socket. The database is an external one (a PostgreSQL started here), so it can be
// stopped and started again while both sidecars keep running.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { connect, type Sql } from '../../sidecar/core/db.ts';
import { startEmbeddedPostgres, type RunningPostgres } from '../../sidecar/start/embedded-postgres.ts';
import { freePort } from '../../sidecar/start/process.ts';
import { startS3rver, startStack, type S3Peer, type Stack } from '../harness.ts';

const SLOW = 240_000;
/** How long a sidecar's change feed may fail before it closes its subscribers' sockets (4503; realtime/hub.ts). */
const RESUME_AFTER_MS = 10_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/**
 * A subscriber to one user's todos that behaves as a client should: after any close (but 4001) it
 * reconnects, to the next address when one does not answer, and subscribes with "from" = the last
 * position it processed.
 */
class Follower {
  readonly received: Array<{ position: number; id: number; at: number }> = [];
  readonly closes: number[] = [];
  readonly errors: string[] = [];
  private last?: number;
  private ws?: WebSocket;
  private stopped = false;
  private index = 0;
  private subscribed!: () => void;
  readonly ready = new Promise<void>((r) => (this.subscribed = r));

  constructor(
    private readonly urls: string[],
    private readonly token: string,
  ) {
    this.connect();
  }

  ids(): number[] {
    return this.received.map((c) => c.id);
  }

  stop(): void {
    this.stopped = true;
    this.ws?.close();
  }

  private connect(): void {
    if (this.stopped) return;
    const base = this.urls[this.index % this.urls.length].replace(/^http/, 'ws');
    const ws = new WebSocket(`${base}/realtime?access_token=${this.token}`);
    this.ws = ws;
    let opened = false;
    ws.on('open', () => (opened = true));
    ws.on('message', (data) => this.handle(ws, JSON.parse(data.toString())));
    ws.on('error', () => {});
    ws.on('close', (code) => {
      if (opened) this.closes.push(code);
      else this.index++;
      if (code !== 4001) setTimeout(() => this.connect(), 100);
    });
  }

  private subscribe(ws: WebSocket): void {
    if (ws !== this.ws || ws.readyState !== WebSocket.OPEN) return;
    ws.send(JSON.stringify({ type: 'subscribe', id: 't', table: 'todos', ...(this.last !== undefined ? { from: this.last } : {}) }));
  }

  private handle(ws: WebSocket, m: { type: string; code?: string; id?: string; position?: number; new?: { id: number } }): void {
    if (m.type === 'ready') this.subscribe(ws);
    else if (m.type === 'subscribed') {
      this.last ??= m.position;
      this.subscribed();
    } else if (m.type === 'change') {
      this.received.push({ position: m.position!, id: m.new!.id, at: Date.now() });
      this.last = m.position;
    } else if (m.type === 'error') {
      this.errors.push(m.code!);
      // The database was unavailable while the subscription was checked: ask again.
      if (m.code === 'PLINTH503' && m.id === 't') setTimeout(() => this.subscribe(ws), 250);
    }
  }
}

/** Inserts one todo after another, straight into the database, retrying through outages. */
function startWriter(databaseUrl: string, userId: string, tag: string) {
  const sql = connect(databaseUrl, 1, 'fault writer');
  let stop = false;
  let committed = 0;
  const done = (async () => {
    for (let i = 0; !stop; i++) {
      try {
        await sql`insert into public.todos (user_id, title) values (${userId}, ${`${tag} ${i}`})`;
        committed++;
        await sleep(10);
      } catch {
        await sleep(50);
      }
    }
  })();
  return {
    get committed() {
      return committed;
    },
    async stop() {
      stop = true;
      await done;
      await sql.end({ timeout: 5 });
    },
  };
}

let pgDir: string;
let pgPort: number;
let pg: RunningPostgres;
let admin: Sql;
let s3: S3Peer;
let a: Stack;
let b: Stack;
const followers: Follower[] = [];
const killed = new Set<Stack>();

beforeAll(async () => {
  pgDir = fs.mkdtempSync(path.join(os.tmpdir(), 'plinth-faults-pg-'));
  fs.chmodSync(pgDir, 0o755);
  pgPort = await freePort();
  pg = await startEmbeddedPostgres(pgDir, pgPort, () => {});
  s3 = await startS3rver();
  // Two sidecars on the one database, sharing one object store.
  a = await startStack({ env: { DATABASE_URL: pg.url, ...s3.env } });
  b = await startStack({ env: { DATABASE_URL: pg.url, ...s3.env } });
  admin = connect(pg.url, 1, 'fault injector');
}, SLOW);

afterAll(async () => {
  for (const f of followers) f.stop();
  await admin?.end({ timeout: 5 }).catch(() => {});
  await b?.destroy();
  await a?.destroy();
  await pg?.stop();
  await s3?.stop();
  if (pgDir) fs.rmSync(pgDir, { recursive: true, force: true });
}, SLOW);

/** Followers of a fresh user, subscribed before anything is written. */
async function follow(urlsOfEach: string[][]): Promise<{ userId: string; followers: Follower[] }> {
  const user = await a.createUser();
  const mine = urlsOfEach.map((urls) => new Follower(urls, user.token));
  followers.push(...mine);
  await Promise.all(mine.map((f) => f.ready));
  return { userId: user.id, followers: mine };
}

/** Every row the writer committed reached every follower exactly once, in position order. */
async function expectEveryChangeOnce(userId: string, mine: Follower[]): Promise<void> {
  const ids = (await admin<{ id: number }[]>`select id from public.todos where user_id = ${userId} order by id`).map((r) => Number(r.id));
  expect(ids.length).toBeGreaterThan(0);
  await until('every follower to catch up', () => mine.every((f) => f.received.length >= ids.length)).catch(() => {});
  for (const stack of [a, b]) if (stack.exitCode !== null && !killed.has(stack)) expect.fail(`a sidecar exited:\n${stack.output}`);
  for (const f of mine) {
    expect(f.ids()).toEqual(ids);
    const positions = f.received.map((c) => c.position);
    expect(positions.every((p, i) => i === 0 || p > positions[i - 1])).toBe(true);
  }
}

/** For each follower, ms from `since` to the first change it received after it. */
function recovery(mine: Follower[], since: number): number[] {
  return mine.map((f) => (f.received.find((c) => c.at >= since)?.at ?? NaN) - since);
}

describe('one database, two sidecars', () => {
  test('the sidecars\' database connections terminated again and again under a stream of inserts: every subscriber gets every change once, in order', async () => {
    const { userId, followers: mine } = await follow([[a.url], [a.url], [b.url]]);
    const writer = startWriter(pg.url, userId, 'blip');
    await until('the first changes', () => mine.every((f) => f.received.length > 10));
    for (let round = 0; round < 20; round++) {
      await admin`
        select pg_terminate_backend(pid) from pg_stat_activity
        where pid <> pg_backend_pid() and application_name in ('plinth', 'plinth caller')`.catch(() => {});
      await sleep(150);
    }
    await sleep(500);
    await writer.stop();
    await expectEveryChangeOnce(userId, mine);
  }, SLOW);

  test('PostgreSQL stopped and started again, then crashed and started again, under a stream of inserts: every change once, in order, delivered within seconds of its return', async () => {
    const { userId, followers: mine } = await follow([[a.url], [b.url]]);
    const writer = startWriter(pg.url, userId, 'restart');
    await until('the first changes', () => mine.every((f) => f.received.length > 10));

    // A clean stop (fast shutdown: every connection is told the server is going away).
    const down1 = Date.now();
    await pg.stop();
    await sleep(1000);
    pg = await startEmbeddedPostgres(pgDir, pgPort, () => {});
    const back1 = Date.now();
    await until('changes after the restart', () => mine.every((f) => f.received.some((c) => c.at >= back1)));
    const afterStop = recovery(mine, back1);

    // A crash (immediate shutdown: connections cut, recovery at the next start).
    const crashed = pg;
    const down2 = Date.now();
    process.kill(crashed.pid, 'SIGQUIT');
    await crashed.died;
    await sleep(1000);
    pg = await startEmbeddedPostgres(pgDir, pgPort, () => {});
    const back2 = Date.now();
    await until('changes after the crash', () => mine.every((f) => f.received.some((c) => c.at >= back2)));
    const afterCrash = recovery(mine, back2);

    await sleep(300);
    await writer.stop();
    await expectEveryChangeOnce(userId, mine);
    console.log(`realtime: first change delivered after PostgreSQL was back: ${afterStop.join(', ')} ms (clean stop), ${afterCrash.join(', ')} ms (crash)`);
    // A short outage is ridden out: the sockets stay open. Short means under the sidecar's patience
    // (RESUME_AFTER_MS), as seen by each follower: from the moment PostgreSQL went down to its first
    // change afterwards, which bounds its sidecar's failing spell. Stopping and starting PostgreSQL
    // on a loaded machine can take longer than that; then the only close allowed is the resume one.
    for (const [i, f] of mine.entries()) {
      const outages = [back1 + afterStop[i] - down1, back2 + afterCrash[i] - down2];
      if (outages.every((ms) => ms < RESUME_AFTER_MS)) expect(f.closes, `outages of ${outages.join(', ')} ms`).toEqual([]);
      else expect(f.closes.filter((code) => code !== 4503), `outages of ${outages.join(', ')} ms`).toEqual([]);
    }
    for (const ms of [...afterStop, ...afterCrash]) expect(ms).toBeLessThan(10_000);
  }, SLOW);

  test('PostgreSQL away for longer than the sidecars wait: sockets close with 4503, and clients that resume from their last position miss nothing', async () => {
    const { userId, followers: mine } = await follow([[a.url], [b.url]]);
    const writer = startWriter(pg.url, userId, 'outage');
    await until('the first changes', () => mine.every((f) => f.received.length > 10));
    await pg.stop();
    await until('every socket to be closed with 4503', () => mine.every((f) => f.closes.includes(4503)), 60_000);
    pg = await startEmbeddedPostgres(pgDir, pgPort, () => {});
    const back = Date.now();
    await until('changes after the outage', () => mine.every((f) => f.received.some((c) => c.at >= back)));
    const recovered = recovery(mine, back);
    await sleep(300);
    await writer.stop();
    await expectEveryChangeOnce(userId, mine);
    console.log(`realtime: first change delivered after a long outage: ${recovered.join(', ')} ms`);
    for (const ms of recovered) expect(ms).toBeLessThan(10_000);
  }, SLOW);

  test('a sidecar killed (SIGKILL) under a stream of inserts: its clients resume on the other one and miss nothing; the surviving sidecar still removes deleted files\' bytes', async () => {
    const owner = await a.createUser();
    const keys = async () => ((await s3.client.send(new ListObjectsV2Command({ Bucket: s3.bucket }))).Contents ?? []).map((o) => o.Key!);
    const before = new Set(await keys());
    const stored = await b.fetch('/rpc/store_file', { method: 'POST', token: owner.token, headers: { 'content-type': 'application/octet-stream', 'file-path': 'faults/kept-by-b.txt' }, body: 'bytes written through b' });
    expect(stored.status).toBe(200);
    const [key] = (await keys()).filter((k) => !before.has(k));
    expect(key).toBeDefined();

    const { userId, followers: mine } = await follow([
      [b.url, a.url],
      [b.url, a.url],
      [a.url, b.url],
    ]);
    const writer = startWriter(pg.url, userId, 'failover');
    await until('the first changes', () => mine.every((f) => f.received.length > 10));
    // Its PostgREST outlives it (a SIGKILL cannot be passed on); stopped here, after the test's point.
    const orphans = fs.readFileSync(path.join(b.dataDir, 'plinth.pid'), 'utf8').trim().split(/\s+/).map(Number).slice(1);
    killed.add(b);
    await b.kill();
    await until('the clients of the killed sidecar to come back', () => mine.slice(0, 2).every((f) => f.closes.length > 0 && f.received.at(-1)!.at > Date.now() - 1000));
    await sleep(300);
    await writer.stop();
    await expectEveryChangeOnce(userId, mine);
    expect(mine[2].closes).toEqual([]);

    // The file written through the dead sidecar, deleted through the live one: its bytes go.
    const deleted = await a.fetch('/files?path=eq.faults/kept-by-b.txt', { method: 'DELETE', token: owner.token });
    expect(deleted.status).toBe(204);
    await until('the deleted file\'s bytes to be removed', async () => !(await keys()).includes(key), 30_000);
    // The sweeper removes the bytes, then the object's row in the same transaction: its commit follows.
    const blobRows = async () => (await admin<{ n: number }[]>`select count(*)::int as n from storage.blobs where ${key} like '%' || key`)[0].n;
    await until('the deleted file\'s object row to be removed', async () => (await blobRows()) === 0, 30_000);
    expect(await blobRows()).toBe(0);
    for (const pid of orphans) process.kill(pid, 'SIGKILL');
  }, SLOW);
});
