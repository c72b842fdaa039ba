// CORS for browser apps on other origins, with PostgREST's own policy: any origin by default
// (`Access-Control-Allow-Origin: *`), the methods and preflight answer it gives, the response
// headers it exposes plus the ones Plinth's routes send. Never credentials: the API takes keys and
// bearer tokens in headers, and the console's refresh cookie must stay unusable from other origins.
//
// Every header list is built once here; a request only looks up the array for its Origin.

/** Header lines as one flat `[name, value, name, value, …]` array, the form `writeHead` takes. */
export type FlatHeaders = readonly string[];

export const ALLOWED_METHODS = 'GET, POST, PATCH, PUT, DELETE, OPTIONS, HEAD';

/**
 * Response headers a page may read. PostgREST's list (Content-Range and Range-Unit for counts,
 * Content-Location, Location) and what clients and Plinth's own routes also send.
 */
export const EXPOSED_HEADERS = [
  'Content-Encoding',
  'Content-Location',
  'Content-Range',
  'Content-Type',
  'Date',
  'Location',
  'Server',
  'Transfer-Encoding',
  'Range-Unit',
  'Content-Profile',
  'Preference-Applied',
  'ETag',
  'Accept-Ranges',
  'Content-Length',
  'Content-Disposition',
  'Retry-After',
  'WWW-Authenticate',
  // TUS resumable uploads (/storage/v1/upload/resumable).
  'Tus-Resumable',
  'Tus-Version',
  'Tus-Extension',
  'Tus-Max-Size',
  'Upload-Offset',
  'Upload-Length',
  'Upload-Expires',
  'Upload-Metadata',
  // supabase-js reads these from /auth/v1: the API version of an error body, and pagination.
  'X-Supabase-Api-Version',
  'X-Sb-Error-Code',
  'X-Total-Count',
  'Link',
].join(', ');

/** A day, as PostgREST: the browser asks again at most daily per URL. */
const MAX_AGE = '86400';

export interface Preflight {
  status: number;
  headers: Record<string, string>;
  /** JSON error body, when the origin is refused. */
  body: string;
}

export interface Cors {
  /** Headers to add to the answer of a request that carries this Origin; null: none. */
  forOrigin(origin: string): FlatHeaders | null;
  /** The answer to a preflight (OPTIONS with Access-Control-Request-Method) from this Origin. */
  preflight(origin: string, requestedHeaders: string | undefined): Preflight;
  /**
   * Raw header lines (`name: value\r\n`…) for answers written before a request is parsed
   * (connection refusals, oversized headers), when any origin is allowed; '' otherwise, since
   * the Origin is not known there.
   */
  readonly rawLines: string;
}

/** Whether a request is a CORS preflight rather than an OPTIONS request of the API itself. */
export function isPreflight(method: string | undefined, headers: { origin?: string; 'access-control-request-method'?: string | string[] }): boolean {
  return method === 'OPTIONS' && headers.origin !== undefined && headers['access-control-request-method'] !== undefined;
}

/** The Access-Control-Allow-Headers value: everything the page asked for, as PostgREST allows it. */
export function allowedHeaders(requested: string | undefined): string {
  const names = ['Authorization'];
  if (requested !== undefined) for (const name of requested.split(',')) if (name.trim() !== '') names.push(name.trim());
  names.push('Accept', 'Accept-Language', 'Content-Language');
  return names.join(', ');
}

/** The policy for PLINTH_CORS_ORIGINS: `*` for any origin, or the list of allowed origins. */
export function createCors(origins: '*' | readonly string[]): Cors {
  if (origins === '*') {
    const headers: FlatHeaders = ['access-control-allow-origin', '*', 'access-control-expose-headers', EXPOSED_HEADERS];
    return {
      forOrigin: () => headers,
      preflight: (_origin, requested) => ({
        status: 200,
        headers: {
          'access-control-allow-origin': '*',
          'access-control-allow-methods': ALLOWED_METHODS,
          'access-control-allow-headers': allowedHeaders(requested),
          'access-control-max-age': MAX_AGE,
          'content-length': '0',
        },
        body: '',
      }),
      rawLines: `access-control-allow-origin: *\r\naccess-control-expose-headers: ${EXPOSED_HEADERS}\r\n`,
    };
  }

  // With a list, the answer depends on the Origin: caches must keep one copy per origin.
  const byOrigin = new Map<string, FlatHeaders>();
  for (const origin of origins) {
    byOrigin.set(origin, ['access-control-allow-origin', origin, 'access-control-expose-headers', EXPOSED_HEADERS, 'vary', 'Origin']);
  }
  const refused: FlatHeaders = ['vary', 'Origin'];
  return {
    forOrigin: (origin) => byOrigin.get(origin) ?? refused,
    preflight(origin, requested): Preflight {
      if (!byOrigin.has(origin)) {
        return {
          status: 403,
          headers: { vary: 'Origin', 'content-type': 'application/json; charset=utf-8' },
          body: JSON.stringify({
            code: 'PLINTH403',
            details: null,
            hint: 'The operator lists the origins allowed to call this API in PLINTH_CORS_ORIGINS',
            message: `Pages on ${origin} may not call this API`,
          }),
        };
      }
      return {
        status: 200,
        headers: {
          'access-control-allow-origin': origin,
          'access-control-allow-methods': ALLOWED_METHODS,
          'access-control-allow-headers': allowedHeaders(requested),
          'access-control-max-age': MAX_AGE,
          vary: 'Origin',
          'content-length': '0',
        },
        body: '',
      };
    },
    rawLines: '',
  };
}
