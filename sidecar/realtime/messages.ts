// The messages a client may send, checked before anything acts on them (the WebSocket
// counterpart of a fastify route schema): unknown types and fields are refused.
import type { ChangeEvent } from './client.js';

export type ClientMessage =
  | { type: 'auth'; token: string }
  | { type: 'subscribe'; id: string; table: string; filter?: string; events?: ChangeEvent[]; from?: number }
  | { type: 'unsubscribe'; id: string }
  | { type: 'ping'; ref?: string | number };

export class MessageError extends Error {
  constructor(
    message: string,
    readonly id?: string,
  ) {
    super(message);
  }
}

// Every lookup below is a Map keyed by what the client sent, and every field read is an own
// property: names such as "constructor", "toString" or "__proto__" are never found on a prototype.
const EVENTS: ReadonlySet<unknown> = new Set<ChangeEvent>(['INSERT', 'UPDATE', 'DELETE']);
const id = (v: unknown) => typeof v === 'string' && v.length > 0 && v.length <= 128;
const FIELDS = new Map<string, ReadonlyMap<string, (v: unknown) => boolean>>([
  ['auth', new Map([['token', (v: unknown) => typeof v === 'string' && v.length > 0 && v.length < 16384]])],
  [
    'subscribe',
    new Map([
      ['id', id],
      ['table', (v: unknown) => typeof v === 'string' && /^[^\s."]{1,63}(\.[^\s."]{1,63})?$/.test(v)],
      ['filter', (v: unknown) => typeof v === 'string'],
      ['events', (v: unknown) => Array.isArray(v) && v.length > 0 && v.every((e) => EVENTS.has(e))],
      ['from', (v: unknown) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0],
    ]),
  ],
  ['unsubscribe', new Map([['id', id]])],
  ['ping', new Map([['ref', (v: unknown) => typeof v === 'string' || typeof v === 'number']])],
]);
const REQUIRED = new Map<string, readonly string[]>([
  ['auth', ['token']],
  ['subscribe', ['id', 'table']],
  ['unsubscribe', ['id']],
  ['ping', []],
]);
const HELP = new Map<string, string>([
  ['token', 'a non-empty string'],
  ['id', 'a string of 1 to 128 characters that names the subscription'],
  ['table', 'a table name such as "todos" or "public.todos"'],
  ['filter', 'a PostgREST filter string such as "user_id=eq.<uuid>"'],
  ['events', 'a non-empty array of "INSERT", "UPDATE", "DELETE"'],
  ['from', 'a position (non-negative integer) from an earlier message'],
  ['ref', 'a string or number'],
]);

export function parseMessage(text: string): ClientMessage {
  let msg: unknown;
  try {
    msg = JSON.parse(text);
  } catch {
    throw new MessageError('message is not JSON');
  }
  if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) throw new MessageError('message must be a JSON object');
  const m = msg as Record<string, unknown>;
  const type = Object.hasOwn(m, 'type') ? m.type : undefined;
  const fields = typeof type === 'string' ? FIELDS.get(type) : undefined;
  if (typeof type !== 'string' || !fields) throw new MessageError('"type" must be one of auth, subscribe, unsubscribe, ping');
  const subscription = Object.hasOwn(m, 'id') && typeof m.id === 'string' ? m.id : undefined;
  for (const [k, v] of Object.entries(m)) {
    if (k === 'type') continue;
    const check = fields.get(k);
    if (!check) throw new MessageError(`unknown field ${JSON.stringify(k)} in a ${type} message`, subscription);
    if (!check(v)) throw new MessageError(`"${k}" must be ${HELP.get(k)}`, subscription);
  }
  for (const k of REQUIRED.get(type)!) if (!Object.hasOwn(m, k)) throw new MessageError(`a ${type} message needs "${k}" (${HELP.get(k)})`, subscription);
  return m as ClientMessage;
}
