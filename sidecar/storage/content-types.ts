// What a stored file is declared to be, and whether a browser may render it on our origin.
// Pure functions, no I/O.
import { PlinthError } from '../core/errors.js';

const CONTENT_TYPE = /^[A-Za-z0-9!#$&^_.+-]{1,127}\/[A-Za-z0-9!#$&^_.+-]{1,127}(\s*;[\x20-\x7e]*)?$/;

/** A client-declared content type, checked for shape; absent or empty → the fallback. */
export function parseContentType(raw: string | undefined, fallback = 'application/octet-stream'): string {
  if (raw === undefined || raw === '') return fallback;
  if (!CONTENT_TYPE.test(raw)) throw new PlinthError(400, `Invalid content type ${JSON.stringify(raw)}: expected type/subtype, e.g. image/png`);
  return raw;
}

/** The type without parameters, lower-cased: `Text/HTML; charset=x` → `text/html`. */
export function essence(type: string): string {
  return type.split(';')[0].trim().toLowerCase();
}

// Types a browser shows without running anything the file contains. Anything that can carry
// script or markup (HTML, SVG, XML, XHTML, JavaScript, ...) is never in this list.
const PASSIVE = new Set([
  'image/png',
  'image/apng',
  'image/jpeg',
  'image/pjpeg',
  'image/gif',
  'image/webp',
  'image/avif',
  'image/bmp',
  'image/x-icon',
  'image/vnd.microsoft.icon',
  'application/pdf',
  'text/plain',
]);

/** Whether a file of this declared type may be shown in the browser (`inline`) rather than saved. */
export function isPassive(type: string): boolean {
  const e = essence(type);
  return PASSIVE.has(e) || /^(audio|video)\/[a-z0-9!#$&^_.+-]+$/.test(e);
}

/**
 * Headers every response carrying user bytes gets. Even if a browser were persuaded to render the
 * bytes as a document, the sandbox gives it a unique opaque origin with no scripts, forms or
 * plugins, and `default-src 'none'` lets it load nothing; nosniff stops type guessing.
 */
export const USER_BYTES_HEADERS = {
  'content-security-policy': "sandbox; default-src 'none'",
  'x-content-type-options': 'nosniff',
} as const;
