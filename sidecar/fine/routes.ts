// Fine's table API: /db/tables/:table[/:id], translated to PostgREST (translate.ts) and sent with
// the caller's own token (service.ts). Handlers only read the request.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { callerOf } from '../core/caller.js';
import type { Plinth } from '../core/context.js';
import type { FineService } from './service.js';
import type { Method } from './translate.js';

const tableParams = {
  type: 'object',
  required: ['table'],
  properties: { table: { type: 'string', minLength: 1, maxLength: 63 }, id: { type: 'string', minLength: 1, maxLength: 200 } },
} as const;

/** Query parameters in order, repeats kept (priority.gt=1&priority.lt=5 is two filters). */
function queryEntries(url: string): Array<[string, string]> {
  const q = url.indexOf('?');
  return q === -1 ? [] : [...new URLSearchParams(url.slice(q + 1))];
}

export async function fineRoutes(app: FastifyInstance, { plinth, fine }: { plinth: Plinth; fine: FineService }) {
  const options = { config: { caller: {} }, schema: { params: tableParams }, bodyLimit: plinth.config.frontDoor.maxRestBody };

  async function handle(request: FastifyRequest, reply: FastifyReply) {
    const { table, id } = request.params as { table: string; id?: string };
    const { status, body } = await fine.query(callerOf(request), {
      method: request.method as Method,
      table,
      id,
      query: queryEntries(request.url),
      body: request.body,
    });
    return reply.code(status).header('cache-control', 'no-store').send(body);
  }

  for (const url of ['/db/tables/:table', '/db/tables/:table/:id']) {
    app.get(url, options, handle);
    app.patch(url, options, handle);
    app.delete(url, options, handle);
  }
  app.post('/db/tables/:table', options, handle);
}
