// Functions over HTTP: ANY /functions/v1/<name>[/<rest>] calls a function (the path Supabase
// clients use), streamed both ways; /functions/admin/* lists functions, versions and invocations
// and rolls back, for the service key or an admin (decided in SQL).
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { callerOf } from '../core/caller.js';
import type { Plinth } from '../core/context.js';
import { PlinthError, sendError } from '../core/errors.js';
import { listFunctions, listInvocations, listVersions, rollback } from './admin.js';
import { callHttp, notFound, unavailable } from './invoke.js';
import type { FunctionsService } from './service.js';

const withCaller = { caller: {} };
const nameParam = { type: 'object', properties: { name: { type: 'string', pattern: '^[a-z0-9][a-z0-9_-]{0,62}$' } }, required: ['name'] } as const;

export async function functionsRoutes(app: FastifyInstance, { plinth, functions }: { plinth: Plinth; functions: FunctionsService }) {
  const { registry, invocations, limits } = functions;

  await app.register(async (calls) => {
    // Bodies are streamed to the function as they arrive, whatever their type.
    calls.removeAllContentTypeParsers();
    calls.addContentTypeParser('*', (_req, _payload, done) => done(null));
    const call = async (request: FastifyRequest<{ Params: { name: string } }>, reply: FastifyReply) => {
      const name = request.params.name;
      const fn = registry.get(name);
      if (!fn) throw registry.broken.has(name) ? unavailable(name, 'its module does not load (the server log says why)') : notFound(name);
      reply.hijack();
      try {
        await callHttp(fn, request.raw, reply.raw, callerOf(request), limits, invocations);
      } catch (err) {
        // Past hijack fastify cannot answer for us: never leave the caller hanging.
        plinth.log.error(`function ${name}: ${(err as Error).stack ?? err}`);
        if (!reply.raw.headersSent) sendError(reply.raw, new PlinthError(500, `function ${name} failed`, 'PLINTH500'));
        else reply.raw.destroy();
      }
    };
    calls.all('/functions/v1/:name', { config: withCaller }, call);
    calls.all('/functions/v1/:name/*', { config: withCaller }, call);
  });

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
