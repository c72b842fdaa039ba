// Token signing keys: created on first start, rotated by `plinth keys rotate`, shared by every
// sidecar through auth.signing_keys. Only the sidecar holds private halves, so only the sidecar
// can mint tokens, and only the sidecar verifies them: PostgREST trusts an internal HS256 secret
// (auth.postgrest_secret), and receives each verified caller's claims signed with it.
import { createHmac, createPrivateKey, sign as signBytes, type KeyObject } from 'node:crypto';
import * as jose from 'jose';
import { ConfigError, type JwtAlgorithm } from './config.js';
import { API_ROLES, type Claims, type Sql } from './db.js';
import { unauthorized } from './errors.js';

export const AUDIENCE = 'plinth';
/**
 * The audience of users' access tokens, as GoTrue (and so supabase-js and policies written for
 * Supabase) sets it. API keys keep `plinth`; a token with either verifies.
 */
export const USER_AUDIENCE = 'authenticated';
const ACCEPTED_AUDIENCES = [AUDIENCE, USER_AUDIENCE];
const API_KEY_LIFETIME = 10 * 365 * 86400;
const KEYS_CHANNEL = 'plinth_keys';
const VERIFIED_CACHE_LIMIT = 10_000;

interface SigningKeyRow {
  kid: string;
  alg: JwtAlgorithm;
  private_jwk: jose.JWK;
  public_jwk: jose.JWK;
  anon_key: string;
  service_key: string;
  created_at: Date;
}

export interface ApiKeys {
  kid: string;
  anonKey: string;
  serviceKey: string;
}

export async function sign(claims: jose.JWTPayload, key: jose.CryptoKey | Uint8Array, alg: string, kid: string, iat: number, exp: number) {
  return new jose.SignJWT(claims)
    .setProtectedHeader({ alg, kid, typ: 'JWT' })
    .setIssuedAt(iat)
    .setExpirationTime(exp)
    .setAudience(typeof claims.aud === 'string' ? claims.aud : AUDIENCE)
    .sign(key);
}

/**
 * How node:crypto signs for each JWS algorithm. Minting runs on every sign-in and refresh; done here,
 * synchronously, it skips WebCrypto's per-call checks and copies, and does not queue on libuv's
 * thread pool behind password hashing. The token is the one jose would write (same header, claims
 * and order).
 */
const NODE_SIGNING: Record<string, { hash: string | null; options: Record<string, unknown> }> = {
  ES256: { hash: 'sha256', options: { dsaEncoding: 'ieee-p1363' } },
  ES384: { hash: 'sha384', options: { dsaEncoding: 'ieee-p1363' } },
  ES512: { hash: 'sha512', options: { dsaEncoding: 'ieee-p1363' } },
  RS256: { hash: 'sha256', options: {} },
  PS256: { hash: 'sha256', options: { padding: 6 /* RSA_PKCS1_PSS_PADDING */, saltLength: 32 } },
  EdDSA: { hash: null, options: {} },
};

export interface NodeSigner {
  key: KeyObject;
  hash: string | null;
  options: Record<string, unknown>;
  /** The encoded protected header and its dot. */
  head: string;
}

export function nodeSigner(jwk: jose.JWK, alg: string, kid: string): NodeSigner | null {
  const how = NODE_SIGNING[alg];
  if (how === undefined) return null;
  const head = `${Buffer.from(JSON.stringify({ alg, kid, typ: 'JWT' })).toString('base64url')}.`;
  try {
    return { key: createPrivateKey({ key: jwk as never, format: 'jwk' }), hash: how.hash, options: how.options, head };
  } catch {
    return null; // a key node:crypto does not import is still used, through jose
  }
}

export function signWithNode(signer: NodeSigner, claims: jose.JWTPayload, iat: number, exp: number): string {
  // As jose's SignJWT: the claims, then iat, exp and aud set over them (in that order).
  const payload: jose.JWTPayload = { ...claims };
  payload.iat = iat;
  payload.exp = exp;
  payload.aud = typeof claims.aud === 'string' ? claims.aud : AUDIENCE;
  const input = `${signer.head}${Buffer.from(JSON.stringify(payload)).toString('base64url')}`;
  const signature = signBytes(signer.hash, Buffer.from(input), { key: signer.key, ...signer.options } as never);
  return `${input}.${signature.toString('base64url')}`;
}

/** A new signing key pair with its anon and service API keys, not yet stored anywhere. */
export interface NewSigningKey extends ApiKeys {
  alg: JwtAlgorithm;
  privateJwk: jose.JWK;
  publicJwk: jose.JWK;
}

export async function generateSigningKey(alg: JwtAlgorithm): Promise<NewSigningKey> {
  const { privateKey, publicKey } = await jose.generateKeyPair(alg, { extractable: true });
  const publicJwk = await jose.exportJWK(publicKey);
  const kid = await jose.calculateJwkThumbprint(publicJwk);
  Object.assign(publicJwk, { kid, alg, use: 'sig' });
  const privateJwk = { ...(await jose.exportJWK(privateKey)), kid, alg };
  const iat = Math.floor(Date.now() / 1000);
  const exp = iat + API_KEY_LIFETIME;
  const anonKey = await sign({ role: 'anon' }, privateKey, alg, kid, iat, exp);
  const serviceKey = await sign({ role: 'service_role' }, privateKey, alg, kid, iat, exp);
  return { kid, alg, privateJwk, publicJwk, anonKey, serviceKey };
}

/** Generates a signing key with its anon and service API keys and stores it; tells every sidecar and PostgREST. */
export async function addSigningKey(sql: Sql, alg: JwtAlgorithm, onlyIfNone = false): Promise<ApiKeys | null> {
  return sql.begin(async (tx) => {
    // Two sidecars starting on an empty database must not both create a key.
    await tx`select pg_advisory_xact_lock(hashtext('plinth.signing_keys'))`;
    if (onlyIfNone) {
      const [{ n }] = await tx`select count(*)::int as n from auth.signing_keys`;
      if (n > 0) return null;
    }
    const { kid, privateJwk, publicJwk, anonKey, serviceKey } = await generateSigningKey(alg);
    await tx`
      insert into auth.signing_keys (kid, alg, private_jwk, public_jwk, anon_key, service_key)
      values (${kid}, ${alg}, ${tx.json(privateJwk as never)}, ${tx.json(publicJwk as never)}, ${anonKey}, ${serviceKey})`;
    await tx`select pg_notify(${KEYS_CHANNEL}, ${kid}), pg_notify('pgrst', 'reload config')`;
    return { kid, anonKey, serviceKey };
  });
}

/**
 * Removes an older signing key (after a rotation): every token it signed, its anon and service
 * keys included, stops verifying in every sidecar and in PostgREST. The newest key cannot be
 * retired: it signs new tokens.
 */
export async function retireSigningKey(sql: Sql, kid: string): Promise<void> {
  await sql.begin(async (tx) => {
    await tx`select pg_advisory_xact_lock(hashtext('plinth.signing_keys'))`;
    const rows = await tx<{ kid: string }[]>`select kid from auth.signing_keys order by created_at desc`;
    if (!rows.some((r) => r.kid === kid)) throw new ConfigError(`no signing key with kid ${JSON.stringify(kid)}; \`plinth keys list\` shows them`);
    if (rows[0].kid === kid) throw new ConfigError(`${kid} is the newest signing key: run \`plinth keys rotate\` first, then retire it`);
    await tx`delete from auth.signing_keys where kid = ${kid}`;
    await tx`select pg_notify(${KEYS_CHANNEL}, ${kid}), pg_notify('pgrst', 'reload config')`;
  });
}

export async function listSigningKeys(sql: Sql): Promise<Array<{ kid: string; alg: string; created_at: Date }>> {
  return sql<{ kid: string; alg: string; created_at: Date }[]>`select kid, alg, created_at from auth.signing_keys order by created_at`;
}

export async function currentApiKeys(sql: Sql): Promise<ApiKeys> {
  const [row] = await sql<SigningKeyRow[]>`select * from auth.signing_keys order by created_at desc limit 1`;
  if (!row) throw new Error('no signing key yet: run `plinth start` once');
  return { kid: row.kid, anonKey: row.anon_key, serviceKey: row.service_key };
}

/** A verified token: its claims, and the same claims signed for PostgREST. */
interface Verified {
  claims: Claims;
  forPostgrest: string;
}

const HS256_HEADER = Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT' })).toString('base64url');

/** The same claims as an HS256 JWT under `secret`: synchronous, a few microseconds. */
function signHs256(claims: Claims, secret: string): string {
  const unsigned = `${HS256_HEADER}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
  return `${unsigned}.${createHmac('sha256', secret).update(unsigned).digest('base64url')}`;
}

/** The signing keys in memory: mints with the newest, verifies with any of them. */
export class KeyRing {
  private signing!: { kid: string; alg: string; key: jose.CryptoKey | Uint8Array; node: NodeSigner | null };
  private jwks!: ReturnType<typeof jose.createLocalJWKSet>;
  private algorithms: string[] = [];
  private publicKeys: jose.JWK[] = [];
  private apiKeys!: ApiKeys;
  private postgrestSecret = '';
  private verified = new Map<string, Verified>();
  private reloadListeners = new Set<() => void>();
  /** Counts reloads: a verification that spans one is done again against the new keys. */
  private generation = 0;
  /**
   * The token a request that presents none acts with: the development user's, minted once at
   * start when BYPASS_AUTH is on; undefined otherwise (no token → 401).
   */
  fallbackToken: string | undefined;

  private constructor(private readonly sql: Sql) {}

  static async load(sql: Sql): Promise<KeyRing> {
    const ring = new KeyRing(sql);
    await ring.reload();
    return ring;
  }

  async reload(): Promise<void> {
    const [rows, [secret]] = await Promise.all([
      this.sql<SigningKeyRow[]>`select * from auth.signing_keys order by created_at`,
      this.sql<{ secret: string }[]>`select secret from auth.postgrest_secret`,
    ]);
    if (rows.length === 0) throw new Error('no signing key in auth.signing_keys');
    if (!secret) throw new Error('no row in auth.postgrest_secret');
    this.postgrestSecret = secret.secret;
    const newest = rows[rows.length - 1];
    this.signing = {
      kid: newest.kid,
      alg: newest.alg,
      key: await jose.importJWK(newest.private_jwk, newest.alg),
      node: nodeSigner(newest.private_jwk, newest.alg, newest.kid),
    };
    this.publicKeys = rows.map((r) => r.public_jwk);
    this.jwks = jose.createLocalJWKSet({ keys: this.publicKeys });
    this.algorithms = [...new Set(rows.map((r) => r.alg))];
    this.apiKeys = { kid: newest.kid, anonKey: newest.anon_key, serviceKey: newest.service_key };
    this.verified.clear();
    this.generation++;
    for (const listener of this.reloadListeners) listener();
  }

  /**
   * Calls `listener` after every reload, so that holders of long-lived credentials (open sockets)
   * can verify them again once a key is retired. Returns the way to stop listening.
   */
  onReload(listener: () => void): () => void {
    this.reloadListeners.add(listener);
    return () => this.reloadListeners.delete(listener);
  }

  /**
   * Reloads whenever any process adds or removes a key, and whenever the listening connection is
   * re-established (a retirement announced while it was down would otherwise go unheard).
   */
  async follow(): Promise<{ unlisten: () => Promise<void> }> {
    const reload = () => void this.reload().catch(() => {});
    let listening = false;
    return this.sql.listen(KEYS_CHANNEL, reload, () => {
      if (listening) reload();
      listening = true;
    });
  }

  get jwksDocument(): { keys: jose.JWK[] } {
    return { keys: this.publicKeys };
  }

  get keys(): ApiKeys {
    return this.apiKeys;
  }

  async mint(claims: jose.JWTPayload & { role: string }, ttlSeconds: number): Promise<string> {
    const iat = Math.floor(Date.now() / 1000);
    const { node } = this.signing;
    if (node !== null) return signWithNode(node, claims, iat, iat + ttlSeconds);
    return sign(claims, this.signing.key, this.signing.alg, this.signing.kid, iat, iat + ttlSeconds);
  }

  private cached(token: string): Verified | undefined {
    const entry = this.verified.get(token);
    return entry && (entry.claims.exp as number) > Date.now() / 1000 ? entry : undefined;
  }

  /**
   * The token to send PostgREST for a caller's token verified earlier and not yet expired: the
   * proxy's synchronous fast path. Undefined when the token must be verified (again) first.
   */
  forPostgrest(token: string): string | undefined {
    return this.cached(token)?.forPostgrest;
  }

  /** The claims of a token verified earlier and not yet expired; undefined otherwise. */
  claimsOf(token: string): Claims | undefined {
    return this.cached(token)?.claims;
  }

  /** Verifies a bearer token; throws a 401 PlinthError with PostgREST's shape if it is not one of ours. */
  async verify(token: string): Promise<Claims> {
    return (await this.verifyForPostgrest(token)).claims;
  }

  /** Verifies a bearer token and signs its claims for PostgREST; 401 if it is not one of ours. */
  async verifyForPostgrest(token: string): Promise<Verified> {
    for (;;) {
      const cached = this.cached(token);
      if (cached) return cached;
      const generation = this.generation;
      let payload: jose.JWTPayload;
      try {
        ({ payload } = await jose.jwtVerify(token, this.jwks, { algorithms: this.algorithms, audience: ACCEPTED_AUDIENCES, requiredClaims: ['exp'] }));
      } catch (err) {
        if (err instanceof jose.errors.JWTExpired) throw unauthorized('JWT expired');
        throw unauthorized(`JWT invalid: ${describeJoseError(err)}`);
      }
      // The keys changed while this token was being checked: a retired key must neither pass nor
      // be cached past the reload that removed it, so check again against the keys as they are now.
      if (generation !== this.generation) continue;
      if (typeof payload.role !== 'string' || !(API_ROLES as readonly string[]).includes(payload.role)) {
        throw unauthorized('JWT invalid: the role claim must be anon, authenticated or service_role');
      }
      const claims = payload as Claims;
      const entry = { claims, forPostgrest: signHs256(claims, this.postgrestSecret) };
      if (this.verified.size >= VERIFIED_CACHE_LIMIT) this.verified.clear();
      this.verified.set(token, entry);
      return entry;
    }
  }
}

function describeJoseError(err: unknown): string {
  if (err instanceof jose.errors.JWSSignatureVerificationFailed) return 'signature verification failed';
  if (err instanceof jose.errors.JWKSNoMatchingKey) return 'not signed by a Plinth key';
  if (err instanceof jose.errors.JOSEAlgNotAllowed) return 'algorithm not allowed';
  if (err instanceof jose.errors.JWTClaimValidationFailed) return `claim ${err.claim} ${err.reason}`;
  if (err instanceof jose.errors.JWSInvalid || err instanceof jose.errors.JWTInvalid) return 'malformed token';
  return 'cannot be verified';
}
