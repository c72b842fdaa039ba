// .env parsing, its precedence under the real environment, the unknown-variable report, and the
// masking `plinth config` applies: tables of inputs and what comes out.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../sidecar/core/config.ts';
import { flattenConfig, maskValue } from '../sidecar/core/config-report.ts';
import { closestName, DotEnvError, parseDotEnv, withDotEnv } from '../sidecar/core/dotenv.ts';

describe('parseDotEnv', () => {
  it.each<[string, Record<string, string>]>([
    ['PORT=3000', { PORT: '3000' }],
    ['  PORT = 3000  ', { PORT: '3000' }],
    ['export PORT=3000', { PORT: '3000' }],
    ['# a comment\n\nPORT=3000\n', { PORT: '3000' }],
    ['A=1\r\nB=2\r\n', { A: '1', B: '2' }],
    ['EMPTY=', { EMPTY: '' }],
    ['URL=postgres://u:p@h/db?sslmode=disable#frag', { URL: 'postgres://u:p@h/db?sslmode=disable#frag' }],
    ['A=value # a comment', { A: 'value' }],
    ["A='single # not a comment $HOME'", { A: 'single # not a comment $HOME' }],
    ['A="line\\nbreak \\"quoted\\" back\\\\slash"', { A: 'line\nbreak "quoted" back\\slash' }],
    ['A="x" # trailing comment', { A: 'x' }],
    ['\uFEFFPORT=1', { PORT: '1' }],
    ['A=1\nA=2', { A: '2' }],
  ])('%j', (text, expected) => {
    expect(parseDotEnv(text)).toEqual(expected);
  });

  it.each([
    ['PORT', /:1: expected NAME=value/],
    ['1PORT=3', /:1: expected NAME=value/],
    ['A=1\nB="open', /:2: B has an unterminated " quote/],
    ["A='x' y", /unexpected text after the quoted value of A/],
  ])('refuses %j', (text, message) => {
    expect(() => parseDotEnv(text, '.env')).toThrow(DotEnvError);
    expect(() => parseDotEnv(text, '.env')).toThrow(message);
  });
});

describe('withDotEnv', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'plinth-dotenv-'));

  it('puts .env under the real environment, and says where each variable came from', () => {
    fs.writeFileSync(path.join(dir, '.env'), 'PORT=4000\nPLINTH_DATA_DIR=data\nPLINTH_HOST=0.0.0.0\n');
    const { env, sources } = withDotEnv({ PORT: '5000', PLINTH_HOST: '' }, dir);
    expect(env).toEqual({ PORT: '5000', PLINTH_DATA_DIR: 'data', PLINTH_HOST: '' });
    expect(sources.get('PORT')).toBe('environment');
    expect(sources.get('PLINTH_DATA_DIR')).toBe('.env');
    // Set but empty in the environment still wins: an explicit "unset this" for one run.
    expect(sources.get('PLINTH_HOST')).toBe('environment');
  });

  it('is the environment alone without a .env', () => {
    const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'plinth-dotenv-'));
    expect(withDotEnv({ PORT: '1' }, empty).env).toEqual({ PORT: '1' });
  });
});

describe('unknown variables', () => {
  it.each<[string, string | undefined]>([
    ['PLINTH_DATA_DRI', 'PLINTH_DATA_DIR'],
    ['PLINTH_PG_PROT', 'PLINTH_PG_PORT'],
    ['PLINTH_JWT_ALGO', 'PLINTH_JWT_ALG'],
    ['PLINTH_SOMETHING_ELSE_ENTIRELY', undefined],
  ])('%s → did you mean %s', (name, suggestion) => {
    expect(loadConfig({ [name]: 'x' }, '/srv/app').variables.unknown).toEqual([{ name, suggestion }]);
  });

  it('reports nothing for the variables Plinth reads, or for other programs\' variables', () => {
    expect(loadConfig({ PLINTH_DATA_DIR: 'x', PORT: '1', HOME: '/root', NODE_ENV: 'test' }, '/srv/app').variables.unknown).toEqual([]);
  });

  it('knows every variable config.ts names, whatever the others are set to', () => {
    // A variable read only under a condition would be reported as unknown when set: every read is unconditional.
    const source = fs.readFileSync(path.join(import.meta.dirname, '..', 'sidecar', 'core', 'config.ts'), 'utf8');
    const named = [...new Set([...source.matchAll(/\(env, '([A-Z][A-Z0-9_]+)'/g)].map((m) => m[1]))].sort();
    expect(loadConfig({}, '/srv/app').variables.read).toEqual(named);
  });

  it('closestName suggests nothing for a far name', () => {
    expect(closestName('PLINTH_X', ['PORT', 'DATABASE_URL'])).toBeUndefined();
  });
});

describe('plinth config masking', () => {
  it.each<[string, unknown, unknown]>([
    ['PLINTH_ADMIN_PASSWORD', 'hunter2', '********'],
    ['S3_SECRET_ACCESS_KEY', 'abc', '********'],
    ['secretAccessKey', 'abc', '********'],
    ['PLINTH_AUTHENTICATOR_PASSWORD', undefined, undefined],
    ['DATABASE_URL', 'postgres://app:hunter2@db:5432/app', 'postgres://app:********@db:5432/app'],
    ['SMTP_URL', 'smtp://mailer:p%40ss@smtp.example.com:587', 'smtp://mailer:********@smtp.example.com:587'],
    ['DATABASE_URL', 'postgres://db:5432/app', 'postgres://db:5432/app'],
    ['S3_ACCESS_KEY_ID', 'AKIA123', 'AKIA123'],
    ['PORT', 3000, 3000],
  ])('%s=%j → %j', (name, value, shown) => {
    expect(maskValue(name, value)).toBe(shown);
  });

  it('never prints a secret of a loaded configuration', () => {
    const config = loadConfig(
      {
        DATABASE_URL: 'postgres://app:db-secret-1@db/app',
        SMTP_URL: 'smtp://u:smtp-secret-2@mail:25',
        PLINTH_ADMIN_EMAIL: 'a@example.com',
        PLINTH_ADMIN_PASSWORD: 'admin-secret-3',
        PLINTH_AUTHENTICATOR_PASSWORD: 'auth-secret-4',
        PLINTH_STORAGE: 's3',
        S3_BUCKET: 'b',
        S3_SECRET_ACCESS_KEY: 's3-secret-5',
      },
      '/srv/app',
    );
    const printed = JSON.stringify(flattenConfig(config));
    for (const secret of ['db-secret-1', 'smtp-secret-2', 'admin-secret-3', 'auth-secret-4', 's3-secret-5']) expect(printed).not.toContain(secret);
    expect(printed).toContain('a@example.com');
  });
});
