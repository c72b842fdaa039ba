// Errors of the Storage API in Supabase's shape, {statusCode, error, message}, which
// storage-js reads. Unlike Supabase (which answers most errors with HTTP 400 and the real status
// in `statusCode`), Plinth sends the real status too: 404, 409, 413, 415 …
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from '../core/log.js';
import { databaseUnavailable, PlinthError, resourceExhausted } from '../core/errors.js';

/** A Storage API error with Supabase's error name (NoSuchBucket, InvalidKey, …). */
export class StorageApiError extends PlinthError {
  constructor(status: number, readonly error: string, message: string, headers: Record<string, string> = {}) {
    super(status, message, error, null, null, headers);
  }
}

export const bucketNotFound = () => new StorageApiError(404, 'NoSuchBucket', 'Bucket not found');
export const objectNotFound = () => new StorageApiError(404, 'NoSuchKey', 'Object not found');
export const invalid = (message: string) => new StorageApiError(400, 'InvalidRequest', message);

const NAME_BY_STATUS: Record<number, string> = {
  400: 'InvalidRequest',
  401: 'Unauthorized',
  403: 'AccessDenied',
  404: 'NotFound',
  408: 'RequestTimeout',
  409: 'Duplicate',
  412: 'PreconditionFailed',
  413: 'EntityTooLarge',
  415: 'InvalidMimeType',
  416: 'InvalidRange',
  429: 'SlowDown',
  503: 'ServiceUnavailable',
  507: 'InsufficientStorage',
};

/** Supabase's wording for the refusals PostgreSQL makes (RLS, duplicates, a bucket still in use). */
function reworded(err: PlinthError): PlinthError {
  if (err instanceof StorageApiError) return err;
  if (err.code === '42501' || /row-level security/.test(err.message)) {
    return new StorageApiError(err.status, 'Unauthorized', err.status === 401
      ? `${err.message}: sign in, or use a key that may do this`
      : 'new row violates row-level security policy (or the object is not yours to change)');
  }
  if (err.code === '23505') return new StorageApiError(409, 'Duplicate', 'The resource already exists');
  if (err.code === '23503') return new StorageApiError(409, 'ResourceNotEmpty', 'The bucket you tried to delete is not empty: empty it first');
  if (err.code === 'P0002') return bucketNotFound();
  if (err.code === '23514') return invalid(`Invalid name: ${err.message}`);
  return err;
}

export function renderError(log: Logger) {
  return (thrown: FastifyError | PlinthError, req: FastifyRequest, reply: FastifyReply) => {
    const known = databaseUnavailable(thrown) ?? resourceExhausted(thrown) ?? thrown;
    let status: number;
    let message: string;
    let error: string;
    let headers: Record<string, string> = {};
    if (known instanceof PlinthError) {
      const err = reworded(known);
      status = err.status;
      message = err.message;
      error = err instanceof StorageApiError ? err.error : NAME_BY_STATUS[status] ?? 'Error';
      headers = err.headers;
    } else if ((known as FastifyError).validation) {
      status = 400;
      error = 'InvalidRequest';
      message = `Invalid request: ${known.message}`;
    } else {
      const s = (known as FastifyError).statusCode;
      status = s && s >= 400 && s < 500 ? s : 500;
      error = NAME_BY_STATUS[status] ?? 'InternalError';
      if (status === 500) log.error(`${req.method} ${req.url.split('?')[0]}: ${known.stack ?? known.message}`);
      message = status === 500 ? 'Internal error; the server log has details' : known.message;
    }
    return reply.code(status).headers(headers).send({ statusCode: String(status), error, code: error, message });
  };
}
