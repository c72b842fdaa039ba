// The same file storage suite against S3 (s3rver on a free port, path-style, dummy keys).
import { describe } from 'vitest';
import { crashSuite, fileSuite, GiB, s3Backend } from './files-suite.ts';

// s3rver stores every part on disk and concatenates them: a 1 GiB round trip takes minutes on two
// shared cores, so the S3 run streams 256 MiB by default (still more than the RSS bound) and the
// full 1 GiB with FILES_S3_BIG=1.
const big = process.env.FILES_S3_BIG === '1' ? GiB : GiB / 4;

describe('s3', () => fileSuite(s3Backend, { big }));
describe('s3: crashes, aborts and limits', () => crashSuite(s3Backend));
