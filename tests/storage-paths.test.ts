// Pure unit tests: what a client may call a file, header decoding, Range and ETag parsing.
import { describe, expect, test } from 'vitest';
import { contentDisposition, decodePathHeader, InvalidName, recoverUtf8, validateFilename, validateFilePath, validateIdentifier } from '../sidecar/storage/paths.ts';
import { etagMatches, parseRange } from '../sidecar/storage/ranges.ts';
import { essence, isPassive } from '../sidecar/storage/content-types.ts';

describe('validateFilePath', () => {
  test.each(['a.txt', 'docs/report.pdf', 'a/b/c/d.e', '..hidden', 'x..y', '.env', 'spaces are fine.txt', 'émoji 🎉/日本.txt', 'a'.repeat(1024)])('accepts %j', (p) => {
    expect(validateFilePath(p)).toBe(p);
  });

  test.each([
    ['', /empty/],
    ['..', /"\."/],
    ['../etc/passwd', /"\."/],
    ['a/../b', /"\."/],
    ['a/./b', /"\."/],
    ['.', /"\."/],
    ['/etc/passwd', /absolute/],
    ['a\\b', /backslash/],
    ['a\u0000b', /control/],
    ['a\nb', /control/],
    ['a\rb', /control/],
    ['a\u007fb', /control/],
    ['a\u0085b', /control/],
    ['a//b', /empty segment/],
    ['a/', /empty segment/],
    ['C:/x', /drive letter/],
    ['a'.repeat(1025), /1024 bytes/],
    ['é'.repeat(513), /1024 bytes/],
  ])('refuses %j', (p, why) => {
    expect(() => validateFilePath(p)).toThrow(InvalidName);
    expect(() => validateFilePath(p)).toThrow(why);
  });

  test.each([
    ['cafe\u0301.txt', 'caf\u00e9.txt'],
    ['caf\u00e9.txt', 'caf\u00e9.txt'],
    ['dir/A\u030a/n\u0303o.txt', 'dir/\u00c5/\u00f1o.txt'],
    ['\u1100\u1161.txt', '\uac00.txt'],
  ])('returns %j in NFC as %j', (p, nfc) => {
    expect(validateFilePath(p)).toBe(nfc);
  });

  test.each([
    ['RLO', 'invoice\u202Efdp.exe', /bidirectional control character \(U\+202E\)/],
    ['LRE', 'a\u202Ab', /bidirectional control character \(U\+202A\)/],
    ['PDF', 'a\u202Cb', /bidirectional control character \(U\+202C\)/],
    ['LRI', 'a\u2066b', /bidirectional control character \(U\+2066\)/],
    ['PDI', 'a\u2069b', /bidirectional control character \(U\+2069\)/],
    ['LRM', 'a\u200Eb', /bidirectional control character \(U\+200E\)/],
    ['RLM', 'a\u200Fb', /bidirectional control character \(U\+200F\)/],
    ['ALM', 'a\u061Cb', /bidirectional control character \(U\+061C\)/],
    ['ZWSP', 'a\u200Bb', /invisible character \(U\+200B/],
    ['ZWNJ', 'a\u200Cb', /invisible character \(U\+200C/],
    ['ZWJ', 'a\u200Db', /invisible character \(U\+200D/],
    ['word joiner', 'a\u2060b', /invisible character \(U\+2060/],
    ['BOM', '\uFEFFa.txt', /invisible character \(U\+FEFF/],
  ])('refuses a %s', (_what, p, why) => {
    expect(() => validateFilePath(p)).toThrow(InvalidName);
    expect(() => validateFilePath(p)).toThrow(why);
    expect(() => validateFilename(p)).toThrow(why);
  });

  test('filenames are one segment, in NFC', () => {
    expect(validateFilename('cafe\u0301.png')).toBe('caf\u00e9.png');
    expect(validateFilename('cover.png')).toBe('cover.png');
    expect(() => validateFilename('a/b.png')).toThrow(/"\/"/);
    expect(() => validateFilename('..')).toThrow(InvalidName);
  });

  test('identifiers are plain SQL names', () => {
    expect(validateIdentifier('todos', 't')).toBe('todos');
    for (const bad of ['', '1abc', 'a-b', 'a b', 'todos; drop table x', '"x"', 'a'.repeat(64)]) expect(() => validateIdentifier(bad, 't')).toThrow(InvalidName);
  });
});

describe('decodePathHeader', () => {
  const latin1 = (s: string) => Buffer.from(s, 'utf8').toString('latin1');
  test('percent-encoded UTF-8 decodes to the name', () => {
    expect(decodePathHeader(encodeURIComponent('données/résumé ✓.txt').replaceAll('%2F', '/'))).toBe('données/résumé ✓.txt');
    expect(decodePathHeader('100%25.txt')).toBe('100%.txt');
    expect(decodePathHeader('plain/path.txt')).toBe('plain/path.txt');
  });
  test('raw UTF-8 bytes in the header (seen by Node as latin1) are accepted', () => {
    expect(decodePathHeader(latin1('日本/語.txt'))).toBe('日本/語.txt');
  });
  test('non-UTF-8 bytes and broken escapes are refused', () => {
    expect(() => decodePathHeader('%FF%FE')).toThrow(/UTF-8/);
    expect(() => decodePathHeader('\u00e9')).toThrow(/UTF-8/); // a lone latin1 byte 0xE9
    expect(() => decodePathHeader('a%2')).toThrow(/two hex digits/);
    expect(() => decodePathHeader('a%zz')).toThrow(/two hex digits/);
  });
  test('decoding happens before validation: encoded traversal is still traversal', () => {
    expect(() => validateFilePath(decodePathHeader('%2E%2E/x'))).toThrow(/"\."/);
    expect(() => validateFilePath(decodePathHeader('a%00b'))).toThrow(/control/);
    expect(() => validateFilePath(decodePathHeader('a%5Cb'))).toThrow(/backslash/);
  });
  test('multipart filenames are recovered as UTF-8 when they are', () => {
    expect(recoverUtf8(latin1('résumé.pdf'))).toBe('résumé.pdf');
    expect(recoverUtf8('plain.pdf')).toBe('plain.pdf');
    expect(recoverUtf8('caf\u00e9')).toBe('caf\u00e9'); // not UTF-8: left alone
  });
});

describe('contentDisposition', () => {
  test('ASCII fallback plus the exact UTF-8 name', () => {
    expect(contentDisposition('attachment', 'a.txt')).toBe(`attachment; filename="a.txt"; filename*=UTF-8''a.txt`);
    expect(contentDisposition('inline', 'résumé "1".pdf')).toBe(`inline; filename="r_sum_ _1_.pdf"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%221%22.pdf`);
  });
});

describe('parseRange', () => {
  test.each([
    [undefined, 100, null],
    ['bytes=0-9', 100, { start: 0, end: 9 }],
    ['bytes=90-', 100, { start: 90, end: 99 }],
    ['bytes=-10', 100, { start: 90, end: 99 }],
    ['bytes=-1000', 100, { start: 0, end: 99 }],
    ['bytes=50-1000', 100, { start: 50, end: 99 }],
    ['bytes=100-', 100, 'unsatisfiable'],
    ['bytes=-0', 100, 'unsatisfiable'],
    ['bytes=0-', 0, 'unsatisfiable'],
    ['bytes=9-1', 100, null],
    ['bytes=0-1,3-4', 100, null],
    ['items=0-1', 100, null],
    ['bytes=-', 100, null],
  ] as const)('%s of %i bytes → %j', (header, size, expected) => {
    expect(parseRange(header, size)).toEqual(expected);
  });
});

describe('etagMatches', () => {
  test('strong, weak, lists and *', () => {
    expect(etagMatches('"abc"', '"abc"')).toBe(true);
    expect(etagMatches('W/"abc"', '"abc"')).toBe(true);
    expect(etagMatches('"x", "abc"', '"abc"')).toBe(true);
    expect(etagMatches('*', '"abc"')).toBe(true);
    expect(etagMatches('"abd"', '"abc"')).toBe(false);
    expect(etagMatches(undefined, '"abc"')).toBe(false);
  });
});

describe('content types', () => {
  test.each([
    ['image/png', true],
    ['IMAGE/PNG', true],
    ['image/jpeg', true],
    ['image/webp', true],
    ['image/avif', true],
    ['image/gif', true],
    ['image/bmp', true],
    ['application/pdf', true],
    ['text/plain; charset=utf-8', true],
    ['audio/mpeg', true],
    ['video/mp4', true],
    ['text/html', false],
    ['Text/HTML; charset=utf-8', false],
    [' text/html', false],
    ['image/svg+xml', false],
    ['application/xhtml+xml', false],
    ['text/xml', false],
    ['application/xml', false],
    ['application/javascript', false],
    ['text/javascript', false],
    ['application/octet-stream', false],
    ['multipart/x-mixed-replace', false],
    ['text/plain+html', false],
    ['image/png+svg', false],
  ])('%j is passive: %s', (type, passive) => {
    expect(isPassive(type)).toBe(passive);
  });
  test('the essence drops parameters and case', () => {
    expect(essence('Text/HTML; charset=UTF-8')).toBe('text/html');
  });
});
