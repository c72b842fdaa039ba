// 6. Login: POST /rpc/login at concurrency 8. Its cost is argon2id by design, so the reference
// is the same argon2 verification run alone in this process at the same concurrency: the faster of
// all 8 handed to libuv's pool at once (4 threads) and at most one per core in flight (what Plinth
// does), so the reference is argon2 at its best on this machine whichever way that is.
import { availableParallelism } from 'node:os';
import { verify } from '@node-rs/argon2';
import type { Stack } from '../tests/harness.ts';
import { load, type LoadResult } from './load.ts';
import { median, ratioRow, type Row } from './report.ts';

export interface LoginOptions {
  connections: number;
  seconds: number;
  rounds: number;
}

/** Verifications per second of `hash` with `concurrency` in flight, for `seconds`. */
async function argon2Rate(hash: string, password: string, concurrency: number, seconds: number): Promise<number> {
  const end = Date.now() + seconds * 1000;
  let done = 0;
  const t0 = Date.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (Date.now() < end) {
        if (!(await verify(hash, password))) throw new Error('argon2 reference: the password does not verify');
        done++;
      }
    }),
  );
  return done / ((Date.now() - t0) / 1000);
}

export async function benchLogin(stack: Stack, opts: LoginOptions): Promise<Row[]> {
  const email = 'bench-login@example.test';
  const password = 'correct horse battery staple';
  const signup = await stack.fetch('/rpc/signup', { method: 'POST', json: { email, password } });
  if (signup.status >= 300) throw new Error(`signup: ${signup.status} ${await signup.text()}`);
  const login = await stack.fetch('/rpc/login', { method: 'POST', json: { email, password } });
  const body = await login.json();
  if (login.status !== 200 || typeof body?.[0]?.token !== 'string') throw new Error(`login: ${login.status} ${JSON.stringify(body)}`);

  // The parameters in use are the ones in the stored hash ($argon2id$v=19$m=…,t=…,p=…$…).
  const [{ hash }] = await stack.sql<{ hash: string }[]>`
    select coalesce(to_jsonb(u) ->> 'password_hash', to_jsonb(u) ->> 'encrypted_password') as hash
    from auth.users u where email = ${email}`;
  const params = /^\$(argon2\w+)\$v=\d+\$([^$]+)\$/.exec(hash ?? '');
  const described = params ? `${params[1]} ${params[2]}` : 'argon2 parameters unknown';

  const target = { url: `${stack.url}/rpc/login`, method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email, password }) };
  await load(target, opts.connections, 1);
  const logins: LoadResult[] = [];
  const allAtOnce: number[] = [];
  const perCore: number[] = [];
  // With requests always waiting, at most one per core in flight is a closed loop of that many.
  const cores = Math.min(opts.connections, availableParallelism());
  for (let i = 0; i < opts.rounds; i++) {
    logins.push(await load(target, opts.connections, opts.seconds));
    if (hash) allAtOnce.push(await argon2Rate(hash, password, opts.connections, opts.seconds));
    if (hash) perCore.push(await argon2Rate(hash, password, cores, opts.seconds));
  }
  const reference = allAtOnce.length ? [Math.max(median(allAtOnce), median(perCore))] : [];
  const errors = logins.reduce((s, r) => s + r.errors, 0);
  return [
    ratioRow({
      section: '6 login',
      metric: 'logins/s',
      unit: 'req/s',
      plinth: median(logins.map((r) => r.rps)),
      baseline: reference.length ? median(reference) : null,
      target: '≥ 0.9×',
      minRatio: 0.9,
      note:
        `c=${opts.connections}, ${described}; baseline: argon2 verify alone at the same concurrency, the faster of ` +
        `all at once (${median(allAtOnce).toFixed(1)}/s) and ${cores} in flight (${median(perCore).toFixed(1)}/s)` +
        (errors ? `; ${errors} errors` : ''),
    }),
    ratioRow({ section: '6 login', metric: 'login p99', unit: 'ms', plinth: median(logins.map((r) => r.p99)), baseline: null, target: '', note: `p50 ${median(logins.map((r) => r.p50))} ms` }),
  ];
}
