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

const EVENTS: readonly ChangeEvent[] = ['INSERT', 'UPDATE', 'DELETE'];
const FIELDS: Record<ClientMessage['type'], Record<string, (v: unknown) => boolean>> = {
  auth: { token: (v) => typeof v === 'string' && v.length > 0 && v.length < 16384 },
  subscribe: {
    id: (v) => typeof v === 'string' && v.length > 0 && v.length <= 128,
    table: (v) => typeof v === 'string' && /^[^\s."]{1,63}(\.[^\s."]{1,63})?$/.test(v),
    filter: (v) => typeof v === 'string',
    events: (v) => Array.isArray(v) && v.length > 0 && v.every((e) => (EVENTS as unknown[]).includes(e)),
    from: (v) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0,
  },
  unsubscribe: { id: (v) => typeof v === 'string' && v.length > 0 && v.length <= 128 },
  ping: { ref: (v) => typeof v === 'string' || typeof v === 'number' },
};
const REQUIRED: Record<ClientMessage['type'], string[]> = { auth: ['token'], subscribe: ['id', 'table'], unsubscribe: ['id'], ping: [] };
const HELP: Record<string, string> = {
  token: 'a non-empty string',
  id: 'a string of 1 to 128 characters that names the subscription',
  table: 'a table name such as "todos" or "public.todos"',
  filter: 'a PostgREST filter string such as "user_id=eq.<uuid>"',
  events: 'a non-empty array of "INSERT", "UPDATE", "DELETE"',
  from: 'a position (non-negative integer) from an earlier message',
  ref: 'a string or number',
};

export function parseMessage(text: string): ClientMessage {
  let msg: unknown;
  try {
    msg = JSON.parse(text);
  } catch {
    throw new MessageError('message is not JSON');
  }
  if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) throw new MessageError('message must be a JSON object');
  const m = msg as Record<string, unknown>;
  const type = m.type as ClientMessage['type'];
  const fields = typeof type === 'string' ? FIELDS[type] : undefined;
  if (!fields || !Object.hasOwn(FIELDS, type)) throw new MessageError('"type" must be one of auth, subscribe, unsubscribe, ping');
  const id = typeof m.id === 'string' ? m.id : undefined;
  for (const [k, v] of Object.entries(m)) {
    if (k === 'type') continue;
    const check = fields[k];
    if (!check) throw new MessageError(`unknown field "${k}" in a ${type} message`, id);
    if (!check(v)) throw new MessageError(`"${k}" must be ${HELP[k]}`, id);
  }
  for (const k of REQUIRED[type]) if (!(k in m)) throw new MessageError(`a ${type} message needs "${k}" (${HELP[k]})`, id);
  return m as ClientMessage;
}
