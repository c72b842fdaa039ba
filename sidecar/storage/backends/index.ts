// The one place that knows every byte store: picks the adapter the configuration names.
import type { Config } from '../../core/config.js';
import type { StorageBackend } from './adapter.js';

export async function createBackend(config: Config['storage']): Promise<StorageBackend> {
  if (config.backend === 's3') {
    const { s3Backend } = await import('./s3.js');
    return s3Backend(config.s3);
  }
  const { diskBackend } = await import('./disk.js');
  return diskBackend(config.diskDir);
}
