// Fine's table API on PostgREST: a keep-alive pool to PostgREST (the proxy's target, the same
// socket), the catalog look-up that finds a table's primary key as the caller, and, under
// BYPASS_AUTH, the development user's token minted once at start.
import { Pool } from 'undici';
import type { Caller } from '../core/caller.js';
import { ConfigError } from '../core/config.js';
import type { Plinth, Service } from '../core/context.js';
import { asCaller, type Claims } from '../core/db.js';
import { PlinthError } from '../core/errors.js';
import { envelope, translate, type FineRequest, type TableInfo } from './translate.js';

/** Lifetime of the development user's token: it lives as long as the process, within reason. */
const DEV_TOKEN_TTL = 365 * 86400;

export interface FineService extends Service {
  query(caller: Caller, req: FineRequest): Promise<{ status: number; body: unknown }>;
}

function tableNotFound(table: string): PlinthError {
  // The same answer for a table that does not exist and one the caller has no right to: neither
  // tells an outsider which tables exist.
  return new PlinthError(404, `Table "${table}" not found`, 'PLINTH404', null, 'Check the name, or sign in: a table is listed only for roles granted access to it');
}

/**
 * The table's primary key, looked up as the caller: a table on which the caller's role holds no
 * privilege at all is reported as absent.
 */
async function tableInfo(plinth: Plinth, claims: Claims, table: string): Promise<TableInfo | null> {
  const rows = await asCaller(plinth.callerSql, claims, (tx) => tx<{ pk: string[] | null }[]>`
    select (select array_agg(a.attname::text order by k.ord)
              from pg_index i
              cross join unnest(i.indkey) with ordinality as k(attnum, ord)
              join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
             where i.indrelid = c.oid and i.indisprimary) as pk
      from pg_class c
      join pg_namespace n on n.oid = c.relnamespace
     where n.nspname = 'public' and c.relname = ${table} and c.relkind in ('r', 'p', 'v', 'm', 'f')
       and (has_table_privilege(c.oid, 'SELECT, INSERT, UPDATE, DELETE')
            or has_any_column_privilege(c.oid, 'SELECT, INSERT, UPDATE'))`);
  return rows.length === 0 ? null : { primaryKey: rows[0].pk ?? [] };
}

/** The development user's token, for requests that present none (BYPASS_AUTH). */
async function devUserToken(plinth: Plinth, email: string): Promise<string> {
  const [user] = await plinth.sql<{ id: string; email: string; app_role: string }[]>`
    select id, email, app_role from auth.users where lower(email) = lower(${email})`;
  if (!user) throw new ConfigError(`PLINTH_DEV_USER=${email} names no account: sign up that email first, or name an existing account`);
  return plinth.keys.mint({ sub: user.id, email: user.email, role: 'authenticated', app_role: user.app_role }, DEV_TOKEN_TTL);
}

export async function startFine(plinth: Plinth): Promise<FineService> {
  const { devUser } = plinth.config;
  if (devUser !== undefined) {
    plinth.keys.fallbackToken = await devUserToken(plinth, devUser);
    for (const line of [
      '!!! BYPASS_AUTH=true: DEVELOPMENT ONLY !!!',
      `!!! Every request without a token acts as ${devUser} (listening on ${plinth.config.host} only). Never use this in production. !!!`,
    ]) plinth.log.warn(line);
  }

  const pool = new Pool(plinth.postgrest.origin, { connections: 16, socketPath: plinth.postgrest.socketPath, keepAliveTimeout: 30_000 });

  return {
    async query(caller, req) {
      const info = await tableInfo(plinth, caller.claims, req.table);
      if (!info) throw tableNotFound(req.table);
      const upstream = translate(req, info);
      // The caller's own rights, never more: the same internal token the proxy would forward.
      const { forPostgrest } = await plinth.keys.verifyForPostgrest(caller.token);
      const headers: Record<string, string> = { authorization: `Bearer ${forPostgrest}`, accept: 'application/json' };
      if (upstream.body !== undefined) headers['content-type'] = 'application/json';
      if (upstream.prefer) headers.prefer = upstream.prefer;
      let res;
      try {
        res = await pool.request({ method: upstream.method, path: upstream.path, headers, body: upstream.body });
      } catch (err) {
        throw new PlinthError(503, 'The REST API (PostgREST) is unavailable; try again shortly', 'PLINTH503', String((err as { code?: string }).code ?? err));
      }
      const text = await res.body.text();
      const parsed = text === '' ? null : JSON.parse(text);
      // PostgREST's refusals (unknown column, wrong type, RLS) pass through in its own shape.
      if (res.statusCode >= 300) return { status: res.statusCode, body: parsed };
      const wrapped = envelope(upstream.shape, Array.isArray(parsed) ? parsed : []);
      if (!wrapped) throw new PlinthError(404, `No row of "${req.table}" with ${info.primaryKey[0]} = ${req.id} (or it is not visible to you)`, 'PLINTH404');
      return { status: upstream.status, body: wrapped };
    },
    async stop() {
      if (devUser !== undefined) plinth.keys.fallbackToken = undefined;
      await pool.close();
    },
  };
}
