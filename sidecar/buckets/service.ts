// The buckets feature's long-lived parts. It stores bytes through the storage feature's byte
// store and upload lifecycle, handed in by app/start.ts, and sweeps abandoned resumable uploads.
import type { Plinth, Service } from '../core/context.js';
import type { Storage } from '../storage/types.js';
import { sweepExpired, tusState, type TusState } from './tus.js';

export interface BucketsService extends Service {
  storage: Storage;
  tus: TusState;
  /** Sweeps expired resumable uploads now; resolves when done. */
  sweep(): Promise<void>;
}

export async function startBuckets(plinth: Plinth, storage: Storage): Promise<BucketsService> {
  const tus = tusState(storage);
  let sweeping: Promise<void> | null = null;
  const sweep = () =>
    (sweeping ??= sweepExpired(tus)
      .then((n) => {
        if (n > 0) plinth.log.info(`buckets: removed ${n} abandoned resumable upload(s)`);
      })
      .catch((err) => plinth.log.warn(`buckets: sweeping abandoned resumable uploads failed (will retry): ${(err as Error).message}`))
      .finally(() => (sweeping = null)));
  const every = Math.min(Math.max(plinth.config.storage.tusExpiry / 2, 1), 300);
  const timer = setInterval(() => void sweep(), every * 1000);
  timer.unref();
  void sweep();
  return {
    storage,
    tus,
    sweep,
    async stop() {
      clearInterval(timer);
      await sweeping;
    },
  };
}
