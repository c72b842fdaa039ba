// BYPASS_AUTH without a stack: off by default, needs PLINTH_DEV_USER, and only on loopback.
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../sidecar/core/config.js';

const load = (env: Record<string, string>) => loadConfig(env, '/srv/app');

describe('BYPASS_AUTH', () => {
  it('is off unless asked for: no development user', () => {
    expect(load({}).devUser).toBeUndefined();
    expect(load({ PLINTH_DEV_USER: 'dev@example.test' }).devUser).toBeUndefined();
    expect(load({ BYPASS_AUTH: 'false', PLINTH_DEV_USER: 'dev@example.test' }).devUser).toBeUndefined();
  });

  it.each(['127.0.0.1', '127.0.0.2', '::1', 'localhost'])('on loopback (%s) names the development user', (host) => {
    expect(load({ BYPASS_AUTH: 'true', PLINTH_DEV_USER: 'dev@example.test', PLINTH_HOST: host }).devUser).toBe('dev@example.test');
  });

  it.each<[Record<string, string>, RegExp]>([
    [{ BYPASS_AUTH: 'true' }, /BYPASS_AUTH=true needs PLINTH_DEV_USER/],
    [{ BYPASS_AUTH: 'true', PLINTH_DEV_USER: 'dev@example.test', PLINTH_HOST: '0.0.0.0' }, /refused unless PLINTH_HOST is a loopback address .* got 0\.0\.0\.0/],
    [{ BYPASS_AUTH: 'true', PLINTH_DEV_USER: 'dev@example.test', PLINTH_HOST: '192.168.1.7' }, /refused unless PLINTH_HOST is a loopback address/],
    [{ BYPASS_AUTH: 'true', PLINTH_DEV_USER: 'dev@example.test', PLINTH_HOST: '::' }, /refused unless PLINTH_HOST is a loopback address/],
    [{ BYPASS_AUTH: 'sometimes' }, /BYPASS_AUTH must be true or false/],
  ])('%j is refused', (env, message) => {
    expect(() => load(env)).toThrow(message);
  });
});
