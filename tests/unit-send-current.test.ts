// sendCurrent: a download whose version is overwritten (and its bytes removed) between the lookup
// and the read looks again, for as long as each lookup finds a newer version.
import { describe, expect, test } from 'vitest';
import { ObjectNotFound } from '../sidecar/storage/backends/adapter.ts';
import { sendCurrent } from '../sidecar/storage/send.ts';

/** Lookups that return these keys in turn; sends that fail for the keys in `gone`. */
function world(keys: string[], gone: Set<string>) {
  let lookups = 0;
  const sent: string[] = [];
  return {
    lookup: async () => keys[Math.min(lookups++, keys.length - 1)],
    send: async (key: string) => {
      if (gone.has(key)) throw new ObjectNotFound(key);
      sent.push(key);
      return `sent ${key}`;
    },
    get lookups() {
      return lookups;
    },
    sent,
  };
}

describe('sendCurrent', () => {
  test('versions replaced one after another while a reader chases them: it sends the first one still there', async () => {
    const w = world(['v1', 'v2', 'v3', 'v4', 'v5'], new Set(['v1', 'v2', 'v3', 'v4']));
    expect(await sendCurrent(w.lookup, (k) => k, w.send)).toBe('sent v5');
    expect(w.lookups).toBe(5);
    expect(w.sent).toEqual(['v5']);
  });

  test('the same version missing its bytes twice is an error, not a loop', async () => {
    const w = world(['v1'], new Set(['v1']));
    await expect(sendCurrent(w.lookup, (k) => k, w.send)).rejects.toBeInstanceOf(ObjectNotFound);
    expect(w.lookups).toBe(2);
  });

  test('no version (keyOf null) is not looked up again', async () => {
    let lookups = 0;
    const lookup = async () => (lookups++, null);
    await expect(sendCurrent(lookup, () => null, async () => Promise.reject(new ObjectNotFound('x')))).rejects.toBeInstanceOf(ObjectNotFound);
    expect(lookups).toBe(1);
  });

  test('writers that never stop: it gives up after ten lookups', async () => {
    const keys = Array.from({ length: 50 }, (_, i) => `v${i}`);
    const w = world(keys, new Set(keys));
    await expect(sendCurrent(w.lookup, (k) => k, w.send)).rejects.toBeInstanceOf(ObjectNotFound);
    expect(w.lookups).toBe(10);
  });

  test('any other failure is not retried', async () => {
    let lookups = 0;
    const boom = new Error('store unreachable');
    await expect(sendCurrent(async () => (lookups++, 'v1'), (k) => k, async () => Promise.reject(boom))).rejects.toBe(boom);
    expect(lookups).toBe(1);
  });
});
