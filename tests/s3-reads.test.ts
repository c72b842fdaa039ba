// Reading objects from S3 (s3rver), the store's get() on its own: as a stream for any reader, and
// written straight to an HTTP response for a download. Whatever stops a read early must give its
// connection back, and every S3 answer but the bytes must come out as a clear error.
import { randomBytes, randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Config } from '../sidecar/core/config.ts';
import { databaseUnavailable } from '../sidecar/core/errors.ts';
import { freePort } from '../sidecar/start/process.ts';
import { ObjectNotFound, type StorageBackend, type StoredBytes } from '../sidecar/storage/backends/adapter.ts';
import { s3Backend } from '../sidecar/storage/backends/s3.ts';
import { startS3rver, type S3Peer } from './harness.ts';

const MiB = 1024 * 1024;

let peer: S3Peer;
let backend: StorageBackend;
const bytes = randomBytes(3 * MiB + 17);
const key = randomUUID();

function settings(accessKeyId = 'S3RVER', endpoint = peer.endpoint): Config['storage']['s3'] {
  return {
    endpoint,
    region: 'us-east-1',
    bucket: peer.bucket,
    accessKeyId,
    secretAccessKey: 'S3RVER',
    forcePathStyle: true,
    downloads: 'proxy',
    publicEndpoint: undefined,
    redirectExpiry: 60,
  };
}

async function readAll(body: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** A server whose every answer is `send(res)`; the client reads what comes. */
async function serving(send: (res: http.ServerResponse) => Promise<void>) {
  const outcomes: Promise<string>[] = [];
  const server = http.createServer((_req, res) => {
    outcomes.push(send(res).then(() => 'resolved', (err: Error) => `rejected: ${err.message}`));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  return { url, outcomes, close: () => new Promise((resolve) => server.close(resolve)) };
}

beforeAll(async () => {
  peer = await startS3rver();
  backend = s3Backend(settings());
  await backend.put(key, Readable.from([bytes]));
}, 60_000);

afterAll(async () => {
  await backend?.close();
  await peer?.stop();
});

describe('S3 reads', () => {
  test('the whole object and a range, read as streams, are byte-exact', async () => {
    expect((await readAll(await backend.get(key))).equals(bytes)).toBe(true);
    const range = { start: MiB - 3, end: 2 * MiB + 4 };
    expect((await readAll(await backend.get(key, range))).equals(bytes.subarray(range.start, range.end + 1))).toBe(true);
  });

  test('a missing object is ObjectNotFound; a refused request says S3’s code and message', async () => {
    await expect(backend.get(randomUUID())).rejects.toBeInstanceOf(ObjectNotFound);
    const wrong = s3Backend(settings('NOT-A-KEY'));
    try {
      const err = await wrong.get(key).then(() => null, (e: Error) => e);
      expect(err).toBeInstanceOf(Error);
      expect(err).not.toBeInstanceOf(ObjectNotFound);
      expect(err!.message).toBe(`S3 answered 403 InvalidAccessKeyId reading object ${key}: The AWS Access Key Id you provided does not exist in our records.`);
    } finally {
      await wrong.close();
    }
  });

  test('an S3 that does not answer is a refused connection, which the error map answers 503', async () => {
    const port = await freePort();
    const nowhere = s3Backend(settings('S3RVER', `http://127.0.0.1:${port}`));
    try {
      const err = await nowhere.get(key).then(() => null, (e: unknown) => e);
      expect((err as { code?: string }).code).toBe('ECONNREFUSED');
      expect(databaseUnavailable(err)).toMatchObject({ status: 503, message: 'The database or the file store did not answer; try again shortly' });
    } finally {
      await nowhere.close();
    }
  });

  test('written to a response: the client gets every byte, a range too, and writeTo resolves', async () => {
    const range = { start: 5, end: 2 * MiB };
    let n = 0;
    const server = await serving(async (res) => {
      const part = n++ === 1;
      const body = await backend.get(key, part ? range : undefined);
      const length = part ? range.end - range.start + 1 : bytes.length;
      res.writeHead(200, { 'content-length': length });
      await body.writeTo(res, length);
    });
    try {
      const whole = Buffer.from(await (await fetch(server.url)).arrayBuffer());
      expect(whole.equals(bytes)).toBe(true);
      const part = Buffer.from(await (await fetch(server.url)).arrayBuffer());
      expect(part.equals(bytes.subarray(range.start, range.end + 1))).toBe(true);
      expect(await Promise.all(server.outcomes)).toEqual(['resolved', 'resolved']);
    } finally {
      await server.close();
    }
  });

  test('an object that is not the recorded length cuts the response and says how', async () => {
    const server = await serving(async (res) => {
      const body = await backend.get(key);
      const length = Number(new URL(`http://x${res.req.url}`).searchParams.get('length'));
      res.writeHead(200, { 'content-length': length });
      await body.writeTo(res, length);
    });
    try {
      for (const length of [bytes.length + 1, bytes.length - 1]) {
        await expect(fetch(`${server.url}?length=${length}`).then((r) => r.arrayBuffer())).rejects.toThrow();
      }
      expect(await Promise.all(server.outcomes)).toEqual([
        'rejected: the store sent 1 bytes fewer than recorded',
        `rejected: the store holds more bytes than the ${bytes.length - 1} recorded`,
      ]);
    } finally {
      await server.close();
    }
  });

  test('reads stopped early, by the reader or by a client that leaves, give their connections back', async () => {
    // More reads stopped midway than the store keeps connections: any connection left held
    // would leave the last reads waiting forever.
    for (let i = 0; i < 60; i++) {
      const body = await backend.get(key);
      await new Promise<void>((resolve) => body.once('data', () => resolve()));
      body.destroy();
    }
    const server = await serving(async (res) => {
      const body: StoredBytes = await backend.get(key);
      res.writeHead(200, { 'content-length': bytes.length });
      await body.writeTo(res, bytes.length);
    });
    try {
      for (let i = 0; i < 60; i++) {
        const controller = new AbortController();
        const res = await fetch(server.url, { signal: controller.signal });
        const reader = res.body!.getReader();
        await reader.read();
        controller.abort();
      }
      // A client that leaves is no error of the store's.
      await expect.poll(() => server.outcomes.length).toBe(60);
      expect(new Set(await Promise.all(server.outcomes))).toEqual(new Set(['resolved']));
      expect((await readAll(await backend.get(key))).equals(bytes)).toBe(true);
    } finally {
      await server.close();
    }
  }, 60_000);

  test('bytes no one reads, cut off when the store closes, throw nowhere', async () => {
    const other = s3Backend(settings());
    const body = await other.get(key);
    await other.close();
    await expect(readAll(body)).rejects.toThrow();
  });

  test('writeTo on bytes already being read is refused', async () => {
    const body = await backend.get(key);
    await new Promise<void>((resolve) => body.once('data', () => resolve()));
    body.pause();
    expect(() => body.writeTo(new http.ServerResponse(new http.IncomingMessage(null as never)), bytes.length)).toThrow(/already being read/);
    body.destroy();
  });
});
