// Sending an object's bytes with Supabase's headers (ETag, Cache-Control from the upload's
// cacheControl, Last-Modified, Range, If-None-Match) and Plinth's safety headers: user bytes are
// shown in the browser only for passive types, and never run as a page of this origin.
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from '../core/log.js';
import type { StorageBackend } from '../storage/backends/adapter.js';
import { isPassive, USER_BYTES_HEADERS } from '../storage/content-types.js';
import { contentDisposition } from '../storage/paths.js';
import { etagMatches, parseRange } from '../storage/ranges.js';
import { redirectDownload, sendBody, sendHeadersOnly } from '../storage/send.js';
import { StorageApiError } from './errors.js';
import type { Blob, ObjectRow } from './objects.js';

export interface SendOptions {
  /** `?download` (attachment under the object's name) or `?download=name`. */
  download?: string;
  /** HEAD: headers only. */
  head?: boolean;
}

export async function sendBucketObject(request: FastifyRequest, reply: FastifyReply, backend: StorageBackend, row: ObjectRow, blob: Blob, opts: SendOptions, log: Logger) {
  const size = Number(blob.size);
  const etag = `"${blob.sha256}"`;
  const meta = row.metadata ?? {};
  const filename = row.name.split('/').pop()!;
  const attachment = opts.download !== undefined || !isPassive(blob.content_type);
  const disposition = contentDisposition(attachment ? 'attachment' : 'inline', opts.download || filename);
  const cacheControl = typeof meta.cacheControl === 'string' ? meta.cacheControl : 'no-cache';
  // HEAD stays here: a presigned URL is signed for GET only.
  if (backend.downloadUrl && !opts.head && !etagMatches(request.headers['if-none-match'], etag)) {
    return redirectDownload(reply, await backend.downloadUrl(blob.key, { contentType: blob.content_type, contentDisposition: disposition, cacheControl }));
  }
  reply
    .headers(USER_BYTES_HEADERS)
    .header('etag', etag)
    .header('accept-ranges', 'bytes')
    .header('last-modified', new Date(row.updated_at).toUTCString())
    .header('cache-control', cacheControl);
  if (etagMatches(request.headers['if-none-match'], etag)) return reply.code(304).send();

  let range = parseRange(request.headers.range, size);
  const ifRange = request.headers['if-range'] as string | undefined;
  if (range && ifRange !== undefined && ifRange.replace(/^W\//, '') !== etag) range = null;
  if (range === 'unsatisfiable') {
    throw new StorageApiError(416, 'InvalidRange', `The range is outside the object (${size} bytes)`, { 'content-range': `bytes */${size}` });
  }
  reply.header('content-type', blob.content_type).header('content-disposition', disposition);
  if (range) reply.code(206).header('content-range', `bytes ${range.start}-${range.end}/${size}`).header('content-length', range.end - range.start + 1);
  else reply.code(200).header('content-length', size);
  if (opts.head) return sendHeadersOnly(reply);
  return sendBody(reply, await backend.get(blob.key, range ?? undefined), log);
}
