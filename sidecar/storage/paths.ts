// What a client may call a file. Pure functions, no I/O: a name is checked completely before any
// byte is stored. Names are only ever database values; no client name becomes a filesystem path
// or an object key (those are opaque object ids), but we still refuse names that would be
// dangerous if an app ever used them as paths.

export const MAX_PATH_BYTES = 1024;

export class InvalidName extends Error {}

const UTF8 = new TextDecoder('utf-8', { fatal: true });

/**
 * A File-Path header value → the path it names. Header values are percent-decoded (as
 * encodeURIComponent would produce them) so any Unicode name can travel in ASCII; raw UTF-8
 * bytes in the header are accepted too. A literal `%` must be sent as `%25`. The decoded bytes
 * must be UTF-8: the database stores paths as text.
 */
export function decodePathHeader(raw: string): string {
  // Node hands header bytes over as latin1 code points; recover the bytes first.
  for (let i = 0; i < raw.length; i++) {
    if (raw.charCodeAt(i) > 0xff) throw new InvalidName('File-Path contains characters that are not bytes');
  }
  const bytes = Buffer.from(raw, 'latin1');
  const out: number[] = [];
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i];
    if (b !== 0x25) {
      out.push(b);
      continue;
    }
    const hex = bytes.subarray(i + 1, i + 3).toString('latin1');
    if (!/^[0-9a-fA-F]{2}$/.test(hex)) throw new InvalidName('File-Path has a "%" that is not followed by two hex digits; send a literal % as %25');
    out.push(parseInt(hex, 16));
    i += 2;
  }
  try {
    return UTF8.decode(Uint8Array.from(out));
  } catch {
    throw new InvalidName('File-Path is not UTF-8 once percent-decoded; percent-encode the UTF-8 bytes of the name');
  }
}

/** C0 controls, DEL and C1 controls (NUL included). */
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

/** Characters that reorder how text is displayed: a name could show as another name. */
const BIDI = /[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]/;
/** Characters that display as nothing: two names could look identical. */
const INVISIBLE = /[\u200b-\u200d\u2060\ufeff]/;

function codePoint(c: string): string {
  return `U+${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`;
}

/**
 * A file path as used by store_file/retrieve_file: `dir/sub/name.ext`, relative, clean. Returned
 * in Unicode NFC, so `café` typed as e + combining accent and as é names the same file.
 */
export function validateFilePath(raw: string): string {
  if (raw.length === 0) throw new InvalidName('the file path is empty');
  if (CONTROL.test(raw)) throw new InvalidName('the file path contains a control character (NUL, newline, tab, ...)');
  const bidi = BIDI.exec(raw);
  if (bidi) throw new InvalidName(`the file path contains a bidirectional control character (${codePoint(bidi[0])}) that would change how the name is displayed`);
  const invisible = INVISIBLE.exec(raw);
  if (invisible) throw new InvalidName(`the file path contains an invisible character (${codePoint(invisible[0])}, zero-width space, joiner or BOM)`);
  const path = raw.normalize('NFC');
  if (Buffer.byteLength(path, 'utf8') > MAX_PATH_BYTES) throw new InvalidName(`the file path is longer than ${MAX_PATH_BYTES} bytes`);
  if (path.includes('\\')) throw new InvalidName('the file path contains a backslash; separate folders with "/"');
  if (path.startsWith('/')) throw new InvalidName('the file path is absolute; give a relative path such as "docs/report.pdf"');
  for (const segment of path.split('/')) {
    if (segment === '') throw new InvalidName('the file path has an empty segment ("//" or a trailing "/")');
    if (segment === '.' || segment === '..') throw new InvalidName('the file path contains a "." or ".." segment');
  }
  if (/^[a-zA-Z]:/.test(path)) throw new InvalidName('the file path starts with a drive letter');
  return path;
}

/** A filename for entity-linked storage: one path segment, same rules. */
export function validateFilename(name: string): string {
  const normal = validateFilePath(name);
  if (normal.includes('/')) throw new InvalidName('the filename contains "/"; give a name without folders');
  return normal;
}

/** A table or column name of an entity: a plain SQL identifier (the catalog decides if it exists). */
export function validateIdentifier(name: string, what: string): string {
  if (!/^[A-Za-z_][A-Za-z0-9_$]{0,62}$/.test(name)) throw new InvalidName(`${what} must be a plain SQL identifier, got ${JSON.stringify(name)}`);
  return name;
}

/** The basename of a path, for Content-Disposition. */
export function basename(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

/** Content-Disposition with an ASCII fallback and the exact UTF-8 name (RFC 6266 / 8187). */
export function contentDisposition(kind: 'attachment' | 'inline', name: string): string {
  const ascii = name.replace(/[^\x20-\x7e]/g, '_').replace(/["\\]/g, '_');
  const encoded = encodeURIComponent(name).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  return `${kind}; filename="${ascii}"; filename*=UTF-8''${encoded}`;
}

/** Busboy reports multipart filenames as latin1 code points; a UTF-8 name is recovered from them. */
export function recoverUtf8(name: string): string {
  if (/[^\x00-\xff]/.test(name) || !/[\x80-\xff]/.test(name)) return name;
  try {
    return UTF8.decode(Buffer.from(name, 'latin1'));
  } catch {
    return name;
  }
}
