// Fine's table API translated to PostgREST, without a stack: each row is one rule of the dialect
// (the PostgREST path it becomes), then every refusal with its status and the parameter it names.
import { describe, expect, it } from 'vitest';
import { PlinthError } from '../sidecar/core/errors.js';
import { envelope, orderParam, translate, whereFilters, type FineRequest, type TableInfo } from '../sidecar/fine/translate.js';

const ID: TableInfo = { primaryKey: ['id'] };
const q = (s: string): Array<[string, string]> => [...new URLSearchParams(s)];
const decoded = (path: string) => decodeURIComponent(path.replace(/\+/g, ' '));

describe('GET /db/tables/:table', () => {
  it.each<[string, string]>([
    ['', '/todos'],
    ['completed=false', '/todos?completed=eq.false'],
    ['title.like=important&limit=10&order=created_at%20DESC', '/todos?title=like.*important*&limit=10&order=created_at.desc'],
    ['title.like=meeting', '/todos?title=like.*meeting*'],
    ['title.like=meet%25', '/todos?title=like.meet%'],
    ['title.like=meet*', '/todos?title=like.meet*'],
    ['title.ilike=MEET', '/todos?title=ilike.*MEET*'],
    ['priority.gt=3', '/todos?priority=gt.3'],
    ['priority.gte=3', '/todos?priority=gte.3'],
    ['priority.lt=3', '/todos?priority=lt.3'],
    ['created_at.lte=2023-12-31', '/todos?created_at=lte.2023-12-31'],
    ['status.neq=cancelled', '/todos?status=neq.cancelled'],
    ['status.eq=open', '/todos?status=eq.open'],
    ['status.in=open,closed', '/todos?status=in.(open,closed)'],
    ['status.in=(open,"a,b")', '/todos?status=in.(open,"a,b")'],
    ['status.is=NULL', '/todos?status=is.null'],
    ['completed.is=true', '/todos?completed=is.true'],
    ['priority.gt=1&priority.lt=5', '/todos?priority=gt.1&priority=lt.5'],
    ['title=eq.x', '/todos?title=eq.eq.x'],
    ['order=priority desc, title', '/todos?order=priority.desc,title.asc'],
    ['order=priority.desc', '/todos?order=priority.desc'],
    ['select=id,avatar&offset=20', '/todos?select=id,avatar&offset=20'],
  ])('%s → %s', (query, path) => {
    const out = translate({ method: 'GET', table: 'todos', query: q(query) }, ID);
    expect(decoded(out.path)).toBe(path);
    expect(out).toMatchObject({ method: 'GET', shape: 'list', status: 200 });
  });

  it('by id filters on the primary key the catalog names, whatever it is called', () => {
    expect(decoded(translate({ method: 'GET', table: 'notes', id: 'k-1', query: q('select=body') }, { primaryKey: ['note_key'] }).path)).toBe('/notes?note_key=eq.k-1&select=body');
    expect(translate({ method: 'GET', table: 'todos', id: '123' }, ID)).toMatchObject({ path: '/todos?id=eq.123', shape: 'one' });
  });

  it('quotes a table name PostgREST would otherwise read as syntax', () => {
    expect(translate({ method: 'GET', table: 'a b?c' }, ID).path).toBe('/a%20b%3Fc');
  });
});

describe('writes', () => {
  it('POST of an object or an array asks for the rows back, 201', () => {
    expect(translate({ method: 'POST', table: 'todos', body: { title: 'x' } }, ID)).toEqual({
      method: 'POST', path: '/todos', body: '{"title":"x"}', prefer: 'return=representation', shape: 'list', status: 201,
    });
    expect(translate({ method: 'POST', table: 'todos', body: [{ title: 'a' }, { title: 'b' }] }, ID).body).toBe('[{"title":"a"},{"title":"b"}]');
  });

  it('PATCH by id changes one row; PATCH with where changes the matching rows', () => {
    expect(translate({ method: 'PATCH', table: 'todos', id: '123', body: { completed: true } }, ID)).toMatchObject({
      path: '/todos?id=eq.123', body: '{"completed":true}', shape: 'one',
    });
    const out = translate({ method: 'PATCH', table: 'todos', body: { data: { completed: true }, where: { user_id: 'user123', priority: { gt: 3, lte: 9 } } } }, ID);
    expect(decoded(out.path)).toBe('/todos?user_id=eq.user123&priority=gt.3&priority=lte.9');
    expect(out).toMatchObject({ body: '{"completed":true}', shape: 'list', status: 200 });
  });

  it('DELETE by id or by where returns the deleted rows', () => {
    expect(translate({ method: 'DELETE', table: 'todos', id: '7' }, ID)).toMatchObject({ path: '/todos?id=eq.7', prefer: 'return=representation', shape: 'one' });
    expect(decoded(translate({ method: 'DELETE', table: 'todos', body: { where: { completed: true } } }, ID).path)).toBe('/todos?completed=eq.true');
  });
});

describe('whereFilters', () => {
  it.each<[unknown, Array<[string, string]>]>([
    [{ a: 1 }, [['a', 'eq.1']]],
    [{ a: 'x' }, [['a', 'eq.x']]],
    [{ a: false }, [['a', 'eq.false']]],
    [{ a: null }, [['a', 'is.null']]],
    [{ a: { neq: null } }, [['a', 'not.is.null']]],
    [{ a: { in: ['x', 'y,z', 'q"r'] } }, [['a', 'in.("x","y,z","q\\"r")']]],
    [{ a: { like: 'meet' } }, [['a', 'like.*meet*']]],
    [{ a: { is: null } }, [['a', 'is.null']]],
  ])('%j', (where, filters) => expect(whereFilters(where)).toEqual(filters));
});

describe('refusals', () => {
  it.each<[string, FineRequest, TableInfo, RegExp]>([
    ['unknown operator, naming the parameter', { method: 'GET', table: 't', query: q('title.contains=x') }, ID, /Unknown operator "contains" in parameter "title.contains"/],
    ['a column name that is not one', { method: 'GET', table: 't', query: q('a-b=1') }, ID, /"a-b" in parameter "a-b" is not a column name/],
    ['bad order', { method: 'GET', table: 't', query: q('order=title sideways') }, ID, /Parameter "order"/],
    ['bad limit', { method: 'GET', table: 't', query: q('limit=-1') }, ID, /Parameter "limit" must be a whole number/],
    ['bad offset', { method: 'GET', table: 't', query: q('offset=ten') }, ID, /Parameter "offset"/],
    ['is with another value', { method: 'GET', table: 't', query: q('done.is=maybe') }, ID, /"done.is" takes null, true or false/],
    ['a filter on one row by id', { method: 'GET', table: 't', id: '1', query: q('title=x') }, ID, /does not apply to one row/],
    ['by id without a primary key', { method: 'GET', table: 't', id: '1' }, { primaryKey: [] }, /has no primary key/],
    ['by id with a composite key', { method: 'DELETE', table: 't', id: '1' }, { primaryKey: ['a', 'b'] }, /composite primary key \(a, b\)/],
    ['PATCH of a whole table without where', { method: 'PATCH', table: 't', body: { data: { a: 1 } } }, ID, /needs "where"/],
    ['PATCH with an empty where', { method: 'PATCH', table: 't', body: { data: { a: 1 }, where: {} } }, ID, /"where" is empty/],
    ['PATCH without data', { method: 'PATCH', table: 't', body: { where: { a: 1 } } }, ID, /"data"/],
    ['PATCH by id with nothing to change', { method: 'PATCH', table: 't', id: '1', body: {} }, ID, /is empty/],
    ['DELETE of a whole table without a body', { method: 'DELETE', table: 't' }, ID, /never deletes every row/],
    ['DELETE with an empty where', { method: 'DELETE', table: 't', body: { where: {} } }, ID, /"where" is empty/],
    ['DELETE with where not an object', { method: 'DELETE', table: 't', body: { where: 'id=1' } }, ID, /"where" must be an object/],
    ['where with an unknown operator', { method: 'DELETE', table: 't', body: { where: { a: { near: 1 } } } }, ID, /Unknown operator "near" in parameter "where.a.near"/],
    ['where with an object value', { method: 'DELETE', table: 't', body: { where: { a: { eq: { x: 1 } } } } }, ID, /"where.a.eq" must be a string/],
    ['in with an empty list', { method: 'DELETE', table: 't', body: { where: { a: { in: [] } } } }, ID, /at least one value/],
    ['POST of an empty array', { method: 'POST', table: 't', body: [] }, ID, /nothing to insert/],
    ['POST of a non-object row', { method: 'POST', table: 't', body: [{ a: 1 }, 2] }, ID, /Row 1 of the body must be a JSON object/],
    ['POST to an id', { method: 'POST', table: 't', id: '1', body: { a: 1 } }, ID, /POST creates rows/],
  ])('%s → 400', (_name, req, info, message) => {
    let thrown: unknown;
    try {
      translate(req, info);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(PlinthError);
    expect((thrown as PlinthError).status).toBe(400);
    expect((thrown as PlinthError).message).toMatch(message);
  });
});

describe('orderParam and envelope', () => {
  it('orders several columns', () => expect(orderParam('a ASC,b DESC , c')).toBe('a.asc,b.desc,c.asc'));
  it('wraps rows in {data}', () => {
    expect(envelope('list', [{ id: 1 }])).toEqual({ data: [{ id: 1 }] });
    expect(envelope('one', [{ id: 1 }])).toEqual({ data: { id: 1 } });
    expect(envelope('one', [])).toBeNull();
  });
});
