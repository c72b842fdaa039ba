// A bucket's limits, as pure functions: the size limit's forms ("10MB", 1048576), allowed types
// with wildcards ("image/*"), and the type an upload really is, from its first bytes.

/** `file_size_limit` as Supabase accepts it: bytes, or a number with B, KB, MB or GB (powers of 1024). */
export function parseSizeLimit(value: unknown): number | null {
  if (value === null || value === undefined || value === '') return null;
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || value < 0) throw new RangeError('file_size_limit must be a whole number of bytes');
    return value === 0 ? null : value;
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb)?\s*$/i.exec(String(value));
  if (!m) throw new RangeError(`file_size_limit ${JSON.stringify(value)} is not a size: give bytes, or a number with B, KB, MB or GB`);
  const unit = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 }[(m[2] ?? 'b').toLowerCase() as 'b'];
  const bytes = Math.floor(Number(m[1]) * unit);
  return bytes === 0 ? null : bytes;
}

/** The type without parameters, lower-cased. */
export function essence(type: string): string {
  return type.split(';')[0].trim().toLowerCase();
}

/** Whether `type` is allowed by the bucket's list (null or empty: everything). */
export function mimeAllowed(type: string, allowed: readonly string[] | null): boolean {
  if (!allowed || allowed.length === 0) return true;
  const t = essence(type);
  return allowed.some((a) => {
    const e = essence(a);
    return e === t || e === '*/*' || (e.endsWith('/*') && t.startsWith(e.slice(0, -1)));
  });
}

/** How many leading bytes sniff() wants. */
export const SNIFF_BYTES = 16;

const ascii = (b: Buffer, at: number, s: string) => b.length >= at + s.length && b.toString('latin1', at, at + s.length) === s;
const bytes = (b: Buffer, at: number, ...v: number[]) => b.length >= at + v.length && v.every((x, i) => b[at + i] === x);

/** The type the bytes declare by their magic number, where it is a well-known one; null otherwise. */
export function sniff(head: Buffer): string | null {
  if (bytes(head, 0, 0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a)) return 'image/png';
  if (bytes(head, 0, 0xff, 0xd8, 0xff)) return 'image/jpeg';
  if (ascii(head, 0, 'GIF87a') || ascii(head, 0, 'GIF89a')) return 'image/gif';
  if (ascii(head, 0, 'RIFF') && ascii(head, 8, 'WEBP')) return 'image/webp';
  if (ascii(head, 0, 'RIFF') && ascii(head, 8, 'WAVE')) return 'audio/wav';
  if (ascii(head, 4, 'ftyp')) {
    const brand = head.toString('latin1', 8, 12);
    if (brand === 'avif' || brand === 'avis') return 'image/avif';
    if (brand.startsWith('hei') || brand === 'mif1') return 'image/heic';
    if (brand.startsWith('qt')) return 'video/quicktime';
    return 'video/mp4';
  }
  if (ascii(head, 0, '%PDF-')) return 'application/pdf';
  if (bytes(head, 0, 0x50, 0x4b, 0x03, 0x04)) return 'application/zip';
  if (bytes(head, 0, 0x1f, 0x8b)) return 'application/gzip';
  if (bytes(head, 0, 0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c)) return 'application/x-7z-compressed';
  if (ascii(head, 0, 'Rar!')) return 'application/vnd.rar';
  if (ascii(head, 0, 'OggS')) return 'audio/ogg';
  if (ascii(head, 0, 'ID3')) return 'audio/mpeg';
  if (ascii(head, 0, 'fLaC')) return 'audio/flac';
  if (bytes(head, 0, 0x1a, 0x45, 0xdf, 0xa3)) return 'video/webm';
  if (bytes(head, 0, 0x7f, 0x45, 0x4c, 0x46)) return 'application/x-executable';
  if (ascii(head, 0, 'MZ')) return 'application/x-msdownload';
  if (bytes(head, 0, 0x00, 0x61, 0x73, 0x6d)) return 'application/wasm';
  if (bytes(head, 0, 0x00, 0x00, 0x01, 0x00)) return 'image/x-icon';
  return null;
}

// Formats that are zip archives inside: the bytes say zip, the declared type says which one.
const ZIP_BASED = /(\+zip$|openxmlformats|opendocument|epub|java-archive|android\.package|^application\/x-zip)/;

/**
 * The type an upload is stored as: what its bytes show where they show a known type, else what the
 * client declared. A declared type that refines the sniffed container (a .docx is a zip) is kept.
 */
export function effectiveType(declared: string, sniffed: string | null): string {
  if (sniffed === null) return declared;
  const d = essence(declared);
  if (d === sniffed) return declared;
  if (sniffed === 'application/zip' && ZIP_BASED.test(d)) return declared;
  if (sniffed === 'video/mp4' && /^(video|audio)\/(mp4|x-m4a|m4a|3gpp)/.test(d)) return declared;
  if (sniffed === 'audio/ogg' && /^(audio|video|application)\/ogg/.test(d)) return declared;
  if (sniffed === 'video/webm' && /^(audio|video)\/(webm|x-matroska)/.test(d)) return declared;
  return sniffed;
}
