// /functions/admin/* lists functions, versions and invocations and rolls back, for the service key
// or an admin (decided in SQL). Calls (/functions/v1/*) are served before routing: http.ts.
import type { FastifyInstance } from 'fastify';
import { callerOf } from '../core/caller.js';
import type { Plinth } from '../core/context.js';
import { listFunctions, listInvocations, listVersions, rollback } from './admin.js';
import type { FunctionsService } from './service.js';

const withCaller = { caller: {} };
const nameParam = { type: 'object', properties: { name: { type: 'string', pattern: '^[a-z0-9][a-z0-9_-]{0,62}$' } }, required: ['name'] } as const;

export async function functionsRoutes(app: FastifyInstance, { plinth }: { plinth: Plinth; functions: FunctionsService }) {
  app.get('/functions/admin', { config: withCaller, schema: { querystring: { type: 'object', additionalProperties: false } } }, async (req) =>
    listFunctions(plinth.callerSql, callerOf(req).claims),
  );
  app.get<{ Params: { name: string } }>('/functions/admin/:name/versions', { config: withCaller, schema: { params: nameParam } }, async (req) =>
    listVersions(plinth.callerSql, callerOf(req).claims, req.params.name),
  );
  app.get<{ Params: { name: string }; Querystring: { limit: number } }>(
    '/functions/admin/:name/invocations',
    { config: withCaller, schema: { params: nameParam, querystring: { type: 'object', properties: { limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } }, additionalProperties: false } } },
    async (req) => listInvocations(plinth.callerSql, callerOf(req).claims, req.params.name, req.query.limit),
  );
  app.post<{ Params: { name: string }; Body: { version: number } }>(
    '/functions/admin/:name/rollback',
    { config: withCaller, schema: { params: nameParam, body: { type: 'object', properties: { version: { type: 'integer', minimum: 1 } }, required: ['version'], additionalProperties: false } } },
    async (req, reply) => {
      await rollback(plinth.callerSql, callerOf(req).claims, req.params.name, req.body.version);
      return reply.code(204).send();
    },
  );
}
