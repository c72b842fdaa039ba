// GET /console/*: the web console's built assets (console/dist). Hashed assets are cached for a
// year; index.html is revalidated on every load, so a new build reaches browsers at once. Any
// other path without a file answers index.html: the console routes in the browser (history API).
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fs from 'node:fs';
import path from 'node:path';
import { callerOf } from '../core/caller.js';
import type { Plinth } from '../core/context.js';
import { PlinthError } from '../core/errors.js';
import { policyCoverage, retireSigningKey, rotateSigningKey, signingKeys } from './admin-data.js';
import { DIST_DIR } from './build.js';
import { backupRuns, functionLoadFailures, type FunctionLoadFailures } from './operations.js';
import type { ConsoleService } from './service.js';
import { runStatement, type SqlRequest } from './sql-editor.js';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.webp': 'image/webp',
  '.woff2': 'font/woff2',
  '.txt': 'text/plain; charset=utf-8',
  '.webmanifest': 'application/manifest+json',
};

/** The page may talk only to its own origin: no CDN, no font service, no third-party script. */
const CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data: blob:",
  "connect-src 'self'",
  "font-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

const IMMUTABLE = 'public, max-age=31536000, immutable';

/** A file inside dist for a request path, or null; `..`, NUL and absolute tricks never leave dist. */
export function resolveAsset(rel: string): string | null {
  if (rel.includes('\0')) return null;
  const normal = path.posix.normalize(`/${rel}`);
  if (normal.split('/').includes('..')) return null;
  const file = path.join(DIST_DIR, normal);
  if (file !== DIST_DIR && !file.startsWith(DIST_DIR + path.sep)) return null;
  return file;
}

function statFile(file: string): fs.Stats | null {
  try {
    const st = fs.statSync(file);
    return st.isFile() ? st : null;
  } catch {
    return null;
  }
}

const withCaller = { caller: {} };
const noStore = { 'cache-control': 'no-store' };
const noInput = { querystring: { type: 'object', additionalProperties: false } };

const sqlSchema = {
  body: {
    type: 'object',
    additionalProperties: false,
    required: ['statement', 'role'],
    properties: {
      statement: { type: 'string', minLength: 1, maxLength: 100_000 },
      role: { type: 'string', enum: ['anon', 'authenticated', 'service_role'] },
      user_id: { type: 'string', format: 'uuid' },
      commit: { type: 'boolean', default: false },
      timeout_ms: { type: 'integer', minimum: 100, maximum: 60_000, default: 5_000 },
      max_rows: { type: 'integer', minimum: 1, maximum: 10_000, default: 1_000 },
    },
  },
};

/**
 * The console's own API under /console/api/: the SQL editor, the policy overview, the signing
 * keys, the backup runs and the functions that failed to load. Each needs an admin, which the console.* SQL functions decide, not these handlers.
 */
async function consoleApiRoutes(app: FastifyInstance, plinth: Plinth, failures: FunctionLoadFailures) {
  app.post<{ Body: SqlRequest }>('/console/api/sql', { config: withCaller, schema: sqlSchema }, async (req, reply) =>
    reply.headers(noStore).send(await runStatement(plinth, callerOf(req).claims, req.body)),
  );
  app.get('/console/api/policies', { config: withCaller, schema: noInput }, async (req, reply) => reply.headers(noStore).send(await policyCoverage(plinth, callerOf(req).claims)));
  app.get('/console/api/keys', { config: withCaller, schema: noInput }, async (req, reply) => reply.headers(noStore).send(await signingKeys(plinth, callerOf(req).claims)));
  app.post('/console/api/keys', { config: withCaller, schema: noInput }, async (req, reply) =>
    reply.code(201).headers(noStore).send(await rotateSigningKey(plinth, callerOf(req).claims)),
  );
  app.delete<{ Params: { kid: string } }>(
    '/console/api/keys/:kid',
    { config: withCaller, schema: { params: { type: 'object', properties: { kid: { type: 'string', minLength: 1, maxLength: 200 } }, required: ['kid'] } } },
    async (req, reply) => reply.headers(noStore).send(await retireSigningKey(plinth, callerOf(req).claims, req.params.kid)),
  );
  app.get<{ Querystring: { limit: number } }>(
    '/console/api/backups',
    { config: withCaller, schema: { querystring: { type: 'object', additionalProperties: false, properties: { limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } } } } },
    async (req, reply) => reply.headers(noStore).send(await backupRuns(plinth, callerOf(req).claims, req.query.limit)),
  );
  app.get('/console/api/functions/failures', { config: withCaller, schema: noInput }, async (req, reply) =>
    reply.headers(noStore).send(await functionLoadFailures(plinth, callerOf(req).claims, failures)),
  );
  // Anything else under /console/api/ is an unknown call, not a page.
  app.all('/console/api/*', async (req) => {
    throw new PlinthError(404, `No route ${req.method} ${req.url.split('?')[0]}`);
  });
}

export async function consoleRoutes(
  app: FastifyInstance,
  { plinth, consoleBuild, functionFailures = () => new Map() }: { plinth: Plinth; consoleBuild: ConsoleService; functionFailures?: FunctionLoadFailures },
) {
  await consoleApiRoutes(app, plinth, functionFailures);

  const send = (req: FastifyRequest, reply: FastifyReply, file: string, st: fs.Stats, immutable: boolean) => {
    const etag = `W/"${st.size.toString(16)}-${Math.floor(st.mtimeMs).toString(16)}"`;
    const type = TYPES[path.extname(file).toLowerCase()] ?? 'application/octet-stream';
    reply
      .header('content-type', type)
      .header('cache-control', immutable ? IMMUTABLE : 'no-cache')
      .header('etag', etag)
      .header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'no-referrer');
    if (type.startsWith('text/html')) reply.header('content-security-policy', CSP).header('x-frame-options', 'DENY');
    if (req.headers['if-none-match'] === etag) return reply.code(304).send();
    reply.header('content-length', st.size);
    return reply.send(req.method === 'HEAD' ? '' : fs.createReadStream(file));
  };

  app.get('/console', { schema: { querystring: { type: 'object' } } }, async (req, reply) => {
    const q = req.url.indexOf('?');
    return reply.redirect(`/console/${q === -1 ? '' : req.url.slice(q)}`, 301);
  });

  app.get(
    '/console/*',
    { schema: { params: { type: 'object', properties: { '*': { type: 'string' } }, required: ['*'], additionalProperties: false } } },
    async (req: FastifyRequest<{ Params: { '*': string } }>, reply) => {
      const rel = req.params['*'];
      const file = resolveAsset(rel);
      if (!file) throw new PlinthError(404, `No console file ${rel}`);
      const st = statFile(file);
      if (st) return send(req, reply, file, st, rel.startsWith('assets/'));
      // A missing asset is a 404 (a stale page asking for an old hash); any other path is a page.
      if (rel.startsWith('assets/') || /\.[a-z0-9]+$/i.test(rel)) throw new PlinthError(404, `No console file ${rel}`);
      const index = path.join(DIST_DIR, 'index.html');
      const indexSt = statFile(index);
      if (indexSt) return send(req, reply, index, indexSt, false);
      const { building, error } = consoleBuild;
      reply.code(503).header('cache-control', 'no-store').header('content-type', 'text/html; charset=utf-8');
      if (building) reply.header('retry-after', '2');
      return reply.send(unavailablePage(building ? 'The console is being built; this page reloads in a moment.' : `The console is not built${error ? ` (${error.split('\n')[0]})` : ''}. Run \`npm run build:console\` and reload.`, building));
    },
  );
}

function unavailablePage(message: string, reload: boolean): string {
  const escaped = message.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">${reload ? '<meta http-equiv="refresh" content="2">' : ''}<title>Plinth console</title></head><body><p>${escaped}</p></body></html>`;
}
