// Resumable (TUS) uploads to buckets, with bytes on the local disk.
import { describe } from 'vitest';
import { diskBackend } from './files-suite.ts';
import { tusSuite } from './buckets-tus-suite.ts';

describe('resumable uploads on disk', () => tusSuite(diskBackend));
