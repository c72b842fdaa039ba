// Sending stored bytes: ETag (the SHA-256), If-None-Match (304), a single Range (206/416),
// Content-Disposition. The body streams from the backend; nothing is buffered. User bytes are
// never given a chance to run as a page of our origin: every answer carries the sandbox CSP and
// nosniff, and only passive types (images, PDF, plain text, audio, video) are ever `inline`.
import type { FastifyReply, FastifyRequest } from 'fastify';
import { PlinthError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { ObjectNotFound, type StorageBackend, type StoredBytes } from './backends/adapter.js';
import { isPassive, USER_BYTES_HEADERS } from './content-types.js';
import { contentDisposition } from './paths.js';
import { etagMatches, parseRange } from './ranges.js';
import type { StoredObject } from './types.js';

export interface SendOptions {
  filename: string;
  /** Whether a passive type may be shown in the browser; anything else is always an attachment. */
  inline: boolean;
}

/** Lookups a download may repeat while overwrites keep replacing the version it found. */
const MAX_LOOKUPS = 10;

/**
 * Looks a file up and sends the version found. An overwrite can commit, and the old bytes be
 * removed, between the lookup and the read: then the lookup is repeated, for as long as each one
 * finds a different version (writers moving on, up to MAX_LOOKUPS). The same version missing its
 * bytes twice is an error, as is one that is simply gone.
 */
export async function sendCurrent<T>(lookup: () => Promise<T>, keyOf: (found: T) => string | null, send: (found: T) => unknown): Promise<unknown> {
  let vanished: string | null = null;
  for (let lookups = 1; ; lookups++) {
    const found = await lookup();
    try {
      return await send(found);
    } catch (err) {
      if (!(err instanceof ObjectNotFound)) throw err;
      const key = keyOf(found);
      if (key === null || key === vanished || lookups === MAX_LOOKUPS) throw err;
      vanished = key;
    }
  }
}

/**
 * A redirected download (S3 with PLINTH_S3_DOWNLOADS=redirect): the caller has already been allowed
 * by the database; the store then serves the bytes, ranges and conditionals at a short-lived URL.
 */
export function redirectDownload(reply: FastifyReply, location: string) {
  return reply.code(302).header('location', location).header('cache-control', 'no-store').send();
}

export async function sendObject(request: FastifyRequest, reply: FastifyReply, backend: StorageBackend, obj: StoredObject, opts: SendOptions, log: Logger) {
  const size = Number(obj.size);
  const etag = `"${obj.sha256}"`;
  const kind = opts.inline && isPassive(obj.content_type) ? 'inline' : 'attachment';
  // HEAD stays here: a presigned URL is signed for GET only.
  if (backend.downloadUrl && request.method !== 'HEAD' && !etagMatches(request.headers['if-none-match'], etag)) {
    const answer = { contentType: obj.content_type, contentDisposition: contentDisposition(kind, opts.filename), cacheControl: 'private, no-cache' };
    return redirectDownload(reply, await backend.downloadUrl(obj.key, answer));
  }
  reply.headers(USER_BYTES_HEADERS).header('etag', etag).header('accept-ranges', 'bytes').header('cache-control', 'private, no-cache');
  if (etagMatches(request.headers['if-none-match'], etag)) return reply.code(304).send();

  let range = parseRange(request.headers.range, size);
  // If-Range: a range of a version the client no longer has is useless; send everything.
  const ifRange = request.headers['if-range'] as string | undefined;
  if (range && ifRange !== undefined && ifRange.replace(/^W\//, '') !== etag) range = null;
  if (range === 'unsatisfiable') {
    throw new PlinthError(416, `The range is outside the file (${size} bytes)`, 'PLINTH416', null, null, { 'content-range': `bytes */${size}` });
  }

  // A HEAD reads no bytes.
  const body = request.method === 'HEAD' ? null : await backend.get(obj.key, range ?? undefined);
  reply.header('content-type', obj.content_type).header('content-disposition', contentDisposition(kind, opts.filename));
  if (range) {
    reply.code(206).header('content-range', `bytes ${range.start}-${range.end}/${size}`).header('content-length', range.end - range.start + 1);
  } else {
    reply.code(200).header('content-length', size);
  }
  return body ? sendBody(reply, body, log) : sendHeadersOnly(reply);
}

/** Takes the response from fastify and writes the status and headers set on the reply. */
function writeHead(reply: FastifyReply): void {
  reply.hijack();
  reply.raw.writeHead(reply.statusCode, reply.getHeaders() as never);
}

/** A HEAD answer: the headers with their real Content-Length (fastify would recompute it for an empty body). */
export function sendHeadersOnly(reply: FastifyReply) {
  writeHead(reply);
  reply.raw.end();
  return reply;
}

/**
 * Sends stored bytes whose status and headers (Content-Length included) are set on the reply. Once
 * the headers are out, a store that fails or ends short of Content-Length can only cut the
 * connection (a response ended early would leave the client waiting for the rest): `log` says why.
 */
export function sendBody(reply: FastifyReply, body: StoredBytes, log: Logger) {
  const length = Number(reply.getHeader('content-length'));
  writeHead(reply);
  body.writeTo(reply.raw, length).catch((err: Error) => {
    const id = reply.request.headers['x-request-id'] as string | undefined;
    log.warn(`${reply.request.method} ${reply.request.url.split('?')[0]}: the stored bytes could not be read to the end (${err.message}); the connection was cut`, { request_id: id });
  });
  return reply;
}
