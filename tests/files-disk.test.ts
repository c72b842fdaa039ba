// The file storage suite against the disk backend (the default).
import { describe } from 'vitest';
import { crashSuite, diskBackend, fileSuite } from './files-suite.ts';

describe('disk', () => fileSuite(async () => diskBackend(), { big: true }));
describe('disk: crashes, aborts and limits', () => crashSuite(async () => diskBackend()));
