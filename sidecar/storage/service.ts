// The storage feature's long-lived parts: the byte store (disk or S3) and the sweeper that
// removes bytes nobody can reach any more.
import type { Plinth, Service } from '../core/context.js';
import { createBackend } from './backends/index.js';
import type { Storage } from './types.js';
import { startSweeper } from './sweeper.js';

export type StorageService = Storage & Service;

export async function startStorage(plinth: Plinth): Promise<StorageService> {
  const backend = await createBackend(plinth.config.storage);
  const storage: Storage = { plinth, backend, writing: new Set(), uploadsByAddress: new Map() };
  plinth.health.set('storage', () => backend.check());
  const sweeper = await startSweeper(storage);
  return {
    ...storage,
    async stop() {
      await sweeper.stop();
      await backend.close();
    },
  };
}
