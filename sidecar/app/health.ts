// GET /health: the database, PostgREST and storage, each reported; 503 when any is down.
import type { FastifyInstance } from 'fastify';
import type { Plinth } from '../core/context.js';
import { VERSION } from '../core/version.js';

export async function healthRoutes(app: FastifyInstance, { plinth }: { plinth: Plinth }) {
  plinth.health.set('database', async () => {
    await plinth.sql`select 1`;
    return {};
  });
  plinth.health.set('postgrest', async () => {
    const { adminUrl, origin } = plinth.postgrest;
    // Our own PostgREST has an admin server; an external one is asked for its root with the anon key.
    const r = adminUrl
      ? await fetch(`${adminUrl}/ready`, { signal: AbortSignal.timeout(2000) })
      : await fetch(`${origin}/`, {
          method: 'HEAD',
          headers: { authorization: `Bearer ${(await plinth.keys.verifyForPostgrest(plinth.keys.keys.anonKey)).forPostgrest}` },
          signal: AbortSignal.timeout(2000),
        });
    if (!r.ok) throw new Error(`answered ${r.status}`);
    return {};
  });

  app.get('/health', async (_req, reply) => {
    const report: Record<string, Record<string, unknown>> = {};
    await Promise.all(
      [...plinth.health].map(async ([name, check]) => {
        const started = performance.now();
        try {
          const details = await check();
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
