// Function secrets: AES-256-GCM in functions.secrets, under a key that never enters the database
// (PLINTH_SECRETS_KEY, else a key file in the data directory created on first use, mode 0600).
// Each value is bound to its name (additional data), so a ciphertext copied to another name fails.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Config } from '../core/config.js';
import type { Sql } from '../core/db.js';

export const SECRET_NAME = /^[A-Z_][A-Z0-9_]{0,127}$/;

export class SecretError extends Error {}

export function checkSecretName(name: string): void {
  if (!SECRET_NAME.test(name) || name.startsWith('PLINTH_') || name.startsWith('DENO_')) {
    throw new SecretError(`a secret name is upper case letters, digits and _ (e.g. STRIPE_KEY), not starting with PLINTH_ or DENO_; got ${JSON.stringify(name)}`);
  }
}

/** The 32-byte key: PLINTH_SECRETS_KEY, else the data directory's key file (created when missing). */
export function secretsKey(config: Config['functions']): Buffer {
  if (config.secretsKey) {
    const raw = config.secretsKey;
    return /^[0-9a-f]{64}$/i.test(raw) ? Buffer.from(raw, 'hex') : Buffer.from(raw, 'base64');
  }
  try {
    return Buffer.from(fs.readFileSync(config.secretsKeyFile, 'utf8').trim(), 'base64');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  fs.mkdirSync(path.dirname(config.secretsKeyFile), { recursive: true });
  try {
    fs.writeFileSync(config.secretsKeyFile, `${randomBytes(32).toString('base64')}\n`, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    // Another process created it first: use theirs.
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  return Buffer.from(fs.readFileSync(config.secretsKeyFile, 'utf8').trim(), 'base64');
}

export function seal(key: Buffer, name: string, value: string): Buffer {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(name));
  const body = Buffer.concat([cipher.update(value, 'utf8'), cipher.final()]);
  return Buffer.concat([iv, body, cipher.getAuthTag()]);
}

export function open(key: Buffer, name: string, sealed: Buffer): string {
  const decipher = createDecipheriv('aes-256-gcm', key, sealed.subarray(0, 12));
  decipher.setAAD(Buffer.from(name));
  decipher.setAuthTag(sealed.subarray(sealed.length - 16));
  return Buffer.concat([decipher.update(sealed.subarray(12, sealed.length - 16)), decipher.final()]).toString('utf8');
}

/** Running sidecars restart the workers of functions that declare a changed secret. */
const CHANNEL = 'plinth_functions';

export async function setSecret(sql: Sql, key: Buffer, name: string, value: string): Promise<void> {
  checkSecretName(name);
  const sealed = seal(key, name, value);
  await sql`insert into functions.secrets (name, value) values (${name}, ${sealed})
            on conflict (name) do update set value = excluded.value, updated_at = now()`;
  await sql`select pg_notify(${CHANNEL}, ${`secret:${name}`})`;
}

export async function unsetSecret(sql: Sql, name: string): Promise<boolean> {
  checkSecretName(name);
  const gone = await sql`delete from functions.secrets where name = ${name} returning name`;
  await sql`select pg_notify(${CHANNEL}, ${`secret:${name}`})`;
  return gone.length > 0;
}

export async function listSecrets(sql: Sql): Promise<Array<{ name: string; created_at: Date; updated_at: Date }>> {
  return sql`select name, created_at, updated_at from functions.secrets order by name`;
}

/** The named secrets that are set, decrypted; a value this key cannot open is left out and reported. */
export async function readSecrets(sql: Sql, key: Buffer, names: string[], warn: (msg: string) => void): Promise<Record<string, string>> {
  if (names.length === 0) return {};
  const rows = await sql<{ name: string; value: Buffer }[]>`select name, value from functions.secrets where name = any(${names})`;
  const out: Record<string, string> = {};
  for (const row of rows) {
    try {
      out[row.name] = open(key, row.name, row.value);
    } catch {
      warn(`secret ${row.name} cannot be decrypted with this key: every sidecar sharing the database needs the same PLINTH_SECRETS_KEY`);
    }
  }
  return out;
}
