// An upload's body as storage-js sends it: raw bytes with content-type, cache-control and
// x-metadata headers (a Buffer or a stream), or a form (a Blob or File) with cacheControl and
// metadata fields before the file part. Either way the file's bytes are left to stream.
import type { Multipart } from '@fastify/multipart';
import type { FastifyRequest } from 'fastify';
import type { Readable } from 'node:stream';
import { parseContentType } from '../storage/content-types.js';
import { invalid } from './errors.js';
import { parseUserMetadata } from './objects.js';

export interface ObjectBody {
  source: Readable;
  declaredType: string;
  cacheControl: string;
  userMetadata: Record<string, unknown> | null;
  /** The file's own length when the body is nothing else. */
  length: number | null;
}

function cacheControlOf(value: string | undefined): string {
  if (value === undefined || value === '') return 'max-age=3600';
  // The form field is seconds ("3600"); the header is already a Cache-Control value.
  if (/^\d+$/.test(value)) return `max-age=${value}`;
  if (!/^[\x20-\x7e]{1,200}$/.test(value)) throw invalid('cacheControl must be a number of seconds or a Cache-Control value');
  return value;
}

function declaredType(raw: string | undefined): string {
  try {
    return parseContentType(raw, 'application/octet-stream');
  } catch (err) {
    throw invalid((err as Error).message);
  }
}

export async function readObjectBody(request: FastifyRequest): Promise<ObjectBody> {
  if (!request.isMultipart()) {
    const declared = Number(request.headers['content-length']);
    return {
      source: request.raw,
      declaredType: declaredType(request.headers['content-type']),
      cacheControl: cacheControlOf(request.headers['cache-control']),
      userMetadata: parseUserMetadata(request.headers['x-metadata'] as string | undefined, true),
      length: Number.isFinite(declared) && request.headers['content-length'] !== undefined ? declared : null,
    };
  }
  const parts = request.parts({ limits: { files: 1, fields: 10, fieldSize: 64 * 1024 } } as never) as AsyncIterableIterator<Multipart>;
  const fields: Record<string, string> = {};
  for (;;) {
    const { value: part, done } = await parts.next();
    if (done) throw invalid('The form has no file part');
    if (part.type === 'field') {
      fields[part.fieldname] = String(part.value);
      continue;
    }
    return {
      source: part.file,
      declaredType: declaredType(part.mimetype),
      cacheControl: cacheControlOf(fields.cacheControl),
      userMetadata: parseUserMetadata(fields.metadata, false),
      length: null,
    };
  }
}
