// Configuration without a stack: tables of environments → the values loadConfig settles on, or the
// ConfigError message that names the variable and what it accepts.
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, type Config } from '../sidecar/core/config.js';

const CWD = '/srv/app';
const load = (env: Record<string, string | undefined>) => loadConfig(env, CWD);

describe('loadConfig defaults', () => {
  it('runs with an empty environment', () => {
    const c = load({});
    expect(c).toMatchObject({
      port: 3000,
      host: '127.0.0.1',
      trustProxy: false,
      publicUrl: 'http://localhost:3000',
      dataDir: '/srv/app/.plinth',
      logLevel: 'info',
      database: { url: undefined, embeddedPort: 54329, poolSize: 10, waitSeconds: 10 },
      postgrest: { url: undefined, authenticatorPassword: undefined, poolSize: 64 },
      migrations: { appDir: '/srv/app/migrations' },
      auth: { jwtAlg: 'ES256', accessTokenTtl: 3600, refreshTokenTtl: 2592000, refreshTokenReuseInterval: 10, magicLinkTtl: 900, adminEmail: undefined, adminPassword: undefined, smtpUrl: undefined },
      storage: { backend: 'disk', diskDir: '/srv/app/.plinth/storage', maxFileSize: 5 * 1024 ** 3, sweepAge: 3600, s3: { region: 'us-east-1', bucket: '', forcePathStyle: false, downloads: 'proxy', redirectExpiry: 60 } },
      realtime: { retention: 3600, clientBufferBytes: 4 * 1024 ** 2 },
    });
  });

  it('treats an empty variable as unset', () => {
    expect(load({ PORT: '', PLINTH_HOST: '', DATABASE_URL: '', PLINTH_STORAGE: '', PLINTH_TRUST_PROXY: '', PLINTH_MAX_FILE_SIZE: '' })).toEqual(load({}));
  });
});

describe('loadConfig values', () => {
  it.each<[Record<string, string>, (c: Config) => unknown, unknown]>([
    [{ PORT: '8080' }, (c) => [c.port, c.publicUrl], [8080, 'http://localhost:8080']],
    [{ PORT: '0' }, (c) => c.port, 0],
    [{ PORT: '65535' }, (c) => c.port, 65535],
    [{ PLINTH_PUBLIC_URL: 'https://api.example.com///' }, (c) => c.publicUrl, 'https://api.example.com'],
    [{ PLINTH_DATA_DIR: 'data' }, (c) => [c.dataDir, c.storage.diskDir], ['/srv/app/data', '/srv/app/data/storage']],
    [{ PLINTH_DATA_DIR: '/var/lib/plinth' }, (c) => c.dataDir, '/var/lib/plinth'],
    [{ PLINTH_APP_MIGRATIONS: '../db' }, (c) => c.migrations.appDir, '/srv/db'],
    [{ PLINTH_TRUST_PROXY: '1' }, (c) => c.trustProxy, 1],
    [{ PLINTH_TRUST_PROXY: '10.0.0.0/8, 192.168.1.7' }, (c) => c.trustProxy, ['10.0.0.0/8', '192.168.1.7']],
    [{ PLINTH_TRUST_PROXY: 'off' }, (c) => c.trustProxy, false],
    [{ PLINTH_TRUST_PROXY: '0' }, (c) => c.trustProxy, false],
    [{ PLINTH_LOG_LEVEL: 'silent' }, (c) => c.logLevel, 'silent'],
    [{ DATABASE_URL: 'postgres://u:p@db:5432/app' }, (c) => c.database.url, 'postgres://u:p@db:5432/app'],
    [{ PLINTH_POSTGREST_URL: 'http://postgrest:3000' }, (c) => c.postgrest.url, 'http://postgrest:3000'],
    [{ PLINTH_JWT_ALG: 'EdDSA' }, (c) => c.auth.jwtAlg, 'EdDSA'],
    [{ PLINTH_ACCESS_TOKEN_TTL: '30' }, (c) => c.auth.accessTokenTtl, 30],
    [{ PLINTH_REFRESH_TOKEN_REUSE_INTERVAL: '0' }, (c) => c.auth.refreshTokenReuseInterval, 0],
    [{ PLINTH_ADMIN_EMAIL: 'admin@example.com', PLINTH_ADMIN_PASSWORD: 'secret' }, (c) => [c.auth.adminEmail, c.auth.adminPassword], ['admin@example.com', 'secret']],
    [{ SMTP_URL: 'smtp://mail:25' }, (c) => c.auth.smtpUrl, 'smtp://mail:25'],
    [{ PLINTH_STORAGE: 's3', S3_BUCKET: 'files' }, (c) => [c.storage.backend, c.storage.s3.bucket], ['s3', 'files']],
    [{ S3_FORCE_PATH_STYLE: 'true', S3_REGION: 'eu-west-3' }, (c) => [c.storage.s3.forcePathStyle, c.storage.s3.region], [true, 'eu-west-3']],
    [
      { PLINTH_STORAGE: 's3', S3_BUCKET: 'files', PLINTH_S3_DOWNLOADS: 'redirect', PLINTH_S3_PUBLIC_ENDPOINT: 'https://files.example.com:9000', PLINTH_S3_REDIRECT_EXPIRY: '300' },
      (c) => [c.storage.s3.downloads, c.storage.s3.publicEndpoint, c.storage.s3.redirectExpiry],
      ['redirect', 'https://files.example.com:9000', 300],
    ],
    [{ PLINTH_MAX_FILE_SIZE: '1048576' }, (c) => c.storage.maxFileSize, 1048576],
    [{ PLINTH_MAX_FILE_SIZE: '512KiB' }, (c) => c.storage.maxFileSize, 512 * 1024],
    [{ PLINTH_MAX_FILE_SIZE: '100MiB' }, (c) => c.storage.maxFileSize, 100 * 1024 ** 2],
    [{ PLINTH_MAX_FILE_SIZE: '5GiB' }, (c) => c.storage.maxFileSize, 5 * 1024 ** 3],
    [{ PLINTH_MAX_FILE_SIZE: '1TiB' }, (c) => c.storage.maxFileSize, 1024 ** 4],
    // Decimal unit names are read as their binary neighbours.
    [{ PLINTH_MAX_FILE_SIZE: '5GB' }, (c) => c.storage.maxFileSize, 5 * 1024 ** 3],
    [{ PLINTH_MAX_FILE_SIZE: '10 mib' }, (c) => c.storage.maxFileSize, 10 * 1024 ** 2],
    [{ PLINTH_MAX_FILE_SIZE: ' 7B ' }, (c) => c.storage.maxFileSize, 7],
    [{ PLINTH_REALTIME_CLIENT_BUFFER: '1MiB' }, (c) => c.realtime.clientBufferBytes, 1024 ** 2],
    [{ PLINTH_REALTIME_RETENTION: '0' }, (c) => c.realtime.retention, 0],
  ])('%j', (env, pick, expected) => {
    expect(pick(load(env))).toEqual(expected);
  });
});

describe('loadConfig refusals', () => {
  it.each<[Record<string, string>, string]>([
    [{ PORT: 'http' }, 'PORT must be an integer between 0 and 65535, got "http"'],
    [{ PORT: '65536' }, 'PORT must be an integer between 0 and 65535, got "65536"'],
    [{ PORT: '-1' }, 'PORT must be an integer between 0 and 65535, got "-1"'],
    [{ PORT: '3000.5' }, 'PORT must be an integer between 0 and 65535, got "3000.5"'],
    [{ PLINTH_PG_PORT: '0' }, 'PLINTH_PG_PORT must be an integer between 1 and 65535, got "0"'],
    [{ PLINTH_DB_POOL_SIZE: '0' }, 'PLINTH_DB_POOL_SIZE must be an integer between 1 and 1000, got "0"'],
    [{ PLINTH_DB_WAIT: '3601' }, 'PLINTH_DB_WAIT must be an integer between 0 and 3600, got "3601"'],
    [{ PLINTH_POSTGREST_POOL_SIZE: 'many' }, 'PLINTH_POSTGREST_POOL_SIZE must be an integer between 1 and 10000, got "many"'],
    [{ PLINTH_ACCESS_TOKEN_TTL: '29' }, 'PLINTH_ACCESS_TOKEN_TTL must be an integer between 30 and 604800, got "29"'],
    [{ PLINTH_REFRESH_TOKEN_TTL: '59' }, 'PLINTH_REFRESH_TOKEN_TTL must be an integer between 60 and 31536000, got "59"'],
    [{ PLINTH_REFRESH_TOKEN_REUSE_INTERVAL: '301' }, 'PLINTH_REFRESH_TOKEN_REUSE_INTERVAL must be an integer between 0 and 300, got "301"'],
    [{ PLINTH_MAGIC_LINK_TTL: '0' }, 'PLINTH_MAGIC_LINK_TTL must be an integer between 1 and 86400, got "0"'],
    [{ PLINTH_TRUST_PROXY: 'maybe' }, 'PLINTH_TRUST_PROXY must be false, a hop count (e.g. 1) or a comma-separated list of proxy addresses or CIDR blocks, got "maybe"'],
    [{ PLINTH_TRUST_PROXY: 'true' }, 'PLINTH_TRUST_PROXY=true would believe every X-Forwarded-For entry, so clients could pick their own address: set the number of proxies in front of Plinth (e.g. PLINTH_TRUST_PROXY=1) or their addresses (e.g. PLINTH_TRUST_PROXY=10.0.0.0/8,192.168.1.7)'],
    [{ PLINTH_TRUST_PROXY: '11' }, 'PLINTH_TRUST_PROXY must be a hop count between 0 and 10 or a list of proxy addresses, got "11"'],
    [{ S3_FORCE_PATH_STYLE: 'y' }, 'S3_FORCE_PATH_STYLE must be true or false, got "y"'],
    [{ PLINTH_LOG_LEVEL: 'verbose' }, 'PLINTH_LOG_LEVEL must be one of debug, info, warn, error, silent, got "verbose"'],
    [{ PLINTH_LOG_LEVEL: 'INFO' }, 'PLINTH_LOG_LEVEL must be one of debug, info, warn, error, silent, got "INFO"'],
    [{ PLINTH_STORAGE: 'gcs' }, 'PLINTH_STORAGE must be one of disk, s3, got "gcs"'],
    [{ PLINTH_JWT_ALG: 'HS256' }, 'PLINTH_JWT_ALG must be one of ES256, ES384, ES512, RS256, PS256, EdDSA, got "HS256"'],
    [{ PLINTH_STORAGE: 's3' }, 'PLINTH_STORAGE=s3 needs S3_BUCKET'],
    [{ PLINTH_S3_DOWNLOADS: 'redirect' }, 'PLINTH_S3_DOWNLOADS=redirect needs PLINTH_STORAGE=s3 (files on disk are always sent by Plinth)'],
    [{ PLINTH_STORAGE: 's3', S3_BUCKET: 'files', PLINTH_S3_DOWNLOADS: 'presigned' }, 'PLINTH_S3_DOWNLOADS must be one of proxy, redirect, got "presigned"'],
    [{ PLINTH_S3_REDIRECT_EXPIRY: '0' }, 'PLINTH_S3_REDIRECT_EXPIRY must be an integer between 1 and 604800, got "0"'],
    [{ PLINTH_S3_PUBLIC_ENDPOINT: 's3.example.com' }, 'PLINTH_S3_PUBLIC_ENDPOINT is not a valid URL'],
    [{ PLINTH_ADMIN_EMAIL: 'admin@example.com' }, 'PLINTH_ADMIN_EMAIL and PLINTH_ADMIN_PASSWORD must be set together'],
    [{ PLINTH_ADMIN_PASSWORD: 'secret' }, 'PLINTH_ADMIN_EMAIL and PLINTH_ADMIN_PASSWORD must be set together'],
    [{ DATABASE_URL: 'localhost/app' }, 'DATABASE_URL is not a valid URL'],
    [{ PLINTH_POSTGREST_URL: 'postgrest' }, 'PLINTH_POSTGREST_URL is not a valid URL'],
    [{ SMTP_URL: 'mail server' }, 'SMTP_URL is not a valid URL'],
    [{ S3_ENDPOINT: '//minio' }, 'S3_ENDPOINT is not a valid URL'],
    [{ PLINTH_MAX_FILE_SIZE: '5 gigabytes' }, 'PLINTH_MAX_FILE_SIZE must be a size such as 1048576, 512MiB or 5GiB, got "5 gigabytes"'],
    [{ PLINTH_MAX_FILE_SIZE: '1.5GiB' }, 'PLINTH_MAX_FILE_SIZE must be a size such as 1048576, 512MiB or 5GiB, got "1.5GiB"'],
    [{ PLINTH_MAX_FILE_SIZE: '-1' }, 'PLINTH_MAX_FILE_SIZE must be a size such as 1048576, 512MiB or 5GiB, got "-1"'],
    [{ PLINTH_REALTIME_CLIENT_BUFFER: 'lots' }, 'PLINTH_REALTIME_CLIENT_BUFFER must be a size such as 1048576, 512MiB or 5GiB, got "lots"'],
  ])('%j: %s', (env, message) => {
    let thrown: unknown;
    try {
      load(env);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(ConfigError);
    expect((thrown as Error).message).toBe(message);
  });

  it('never names a secret value in its messages', () => {
    expect(() => load({ DATABASE_URL: 'not a url with password hunter2' })).toThrow(/^DATABASE_URL is not a valid URL$/);
  });
});
