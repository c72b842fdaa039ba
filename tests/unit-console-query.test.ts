// The console's pure pieces: a table view as a PostgREST request (and as curl / postgrest-js), and
// how the row editor reads columns from the OpenAPI document and turns input text into values.
import { describe, expect, test } from 'vitest';
import { columnsOf, fieldValue, inputText, type Column } from '../console/src/columns.ts';
import { curlFor, filterExpression, parseContentRange, postgrestJsFor, viewPath, type ViewQuery } from '../console/src/query.ts';

describe('filterExpression', () => {
  test.each([
    [{ column: 'a', op: 'eq', value: '5' }, 'eq.5'],
    [{ column: 'a', op: 'contains', value: 'milk' }, 'ilike.*milk*'],
    [{ column: 'a', op: 'in', value: 'x, y "z"' }, 'in.("x","y \\"z\\"")'],
    [{ column: 'a', op: 'is', value: ' NULL' }, 'is.null'],
    [{ column: 'a', op: 'not.is', value: 'true' }, 'not.is.true'],
    [{ column: 'a', op: 'like', value: 'a*' }, 'like.a*'],
  ])('%j → %s', (f, expected) => expect(filterExpression(f)).toBe(expected));
});

describe('a view as a request', () => {
  const q: ViewQuery = { table: 'todos', filters: [{ column: 'title', op: 'contains', value: "it's" }], order: { column: 'id', ascending: false }, limit: 25, offset: 50 };
  test('path', () => expect(viewPath(q)).toBe("/todos?limit=25&offset=50&title=ilike.*it's*&order=id.desc"));
  test('curl quotes for the shell and keeps the token a variable', () =>
    expect(curlFor('http://x', q)).toBe(`curl 'http://x/todos?limit=25&offset=50&title=ilike.*it'\\''s*&order=id.desc' \\\n  -H "Authorization: Bearer $TOKEN" \\\n  -H 'Prefer: count=exact'`));
  test('postgrest-js', () =>
    expect(postgrestJsFor(q)).toBe(
      "const { data, count, error } = await supabase\n  .from('todos')\n  .select('*', { count: 'exact' })\n  .ilike('title', '%it\\'s%')\n  .order('id', { ascending: false })\n  .range(50, 74);",
    ));
  test.each([
    ['0-24/123', { from: 0, to: 24, total: 123 }],
    ['*/0', { from: 0, to: -1, total: 0 }],
    ['0-9/*', { from: 0, to: 9, total: null }],
    [null, { from: 0, to: -1, total: null }],
  ])('Content-Range %s', (h, expected) => expect(parseContentRange(h)).toEqual(expected));
});

describe('columns and values', () => {
  const cols = columnsOf({
    required: ['id', 'title', 'mood'],
    properties: {
      id: { type: 'integer', format: 'bigint', description: 'Note:\nThis is a Primary Key.<pk/>' },
      project_id: { type: 'integer', format: 'bigint', description: "Note:\nThis is a Foreign Key to `projects.id`.<fk table='projects' column='id'/>" },
      title: { type: 'string', format: 'text' },
      mood: { type: 'string', format: 'public.mood', enum: ['happy', 'sad'], default: 'happy' },
      extra: { format: 'jsonb' },
      at: { type: 'string', format: 'timestamp with time zone' },
      ok: { type: 'boolean', format: 'boolean' },
    },
  });
  const col = (name: string) => cols.find((c) => c.name === name) as Column;
  test('kinds, keys, nullability, defaults', () => {
    expect(cols.map((c) => [c.name, c.kind])).toEqual([['id', 'integer'], ['project_id', 'fk'], ['title', 'text'], ['mood', 'enum'], ['extra', 'json'], ['at', 'datetime'], ['ok', 'boolean']]);
    expect(col('id').pk).toBe(true);
    expect(col('project_id').fk).toEqual({ table: 'projects', column: 'id' });
    expect(col('title').nullable).toBe(false);
    expect(col('extra').nullable).toBe(true);
    expect(col('mood')).toMatchObject({ hasDefault: true, options: ['happy', 'sad'] });
  });
  test('empty input: the default when inserting; null, or an empty text, when editing', () => {
    expect(fieldValue(col('extra'), '', 'insert')).toEqual({ omit: true });
    expect(fieldValue(col('extra'), '', 'edit')).toEqual({ omit: false, value: null });
    expect(fieldValue(col('title'), '', 'edit')).toEqual({ omit: false, value: '' });
    expect(() => fieldValue(col('id'), '', 'edit')).toThrow('id needs a value');
  });
  test('typed values', () => {
    expect(fieldValue(col('ok'), 'false', 'insert')).toEqual({ omit: false, value: false });
    expect(fieldValue(col('extra'), '{"a":[1]}', 'insert')).toEqual({ omit: false, value: { a: [1] } });
    expect(() => fieldValue(col('extra'), '{a', 'insert')).toThrow('extra must be valid JSON');
    expect(() => fieldValue(col('id'), '1.5', 'insert')).toThrow('id must be a whole number');
    expect(fieldValue(col('id'), '9007199254740993', 'insert')).toEqual({ omit: false, value: '9007199254740993' });
  });
  test('JSON and time stamps start as editable text', () => {
    expect(inputText(col('extra'), { a: 1 })).toBe('{\n  "a": 1\n}');
    expect(inputText(col('title'), null)).toBe('');
  });
});
