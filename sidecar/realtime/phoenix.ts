// The Phoenix channel protocol as @supabase/realtime-js speaks it, without any I/O: frames in and
// out (vsn 1.0.0 JSON objects, vsn 2.0.0 JSON arrays, and 2.0.0's binary broadcast frames), and the
// checks of a channel join's `postgres_changes` entries, whose filters are translated to the
// PostgREST syntax the native protocol already evaluates in PostgreSQL (filter.ts).
import type { ChangeEvent } from './client.js';

export const VSN_1 = '1.0.0';
export const VSN_2 = '2.0.0';
export type Vsn = typeof VSN_1 | typeof VSN_2;

export interface Frame {
  joinRef: string | null;
  ref: string | null;
  topic: string;
  event: string;
  payload: unknown;
}

/** A broadcast as a client pushed it: a JSON payload, or bytes (binary frames only). */
export interface Broadcast {
  event: string;
  json?: unknown;
  bytes?: Buffer;
  /** JSON text of allowed metadata keys, passed through unchanged ('' when none). */
  meta: string;
}

export class FrameError extends Error {}

const KIND_USER_BROADCAST_PUSH = 3;
const KIND_USER_BROADCAST = 4;
const ENCODING_BINARY = 0;
const ENCODING_JSON = 1;

const ref = (v: unknown): string | null => (typeof v === 'string' ? v : typeof v === 'number' ? String(v) : null);

/** One frame from a client, or a FrameError saying what is wrong with it. */
export function decodeFrame(vsn: Vsn, data: Buffer, isBinary: boolean): Frame {
  if (isBinary) {
    if (vsn !== VSN_2) throw new FrameError('binary frames need vsn=2.0.0');
    return decodeBroadcastPush(data);
  }
  let msg: unknown;
  try {
    msg = JSON.parse(data.toString('utf8'));
  } catch {
    throw new FrameError('frame is not JSON');
  }
  let f: Frame;
  if (vsn === VSN_2) {
    if (!Array.isArray(msg) || msg.length !== 5) throw new FrameError('a vsn 2.0.0 frame is a JSON array [join_ref, ref, topic, event, payload]');
    f = { joinRef: ref(msg[0]), ref: ref(msg[1]), topic: msg[2], event: msg[3], payload: msg[4] };
  } else {
    if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) throw new FrameError('a vsn 1.0.0 frame is a JSON object {topic, event, payload, ref, join_ref}');
    const m = msg as Record<string, unknown>;
    f = { joinRef: ref(m.join_ref), ref: ref(m.ref), topic: m.topic as string, event: m.event as string, payload: m.payload };
  }
  if (typeof f.topic !== 'string' || f.topic.length === 0 || f.topic.length > 255) throw new FrameError('"topic" must be a string of 1 to 255 characters');
  if (typeof f.event !== 'string' || f.event.length === 0) throw new FrameError('"event" must be a non-empty string');
  return f;
}

/** realtime-js's binary broadcast push: kind, five lengths, encoding, then the strings and the payload. */
function decodeBroadcastPush(data: Buffer): Frame {
  if (data.length < 7 || data[0] !== KIND_USER_BROADCAST_PUSH) throw new FrameError('unknown binary frame (only broadcast pushes are binary)');
  const [joinRefLen, refLen, topicLen, eventLen, metaLen, encoding] = data.subarray(1, 7);
  let at = 7;
  const take = (n: number) => {
    if (at + n > data.length) throw new FrameError('binary frame shorter than its header says');
    const s = data.subarray(at, at + n).toString('utf8');
    at += n;
    return s;
  };
  const joinRef = take(joinRefLen);
  const pushRef = take(refLen);
  const topic = take(topicLen);
  const event = take(eventLen);
  const meta = take(metaLen);
  const body = data.subarray(at);
  const broadcast: Broadcast = { event, meta };
  if (encoding === ENCODING_JSON) {
    try {
      broadcast.json = JSON.parse(body.toString('utf8'));
    } catch {
      throw new FrameError('broadcast payload is not JSON');
    }
  } else if (encoding === ENCODING_BINARY) {
    broadcast.bytes = Buffer.from(body);
  } else {
    throw new FrameError(`unknown payload encoding ${encoding}`);
  }
  if (topic.length === 0) throw new FrameError('"topic" must not be empty');
  return { joinRef: joinRef || null, ref: pushRef || null, topic, event: 'broadcast', payload: broadcast };
}

/** A frame whose payload is already JSON text (change frames are serialised once per group). */
export function encodeRaw(vsn: Vsn, joinRef: string | null, ref: string | null, topic: string, event: string, payloadJson: string): string {
  if (vsn === VSN_2) return `[${JSON.stringify(joinRef)},${JSON.stringify(ref)},${JSON.stringify(topic)},${JSON.stringify(event)},${payloadJson}]`;
  return `{"topic":${JSON.stringify(topic)},"event":${JSON.stringify(event)},"payload":${payloadJson},"ref":${JSON.stringify(ref)},"join_ref":${JSON.stringify(joinRef)}}`;
}

export function encodeFrame(vsn: Vsn, f: Frame): string {
  return encodeRaw(vsn, f.joinRef, f.ref, f.topic, f.event, JSON.stringify(f.payload ?? {}));
}

/** A broadcast to subscribers, as the frame realtime-js decodes: JSON text, or binary for byte payloads. */
export function encodeBroadcast(vsn: Vsn, topic: string, b: Broadcast): string | Buffer | null {
  if (b.bytes === undefined) {
    const meta = b.meta ? `,"meta":${b.meta}` : '';
    return encodeRaw(vsn, null, null, topic, 'broadcast', `{"type":"broadcast","event":${JSON.stringify(b.event)},"payload":${JSON.stringify(b.json ?? {})}${meta}}`);
  }
  // A vsn 1.0.0 socket cannot carry bytes (the same as Supabase's server).
  if (vsn !== VSN_2) return null;
  const topicBytes = Buffer.from(topic);
  const eventBytes = Buffer.from(b.event);
  const metaBytes = Buffer.from(b.meta);
  const header = Buffer.from([KIND_USER_BROADCAST, topicBytes.length, eventBytes.length, metaBytes.length, ENCODING_BINARY]);
  return Buffer.concat([header, topicBytes, eventBytes, metaBytes, b.bytes]);
}

/** What one `postgres_changes` entry of a join asks for. */
export interface PostgresChangeRequest {
  events: ChangeEvent[];
  schema: string;
  /** '*' for every published table of the schema. */
  table: string;
  /** The filter in the native (PostgREST) syntax, '' for none. */
  filter: string;
}

export class BindingError extends Error {}

const ALL_EVENTS: ChangeEvent[] = ['INSERT', 'UPDATE', 'DELETE'];
const SUPABASE_OPERATORS = ['eq', 'neq', 'lt', 'lte', 'gt', 'gte', 'in', 'like', 'ilike', 'is', 'match', 'imatch', 'isdistinct'];
const SUPPORTED_OPERATORS = ['eq', 'neq', 'lt', 'lte', 'gt', 'gte', 'in', 'is'];

/** Elixir's inspect of a list of strings, for error texts identical to Supabase's. */
const inspectList = (parts: string[]) => `[${parts.map((p) => JSON.stringify(p)).join(', ')}]`;

/**
 * One entry of `config.postgres_changes` ({event, schema, table, filter}), checked the way
 * Supabase's server checks it, with the same error texts; operators Supabase has and this server
 * does not (like, ilike, match, imatch, isdistinct, the not. prefix) are refused by name.
 */
export function parsePostgresChange(entry: unknown): PostgresChangeRequest {
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
    throw new BindingError(`No subscription params provided. Please provide at least a \`schema\` or \`table\` to subscribe to: ${JSON.stringify(entry)}`);
  }
  const p = entry as Record<string, unknown>;
  const has = (k: string) => Object.hasOwn(p, k) && p[k] !== undefined && p[k] !== null;
  let events = ALL_EVENTS;
  if (has('event')) {
    const e = typeof p.event === 'string' ? p.event.toUpperCase() : '';
    if (e === 'INSERT' || e === 'UPDATE' || e === 'DELETE') events = [e];
    else if (e !== '*') throw new BindingError(`\`event\` must be one of "*", "INSERT", "UPDATE", "DELETE", not ${JSON.stringify(p.event)}`);
  }
  for (const k of ['schema', 'table', 'filter']) {
    if (has(k) && typeof p[k] !== 'string') throw new BindingError(`\`${k}\` must be a string`);
  }
  if (!has('schema') && !has('table')) {
    throw new BindingError('No subscription params provided. Please provide at least a `schema` or `table` to subscribe to');
  }
  if (has('select')) throw new BindingError('Column selection (`select`) is not supported by this server: every column the subscriber may read is sent');
  const schema = has('schema') ? (p.schema as string) : 'public';
  const table = has('table') ? (p.table as string) : '*';
  const filter = has('filter') ? translateFilter(p.filter as string) : '';
  if (filter !== '' && (table === '*' || schema === '*')) {
    throw new BindingError('A filter needs an explicit schema and table name');
  }
  return { events, schema, table, filter };
}

/** Supabase's filter (`col=op.value`, several joined by commas) in the native syntax (joined by &). */
export function translateFilter(text: string): string {
  const trimmed = text.trim();
  if (trimmed === '') return '';
  const parts: string[] = [];
  for (const segment of splitTopLevel(trimmed)) {
    const s = segment.trim();
    if (s === '') throw new BindingError('Error parsing `filter` params: filter must not contain empty segments (check for extra commas)');
    const eq = s.indexOf('=');
    if (eq === -1) throw new BindingError(`Error parsing \`filter\` params: ${inspectList([s])}`);
    const column = s.slice(0, eq);
    let rest = s.slice(eq + 1);
    if (rest.startsWith('not.')) {
      throw new BindingError(`Error parsing \`filter\` params: the \`not.\` prefix is not supported by this server (operators: ${SUPPORTED_OPERATORS.join(', ')})`);
    }
    const dot = rest.indexOf('.');
    if (dot === -1) throw new BindingError(`Error parsing \`filter\` params: ${inspectList([rest])}`);
    const op = rest.slice(0, dot);
    let value = rest.slice(dot + 1);
    if (!SUPABASE_OPERATORS.includes(op)) throw new BindingError(`Error parsing \`filter\` params: ${inspectList([op, value])}`);
    if (!SUPPORTED_OPERATORS.includes(op)) {
      throw new BindingError(`Error parsing \`filter\` params: the \`${op}\` operator is not supported by this server (operators: ${SUPPORTED_OPERATORS.join(', ')})`);
    }
    if (op === 'in') {
      if (!(value.length >= 2 && value.startsWith('(') && value.endsWith(')'))) throw new BindingError('Error parsing `filter` params: `in` filter value must be wrapped by parentheses');
    } else {
      value = unquote(value);
    }
    if (column.includes('&') || value.includes('&')) throw new BindingError('Error parsing `filter` params: a column or value containing "&" is not supported by this server');
    rest = `${op}.${value}`;
    parts.push(`${column}=${rest}`);
  }
  return parts.join('&');
}

/** Splits on commas outside parentheses and double quotes (Supabase's split_top_level). */
function splitTopLevel(text: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let quoted = false;
  let current = '';
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (quoted) {
      if (ch === '\\' && i + 1 < text.length) {
        current += ch + text[++i];
        continue;
      }
      if (ch === '"') quoted = false;
      current += ch;
      continue;
    }
    if (ch === '"' && (current.endsWith('.') || current.endsWith('(') || current.endsWith(','))) quoted = true;
    else if (ch === '(') depth++;
    else if (ch === ')') depth = Math.max(0, depth - 1);
    else if (ch === ',' && depth === 0) {
      out.push(current);
      current = '';
      continue;
    }
    current += ch;
  }
  out.push(current);
  return out;
}

function unquote(value: string): string {
  if (!value.startsWith('"')) return value;
  let out = '';
  for (let i = 1; i < value.length; i++) {
    const ch = value[i];
    if (ch === '\\' && i + 1 < value.length) out += value[++i];
    else if (ch === '"') return i === value.length - 1 ? out : value;
    else out += ch;
  }
  return value;
}
