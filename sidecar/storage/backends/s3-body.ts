// An S3 object's bytes as they arrive over one HTTP request: a presigned GET dispatched through
// undici, whose chunks go either into this Readable (every reader of get()) or, for a download,
// straight to the client's response (writeTo). The SDK's own GetObject body cost twice the CPU per
// relayed byte: Node's HTTP client copies every body chunk into a newly allocated buffer, and each
// chunk then crossed two streams before reaching the client's socket.
import type { ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import type { ByteRange } from '../ranges.js';
import { ObjectNotFound, type StoredBytes } from './adapter.js';

/** How much of an error answer is kept to read S3's code and message from. */
const ERROR_BODY_MAX = 16 * 1024;

/** A download in progress: where writeTo() sends the bytes, and how many it promised. */
interface Sink {
  res: ServerResponse;
  length: number;
  sent: number;
  settle: (err?: Error) => void;
}

export class S3ObjectBody extends Readable implements StoredBytes, Dispatcher.DispatchHandler {
  private controller: Dispatcher.DispatchController | null = null;
  /** Settles open(): once the answer's status is known, or the request failed before it. */
  private opening: { resolve: () => void; reject: (err: Error) => void } | null = null;
  /** An error answer's status and body, read to the end before open() rejects. */
  private failure: { status: number; chunks: Buffer[]; size: number } | null = null;
  private sink: Sink | null = null;
  /** Whether S3 sent the whole answer. */
  private ended = false;
  /** Whether the request is over: ended, failed, or stopped from this side. */
  private over = false;

  private constructor(
    private readonly key: string,
    private readonly range: ByteRange | undefined,
  ) {
    super();
  }

  /** GETs `url` (presigned) and resolves once S3 answers with the bytes, which wait until read. */
  static open(dispatcher: Dispatcher, url: URL, key: string, range?: ByteRange): Promise<S3ObjectBody> {
    const body = new S3ObjectBody(key, range);
    return new Promise((resolve, reject) => {
      body.opening = { resolve: () => resolve(body), reject };
      const headers = range ? { range: `bytes=${range.start}-${range.end}` } : undefined;
      dispatcher.dispatch({ origin: url.origin, path: url.pathname + url.search, method: 'GET', headers }, body);
    });
  }

  /**
   * Writes `length` bytes (the answer's Content-Length; headers are already sent on `res`) and ends
   * the response. Rejects, the response destroyed, if S3 fails or sends another number of bytes;
   * a client that goes away stops the transfer quietly. Only for a body nothing has read yet.
   */
  writeTo(res: ServerResponse, length: number): Promise<void> {
    if (this.readableDidRead || this.sink) throw new Error('writeTo() on a body already being read');
    return new Promise<void>((resolve, reject) => {
      const resume = () => this.controller?.resume();
      const onClose = () => {
        if (res.writableFinished) return;
        // The client left: the transfer stops, and there is no one to tell.
        this.sink = null;
        settle();
      };
      const settle = (err?: Error) => {
        res.off('drain', resume).off('close', onClose);
        this.destroy();
        if (err) {
          res.destroy();
          reject(err);
        } else resolve();
      };
      res.on('drain', resume).once('close', onClose);
      this.sink = { res, length, sent: 0, settle };
      if (this.ended) this.sinkEnded();
      else resume();
    });
  }

  override _read(): void {
    this.controller?.resume();
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    // (No error made for a read that is over: an Error's stack costs more than the rest of a small download's end.)
    if (!this.over) this.stop(err ?? new Error('the download was stopped'));
    // As Node's IncomingMessage does: an error no one listens for is not thrown (bytes no one is
    // reading, cut off when the store closes); a reader that comes later still finds the stream closed early.
    callback(this.listenerCount('error') > 0 ? err : null);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.destroyed) controller.abort(new Error('the download was stopped'));
  }

  onResponseStart(controller: Dispatcher.DispatchController, status: number): void {
    if (status === 200 || status === 206) {
      if (this.range && status !== 206) return this.openFailed(new Error(`S3 answered a range request for object ${this.key} with the whole object`));
      // Nothing flows until a reader asks, or writeTo() is called.
      controller.pause();
      const { opening } = this;
      this.opening = null;
      opening?.resolve();
    } else {
      this.failure = { status, chunks: [], size: 0 };
    }
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    const { failure, sink } = this;
    if (failure) {
      if (failure.size < ERROR_BODY_MAX) failure.chunks.push(chunk);
      failure.size += chunk.length;
    } else if (sink) {
      sink.sent += chunk.length;
      if (sink.sent > sink.length) return this.sinkFailed(new Error(`the store holds more bytes than the ${sink.length} recorded`));
      if (!sink.res.write(chunk)) controller.pause();
    } else if (!this.push(chunk)) controller.pause();
  }

  onResponseEnd(): void {
    this.ended = this.over = true;
    const { failure } = this;
    if (failure) this.openFailed(s3Error(this.key, failure.status, Buffer.concat(failure.chunks).toString('utf8')));
    else if (this.sink) this.sinkEnded();
    else this.push(null);
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    // An error after this side stopped the request is that stop coming back.
    if (this.over) return;
    this.over = true;
    if (this.opening) this.openFailed(err);
    else if (this.sink) this.sinkFailed(err);
    else this.destroy(err);
  }

  /** Ends the request from this side, if S3 has not ended it. */
  private stop(reason: Error) {
    if (this.over) return;
    this.over = true;
    this.controller?.abort(reason);
  }

  private openFailed(err: Error) {
    this.stop(err);
    const { opening } = this;
    this.opening = null;
    opening?.reject(err);
  }

  private sinkEnded() {
    const sink = this.sink!;
    this.sink = null;
    if (sink.sent < sink.length) return sink.settle(new Error(`the store sent ${sink.length - sink.sent} bytes fewer than recorded`));
    sink.res.end();
    sink.settle();
  }

  private sinkFailed(err: Error) {
    this.stop(err);
    const sink = this.sink!;
    this.sink = null;
    sink.settle(err);
  }
}

/** An S3 error answer as an error: a missing object is ObjectNotFound, anything else says S3's code and message. */
function s3Error(key: string, status: number, body: string): Error {
  const code = /<Code>([^<]*)<\/Code>/.exec(body)?.[1];
  if (status === 404 && (code === undefined || code === 'NoSuchKey')) return new ObjectNotFound(key);
  const message = /<Message>([^<]*)<\/Message>/.exec(body)?.[1];
  return new Error(`S3 answered ${status}${code ? ` ${code}` : ''} reading object ${key}${message ? `: ${message}` : ''}`);
}
