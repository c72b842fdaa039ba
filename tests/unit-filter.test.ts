// Realtime row filters (PostgREST syntax) without a stack: what parses, what is refused and why,
// and the SQL each form compiles to.
import { describe, expect, it } from 'vitest';
import { compileFilter, FilterError, parseFilter, quoteIdent, type Condition } from '../sidecar/realtime/filter.js';

describe('parseFilter', () => {
  it.each<[string, Condition[]]>([
    ['user_id=eq.42', [{ column: 'user_id', op: 'eq', values: ['42'] }]],
    ['n=neq.1', [{ column: 'n', op: 'neq', values: ['1'] }]],
    ['n=lt.1', [{ column: 'n', op: 'lt', values: ['1'] }]],
    ['n=lte.1', [{ column: 'n', op: 'lte', values: ['1'] }]],
    ['n=gt.1', [{ column: 'n', op: 'gt', values: ['1'] }]],
    ['n=gte.1', [{ column: 'n', op: 'gte', values: ['1'] }]],
    ['title=eq.', [{ column: 'title', op: 'eq', values: [''] }]],
    ['title=eq.a.b=c', [{ column: 'title', op: 'eq', values: ['a.b=c'] }]],
    ['title=eq.two\nlines', [{ column: 'title', op: 'eq', values: ['two\nlines'] }]],
    ['done=is.null', [{ column: 'done', op: 'is', values: ['null'] }]],
    ['done=is.true', [{ column: 'done', op: 'is', values: ['true'] }]],
    ['done=is.false', [{ column: 'done', op: 'is', values: ['false'] }]],
    ['done=is.unknown', [{ column: 'done', op: 'is', values: ['unknown'] }]],
    ['id=in.(1,2,3)', [{ column: 'id', op: 'in', values: ['1', '2', '3'] }]],
    ['id=in.(1)', [{ column: 'id', op: 'in', values: ['1'] }]],
    ['tag=in.("a,b",c)', [{ column: 'tag', op: 'in', values: ['a,b', 'c'] }]],
    ['tag=in.(a,"b,c")', [{ column: 'tag', op: 'in', values: ['a', 'b,c'] }]],
    ['tag=in.(a,)', [{ column: 'tag', op: 'in', values: ['a', ''] }]],
    [
      'user_id=eq.7&done=is.false',
      [
        { column: 'user_id', op: 'eq', values: ['7'] },
        { column: 'done', op: 'is', values: ['false'] },
      ],
    ],
    ['"odd name"=eq.1', [{ column: '"odd name"', op: 'eq', values: ['1'] }]],
  ])('%j parses', (text, conditions) => {
    expect(parseFilter(text)).toEqual(conditions);
  });

  it.each<[string, string]>([
    ['user_id', '"user_id" is not a filter: write column=operator.value, e.g. user_id=eq.42'],
    ['user_id=42', '"user_id=42" is not a filter: write column=operator.value, e.g. user_id=eq.42'],
    ['=eq.1', '"=eq.1" is not a filter: write column=operator.value, e.g. user_id=eq.42'],
    ['a=EQ.1', '"a=EQ.1" is not a filter: write column=operator.value, e.g. user_id=eq.42'],
    ['', '"" is not a filter: write column=operator.value, e.g. user_id=eq.42'],
    ['a=eq.1&', '"" is not a filter: write column=operator.value, e.g. user_id=eq.42'],
    ['a=like.x*', 'unknown filter operator "like": use one of eq, neq, lt, lte, gt, gte, in, is'],
    ['a=not.eq.1', 'unknown filter operator "not": use one of eq, neq, lt, lte, gt, gte, in, is'],
    ['a=is.maybe', '"is" takes null, true, false or unknown, not "maybe"'],
    ['a=is.NULL', '"is" takes null, true, false or unknown, not "NULL"'],
    ['a=in.1,2', '"in" takes a list in parentheses, e.g. in.(1,2,3)'],
    ['a=in.(1,2', '"in" takes a list in parentheses, e.g. in.(1,2,3)'],
    ['a=in.()', '"in" needs at least one value'],
    ['a=in.("a,b)', 'unterminated quote in "in" list'],
    ['a=in.("a"b)', 'expected a comma after a quoted value in "in" list'],
    [`a=eq.${'x'.repeat(4096)}`, 'filter is longer than 4096 characters'],
  ])('%j is refused: %s', (text, message) => {
    let thrown: unknown;
    try {
      parseFilter(text);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(FilterError);
    expect(thrown).toMatchObject({ code: 'PGRST100', message });
  });

  it('accepts a filter of exactly 4096 characters', () => {
    const text = `a=eq.${'x'.repeat(4096 - 'a=eq.'.length)}`;
    expect(text).toHaveLength(4096);
    expect(parseFilter(text)[0].values[0]).toHaveLength(4091);
  });
});

describe('compileFilter', () => {
  const types = new Map([
    ['user_id', 'uuid'],
    ['n', 'integer'],
    ['done', 'boolean'],
    ['we"ird', 'text'],
  ]);
  const compile = (text: string) => {
    const params: unknown[] = [];
    const sql = compileFilter(parseFilter(text), 'r', types, (v) => {
      params.push(v);
      return `$${params.length}`;
    });
    return { sql, params };
  };

  it.each<[string, string, unknown[]]>([
    ['user_id=eq.abc', '(r."user_id" = $1::uuid)', ['abc']],
    ['n=neq.1', '(r."n" <> $1::integer)', ['1']],
    ['n=lt.1', '(r."n" < $1::integer)', ['1']],
    ['n=lte.1', '(r."n" <= $1::integer)', ['1']],
    ['n=gt.1', '(r."n" > $1::integer)', ['1']],
    ['n=gte.1', '(r."n" >= $1::integer)', ['1']],
    ['n=in.(1,2,3)', '(r."n" in ($1::integer, $2::integer, $3::integer))', ['1', '2', '3']],
    ['done=is.null', '(r."done" is null)', []],
    ['done=is.unknown', '(r."done" is unknown)', []],
    ['n=gt.1&done=is.true', '(r."n" > $1::integer) and (r."done" is true)', ['1']],
    ['we"ird=eq.x', '(r."we""ird" = $1::text)', ['x']],
    ["n=eq.1'; drop table t; --", '(r."n" = $1::integer)', ["1'; drop table t; --"]],
  ])('%j compiles to %s', (text, sql, params) => {
    expect(compile(text)).toEqual({ sql, params });
  });

  it('compiles no conditions to true', () => {
    expect(compileFilter([], 'r', types, () => '$1')).toBe('true');
  });
});

describe('quoteIdent', () => {
  it.each([
    ['user_id', '"user_id"'],
    ['Mixed Case', '"Mixed Case"'],
    ['a"b', '"a""b"'],
    ['"', '""""'],
  ])('%j → %s', (name, quoted) => {
    expect(quoteIdent(name)).toBe(quoted);
  });
});
