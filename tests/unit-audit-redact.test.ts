// What the request log keeps of a request target: no token, key, password or signature survives.
import { describe, expect, test } from 'vitest';
import { REDACTED, redactTarget, routeKind, rowsFromContentRange } from '../sidecar/audit/redact.ts';

const JWT = 'eyJhbGciOiJFUzI1NiJ9.eyJyb2xlIjoiYW5vbiJ9.c2lnbmF0dXJlLWJ5dGVz';

describe('redactTarget', () => {
  test('secret query parameters lose their values, others are kept', () => {
    const { path, query } = redactTarget(`/realtime?apikey=${JWT}&access_token=abc&vsn=1&password=hunter2&X-Amz-Signature=ff&token=t&select=id`);
    expect(path).toBe('/realtime');
    expect(query).toBe(`apikey=${REDACTED}&access_token=${REDACTED}&vsn=1&password=${REDACTED}&X-Amz-Signature=${REDACTED}&token=${REDACTED}&select=id`);
    expect(query).not.toContain('hunter2');
    expect(query).not.toContain(JWT);
  });
  test('a filter on a secret-named column and a JWT anywhere are redacted', () => {
    const { query } = redactTarget(`/users?password_hash=eq.x&note=eq.${JWT}&id=eq.5`);
    expect(query).toBe(`password_hash=${REDACTED}&note=eq.${REDACTED}&id=eq.5`);
  });
  test('a JWT in the path is redacted; no query gives null', () => {
    expect(redactTarget(`/files/${JWT}/a.png`)).toEqual({ path: `/files/${REDACTED}/a.png`, query: null });
    expect(redactTarget('/todos?')).toEqual({ path: '/todos', query: null });
  });
  test('percent-encoded names are judged decoded', () => {
    expect(redactTarget('/x?access%5Ftoken=s3cret').query).toBe(`access%5Ftoken=${REDACTED}`);
  });
});

test('route kinds', () => {
  expect(routeKind('/todos')).toBe('tables');
  expect(routeKind('/rpc/f')).toBe('rpc');
  expect(routeKind('/auth/refresh')).toBe('accounts');
  expect(routeKind('/storage/upload')).toBe('files');
  expect(routeKind('/realtime')).toBe('realtime');
  expect(routeKind('/metrics')).toBe('operator');
});

test('rows from Content-Range', () => {
  expect(rowsFromContentRange('0-24/*')).toBe(25);
  expect(rowsFromContentRange('0-0/100')).toBe(1);
  expect(rowsFromContentRange('*/0')).toBe(0);
  expect(rowsFromContentRange('*/*')).toBe(null);
  expect(rowsFromContentRange(undefined)).toBe(null);
});
