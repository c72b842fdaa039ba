// What a function declares in its `config` export, checked: its triggers (schedule, table
// changes), the secrets it may read, the hosts it may reach and whether it sees the service key.
// Everything a worker is allowed follows from this, so a mistake here is refused, not guessed at.
import { parseCron } from '../core/cron.js';
import { checkSecretName } from './secrets.js';

export const FUNCTION_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;
const EVENTS = ['INSERT', 'UPDATE', 'DELETE'] as const;
export type ChangeEvent = (typeof EVENTS)[number];

export interface Declared {
  schedule?: string;
  on?: { schema: string; table: string; events: ChangeEvent[] };
  secrets: string[];
  /** Extra hosts (`api.stripe.com` or `api.stripe.com:443`). */
  net: string[];
  /** Sees PLINTH_SERVICE_KEY (bypasses RLS) besides the anon key. */
  service: boolean;
}

export class DeclarationError extends Error {}

const HOST = /^(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:\d{1,5})?$|^\[[0-9a-f:]+\](:\d{1,5})?$/i;
const IDENT = /^[a-z_][a-z0-9_$]*$/i;

export function readDeclared(raw: unknown): Declared {
  const fail = (msg: string): never => {
    throw new DeclarationError(`config: ${msg}`);
  };
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) fail('must be an object');
  const c = raw as Record<string, unknown>;
  const known = ['schedule', 'on', 'secrets', 'net', 'service'];
  for (const k of Object.keys(c)) if (!known.includes(k)) fail(`unknown key ${JSON.stringify(k)} (known: ${known.join(', ')})`);
  const out: Declared = { secrets: [], net: [], service: false };
  if (c.schedule !== undefined) {
    if (typeof c.schedule !== 'string') fail('schedule must be a cron expression string');
    try {
      parseCron(c.schedule as string);
    } catch (err) {
      fail(`schedule: ${(err as Error).message}`);
    }
    out.schedule = c.schedule as string;
  }
  if (c.on !== undefined) {
    const on = c.on as Record<string, unknown>;
    if (on === null || typeof on !== 'object' || typeof on.table !== 'string') fail('on must be { table: "todos", events: ["INSERT"] }');
    const [schema, table] = (on.table as string).includes('.') ? (on.table as string).split('.', 2) : ['public', on.table as string];
    if (!IDENT.test(schema) || !IDENT.test(table)) fail(`on.table ${JSON.stringify(on.table)} is not a table name`);
    const events = on.events === undefined ? [...EVENTS] : on.events;
    if (!Array.isArray(events) || events.length === 0 || events.some((e) => !(EVENTS as readonly unknown[]).includes(e))) fail('on.events must list INSERT, UPDATE and/or DELETE');
    out.on = { schema, table, events: events as ChangeEvent[] };
  }
  if (c.secrets !== undefined) {
    if (!Array.isArray(c.secrets) || c.secrets.some((s) => typeof s !== 'string')) fail('secrets must be a list of names');
    for (const s of c.secrets as string[]) {
      try {
        checkSecretName(s);
      } catch (err) {
        fail((err as Error).message);
      }
    }
    out.secrets = [...new Set(c.secrets as string[])];
  }
  if (c.net !== undefined) {
    if (!Array.isArray(c.net) || c.net.some((h) => typeof h !== 'string' || !HOST.test(h))) fail('net must be a list of hosts such as "api.stripe.com" or "api.example.com:8443"');
    out.net = [...new Set(c.net as string[])];
  }
  if (c.service !== undefined) {
    if (typeof c.service !== 'boolean') fail('service must be true or false');
    out.service = c.service as boolean;
  }
  return out;
}
