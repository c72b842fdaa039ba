// Passphrase encryption of a backup archive, streamed in chunks with flat memory: scrypt derives
// the keys from the passphrase and a random salt, each chunk is sealed with AES-256-GCM, and its
// index, length and "last chunk" flag are authenticated with it, so reordered, altered, dropped
// or truncated chunks are all refused. A key-check value tells a wrong passphrase from damage.
import { createCipheriv, createDecipheriv, createHmac, randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { ArchiveError, ByteSource } from './archive.js';

const MAGIC = Buffer.from('PLNTBAK\x01', 'latin1');
const HEADER_SIZE = MAGIC.length + 4 + 16 + 32;
const CHUNK = 256 * 1024;
const TAG = 16;
// N = 2^15, r = 8: about 32 MiB and a tenth of a second per derivation.
const LOG_N = 15;
const R = 8;
const P = 1;

export function isEncrypted(start: Buffer): boolean {
  return start.length >= MAGIC.length && start.subarray(0, MAGIC.length).equals(MAGIC);
}

function deriveKeys(passphrase: string, salt: Buffer, logN: number, r: number, p: number): Promise<{ enc: Buffer; mac: Buffer }> {
  if (logN < 10 || logN > 20 || r < 1 || r > 32 || p < 1 || p > 16) throw new ArchiveError('archive is corrupted: its encryption header is damaged');
  return new Promise((resolve, reject) =>
    scrypt(passphrase, salt, 64, { N: 2 ** logN, r, p, maxmem: 256 * 2 ** logN * r + 32 * 1024 * 1024 }, (err, key) =>
      err ? reject(err) : resolve({ enc: key.subarray(0, 32), mac: key.subarray(32) }),
    ),
  );
}

function nonce(index: number): Buffer {
  const n = Buffer.alloc(12);
  n.writeBigUInt64BE(BigInt(index), 4);
  return n;
}

function aad(header: Buffer, index: number, last: boolean, length: number): Buffer {
  const extra = Buffer.alloc(13);
  extra.writeBigUInt64BE(BigInt(index), 0);
  extra[8] = last ? 1 : 0;
  extra.writeUInt32BE(length, 9);
  return Buffer.concat([header, extra]);
}

function seal(key: Buffer, header: Buffer, index: number, last: boolean, plain: Buffer): Buffer[] {
  const cipher = createCipheriv('aes-256-gcm', key, nonce(index));
  cipher.setAAD(aad(header, index, last, plain.length));
  const frame = Buffer.alloc(5);
  frame[0] = last ? 1 : 0;
  frame.writeUInt32BE(plain.length, 1);
  const body = cipher.update(plain);
  cipher.final();
  return [frame, body, cipher.getAuthTag()];
}

/** Encrypts a byte stream with the passphrase (an async generator, for stream.pipeline). */
export function encryptStream(passphrase: string) {
  return async function* (source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
    const salt = randomBytes(16);
    const prefix = Buffer.concat([MAGIC, Buffer.from([LOG_N, R, P, 0]), salt]);
    const { enc, mac } = await deriveKeys(passphrase, salt, LOG_N, R, P);
    const header = Buffer.concat([prefix, createHmac('sha256', mac).update(prefix).digest()]);
    yield header;
    let index = 0;
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    for await (const chunk of source) {
      pending.push(chunk);
      pendingBytes += chunk.length;
      while (pendingBytes >= CHUNK) {
        const all = Buffer.concat(pending);
        for (const part of seal(enc, header, index++, false, all.subarray(0, CHUNK))) yield part;
        const rest = all.subarray(CHUNK);
        pending = rest.length ? [rest] : [];
        pendingBytes = rest.length;
      }
    }
    for (const part of seal(enc, header, index, true, Buffer.concat(pending))) yield part;
  };
}

/** Decrypts what encryptStream wrote; a wrong passphrase, damage or truncation throws ArchiveError. */
export function decryptStream(passphrase: string) {
  return async function* (source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
    const input = new ByteSource(source);
    const header = await input.exact(HEADER_SIZE);
    if (!header || !isEncrypted(header)) throw new ArchiveError('archive is not an encrypted Plinth backup');
    const prefix = header.subarray(0, HEADER_SIZE - 32);
    const [logN, r, p] = header.subarray(MAGIC.length, MAGIC.length + 3);
    const { enc, mac } = await deriveKeys(passphrase, prefix.subarray(MAGIC.length + 4), logN, r, p);
    const check = createHmac('sha256', mac).update(prefix).digest();
    if (!timingSafeEqual(check, header.subarray(HEADER_SIZE - 32))) throw new ArchiveError('wrong passphrase: PLINTH_BACKUP_PASSPHRASE does not decrypt this archive');
    for (let index = 0; ; index++) {
      const frame = await input.exact(5);
      if (!frame) throw new ArchiveError('archive is truncated');
      const last = frame[0] === 1;
      const length = frame.readUInt32BE(1);
      if (frame[0] > 1 || length > CHUNK) throw new ArchiveError(`archive is corrupted: encrypted chunk ${index} is damaged`);
      const sealed = await input.exact(length + TAG);
      if (!sealed) throw new ArchiveError('archive is truncated');
      const decipher = createDecipheriv('aes-256-gcm', enc, nonce(index));
      decipher.setAAD(aad(header, index, last, length));
      decipher.setAuthTag(sealed.subarray(length));
      const plain = decipher.update(sealed.subarray(0, length));
      try {
        decipher.final();
      } catch {
        throw new ArchiveError(`archive is corrupted: encrypted chunk ${index} failed authentication`);
      }
      yield plain;
      if (last) {
        if ((await input.exact(1)) !== null) throw new ArchiveError('archive is corrupted: data follows its last encrypted chunk');
        return;
      }
    }
  };
}
