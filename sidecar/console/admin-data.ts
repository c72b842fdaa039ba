// What the console's Policies and Keys pages read and change beyond the REST API. Each call runs
// as the caller (asCaller), and the console.* SQL functions decide whether an admin is asking.
import { asCaller, type Claims } from '../core/db.js';
import type { Plinth } from '../core/context.js';
import { generateSigningKey } from '../core/keys.js';

export interface TableCoverage {
  schema_name: string;
  table_name: string;
  kind: string;
  rls_enabled: boolean;
  policies: Array<{ name: string; command: string; roles: string[]; permissive: string; using: string | null; with_check: string | null }>;
  coverage: Record<string, Record<'select' | 'insert' | 'update' | 'delete', 'all' | 'policy' | 'none' | 'no grant'>>;
}

export function policyCoverage(plinth: Plinth, claims: Claims): Promise<TableCoverage[]> {
  return asCaller(plinth.callerSql, claims, (tx) => tx<TableCoverage[]>`select * from console.policy_coverage()`);
}

export interface SigningKeyInfo {
  kid: string;
  alg: string;
  created_at: Date;
  newest: boolean;
  anon_key: string;
}

export function signingKeys(plinth: Plinth, claims: Claims): Promise<SigningKeyInfo[]> {
  return asCaller(plinth.callerSql, claims, (tx) => tx<SigningKeyInfo[]>`select * from console.signing_keys()`);
}

/** A new newest signing key; tokens of the older keys keep working until those are retired. */
export async function rotateSigningKey(plinth: Plinth, claims: Claims): Promise<SigningKeyInfo[]> {
  const key = await generateSigningKey(plinth.config.auth.jwtAlg);
  return asCaller(plinth.callerSql, claims, async (tx) => {
    await tx`select console.add_signing_key(${key.kid}, ${key.alg}, ${tx.json(key.privateJwk as never)}, ${tx.json(key.publicJwk as never)}, ${key.anonKey}, ${key.serviceKey})`;
    return tx<SigningKeyInfo[]>`select * from console.signing_keys()`;
  });
}

export function retireSigningKey(plinth: Plinth, claims: Claims, kid: string): Promise<SigningKeyInfo[]> {
  return asCaller(plinth.callerSql, claims, async (tx) => {
    await tx`select console.retire_signing_key(${kid})`;
    return tx<SigningKeyInfo[]>`select * from console.signing_keys()`;
  });
}
