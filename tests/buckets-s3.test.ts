// The buckets suite (Supabase Storage API) with bytes in S3 (s3rver on a free port).
import { describe } from 'vitest';
import { bucketsSuite, s3Backend } from './buckets-suite.ts';

describe('buckets on S3', () => bucketsSuite(s3Backend));
