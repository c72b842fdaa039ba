// The buckets suite (Supabase Storage API) with bytes on the local disk.
import { describe } from 'vitest';
import { bucketsSuite, diskBackend } from './buckets-suite.ts';

describe('buckets on disk', () => bucketsSuite(diskBackend));
