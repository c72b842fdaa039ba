// GET /health: the database, PostgREST and storage, each reported; 503 when any is down.
// GET /version: Plinth's version and the versions of the APIs it serves.
import type { FastifyInstance } from 'fastify';
import type { HealthCheck, Plinth } from '../core/context.js';
import { VERSION } from '../core/version.js';

/** The API dialects served, each with the version of the contract Plinth keeps. */
const API_VERSIONS = { rest: 'PostgREST 12', auth: 'plinth 1', storage: 'plinth 1', db_tables: 'fine 0.0.10' } as const;

/** How long one check may take before it is reported down: a hung part must not hang /health. */
const CHECK_TIMEOUT_MS = 2000;

/** Runs a check, failing it with "timed out" if it has not answered within CHECK_TIMEOUT_MS. */
function bounded(check: HealthCheck): Promise<Record<string, unknown>> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${CHECK_TIMEOUT_MS / 1000} s`)), CHECK_TIMEOUT_MS);
  });
  return Promise.race([check(), timeout]).finally(() => clearTimeout(timer));
}

export async function healthRoutes(app: FastifyInstance, { plinth }: { plinth: Plinth }) {
  plinth.health.set('database', async () => {
    await plinth.sql`select 1`;
    return {};
  });
  plinth.health.set('postgrest', async () => {
    const { adminUrl, origin } = plinth.postgrest;
    // Our own PostgREST has an admin server; an external one is asked for its root with the anon key.
    const r = adminUrl
      ? await fetch(`${adminUrl}/ready`, { signal: AbortSignal.timeout(CHECK_TIMEOUT_MS) })
      : await fetch(`${origin}/`, {
          method: 'HEAD',
          headers: { authorization: `Bearer ${(await plinth.keys.verifyForPostgrest(plinth.keys.keys.anonKey)).forPostgrest}` },
          signal: AbortSignal.timeout(CHECK_TIMEOUT_MS),
        });
    if (!r.ok) throw new Error(`answered ${r.status}`);
    return {};
  });

  const version = { name: 'plinth', version: VERSION, apis: API_VERSIONS };
  app.get('/version', async () => version);

  app.get('/health', async (_req, reply) => {
    const report: Record<string, Record<string, unknown>> = {};
    await Promise.all(
      [...plinth.health].map(async ([name, check]) => {
        const started = performance.now();
        try {
          const details = await bounded(check);
          report[name] = { status: 'ok', ms: Math.round(performance.now() - started), ...details };
        } catch (err) {
          report[name] = { status: 'down', error: (err as Error).message };
        }
      }),
    );
    const ok = Object.values(report).every((r) => r.status === 'ok');
    reply.code(ok ? 200 : 503).header('cache-control', 'no-store');
    return { status: ok ? 'ok' : 'degraded', version: VERSION, ...report };
  });
}
