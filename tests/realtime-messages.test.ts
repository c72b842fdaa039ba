// The realtime protocol's pure parts, without a stack: client message validation and filter
// parsing. Names that every JavaScript object inherits (constructor, toString, __proto__, ...) are
// not message types, fields, events or operators, and are refused with a message that says so.
import { describe, expect, test } from 'vitest';
import { FilterError, parseFilter } from '../sidecar/realtime/filter.ts';
import { MessageError, parseMessage } from '../sidecar/realtime/messages.ts';

const TYPES = '"type" must be one of auth, subscribe, unsubscribe, ping';

describe('parseMessage refuses inherited names', () => {
  test.each([
    ['type "constructor"', '{"type":"constructor"}', TYPES],
    ['type "toString"', '{"type":"toString"}', TYPES],
    ['type "__proto__"', '{"type":"__proto__"}', TYPES],
    ['type "hasOwnProperty"', '{"type":"hasOwnProperty"}', TYPES],
    ['a type only on a __proto__ key', '{"__proto__":{"type":"ping"}}', TYPES],
    ['field "constructor"', '{"type":"ping","constructor":1}', 'unknown field "constructor" in a ping message'],
    ['field "toString"', '{"type":"ping","toString":"x"}', 'unknown field "toString" in a ping message'],
    ['field "valueOf"', '{"type":"unsubscribe","id":"s","valueOf":0}', 'unknown field "valueOf" in a unsubscribe message'],
    ['field "hasOwnProperty"', '{"type":"auth","token":"t","hasOwnProperty":"token"}', 'unknown field "hasOwnProperty" in a auth message'],
    ['field "__proto__"', '{"type":"ping","__proto__":{"ref":1}}', 'unknown field "__proto__" in a ping message'],
    ['field "__proto__" naming a required field', '{"type":"unsubscribe","__proto__":{"id":"s"}}', 'unknown field "__proto__" in a unsubscribe message'],
    ['event "toString"', '{"type":"subscribe","id":"s","table":"todos","events":["toString"]}', '"events" must be a non-empty array of "INSERT", "UPDATE", "DELETE"'],
    ['event "constructor"', '{"type":"subscribe","id":"s","table":"todos","events":["INSERT","constructor"]}', '"events" must be a non-empty array of "INSERT", "UPDATE", "DELETE"'],
  ])('%s', (_, text, message) => {
    let thrown: unknown;
    try {
      parseMessage(text);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(MessageError);
    expect((thrown as MessageError).message).toBe(message);
  });
});

describe('parseMessage accepts the protocol', () => {
  test.each([
    ['auth', '{"type":"auth","token":"t"}'],
    ['subscribe with every field', '{"type":"subscribe","id":"s","table":"public.todos","filter":"id=eq.1","events":["INSERT","DELETE"],"from":3}'],
    ['unsubscribe', '{"type":"unsubscribe","id":"s"}'],
    ['ping', '{"type":"ping","ref":7}'],
  ])('%s', (_, text) => {
    expect(parseMessage(text)).toEqual(JSON.parse(text));
  });

  test('a missing required field is named', () => {
    expect(() => parseMessage('{"type":"subscribe","id":"s"}')).toThrow('a subscribe message needs "table" (a table name such as "todos" or "public.todos")');
  });
});

describe('parseFilter refuses inherited names as operators', () => {
  test.each([
    ['id=constructor.1', 'unknown filter operator "constructor": use one of eq, neq, lt, lte, gt, gte, in, is'],
    ['id=valueof.1', 'unknown filter operator "valueof": use one of eq, neq, lt, lte, gt, gte, in, is'],
    ['id=toString.1', '"id=toString.1" is not a filter: write column=operator.value, e.g. user_id=eq.42'],
    ['done=is.constructor', '"is" takes null, true, false or unknown, not "constructor"'],
  ])('%s', (text, message) => {
    expect(() => parseFilter(text)).toThrow(new FilterError('PGRST100', message));
  });

  test('a column named like an inherited property is only a column name (checked against the table later)', () => {
    expect(parseFilter('constructor=eq.1')).toEqual([{ column: 'constructor', op: 'eq', values: ['1'] }]);
  });
});
