// Request bodies the sidecar forwards (to PostgREST, to a function) or refuses: one way to cap a
// streamed body and one way to refuse one without losing the answer.
import type { IncomingMessage } from 'node:http';

/** How long the rest of a refused body is read and dropped before its connection is closed. */
const LINGER_MS = 5000;

/**
 * For a request whose body will not be forwarded, answered now. Closing a socket with unread bytes
 * resets the connection, and the client would lose the answer while still sending; so the rest of
 * the body is read and dropped for a moment (memory stays flat), then the connection is closed if
 * the client has not stopped.
 */
export function dropRestOfBody(req: IncomingMessage): void {
  req.resume();
  if (req.complete) return;
  setTimeout(() => {
    if (!req.complete) req.socket.destroy();
  }, LINGER_MS).unref();
}

/**
 * A body of unknown length, passed on chunk by chunk until it exceeds `limit`: the chunk that would
 * cross it is never yielded, `refusal()` is thrown instead (the receiver sees a truncated body and
 * aborts). The request stream is not destroyed, so the answer can still be written on its
 * connection.
 */
export async function* cappedBody(req: IncomingMessage, limit: number, refusal: () => Error): AsyncGenerator<Buffer> {
  let seen = 0;
  for await (const chunk of req.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
    seen += chunk.length;
    if (seen > limit) throw refusal();
    yield chunk;
  }
}
