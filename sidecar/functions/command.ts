// `plinth secrets …`, `plinth functions …` and `plinth new function <name>`.
import fs from 'node:fs';
import path from 'node:path';
import type { Config } from '../core/config.js';
import type { Sql } from '../core/db.js';
import { FUNCTION_NAME } from './declared.js';
import { NOTIFY_CHANNEL } from './registry.js';
import { listSecrets, secretsKey, setSecret, unsetSecret } from './secrets.js';

export const SECRETS_HELP = `Usage: plinth secrets set <NAME>     (the value is read from stdin)
       plinth secrets list [--json]     (names and dates, never values)
       plinth secrets unset <NAME>

Secrets are stored encrypted (AES-256-GCM) in the database, under PLINTH_SECRETS_KEY or the key
file PLINTH_DATA_DIR/secrets.key. A function reads a secret only if it lists it in
\`export const config = { secrets: ["NAME"] }\`; running functions get the new value at once.`;

export const FUNCTIONS_HELP = `Usage: plinth functions list [--json]
       plinth functions logs <name> [--json]     (the latest invocations: trigger, status, duration, error)
       plinth functions rollback <name> <version>

Functions are the <name>.ts files in PLINTH_FUNCTIONS_DIR; each new source is recorded as a version.
\`rollback\` runs an earlier version until the file changes again.`;

export class CommandError extends Error {}

type WithDatabase = <T>(fn: (sql: Sql) => Promise<T>) => Promise<T>;

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  // One trailing newline (echo, a heredoc) is not part of the value.
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}

export async function secretsCommand(config: Config, args: string[], json: boolean, withDatabase: WithDatabase): Promise<number> {
  const [action, name] = args;
  if (action === 'set') {
    if (!name) throw new CommandError('plinth secrets set needs a name: echo -n "$VALUE" | plinth secrets set STRIPE_KEY');
    if (process.stdin.isTTY) process.stderr.write(`value for ${name} (end with Ctrl-D): `);
    const value = await readStdin();
    if (value === '') throw new CommandError('the value is empty: pass it on stdin');
    const key = secretsKey(config.functions);
    await withDatabase((sql) => setSecret(sql, key, name, value));
    console.log(`secret ${name} set`);
    return 0;
  }
  if (action === 'unset') {
    if (!name) throw new CommandError('plinth secrets unset needs a name');
    const gone = await withDatabase((sql) => unsetSecret(sql, name));
    console.log(gone ? `secret ${name} removed` : `no secret named ${name}`);
    return gone ? 0 : 1;
  }
  if (action === 'list' || action === undefined) {
    const rows = await withDatabase((sql) => listSecrets(sql));
    if (json) console.log(JSON.stringify(rows));
    else if (rows.length === 0) console.log('no secrets');
    else for (const r of rows) console.log(`${r.name}  set ${r.created_at.toISOString()}  updated ${r.updated_at.toISOString()}`);
    return 0;
  }
  throw new CommandError(`unknown secrets action ${JSON.stringify(action)}: use set, list or unset`);
}

export async function functionsCommand(args: string[], json: boolean, withDatabase: WithDatabase): Promise<number> {
  const [action, name, version] = args;
  if (action === 'list' || action === undefined) {
    const rows = await withDatabase((sql) => sql<{ name: string; version: number; latest: number; pinned: boolean; sha256: string; deployed_at: Date; last_status: number | null; last_at: Date | null }[]>`
      select l.name, coalesce(p.version, l.version) as version, l.version as latest, p.version is not null as pinned, v.sha256, v.deployed_at,
             i.status as last_status, i.at as last_at
      from (select distinct on (name) name, version from functions.versions order by name, version desc) l
      left join functions.pins p using (name)
      join functions.versions v on v.name = l.name and v.version = coalesce(p.version, l.version)
      left join lateral (select status, at from functions.invocations where name = l.name order by at desc limit 1) i on true
      order by l.name`);
    if (json) console.log(JSON.stringify(rows));
    else if (rows.length === 0) console.log('no functions deployed');
    else
      for (const r of rows) {
        console.log(`${r.name}  v${r.version}${r.pinned ? ` (rolled back; latest v${r.latest})` : ''}  ${r.sha256.slice(0, 12)}  deployed ${r.deployed_at.toISOString()}${r.last_at ? `  last run ${r.last_at.toISOString()} → ${r.last_status}` : ''}`);
      }
    return 0;
  }
  if (!name || !FUNCTION_NAME.test(name)) throw new CommandError(`plinth functions ${action} needs a function name`);
  if (action === 'logs') {
    const rows = await withDatabase((sql) => sql<{ at: Date; version: number | null; trigger: string; status: number; duration_ms: number; error: string | null }[]>`
      select at, version, trigger, status, duration_ms, error from functions.invocations where name = ${name} order by at desc, id desc limit 100`);
    if (json) console.log(JSON.stringify(rows));
    else for (const r of rows.reverse()) console.log(`${r.at.toISOString()}  v${r.version ?? '?'}  ${r.trigger.padEnd(8)}  ${r.status}  ${r.duration_ms.toFixed(1)} ms${r.error ? `  ${r.error}` : ''}`);
    return 0;
  }
  if (action === 'rollback') {
    const v = Number(version);
    if (!Number.isInteger(v) || v < 1) throw new CommandError('plinth functions rollback needs a version number: `plinth functions list` shows them');
    await withDatabase(async (sql) => {
      const [found] = await sql`select 1 from functions.versions where name = ${name} and version = ${v}`;
      if (!found) throw new CommandError(`function ${name} has no version ${v}`);
      await sql`insert into functions.pins (name, version) values (${name}, ${v}) on conflict (name) do update set version = excluded.version, pinned_at = now()`;
      await sql`select pg_notify(${NOTIFY_CHANNEL}, ${name})`;
    });
    console.log(`function ${name} now runs version ${v} (until its file changes)`);
    return 0;
  }
  throw new CommandError(`unknown functions action ${JSON.stringify(action)}: use list, logs or rollback`);
}

const EXAMPLE = `// A Plinth function: POST /functions/v1/NAME with an apikey (or a user's token).
// It runs on Deno with only the permissions its config declares. Uncomment to add triggers:
export const config = {
  // schedule: "*/5 * * * *",                          // cron, UTC: runs once per tick across sidecars
  // on: { table: "todos", events: ["INSERT"] },       // a published table's changes
  // secrets: ["STRIPE_KEY"],                          // plinth secrets set STRIPE_KEY
  // net: ["api.stripe.com"],                          // hosts it may reach besides Plinth
};

export default async function handler(req: Request): Promise<Response> {
  const claims = JSON.parse(req.headers.get("x-plinth-claims") ?? "{}");
  const input = req.method === "POST" ? await req.json().catch(() => ({})) : {};
  // Calls back to Plinth as the caller, so row-level security applies:
  // await fetch(Deno.env.get("PLINTH_URL") + "/todos", {
  //   headers: { apikey: Deno.env.get("PLINTH_ANON_KEY")!, authorization: req.headers.get("authorization")! },
  // });
  return Response.json({ message: \`Hello \${input.name ?? "there"}!\`, role: claims.role });
}
`;

export function newFunction(dir: string, name: string): number {
  if (!FUNCTION_NAME.test(name)) throw new CommandError('a function name is lower case letters, digits, - and _ (e.g. send-welcome)');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${name}.ts`);
  fs.writeFileSync(file, EXAMPLE.replace('NAME', name), { flag: 'wx' });
  console.log(`created ${file}`);
  return 0;
}
