// Everything the sidecar does not own goes to PostgREST: authenticated first, then streamed both
// ways over a keep-alive pool (a unix socket when Plinth runs PostgREST itself).
//
// This is the hot path (it must keep up with PostgREST's own throughput on 2 cores), so it talks to
// undici's dispatcher directly: response headers arrive raw and go to writeHead as one flat
// array, body chunks go straight to res.write, and backpressure pauses the upstream socket.
// No Readable body, no stream.pipeline, no AbortSignal per request (profiled: those were a
// third of the proxy's CPU).
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { Pool, type Dispatcher } from 'undici';
import { presentedToken } from '../core/caller.js';
import type { PostgrestTarget } from '../core/context.js';
import { PlinthError, sendError } from '../core/errors.js';
import { cappedBody, dropRestOfBody } from '../core/request-body.js';
import type { KeyRing } from '../core/keys.js';
import { rowsFromContentRange } from '../audit/redact.js';
import type { FlatHeaders } from './cors.js';
import { REST_PREFIX, type RestPrefixed } from './request-target.js';

/** What the proxy notes on a response for the request log: rows (Content-Range) and PostgREST's time to headers. */
export interface Tracked extends ServerResponse {
  auditRows?: number | null;
  auditUpstreamMs?: number;
  auditSent?: number;
}

// Hop-by-hop headers, plus `expect` (undici refuses 100-continue) and our own `apikey`. `origin`
// too: the sidecar answers CORS itself, and PostgREST would otherwise add its own second set.
const DROP_REQUEST = new Set(['host', 'connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'expect', 'apikey', 'authorization', 'origin']);
const DROP_RESPONSE = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'trailer', 'upgrade']);

/**
 * The header names a Connection header declares hop-by-hop (besides the options that name no
 * header), lowercased; null for the usual bare `keep-alive` or `close`, so most requests allocate nothing.
 */
export function connectionListed(value: string | undefined): string[] | null {
  if (value === undefined || value === 'keep-alive' || value === 'close' || value === 'Keep-Alive' || value === 'Close') return null;
  let names: string[] | null = null;
  for (const token of value.split(',')) {
    const name = token.trim().toLowerCase();
    if (name === '' || name === 'close' || name === 'keep-alive') continue;
    (names ??= []).push(name);
  }
  return names;
}

/** Where the OpenAPI document says the API is: Swagger 2.0's `schemes`, `host` and `basePath`. */
export interface OpenApiServer {
  scheme: string;
  host: string;
  basePath: string;
}

export interface ProxyLimits {
  /** Largest request body forwarded, in bytes. */
  maxBody: number;
  /**
   * For `GET /` (the OpenAPI document): where the API is, written into the document in place of
   * the address PostgREST knows; undefined leaves the document as PostgREST wrote it.
   */
  openApiServer?: (req: IncomingMessage) => OpenApiServer;
  /** Milliseconds a request may wait for a free PostgREST connection before it is answered 503. */
  queueTimeoutMs: number;
}

export interface Proxy {
  /** Forwards one request; `cors` are the CORS headers its answer carries, whatever the status. */
  handle(req: IncomingMessage, res: ServerResponse, cors: FlatHeaders | null): void;
  close(): Promise<void>;
}

/**
 * The request line and headers PostgREST's HTTP server (warp) accepts: about 50 KiB in all, past
 * which it answers a bare 400. The forwarded head is measured and refused here instead, truthfully.
 */
export const POSTGREST_MAX_HEAD = 50 * 1024 - 512;
/** URLs shorter than this cannot reach POSTGREST_MAX_HEAD with ordinary headers: not measured. */
const MEASURE_HEAD_FROM = 16 * 1024;
/**
 * Response headers accepted from PostgREST. Content-Location repeats the whole URL, so the
 * default 16 KiB would fail long but valid requests; this leaves room for any URL that passes.
 */
export const POSTGREST_MAX_RESPONSE_HEAD = 256 * 1024;

function headTooLarge(size: number, urlLength: number): PlinthError {
  const url = urlLength * 2 > size;
  return new PlinthError(
    url ? 414 : 431,
    `The request's ${url ? 'URL' : 'headers'} are too long for the REST API: ${size} bytes of request line and headers, where PostgREST accepts at most ${POSTGREST_MAX_HEAD}`,
    url ? 'PLINTH414' : 'PLINTH431',
    null,
    url ? 'Send long lists of values in the body of a POST to an /rpc function, or split the request into several' : 'Send fewer or shorter headers',
  );
}

function bodyTooLarge(limit: number): PlinthError {
  return new PlinthError(
    413,
    `Request body is larger than the REST API accepts (${limit} bytes)`,
    'PLINTH413',
    null,
    'Send files to /rpc/store_file or /storage/upload; split large batches; or raise PLINTH_MAX_REST_BODY',
  );
}

const RETRY = { 'retry-after': '1' };

/** PostgREST could not be reached: the request was not sent, so it is safe to send again. */
function unavailable(err: { code?: unknown; message?: unknown } | undefined): PlinthError {
  return new PlinthError(503, 'The REST API (PostgREST) is unavailable; the request was not sent. Try again shortly', 'PLINTH503', String(err?.code ?? err?.message ?? err), null, RETRY);
}

/** The connection to PostgREST broke after the request went out: it may have run, and committed. */
function brokenUpstream(err: { code?: unknown; message?: unknown } | undefined): PlinthError {
  return new PlinthError(
    502,
    'The REST API (PostgREST) stopped answering after the request was sent: it may or may not have been carried out (and committed)',
    'PLINTH502',
    String(err?.code ?? err?.message ?? err),
    'Read the data again before repeating a request that is not idempotent',
  );
}

function queueTimedOut(ms: number): PlinthError {
  return new PlinthError(503, `The REST API is busy: no connection to PostgREST came free within ${ms / 1000} s; the request was not sent. Try again shortly`, 'PLINTH503', null,
    'Slow queries hold the connections; PLINTH_POSTGREST_POOL_SIZE and PLINTH_PROXY_QUEUE_TIMEOUT set how many run at once and how long others wait', RETRY);
}

const uncork = (res: ServerResponse) => res.uncork();

/** Answers with the sidecar's own error, carrying the request's CORS headers so a page can read it. */
function fail(res: ServerResponse, cors: FlatHeaders | null, err: PlinthError, refuse = false): void {
  const id = res.req.headers['x-request-id'];
  if (id !== undefined && !res.headersSent) res.setHeader('x-request-id', id);
  if (cors !== null) for (let i = 0; i < cors.length; i += 2) res.setHeader(cors[i], cors[i + 1]);
  if (refuse) dropRestOfBody(res.req);
  sendError(res, err);
}

/** One proxied exchange, as an undici dispatch handler: PostgREST's response is written to `res` as it arrives. */
class Exchange {
  private abort: ((err?: Error) => void) | null = null;
  private done = false;
  /** Set when the sidecar itself ended the upstream request (a body over the limit): what the client is told. */
  refusal: PlinthError | null = null;

  constructor(
    protected readonly res: ServerResponse,
    private readonly cors: FlatHeaders | null,
    /** Called once when the exchange ends, which frees its PostgREST connection. */
    private readonly onDone: () => void,
  ) {
    // The client went away before the response ended: stop PostgREST's side too.
    res.once('close', () => {
      if (!this.done) this.abort?.(new Error('client closed the connection'));
    });
  }

  onConnect(abort: (err?: Error) => void) {
    if (this.res.destroyed) return abort(new Error('client closed the connection'));
    this.abort = abort;
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
    let out: string[] = [];
    let listed: string[] | null = null;
    for (let i = 0; i < rawHeaders.length; i += 2) {
      // latin1 both ways: header bytes pass through unchanged, as Node writes headers in latin1.
      const name = rawHeaders[i].toString('latin1');
      const lower = name.toLowerCase();
      if (lower === 'connection') listed = connectionListed(rawHeaders[i + 1].toString('latin1'));
      else if (!DROP_RESPONSE.has(lower)) {
        const value = rawHeaders[i + 1].toString('latin1');
        if (lower === 'content-range') (this.res as Tracked).auditRows = rowsFromContentRange(value);
        out.push(name, value);
      }
    }
    const tracked = this.res as Tracked;
    if (tracked.auditSent !== undefined) tracked.auditUpstreamMs = performance.now() - tracked.auditSent;
    const id = this.res.req.headers['x-request-id'];
    if (id !== undefined) out.push('x-request-id', id as string);
    // Headers named in Connection are for this hop only, wherever they appear in the list.
    if (listed !== null) out = withoutListed(out, listed);
    if (this.cors !== null) for (let i = 0; i < this.cors.length; i++) out.push(this.cors[i]);
    this.res.writeHead(statusCode, out);
    this.res.on('drain', resume);
    // Headers, the chunks that came with them and (for small responses) the end go out in one
    // write instead of three: syscalls are most of the proxy's cost.
    this.res.cork();
    process.nextTick(uncork, this.res);
    return true;
  }

  onData(chunk: Buffer): boolean {
    // false pauses the upstream socket until the client drains (flat memory for big responses).
    return this.res.write(chunk);
  }

  onComplete() {
    this.done = true;
    this.onDone();
    this.res.end();
  }

  onError(err: Error) {
    if (this.done) return;
    this.done = true;
    this.onDone();
    if (this.res.headersSent) this.res.destroy();
    else if (this.res.destroyed) return;
    else if (this.refusal) fail(this.res, this.cors, this.refusal, true);
    // undici hands a request to a connected socket (onConnect) just before writing it: an error
    // before that means nothing was sent; after it, PostgREST may have run the request.
    else fail(this.res, this.cors, this.abort === null ? unavailable(err as never) : brokenUpstream(err as never));
  }
}

/**
 * The exchange for the OpenAPI document: PostgREST writes the address it listens on (a unix
 * socket's placeholder 127.0.0.1:3000), so a 200 JSON answer is read whole and its `host`,
 * `basePath` and `schemes` replaced with where clients reach the API. Anything else streams as usual.
 */
class OpenApiExchange extends Exchange {
  private held: { status: number; headers: Buffer[]; chunks: Buffer[] } | null = null;

  constructor(
    res: ServerResponse,
    cors: FlatHeaders | null,
    onDone: () => void,
    private readonly server: OpenApiServer,
  ) {
    super(res, cors, onDone);
  }

  override onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
    let json = false;
    for (let i = 0; i < rawHeaders.length; i += 2) {
      if (rawHeaders[i].toString('latin1').toLowerCase() === 'content-type') json = /json/i.test(rawHeaders[i + 1].toString('latin1'));
    }
    if (statusCode !== 200 || !json || this.res.req.method !== 'GET') return super.onHeaders(statusCode, rawHeaders, resume);
    this.held = { status: statusCode, headers: rawHeaders, chunks: [] };
    return true;
  }

  override onData(chunk: Buffer): boolean {
    if (this.held === null) return super.onData(chunk);
    this.held.chunks.push(chunk);
    return true;
  }

  override onComplete() {
    if (this.held !== null) {
      const { status, headers, chunks } = this.held;
      const body = Buffer.from(withServer(Buffer.concat(chunks).toString('utf8'), this.server));
      const kept: Buffer[] = [];
      for (let i = 0; i < headers.length; i += 2) {
        if (headers[i].toString('latin1').toLowerCase() !== 'content-length') kept.push(headers[i], headers[i + 1]);
      }
      kept.push(Buffer.from('content-length'), Buffer.from(String(body.length)));
      super.onHeaders(status, kept, () => {});
      super.onData(body);
    }
    super.onComplete();
  }
}

/** A Swagger document with the given address; anything that is not one is returned unchanged. */
export function withServer(document: string, server: OpenApiServer): string {
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(document);
  } catch {
    return document;
  }
  if (doc === null || typeof doc !== 'object' || doc.swagger === undefined) return document;
  doc.host = server.host;
  doc.basePath = server.basePath;
  doc.schemes = [server.scheme];
  return JSON.stringify(doc);
}

/** The document fetched as `/rest/v1/` says its paths are under `/rest/v1/`. */
function underPrefix(req: IncomingMessage, server: OpenApiServer): OpenApiServer {
  if (!(req as RestPrefixed).viaRestPrefix) return server;
  return { ...server, basePath: `${server.basePath.replace(/\/+$/, '')}${REST_PREFIX}/` };
}

function withoutListed(flat: string[], listed: string[]): string[] {
  const kept: string[] = [];
  for (let i = 0; i < flat.length; i += 2) if (!listed.includes(flat[i].toLowerCase())) kept.push(flat[i], flat[i + 1]);
  return kept;
}

/** A request waiting for a PostgREST connection, with when it started waiting. */
interface Waiting {
  since: number;
  req: IncomingMessage;
  res: ServerResponse;
  cors: FlatHeaders | null;
  token: string;
}

export function createProxy(target: PostgrestTarget, keys: KeyRing, connections: number, limits: ProxyLimits): Proxy {
  const { maxBody, openApiServer, queueTimeoutMs } = limits;
  const pool = new Pool(target.origin, {
    connections,
    socketPath: target.socketPath,
    maxHeaderSize: POSTGREST_MAX_RESPONSE_HEAD,
    keepAliveTimeout: 30_000,
    headersTimeout: 0,
    bodyTimeout: 0,
  });

  // At most `connections` exchanges run at once; the rest wait here, in arrival order, instead of
  // in undici's queue, so that one waiting too long can be answered 503 without ever being sent.
  // One interval, running only while something waits, sweeps the expired from the front.
  let running = 0;
  let waiting: (Waiting | undefined)[] = [];
  let head = 0;
  let sweeper: NodeJS.Timeout | null = null;
  const sweepEvery = Math.max(100, Math.min(1000, queueTimeoutMs / 10));

  function forward(req: IncomingMessage, res: ServerResponse, cors: FlatHeaders | null, token: string) {
    if (running < connections) return dispatch(req, res, cors, token);
    waiting.push({ since: Date.now(), req, res, cors, token });
    if (sweeper === null) {
      sweeper = setInterval(sweep, sweepEvery);
      sweeper.unref();
    }
  }

  /** The next waiting request whose client is still there, taken off the queue. */
  function nextWaiting(): Waiting | undefined {
    while (head < waiting.length) {
      const w = waiting[head]!;
      waiting[head++] = undefined;
      if (!w.res.destroyed) return w;
    }
    return undefined;
  }

  function emptied() {
    if (head < waiting.length) return;
    waiting = [];
    head = 0;
    if (sweeper !== null) clearInterval(sweeper);
    sweeper = null;
  }

  function finished() {
    running--;
    const next = nextWaiting();
    if (next) dispatch(next.req, next.res, next.cors, next.token);
    emptied();
  }

  function sweep() {
    const expired = Date.now() - queueTimeoutMs;
    while (head < waiting.length && (waiting[head]!.since <= expired || waiting[head]!.res.destroyed)) {
      const w = waiting[head]!;
      waiting[head++] = undefined;
      if (!w.res.destroyed) fail(w.res, w.cors, queueTimedOut(queueTimeoutMs), true);
    }
    emptied();
  }

  function dispatch(req: IncomingMessage, res: ServerResponse, cors: FlatHeaders | null, token: string) {
    running++;
    const headers: string[] = [];
    const incoming = req.headers;
    const listed = connectionListed(incoming.connection);
    for (const name in incoming) {
      if (DROP_REQUEST.has(name) || (listed !== null && listed.includes(name))) continue;
      const value = incoming[name]!;
      if (typeof value === 'string') headers.push(name, value);
      else for (const v of value) headers.push(name, v);
    }
    headers.push('authorization', `Bearer ${token}`);
    const url = req.url!;
    if (url.length > MEASURE_HEAD_FROM) {
      // As PostgREST will receive it: request line, these headers and undici's host line.
      let size = req.method!.length + url.length + 32;
      for (let i = 0; i < headers.length; i++) size += headers[i].length + 2;
      if (size > POSTGREST_MAX_HEAD) {
        finished();
        return fail(res, cors, headTooLarge(size, url.length), true);
      }
    }
    const exchange =
      openApiServer !== undefined && (url === '/' || url.startsWith('/?')) ? new OpenApiExchange(res, cors, finished, underPrefix(req, openApiServer(req))) : new Exchange(res, cors, finished);
    let body: Dispatcher.DispatchOptions['body'] = null;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      // A declared length was checked in handle(), and Node delivers no more than it declares;
      // only a chunked body needs counting on the way.
      // (undici sends any async iterable as a chunked body; its types list only streams.)
      body = incoming['content-length'] === undefined && incoming['transfer-encoding'] !== undefined ? (cappedBody(req, maxBody, () => (exchange.refusal = bodyTooLarge(maxBody))) as unknown as Readable) : req;
    }
    (res as Tracked).auditSent = performance.now();
    pool.dispatch({ method: req.method as 'GET', path: req.url!, headers, body }, exchange);
  }

  return {
    handle(req, res, cors) {
      // PostgREST reads a whole body into memory before it checks any grant, so a declared size
      // is checked first, for every caller, before any of the body is forwarded.
      const declared = req.headers['content-length'];
      if (declared !== undefined && Number(declared) > maxBody) return fail(res, cors, bodyTooLarge(maxBody), true);
      // 401 before PostgREST: only tokens the sidecar verified (or verified recently) are
      // forwarded, as the same claims signed with the secret PostgREST trusts.
      let token: string;
      try {
        token = presentedToken(req, keys.fallbackToken);
      } catch (err) {
        return fail(res, cors, err as PlinthError);
      }
      const verified = keys.forPostgrest(token);
      if (verified) return forward(req, res, cors, verified);
      keys.verifyForPostgrest(token).then(
        (v) => forward(req, res, cors, v.forPostgrest),
        (err) => fail(res, cors, err instanceof PlinthError ? err : unavailable(err)),
      );
    },
    close: () => {
      if (sweeper !== null) clearInterval(sweeper);
      return pool.close();
    },
  };
}
