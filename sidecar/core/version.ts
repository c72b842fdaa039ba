// Plinth's version: package.json is the one place it is written.
import fs from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from './paths.js';

export const VERSION: string = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')).version;
