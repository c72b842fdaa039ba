// docker-compose.yml cannot run here (no Docker engine): it is checked by reading it against the
// code, and the README is checked to document every configuration variable the code reads.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { parse } from 'yaml';
import { loadConfig } from '../sidecar/core/config.ts';
import { REPO_ROOT } from './harness.ts';

const compose = parse(fs.readFileSync(path.join(REPO_ROOT, 'docker-compose.yml'), 'utf8'));
const configSource = fs.readFileSync(path.join(REPO_ROOT, 'sidecar', 'core', 'config.ts'), 'utf8');
const configVariables = [...new Set([...configSource.matchAll(/\(env, '([A-Z][A-Z0-9_]+)'/g)].map((m) => m[1]))];
const readme = fs.readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8');

describe('docker-compose.yml', () => {
  const services = compose.services;

  test('has the five parts of the stack with the pinned images', () => {
    expect(services.postgres.image).toBe('postgres:17');
    expect(services.postgrest.image).toBe('postgrest/postgrest:v12.0.2');
    expect(services.minio.image).toMatch(/^minio\/minio/);
    expect(services.mailpit.image).toMatch(/mailpit|mailhog|maildev/);
  });

  test('the sidecar runs the image the Dockerfile builds, installing nothing at start', () => {
    const sidecar = services.sidecar;
    expect(sidecar.build).toBe('.');
    expect(sidecar.command).toBeUndefined();
    expect(sidecar.entrypoint).toBeUndefined();
    // A minimal init as pid 1 forwards SIGTERM, so `docker compose stop` is Plinth's orderly stop.
    expect(sidecar.init).toBe(true);
    // The data volume where the image keeps it; the app's migrations where the image reads them.
    const dockerfile = fs.readFileSync(path.join(REPO_ROOT, 'Dockerfile'), 'utf8');
    const imageEnv = Object.fromEntries([...dockerfile.matchAll(/^(?:ENV\s+|\s+)(PLINTH_[A-Z_]+|PORT)=(\S+)/gm)].map((m) => [m[1], m[2]]));
    expect(sidecar.volumes).toContain(`plinth-data:${imageEnv.PLINTH_DATA_DIR}`);
    expect(sidecar.volumes).toContain(`./migrations:${imageEnv.PLINTH_APP_MIGRATIONS}:ro`);
    expect(sidecar.volumes.some((v: string) => v.startsWith('./:'))).toBe(false);
    expect(imageEnv.PORT).toBe(sidecar.environment.PORT);
  });

  test('the sidecar sets only variables Plinth reads, and they validate', () => {
    const env = services.sidecar.environment as Record<string, string>;
    for (const name of Object.keys(env)) expect(configVariables, name).toContain(name);
    // Substitute compose's ${VAR...} placeholders with sample values, then load the config.
    const sample = Object.fromEntries(
      Object.entries(env).map(([k, v]) => [k, String(v).replace(/\$\{([A-Z_]+)[^}]*\}/g, (_m, name) => (name === 'PLINTH_PUBLIC_URL' ? 'http://localhost:3000' : 'secret'))]),
    );
    const config = loadConfig(sample, '/app');
    expect(config.database.url).toMatch(/@postgres:5432\/plinth/);
    expect(config.storage.backend).toBe('s3');
    expect(config.host).toBe('0.0.0.0');
  });

  test('ports and addresses agree between services', () => {
    const sidecar = services.sidecar.environment;
    const postgrest = services.postgrest.environment;
    expect(new URL(sidecar.PLINTH_POSTGREST_URL).port).toBe(postgrest.PGRST_SERVER_PORT);
    expect(new URL(sidecar.PLINTH_POSTGREST_URL).hostname).toBe('postgrest');
    expect(services.sidecar.ports).toEqual([`${sidecar.PORT}:${sidecar.PORT}`]);
    expect(new URL(sidecar.S3_ENDPOINT).hostname).toBe('minio');
    expect(new URL(sidecar.SMTP_URL).hostname).toBe('mailpit');
    // PostgREST logs in as authenticator with the password the sidecar sets.
    expect(postgrest.PGRST_DB_URI).toMatch(/^postgres:\/\/authenticator:\$\{PLINTH_AUTHENTICATOR_PASSWORD[^}]*\}@postgres:5432\/plinth$/);
    expect(sidecar.PLINTH_AUTHENTICATOR_PASSWORD).toBe('${PLINTH_AUTHENTICATOR_PASSWORD}');
  });

  test('PostgREST uses the repository\'s postgrest.conf, and only the sidecar is published', () => {
    expect(services.postgrest.volumes).toContain('./postgrest.conf:/etc/postgrest.conf:ro');
    expect(services.postgrest.command).toEqual(['postgrest', '/etc/postgrest.conf']);
    expect(services.postgrest.ports).toBeUndefined();
    expect(services.postgres.ports).toBeUndefined();
    expect(services.minio.ports).toBeUndefined();
  });

  test('every secret comes from .env, and .env.example names each of them', () => {
    const text = fs.readFileSync(path.join(REPO_ROOT, 'docker-compose.yml'), 'utf8');
    const example = fs.readFileSync(path.join(REPO_ROOT, '.env.example'), 'utf8');
    const required = [...text.matchAll(/\$\{([A-Z_]+):\?/g)].map((m) => m[1]);
    expect(required.length).toBeGreaterThan(0);
    for (const name of required) expect(example, name).toMatch(new RegExp(`^${name}=`, 'm'));
  });
});

describe('README', () => {
  test('documents every configuration variable the code reads', () => {
    expect(configVariables.length).toBeGreaterThan(20);
    for (const name of configVariables) expect(readme, name).toContain(`\`${name}\``);
  });

  test('gives the two commands and the test command CI runs', () => {
    expect(readme).toContain('npm start');
    expect(readme).toContain('npm test');
    expect(fs.readFileSync(path.join(REPO_ROOT, '.ci', 'run'), 'utf8')).toMatch(/^npm test$/m);
  });
});
