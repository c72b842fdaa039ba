// Resumable (TUS) uploads to buckets, with bytes in S3 (s3rver): parts as multipart upload parts.
import { describe } from 'vitest';
import { s3Backend } from './files-suite.ts';
import { tusSuite } from './buckets-tus-suite.ts';

describe('resumable uploads on S3', () => tusSuite(s3Backend));
