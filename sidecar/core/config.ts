// The one place that reads process.env. Every variable is documented in README.md ("Configuration").
import path from 'node:path';
import { parseProxyEntry, type TrustProxy } from './client-address.js';
import { closestName, withDotEnv, type Env } from './dotenv.js';

export class ConfigError extends Error {}

function str(env: Env, name: string, fallback: string): string {
  const v = env[name];
  return v === undefined || v === '' ? fallback : v;
}

function optional(env: Env, name: string): string | undefined {
  const v = env[name];
  return v === undefined || v === '' ? undefined : v;
}

function int(env: Env, name: string, fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new ConfigError(`${name} must be an integer between ${min} and ${max}, got ${JSON.stringify(raw)}`);
  }
  return n;
}

function bool(env: Env, name: string, fallback: boolean): boolean {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (/^(1|true|yes|on)$/i.test(raw)) return true;
  if (/^(0|false|no|off)$/i.test(raw)) return false;
  throw new ConfigError(`${name} must be true or false, got ${JSON.stringify(raw)}`);
}

function oneOf<T extends string>(env: Env, name: string, allowed: readonly T[], fallback: T): T {
  const raw = str(env, name, fallback);
  if (!(allowed as readonly string[]).includes(raw)) {
    throw new ConfigError(`${name} must be one of ${allowed.join(', ')}, got ${JSON.stringify(raw)}`);
  }
  return raw as T;
}

function url(env: Env, name: string): string | undefined {
  const raw = optional(env, name);
  if (raw === undefined) return undefined;
  try {
    new URL(raw);
  } catch {
    throw new ConfigError(`${name} is not a valid URL`);
  }
  return raw;
}

/** Sizes accept a plain byte count or a unit: 512KiB, 100MiB, 5GiB, 1TiB. */
function bytes(env: Env, name: string, fallback: number): number {
  const raw = optional(env, name);
  if (raw === undefined) return fallback;
  const m = /^(\d+)\s*(B|KiB|MiB|GiB|TiB|KB|MB|GB|TB)?$/i.exec(raw.trim());
  if (!m) throw new ConfigError(`${name} must be a size such as 1048576, 512MiB or 5GiB, got ${JSON.stringify(raw)}`);
  const unit = (m[2] ?? 'B').toUpperCase().replace('I', '');
  const scale = { B: 1, KB: 1024, MB: 1024 ** 2, GB: 1024 ** 3, TB: 1024 ** 4 }[unit]!;
  return Number(m[1]) * scale;
}

/** An origin (scheme://host[:port]) with nothing after it, e.g. https://files.example.com. */
function origin(env: Env, name: string): string | undefined {
  const raw = url(env, name);
  if (raw === undefined) return undefined;
  const u = new URL(raw);
  if (!/^https?:$/.test(u.protocol) || u.username || u.password || u.search || u.hash || !/^\/?$/.test(u.pathname)) {
    throw new ConfigError(`${name} must be an origin such as https://files.example.com (no path, query or credentials), got ${JSON.stringify(raw)}`);
  }
  return u.origin;
}

/**
 * Which proxies in front of Plinth may tell the client's address (X-Forwarded-For): none (`false`),
 * a hop count, or their addresses/CIDR blocks. `true` is refused: trusting every hop lets a client
 * behind an appending proxy choose its own address.
 */
function trustedProxies(env: Env, name: string): TrustProxy {
  const raw = optional(env, name)?.trim();
  if (raw === undefined || /^(0|false|no|off)$/i.test(raw)) return false;
  if (/^(true|yes|on)$/i.test(raw)) {
    throw new ConfigError(
      `${name}=${raw} would believe every X-Forwarded-For entry, so clients could pick their own address: ` +
        `set the number of proxies in front of Plinth (e.g. ${name}=1) or their addresses (e.g. ${name}=10.0.0.0/8,192.168.1.7)`,
    );
  }
  if (/^\d+$/.test(raw)) {
    const hops = Number(raw);
    if (hops > 10) throw new ConfigError(`${name} must be a hop count between 0 and 10 or a list of proxy addresses, got ${JSON.stringify(raw)}`);
    return hops;
  }
  const entries = raw.split(',').map((e) => e.trim()).filter((e) => e !== '');
  const bad = entries.find((e) => !parseProxyEntry(e));
  if (bad !== undefined || entries.length === 0) {
    throw new ConfigError(`${name} must be false, a hop count (e.g. 1) or a comma-separated list of proxy addresses or CIDR blocks, got ${JSON.stringify(bad ?? raw)}`);
  }
  return entries;
}

/**
 * Which browser origins may call the API: `*` (any, as PostgREST does by default) or a list of
 * origins. Credentials are never allowed cross-origin, so a list only narrows who may read answers.
 */
function corsOrigins(env: Env, name: string): '*' | string[] {
  const raw = optional(env, name)?.trim();
  if (raw === undefined || raw === '*') return '*';
  const origins: string[] = [];
  for (const entry of raw.split(',').map((e) => e.trim()).filter((e) => e !== '')) {
    let u: URL | null = null;
    try {
      u = new URL(entry);
    } catch {
      /* refused below */
    }
    if (!u || !/^https?:$/.test(u.protocol) || u.username || u.password || u.search || u.hash || !/^\/?$/.test(u.pathname)) {
      throw new ConfigError(`${name} must be * or a comma-separated list of origins such as https://app.example.com (no path), got ${JSON.stringify(entry)}`);
    }
    // Browsers send the serialised origin (lowercase host, no default port): compare with the same form.
    if (!origins.includes(u.origin)) origins.push(u.origin);
  }
  if (origins.length === 0) throw new ConfigError(`${name} must be * or a comma-separated list of origins, got ${JSON.stringify(raw)}`);
  return origins;
}

/** Schemas that hold Plinth's own or PostgreSQL's internals: the API never serves them, whatever the settings. */
export const PRIVATE_SCHEMAS = ['auth', 'storage', 'realtime', 'plinth', 'audit', 'functions', 'extensions', 'pg_catalog', 'information_schema', 'pg_toast'] as const;

/** The schemas PostgREST serves (the first is the default; others are picked with Accept-Profile/Content-Profile). */
function exposedSchemas(env: Env, name: string): string[] {
  const raw = str(env, name, 'public');
  const schemas = [...new Set(raw.split(',').map((e) => e.trim()).filter((e) => e !== ''))];
  if (schemas.length === 0) throw new ConfigError(`${name} must list at least one schema, e.g. public`);
  for (const schema of schemas) {
    // PostgREST reads the list split on commas, and a quoted or odd name is almost surely a typo.
    if (!/^[a-z_][a-z0-9_$]*$/.test(schema)) {
      throw new ConfigError(`${name} must be a comma-separated list of lowercase schema names (letters, digits, _), got ${JSON.stringify(schema)}`);
    }
    if ((PRIVATE_SCHEMAS as readonly string[]).includes(schema) || schema.startsWith('pg_')) {
      throw new ConfigError(`${name} may not include ${schema}: it holds private data (accounts, files, internals) that the API never serves`);
    }
  }
  return schemas;
}

/** A 256-bit key, written as 64 hex digits or base64; kept as text (so `plinth config` masks it), decoded by its user. */
function secretsKey(env: Env, name: string): string | undefined {
  const raw = optional(env, name)?.trim();
  if (raw === undefined) return undefined;
  const key = /^[0-9a-f]{64}$/i.test(raw) ? Buffer.from(raw, 'hex') : Buffer.from(raw, 'base64');
  if (key.length !== 32) throw new ConfigError(`${name} must be 32 bytes, as 64 hex digits or base64 (e.g. openssl rand -base64 32)`);
  return raw;
}

/** Seconds, as milliseconds. */
function seconds(env: Env, name: string, fallback: number, min: number, max: number): number {
  return int(env, name, fallback, min, max) * 1000;
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

export const JWT_ALGORITHMS = ['ES256', 'ES384', 'ES512', 'RS256', 'PS256', 'EdDSA'] as const;
export type JwtAlgorithm = (typeof JWT_ALGORITHMS)[number];

/** The real environment over the project folder's `.env`, with where each variable came from. */
export function projectEnvironment(cwd = process.cwd()) {
  return withDotEnv(process.env, cwd);
}

/** An env whose reads are recorded, so a set PLINTH_* variable nothing read can be reported. */
function recordingReads(env: Env, seen: Set<string>): Env {
  return new Proxy(env, {
    get(target, name) {
      if (typeof name === 'string') seen.add(name);
      return target[name as string];
    },
  });
}

/** PLINTH_* variables that are set but no setting reads: typos, each with the closest known name. */
function unknownVariables(env: Env, seen: Set<string>): { name: string; suggestion?: string }[] {
  return Object.keys(env)
    .filter((name) => name.startsWith('PLINTH_') && !seen.has(name))
    .sort()
    .map((name) => ({ name, suggestion: closestName(name, seen) }));
}

export function loadConfig(env: Env = projectEnvironment().env, cwd = process.cwd()) {
  const seen = new Set<string>();
  const given = env;
  env = recordingReads(env, seen);
  const port = int(env, 'PORT', 3000, 0, 65535);
  const dataDir = path.resolve(cwd, str(env, 'PLINTH_DATA_DIR', '.plinth'));
  const smtpUrl = url(env, 'SMTP_URL');
  const storageBackend = oneOf(env, 'PLINTH_STORAGE', ['disk', 's3'] as const, 'disk');
  const s3Bucket = optional(env, 'S3_BUCKET');
  if (storageBackend === 's3' && !s3Bucket) throw new ConfigError('PLINTH_STORAGE=s3 needs S3_BUCKET');
  const s3Downloads = oneOf(env, 'PLINTH_S3_DOWNLOADS', ['proxy', 'redirect'] as const, 'proxy');
  if (s3Downloads === 'redirect' && storageBackend !== 's3') throw new ConfigError('PLINTH_S3_DOWNLOADS=redirect needs PLINTH_STORAGE=s3 (files on disk are always sent by Plinth)');
  const adminEmail = optional(env, 'PLINTH_ADMIN_EMAIL');
  const adminPassword = optional(env, 'PLINTH_ADMIN_PASSWORD');
  if (Boolean(adminEmail) !== Boolean(adminPassword)) {
    throw new ConfigError('PLINTH_ADMIN_EMAIL and PLINTH_ADMIN_PASSWORD must be set together');
  }

  const host = str(env, 'PLINTH_HOST', '127.0.0.1');
  const bypassAuth = bool(env, 'BYPASS_AUTH', false);
  const devUser = optional(env, 'PLINTH_DEV_USER');
  if (bypassAuth && !devUser) throw new ConfigError('BYPASS_AUTH=true needs PLINTH_DEV_USER: the email of an existing account that requests without a token act as');
  if (bypassAuth && !isLoopback(host)) {
    throw new ConfigError(`BYPASS_AUTH=true lets anyone who can reach Plinth act as ${devUser}: it is refused unless PLINTH_HOST is a loopback address (127.0.0.1, ::1 or localhost), got ${host}`);
  }
  const backupSchedule = optional(env, 'PLINTH_BACKUP_SCHEDULE');
  const backupTo = optional(env, 'PLINTH_BACKUP_TO');
  if (backupSchedule && !backupTo) throw new ConfigError('PLINTH_BACKUP_SCHEDULE needs PLINTH_BACKUP_TO (a directory or s3://bucket/prefix)');
  if (backupTo?.startsWith('s3:') && !/^s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](\/.*)?$/.test(backupTo)) {
    throw new ConfigError(`PLINTH_BACKUP_TO must be a directory or s3://bucket/prefix, got ${JSON.stringify(backupTo)}`);
  }

  return {
    /** The variables read, and PLINTH_* ones set but unread (typos); a getter, so every read has happened. */
    get variables() {
      return { read: [...seen].sort(), unknown: unknownVariables(given, seen) };
    },
    port,
    host,
    /** Believe X-Forwarded-For (client addresses for rate limits and caps) only from proxies you run. */
    trustProxy: trustedProxies(env, 'PLINTH_TRUST_PROXY'),
    publicUrl: str(env, 'PLINTH_PUBLIC_URL', `http://localhost:${port}`).replace(/\/+$/, ''),
    /** Whether PLINTH_PUBLIC_URL was given; without it, the OpenAPI document names the host each request came to. */
    publicUrlSet: url(env, 'PLINTH_PUBLIC_URL') !== undefined,
    dataDir,
    logLevel: oneOf(env, 'PLINTH_LOG_LEVEL', ['debug', 'info', 'warn', 'error', 'silent'] as const, 'info'),
    /** text: one readable line per entry; json: one JSON object per line (time, level, msg, request_id). */
    logFormat: oneOf(env, 'PLINTH_LOG_FORMAT', ['text', 'json'] as const, 'text'),

    database: {
      /** An external PostgreSQL; when absent, Plinth embeds one in the data directory. */
      url: url(env, 'DATABASE_URL'),
      embeddedPort: int(env, 'PLINTH_PG_PORT', 54329, 1, 65535),
      poolSize: int(env, 'PLINTH_DB_POOL_SIZE', 10, 1, 1000),
      /** Seconds to keep retrying an external database that is not reachable yet. */
      waitSeconds: int(env, 'PLINTH_DB_WAIT', 10, 0, 3600),
      /** Schemas the REST API serves; never one of PRIVATE_SCHEMAS. */
      schemas: exposedSchemas(env, 'PLINTH_DB_SCHEMAS'),
      /** Milliseconds one statement of an anon or authenticated caller may run (PostgREST and the sidecar); 0: no limit. */
      statementTimeoutMs: seconds(env, 'PLINTH_STATEMENT_TIMEOUT', 30, 0, 86400),
    },

    frontDoor: {
      /** Largest request body forwarded to PostgREST, which buffers bodies whole before checking grants. */
      maxRestBody: bytes(env, 'PLINTH_MAX_REST_BODY', 10 * 1024 ** 2),
      /** Open connections per client address (WebSockets included); 0: no cap. */
      maxConnectionsPerAddress: int(env, 'PLINTH_MAX_CONNECTIONS_PER_ADDRESS', 128, 0, 1_000_000),
      /** Milliseconds a client has to send a request's headers. */
      headersTimeoutMs: seconds(env, 'PLINTH_HEADERS_TIMEOUT', 20, 1, 3600),
      /** Milliseconds without a byte either way before an HTTP connection is closed (WebSockets are exempt). */
      idleTimeoutMs: seconds(env, 'PLINTH_IDLE_TIMEOUT', 60, 1, 86400),
      /** Browser origins allowed to read the API's answers (CORS). */
      corsOrigins: corsOrigins(env, 'PLINTH_CORS_ORIGINS'),
    },

    postgrest: {
      /** An external PostgREST (docker-compose); when absent, Plinth starts its own on a unix socket. */
      url: url(env, 'PLINTH_POSTGREST_URL'),
      authenticatorPassword: optional(env, 'PLINTH_AUTHENTICATOR_PASSWORD'),
      poolSize: int(env, 'PLINTH_POSTGREST_POOL_SIZE', 64, 1, 10000),
      /** Milliseconds a proxied request may wait for a free PostgREST connection before it gets 503. */
      queueTimeoutMs: seconds(env, 'PLINTH_PROXY_QUEUE_TIMEOUT', 10, 1, 3600),
    },

    migrations: {
      appDir: path.resolve(cwd, str(env, 'PLINTH_APP_MIGRATIONS', './migrations')),
    },

    auth: {
      jwtAlg: oneOf(env, 'PLINTH_JWT_ALG', JWT_ALGORITHMS, 'ES256'),
      accessTokenTtl: int(env, 'PLINTH_ACCESS_TOKEN_TTL', 3600, 30, 86400 * 7),
      refreshTokenTtl: int(env, 'PLINTH_REFRESH_TOKEN_TTL', 30 * 86400, 60, 365 * 86400),
      /** Seconds during which a just-exchanged refresh token may be exchanged again (0: never). */
      refreshTokenReuseInterval: int(env, 'PLINTH_REFRESH_TOKEN_REUSE_INTERVAL', 10, 0, 300),
      magicLinkTtl: int(env, 'PLINTH_MAGIC_LINK_TTL', 900, 1, 86400),
      /** Lifetime of password-reset, email-confirmation, email-change and invitation links. */
      accountLinkTtl: int(env, 'PLINTH_ACCOUNT_LINK_TTL', 86400, 1, 86400 * 30),
      /** Who may sign up: anyone, nobody (admins create accounts), or only invited addresses. */
      signup: oneOf(env, 'PLINTH_SIGNUP', ['open', 'closed', 'invite'] as const, 'open'),
      /** Password sign-in waits until the address is confirmed by a mailed link. */
      confirmEmail: bool(env, 'PLINTH_CONFIRM_EMAIL', false),
      adminEmail,
      adminPassword,
      /** Make an existing non-admin account with PLINTH_ADMIN_EMAIL the admin (it may belong to anyone who signed up). */
      adminAdopt: bool(env, 'PLINTH_ADMIN_ADOPT', false),
      smtpUrl,
      mailFrom: str(env, 'PLINTH_MAIL_FROM', 'Plinth <no-reply@localhost>'),
      rateLimitWindow: int(env, 'PLINTH_RATE_LIMIT_WINDOW', 900, 1, 86400),
      rateLimitPerIp: int(env, 'PLINTH_RATE_LIMIT_PER_IP', 50, 1, 1_000_000),
      rateLimitPerEmail: int(env, 'PLINTH_RATE_LIMIT_PER_EMAIL', 10, 1, 1_000_000),
    },

    storage: {
      backend: storageBackend,
      diskDir: path.resolve(dataDir, 'storage'),
      maxFileSize: bytes(env, 'PLINTH_MAX_FILE_SIZE', 5 * 1024 ** 3),
      sweepAge: int(env, 'PLINTH_SWEEP_AGE', 3600, 0, 86400 * 365),
      /** Seconds a resumable (TUS) upload may go without a PATCH before it is swept. */
      tusExpiry: int(env, 'PLINTH_TUS_EXPIRY', 86400, 1, 86400 * 365),
      /** Bytes each signed-in user may keep stored in total; null: unlimited. */
      userQuota: optional(env, 'PLINTH_USER_QUOTA') === undefined ? null : bytes(env, 'PLINTH_USER_QUOTA', 0),
      /** Seconds an upload body may send nothing before it fails (and keeps nothing). */
      uploadIdleTimeout: int(env, 'PLINTH_UPLOAD_IDLE_TIMEOUT', 60, 1, 86400),
      /** Uploads in progress at once from one client address; 0: no limit. */
      maxUploadsPerAddress: int(env, 'PLINTH_MAX_UPLOADS_PER_ADDRESS', 10, 0, 1_000_000),
      /** A second origin that serves downloads, so user bytes never render on the API's origin. */
      filesOrigin: origin(env, 'PLINTH_FILES_ORIGIN'),
      s3: {
        endpoint: url(env, 'S3_ENDPOINT'),
        region: str(env, 'S3_REGION', 'us-east-1'),
        bucket: s3Bucket ?? '',
        accessKeyId: optional(env, 'S3_ACCESS_KEY_ID'),
        secretAccessKey: optional(env, 'S3_SECRET_ACCESS_KEY'),
        forcePathStyle: bool(env, 'S3_FORCE_PATH_STYLE', false),
        /** proxy: Plinth relays the bytes; redirect: a permitted download answers 302 to a presigned GetObject URL. */
        downloads: s3Downloads,
        /** Where clients reach the S3 service (presigned URLs are signed for this host); unset: S3_ENDPOINT. */
        publicEndpoint: url(env, 'PLINTH_S3_PUBLIC_ENDPOINT'),
        /** Seconds a presigned download URL stays valid (S3 allows up to 7 days). */
        redirectExpiry: int(env, 'PLINTH_S3_REDIRECT_EXPIRY', 60, 1, 604800),
      },
    },

    /** Development only: requests without a token act as this account (never as the service role). */
    devUser: bypassAuth ? devUser : undefined,
    backup: {
      /** Encrypts archives (scrypt + AES-256-GCM) and decrypts them on restore. */
      passphrase: optional(env, 'PLINTH_BACKUP_PASSPHRASE'),
      /** A cron expression (minute hour day-of-month month day-of-week, UTC); unset: no scheduled backups. */
      schedule: backupSchedule,
      /** Where scheduled backups go: a directory (relative to the working directory), or s3://bucket/prefix. */
      to: backupTo === undefined || backupTo.startsWith('s3://') ? backupTo : path.resolve(cwd, backupTo),
      /** Scheduled backups kept in PLINTH_BACKUP_TO; older ones are deleted. */
      keep: int(env, 'PLINTH_BACKUP_KEEP', 7, 1, 10000),
    },

    audit: {
      /** Record every request (audit.requests and request metrics); off is for benchmarks. */
      enabled: bool(env, 'PLINTH_AUDIT', true),
      /** Days the request and activity logs keep rows; 0: forever. */
      retentionDays: int(env, 'PLINTH_AUDIT_RETENTION', 30, 0, 36500),
      /** A bearer token for GET /metrics besides the service key. */
      metricsToken: optional(env, 'PLINTH_METRICS_TOKEN'),
    },

    functions: {
      /** Where `<name>.ts` functions live. */
      dir: path.resolve(cwd, str(env, 'PLINTH_FUNCTIONS_DIR', './functions')),
      /** Milliseconds a function has to answer (headers) before the caller gets 504. */
      timeoutMs: seconds(env, 'PLINTH_FUNCTION_TIMEOUT', 30, 1, 3600),
      /** V8 heap cap of each Deno worker, in MiB. */
      memoryMb: int(env, 'PLINTH_FUNCTION_MEMORY', 256, 32, 65536),
      /** Deno processes per function. */
      workers: int(env, 'PLINTH_FUNCTION_WORKERS', 1, 1, 64),
      /** Largest request body an HTTP call may send to a function. */
      maxBody: bytes(env, 'PLINTH_FUNCTION_MAX_BODY', 10 * 1024 ** 2),
      /** Reload a function when its file changes, without a restart. */
      watch: bool(env, 'PLINTH_FUNCTIONS_WATCH', true),
      /** Attempts after the first for a database-change event before it is recorded as failed. */
      retries: int(env, 'PLINTH_FUNCTION_RETRIES', 4, 0, 100),
      /** Days invocation records are kept; 0: forever. */
      retentionDays: int(env, 'PLINTH_FUNCTION_LOG_RETENTION', 7, 0, 36500),
      /** The key secrets are encrypted with (32 bytes, base64 or hex); else a key file in the data directory. */
      secretsKey: secretsKey(env, 'PLINTH_SECRETS_KEY'),
      secretsKeyFile: path.join(dataDir, 'secrets.key'),
      /** Deno's module cache, kept across restarts. */
      denoDir: path.join(dataDir, 'deno'),
    },

    realtime: {
      retention: int(env, 'PLINTH_REALTIME_RETENTION', 3600, 0, 86400 * 30),
      clientBufferBytes: bytes(env, 'PLINTH_REALTIME_CLIENT_BUFFER', 4 * 1024 ** 2),
      /** Open realtime sockets per sidecar (each may hold up to clientBufferBytes unsent); 0: no cap. */
      maxClients: int(env, 'PLINTH_REALTIME_MAX_CLIENTS', 1000, 0, 1_000_000),
    },
  };
}

export type Config = ReturnType<typeof loadConfig>;
