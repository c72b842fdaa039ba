// The buckets feature's long-lived parts. It stores bytes through the storage feature's byte
// store and upload lifecycle, handed in by app/start.ts.
import type { Plinth, Service } from '../core/context.js';
import type { Storage } from '../storage/types.js';

export interface BucketsService extends Service {
  storage: Storage;
}

export async function startBuckets(_plinth: Plinth, storage: Storage): Promise<BucketsService> {
  return {
    storage,
    async stop() {},
  };
}
