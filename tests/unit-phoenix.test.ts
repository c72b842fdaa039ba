// The Phoenix frame codec and the checks of postgres_changes entries (sidecar/realtime/phoenix.ts).
import { describe, expect, test } from 'vitest';
import { RealtimeClient } from '@supabase/realtime-js';
import WebSocket from 'ws';
import { BindingError, decodeFrame, encodeBroadcast, encodeFrame, FrameError, parsePostgresChange, translateFilter, VSN_1, VSN_2, type Broadcast } from '../sidecar/realtime/phoenix.ts';

// realtime-js's own vsn 2.0.0 serializer (the client is never connected).
const { serializer } = new RealtimeClient('ws://127.0.0.1:9/realtime/v1', { params: { apikey: 'unused' }, transport: WebSocket as never });
const encoded = (msg: Record<string, unknown>): Promise<string | ArrayBuffer> => new Promise((resolve) => serializer.encode(msg as never, resolve));

describe('frames', () => {
  test('vsn 2.0.0 arrays and vsn 1.0.0 objects decode to the same frame', () => {
    const frame = { joinRef: '1', ref: '2', topic: 'realtime:room', event: 'phx_join', payload: { config: {} } };
    expect(decodeFrame(VSN_2, Buffer.from('["1","2","realtime:room","phx_join",{"config":{}}]'), false)).toEqual(frame);
    expect(decodeFrame(VSN_1, Buffer.from('{"topic":"realtime:room","event":"phx_join","payload":{"config":{}},"ref":"2","join_ref":"1"}'), false)).toEqual(frame);
    expect(encodeFrame(VSN_2, frame)).toBe('["1","2","realtime:room","phx_join",{"config":{}}]');
    expect(JSON.parse(encodeFrame(VSN_1, frame))).toEqual({ topic: 'realtime:room', event: 'phx_join', payload: { config: {} }, ref: '2', join_ref: '1' });
  });

  test.each([
    [VSN_2, '{"topic":"t"}', /JSON array/],
    [VSN_2, '["1","2","t"]', /JSON array/],
    [VSN_1, '[null,null,"t","e",{}]', /JSON object/],
    [VSN_2, 'nope', /not JSON/],
    [VSN_2, '[null,null,"","e",{}]', /topic/],
    [VSN_2, '[null,null,"t",5,{}]', /event/],
  ] as const)('%s %s is refused', (vsn, text, message) => {
    expect(() => decodeFrame(vsn, Buffer.from(text), false)).toThrow(FrameError);
    expect(() => decodeFrame(vsn, Buffer.from(text), false)).toThrow(message);
  });

  test('realtime-js\'s binary broadcast pushes decode, JSON and bytes alike', async () => {
    const json = (await encoded({ join_ref: '3', ref: '4', topic: 'realtime:room', event: 'broadcast', payload: { type: 'broadcast', event: 'cursor', payload: { x: 1 } } })) as ArrayBuffer;
    expect(decodeFrame(VSN_2, Buffer.from(json), true)).toEqual({
      joinRef: '3', ref: '4', topic: 'realtime:room', event: 'broadcast', payload: { event: 'cursor', meta: '', json: { x: 1 } },
    });
    const bytes = new Uint8Array([1, 2, 255]).buffer;
    const bin = (await encoded({ join_ref: '3', ref: '5', topic: 'realtime:room', event: 'broadcast', payload: { type: 'broadcast', event: 'blob', payload: bytes } })) as ArrayBuffer;
    const frame = decodeFrame(VSN_2, Buffer.from(bin), true);
    expect((frame.payload as Broadcast).bytes).toEqual(Buffer.from([1, 2, 255]));
    expect(() => decodeFrame(VSN_1, Buffer.from(bin), true)).toThrow(/vsn=2.0.0/);
    expect(() => decodeFrame(VSN_2, Buffer.from([9, 0, 0, 0, 0, 0, 1]), true)).toThrow(/unknown binary frame/);
  });

  test('broadcasts go out as realtime-js decodes them', async () => {
    const text = encodeBroadcast(VSN_2, 'realtime:room', { event: 'cursor', json: { x: 1 }, meta: '' }) as string;
    const decoded = await new Promise((resolve) => serializer.decode(text as never, resolve));
    expect(decoded).toEqual({ join_ref: null, ref: null, topic: 'realtime:room', event: 'broadcast', payload: { type: 'broadcast', event: 'cursor', payload: { x: 1 } } });
    const bin = encodeBroadcast(VSN_2, 'realtime:room', { event: 'blob', bytes: Buffer.from([7, 8]), meta: '' }) as Buffer;
    const view = bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.length);
    const fromBinary = (await new Promise((resolve) => serializer.decode(view as never, resolve))) as { topic: string; payload: { event: string; payload: ArrayBuffer } };
    expect(fromBinary.topic).toBe('realtime:room');
    expect(fromBinary.payload.event).toBe('blob');
    expect([...new Uint8Array(fromBinary.payload.payload)]).toEqual([7, 8]);
    expect(encodeBroadcast(VSN_1, 'realtime:room', { event: 'blob', bytes: Buffer.from([7]), meta: '' })).toBeNull();
  });
});

describe('postgres_changes entries', () => {
  test.each([
    [{ event: '*', schema: 'public', table: 'todos' }, { events: ['INSERT', 'UPDATE', 'DELETE'], schema: 'public', table: 'todos', filter: '' }],
    [{ event: 'insert', schema: 'public', table: 'todos', filter: 'user_id=eq.42' }, { events: ['INSERT'], schema: 'public', table: 'todos', filter: 'user_id=eq.42' }],
    [{ table: 'todos' }, { events: ['INSERT', 'UPDATE', 'DELETE'], schema: 'public', table: 'todos', filter: '' }],
    [{ event: 'DELETE', schema: 'app' }, { events: ['DELETE'], schema: 'app', table: '*', filter: '' }],
  ])('%j', (entry, expected) => {
    expect(parsePostgresChange(entry)).toEqual(expected);
  });

  test.each([
    [{ event: 'TRUNCATE', table: 'todos' }, /`event` must be one of/],
    [{ event: '*' }, /No subscription params provided/],
    [{ schema: 'public', table: '*', filter: 'id=eq.1' }, /explicit schema and table/],
    [{ table: 'todos', select: ['id'] }, /Column selection/],
    [{ table: 5 }, /`table` must be a string/],
  ])('%j is refused', (entry, message) => {
    expect(() => parsePostgresChange(entry)).toThrow(BindingError);
    expect(() => parsePostgresChange(entry)).toThrow(message);
  });

  test.each([
    ['user_id=eq.42', 'user_id=eq.42'],
    ['  ', ''],
    ['id=gt.0,id=lt.100', 'id=gt.0&id=lt.100'],
    ['title=in.(a,"b,c")', 'title=in.(a,"b,c")'],
    ['title=eq."a,b"', 'title=eq.a,b'],
    ['done=is.true', 'done=is.true'],
  ])('filter %s → %s', (supabase, native) => {
    expect(translateFilter(supabase)).toBe(native);
  });

  test.each([
    ['subject=foo.hey', 'Error parsing `filter` params: ["foo", "hey"]'],
    ['undefined', 'Error parsing `filter` params: ["undefined"]'],
    ['id=in.1,2', 'Error parsing `filter` params: `in` filter value must be wrapped by parentheses'],
    ['id=eq.1,,id=eq.2', 'Error parsing `filter` params: filter must not contain empty segments (check for extra commas)'],
    ['subject=like.hey%', /the `like` operator is not supported by this server/],
    ['subject=not.eq.hey', /the `not.` prefix is not supported/],
    ['subject=eq.a&b', /containing "&"/],
  ])('filter %s is refused', (filter, message) => {
    expect(() => translateFilter(filter)).toThrow(message);
  });
});
