// GET /metrics: Prometheus text, for the service key or PLINTH_METRICS_TOKEN only.
import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { readToken } from '../core/caller.js';
import type { Plinth } from '../core/context.js';
import { PlinthError } from '../core/errors.js';
import type { AuditService } from './service.js';

function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export async function auditRoutes(app: FastifyInstance, { plinth, audit }: { plinth: Plinth; audit: AuditService }) {
  app.get('/metrics', async (request, reply) => {
    const found = readToken(request.raw);
    if (!found) throw new PlinthError(401, 'GET /metrics needs the service key or PLINTH_METRICS_TOKEN as a bearer token', 'PLINTH401');
    const token = plinth.config.audit.metricsToken;
    if (!(token !== undefined && sameSecret(found.token, token))) {
      const claims = await plinth.keys.verify(found.token);
      if (claims.role !== 'service_role') throw new PlinthError(403, 'GET /metrics is for the service key or PLINTH_METRICS_TOKEN only', 'PLINTH403');
    }
    const body = await audit.registry.metrics();
    return reply.header('content-type', audit.registry.contentType).header('cache-control', 'no-store').send(body);
  });
}
