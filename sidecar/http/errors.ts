// One error type, rendered in PostgREST's JSON error shape: { code, details, hint, message }.
import type { ServerResponse } from 'node:http';

export class PlinthError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly code = `PLINTH${status}`,
    readonly details: string | null = null,
    readonly hint: string | null = null,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }

  body() {
    return { code: this.code, details: this.details, hint: this.hint, message: this.message };
  }
}

/** Writes an error straight to a raw response (the proxy path, outside fastify). */
export function sendError(res: ServerResponse, err: PlinthError): void {
  const body = JSON.stringify(err.body());
  res.writeHead(err.status, {
    ...err.headers,
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
  });
  res.end(body);
}
