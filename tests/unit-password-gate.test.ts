// The argon2 gate: at most `limit` runs at once, the rest in arrival order, a failure frees its slot.
import { describe, expect, it } from 'vitest';
import { gate, hashPassword, verifyPassword } from '../sidecar/auth/passwords.ts';

function deferred() {
  let resolve!: () => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('gate', () => {
  it('runs at most `limit` at once and starts the waiting ones in arrival order', async () => {
    const slot = gate(2);
    const started: number[] = [];
    const jobs = [0, 1, 2, 3, 4].map(() => deferred());
    const results = jobs.map((job, i) => slot(async () => (started.push(i), await job.promise, i)));
    const firstFails = expect(results[0]).rejects.toThrow('boom');
    await tick();
    expect(started).toEqual([0, 1]);
    jobs[1].resolve();
    await tick();
    expect(started).toEqual([0, 1, 2]);
    jobs[0].reject(new Error('boom'));
    await tick();
    expect(started).toEqual([0, 1, 2, 3]);
    jobs[2].resolve();
    jobs[3].resolve();
    await tick();
    expect(started).toEqual([0, 1, 2, 3, 4]);
    jobs[4].resolve();
    await firstFails;
    expect(await Promise.all(results.slice(1))).toEqual([1, 2, 3, 4]);
  });

  it('frees every slot once the work is done', async () => {
    const slot = gate(1);
    for (let i = 0; i < 3; i++) expect(await slot(async () => i)).toBe(i);
    await expect(slot(async () => Promise.reject(new Error('x')))).rejects.toThrow('x');
    expect(await slot(async () => 'still open')).toBe('still open');
  });
});

describe('passwords through the gate', () => {
  it('many verifications at once all answer, right and wrong alike', async () => {
    const stored = await hashPassword('correct horse battery staple');
    const answers = await Promise.all(Array.from({ length: 6 }, (_, i) => verifyPassword(i % 2 ? stored : null, i % 3 ? 'correct horse battery staple' : 'wrong password!')));
    expect(answers).toEqual([false, true, false, false, false, true]);
  });
});
