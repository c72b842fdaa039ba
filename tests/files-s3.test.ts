// The same file storage suite against S3 (s3rver on a free port, path-style, dummy keys).
import { describe } from 'vitest';
import { crashSuite, fileSuite, s3Backend } from './files-suite.ts';

describe('s3', () => fileSuite(s3Backend, { big: true }));
describe('s3: crashes, aborts and limits', () => crashSuite(s3Backend));
