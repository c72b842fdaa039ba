// ANY /functions/v1/<name>[/<rest>]: a function called over HTTP (the path Supabase clients use),
// served by the front door before any routing, streamed both ways between the client and a worker.
// The worker gets the caller's verified claims (x-plinth-claims) and token (Authorization), never
// anything the client claimed about itself under those names.
//
// This is a hot path: it talks to undici's dispatcher directly (raw response headers to writeHead
// as one flat array, body chunks straight to res.write, backpressure pausing the worker's socket),
// with no fastify routing, hooks or reply, no stream.pipeline and no AbortSignal per call
// (profiled: those were most of the sidecar's CPU per call).
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { identify, knownCaller, type Caller } from '../core/caller.js';
import type { Plinth } from '../core/context.js';
import { PlinthError, sendError } from '../core/errors.js';
import { cappedBody, dropRestOfBody } from '../core/request-body.js';
import { notFound, unavailable, type CallLimits } from './invoke.js';
import type { Invocations } from './invocations.js';
import type { Deployed } from './registry.js';
import type { FunctionsService } from './service.js';
import type { Worker } from './workers.js';

/** Response header lines as one flat `[name, value, …]` array (CORS, from the front door). */
type FlatHeaders = readonly string[];

/** Serves the request when its path is under /functions/v1/; false leaves it to the caller. */
export type FunctionsFrontDoor = (req: IncomingMessage, res: ServerResponse, cors: FlatHeaders | null) => boolean;

export const PREFIX = '/functions/v1/';

const DROP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'expect', 'authorization', 'x-plinth-claims', 'x-plinth-worker-token', 'x-plinth-ping', 'x-plinth-trigger']);
const DROP_RESPONSE = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'trailer', 'upgrade']);
const ERROR_HEADER = 'x-plinth-function-error';

function failed(name: string): PlinthError {
  return new PlinthError(500, `function ${name} failed`, 'PLINTH500');
}

function timedOut(name: string, ms: number): PlinthError {
  return new PlinthError(504, `function ${name} did not answer within ${ms / 1000} s`, 'PLINTH504', null, 'PLINTH_FUNCTION_TIMEOUT sets the limit');
}

function tooLarge(limit: number): PlinthError {
  return new PlinthError(413, `Request body is larger than a function accepts (${limit} bytes)`, 'PLINTH413', null, 'PLINTH_FUNCTION_MAX_BODY sets the limit');
}

function noRoute(req: IncomingMessage, path: string): PlinthError {
  return new PlinthError(404, `No route ${req.method} ${path}`, 'PLINTH404');
}

class BodyTooLarge extends Error {}

/** Answers with the sidecar's own error (request id and CORS headers included); `refuse`: the body is not passed on. */
function fail(req: IncomingMessage, res: ServerResponse, cors: FlatHeaders | null, err: PlinthError, refuse = false): void {
  if (res.headersSent) return void res.destroy();
  if (res.destroyed) return;
  res.setHeader('x-request-id', req.headers['x-request-id']!);
  if (cors !== null) for (let i = 0; i < cors.length; i += 2) res.setHeader(cors[i], cors[i + 1]);
  if (refuse) dropRestOfBody(req);
  sendError(res, err);
}

const uncork = (res: ServerResponse) => res.uncork();

// Claims are sent as JSON on every call; a token's claims object is the same while it is cached.
const claimsJson = new WeakMap<object, string>();
function claimsHeader(claims: object): string {
  let json = claimsJson.get(claims);
  if (json === undefined) claimsJson.set(claims, (json = JSON.stringify(claims)));
  return json;
}

/** One call, as an undici dispatch handler: the worker's answer is written to `res` as it arrives. */
class Call {
  private abort: ((err?: Error) => void) | null = null;
  private done = false;
  private status = 0;
  private error: string | null = null;
  /** The worker answered with the function's failure: its body is dropped, the client gets a 500. */
  private failure: string | null = null;
  private readonly started = performance.now();

  constructor(
    private readonly fn: Deployed,
    private readonly worker: Worker,
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
    private readonly cors: FlatHeaders | null,
    private readonly limits: CallLimits,
    private readonly invocations: Invocations,
  ) {
    // The client went away before the answer ended: stop the worker's side too.
    res.once('close', () => {
      if (this.done) return;
      this.status = 499;
      this.abort?.(new Error('client closed the connection'));
    });
  }

  onConnect(abort: (err?: Error) => void) {
    if (this.res.destroyed) return abort(new Error('client closed the connection'));
    this.abort = abort;
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
    const out: string[] = [];
    for (let i = 0; i < rawHeaders.length; i += 2) {
      // latin1 both ways: header bytes pass through unchanged, as Node writes headers in latin1.
      const name = rawHeaders[i].toString('latin1');
      const lower = name.toLowerCase();
      if (lower === ERROR_HEADER) this.failure = decodeURIComponent(rawHeaders[i + 1].toString('latin1'));
      else if (!DROP_RESPONSE.has(lower)) out.push(name, rawHeaders[i + 1].toString('latin1'));
    }
    if (this.failure !== null) return true;
    this.status = statusCode;
    out.push('x-request-id', this.req.headers['x-request-id'] as string);
    if (this.cors !== null) for (let i = 0; i < this.cors.length; i++) out.push(this.cors[i]);
    this.res.writeHead(statusCode, out);
    this.res.on('drain', resume);
    // Headers, the chunks that came with them and (for small answers) the end go out in one write;
    // a streamed answer still shows its headers at the next tick.
    this.res.cork();
    process.nextTick(uncork, this.res);
    return true;
  }

  onData(chunk: Buffer): boolean {
    if (this.failure !== null) return true;
    // false pauses the worker's socket until the client drains (flat memory for big answers).
    return this.res.write(chunk);
  }

  onComplete() {
    this.done = true;
    if (this.failure !== null) {
      this.status = 500;
      this.error = this.failure;
      fail(this.req, this.res, this.cors, failed(this.fn.name));
    } else this.res.end();
    this.record();
  }

  onError(err: Error) {
    if (this.done) return;
    this.done = true;
    const { fn, limits, req, res, cors } = this;
    if (err instanceof BodyTooLarge || (err as { cause?: unknown }).cause instanceof BodyTooLarge) {
      this.status = 413;
      fail(req, res, cors, tooLarge(limits.maxBody), true);
    } else if ((err as { code?: string }).code === 'UND_ERR_HEADERS_TIMEOUT') {
      this.status = 504;
      this.error = `timed out after ${limits.timeoutMs / 1000} s`;
      fail(req, res, cors, timedOut(fn.name, limits.timeoutMs), true);
      void fn.pool.checkStuck(this.worker);
    } else if (this.status === 499 || res.destroyed) {
      this.status = 499;
    } else {
      if (res.headersSent) this.error = `response cut: ${err.message}`;
      else {
        this.status = 502;
        this.error = `worker connection failed: ${err.message}`;
      }
      fail(req, res, cors, new PlinthError(502, `function ${fn.name} stopped during the call`, 'PLINTH502'), true);
    }
    this.record();
  }

  private record() {
    const { fn } = this;
    this.invocations.record({ name: fn.name, version: fn.version, trigger: 'http', status: this.status, durationMs: performance.now() - this.started, error: this.error });
  }
}

/** The front door's handler for /functions/v1/*: answers every such request itself, errors included. */
export function functionsFrontDoor(plinth: Plinth, { registry, invocations, limits }: FunctionsService): FunctionsFrontDoor {
  const { keys } = plinth;

  function refused(fn: Deployed, req: IncomingMessage, res: ServerResponse, cors: FlatHeaders | null, status: number, error: string | null, err: PlinthError) {
    fail(req, res, cors, err, true);
    invocations.record({ name: fn.name, version: fn.version, trigger: 'http', status, durationMs: 0, error });
  }

  function call(fn: Deployed, worker: Worker, req: IncomingMessage, res: ServerResponse, cors: FlatHeaders | null, caller: Caller) {
    const headers: string[] = [];
    const incoming = req.headers;
    for (const name in incoming) {
      if (DROP.has(name)) continue;
      const value = incoming[name]!;
      if (typeof value === 'string') headers.push(name, value);
      else for (const v of value) headers.push(name, v);
    }
    headers.push('authorization', `Bearer ${caller.token}`, 'x-plinth-claims', claimsHeader(caller.claims), 'x-plinth-worker-token', worker.token);
    let body: Dispatcher.DispatchOptions['body'] = null;
    const method = req.method!;
    const declared = incoming['content-length'];
    if (method !== 'GET' && method !== 'HEAD' && (declared !== undefined ? declared !== '0' : incoming['transfer-encoding'] !== undefined)) {
      // A declared length was checked already, and Node delivers no more than it declares; only a
      // chunked body needs counting on the way. (undici sends any async iterable chunked.)
      body = declared !== undefined ? req : (cappedBody(req, limits.maxBody, () => new BodyTooLarge()) as unknown as Readable);
    }
    worker.pool.dispatch(
      { method: method as 'GET', path: req.url!, headers, body, headersTimeout: limits.timeoutMs, bodyTimeout: 0 },
      new Call(fn, worker, req, res, cors, limits, invocations),
    );
  }

  /** Errors thrown here are answered by the caller of serve. */
  function serve(name: string, caller: Caller, req: IncomingMessage, res: ServerResponse, cors: FlatHeaders | null): void {
    const fn = registry.get(name);
    if (!fn) throw registry.broken.has(name) ? unavailable(name, 'its module does not load (the server log says why)') : notFound(name);
    const declared = req.headers['content-length'];
    if (declared !== undefined && Number(declared) > limits.maxBody) return refused(fn, req, res, cors, 413, null, tooLarge(limits.maxBody));
    const worker = fn.pool.ready();
    if (worker) return call(fn, worker, req, res, cors, caller);
    // A restart in progress: wait for a worker, up to the call's timeout.
    void fn.pool.pick(limits.timeoutMs).then((w) => {
      if (!w) refused(fn, req, res, cors, 503, 'no worker', unavailable(fn.name, 'its workers are restarting'));
      else if (!res.destroyed) guarded(name, req, res, cors, () => call(fn, w, req, res, cors, caller));
    });
  }

  function guarded(name: string, req: IncomingMessage, res: ServerResponse, cors: FlatHeaders | null, run: () => void): void {
    try {
      run();
    } catch (err) {
      if (err instanceof PlinthError) return fail(req, res, cors, err, true);
      plinth.log.error(`function ${name}: ${(err as Error).stack ?? err}`);
      fail(req, res, cors, failed(name), true);
    }
  }

  return (req, res, cors) => {
    const url = req.url!;
    if (!url.startsWith(PREFIX)) return false;
    let end = url.indexOf('/', PREFIX.length);
    const q = url.indexOf('?', PREFIX.length);
    if (end === -1 || (q !== -1 && q < end)) end = q === -1 ? url.length : q;
    const raw = url.slice(PREFIX.length, end);
    let name = raw;
    guarded(raw, req, res, cors, () => {
      if (raw === '') throw noRoute(req, url.slice(0, q === -1 ? url.length : q));
      try {
        if (raw.includes('%')) name = decodeURIComponent(raw);
      } catch {
        throw notFound(raw);
      }
      // Who calls is checked first: without a valid key, nothing is said about the function.
      const caller = knownCaller(keys, req);
      if (caller !== undefined) return serve(name, caller, req, res, cors);
      identify(keys, req).then(
        (verified) => guarded(name, req, res, cors, () => serve(name, verified!, req, res, cors)),
        (err) => guarded(name, req, res, cors, () => {
          throw err;
        }),
      );
    });
    return true;
  };
}
