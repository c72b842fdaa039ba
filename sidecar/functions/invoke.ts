// Calling a function with an event (schedule, table change) posted as JSON; HTTP calls are in
// http.ts. Both share the errors below.
import { PlinthError } from '../core/errors.js';
import type { Invocations, Trigger } from './invocations.js';
import type { Deployed } from './registry.js';
import type { Worker } from './workers.js';

const ERROR_HEADER = 'x-plinth-function-error';

export interface CallLimits {
  timeoutMs: number;
  maxBody: number;
}

export function notFound(name: string): PlinthError {
  return new PlinthError(404, `No function named ${name}`, 'PLINTH404', null, 'Functions are the .ts files in PLINTH_FUNCTIONS_DIR; `plinth functions list` shows the deployed ones');
}

export function unavailable(name: string, reason: string): PlinthError {
  return new PlinthError(503, `function ${name} is not available: ${reason}`, 'PLINTH503', null, 'Fix the module; it is reloaded when its file changes', { 'retry-after': '5' });
}

function errorCode(err: unknown): string | undefined {
  return (err as { code?: string } | null)?.code;
}

export interface EventResult {
  ok: boolean;
  status: number;
  error: string | null;
}

/** Posts an event (schedule tick, table change) to the function as JSON and waits for its answer. */
export async function callEvent(fn: Deployed, trigger: Trigger, event: unknown, limits: CallLimits, invocations: Invocations): Promise<EventResult> {
  const started = performance.now();
  let result: EventResult;
  const worker: Worker | null = await fn.pool.pick(limits.timeoutMs);
  if (!worker) result = { ok: false, status: 503, error: 'no worker available' };
  else {
    try {
      const answer = await worker.pool.request({
        path: `/functions/v1/${fn.name}`,
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-plinth-trigger': trigger, 'x-plinth-worker-token': worker.token },
        body: JSON.stringify(event),
        headersTimeout: limits.timeoutMs,
        bodyTimeout: limits.timeoutMs,
      });
      await answer.body.dump({ limit: Infinity }).catch(() => {});
      const failure = answer.headers[ERROR_HEADER];
      const status = failure !== undefined ? 500 : answer.statusCode;
      result = { ok: status < 400, status, error: failure !== undefined ? decodeURIComponent(String(failure)) : status >= 400 ? `answered ${status}` : null };
    } catch (err) {
      if (errorCode(err) === 'UND_ERR_HEADERS_TIMEOUT') {
        void fn.pool.checkStuck(worker);
        result = { ok: false, status: 504, error: `timed out after ${limits.timeoutMs / 1000} s` };
      } else result = { ok: false, status: 502, error: `worker connection failed: ${(err as Error).message}` };
    }
  }
  invocations.record({ name: fn.name, version: fn.version, trigger, status: result.status, durationMs: performance.now() - started, error: result.error });
  return result;
}
