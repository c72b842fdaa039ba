// Opaque secrets handed to clients (refresh tokens, magic-link tokens): 256 random bits, stored
// only as their SHA-256. A fast hash is enough here: the input is random, not a guessable password.
import { createHash, randomBytes } from 'node:crypto';

export function hashOpaqueToken(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

export function newOpaqueToken(): { token: string; hash: Buffer } {
  const token = randomBytes(32).toString('base64url');
  return { token, hash: hashOpaqueToken(token) };
}
