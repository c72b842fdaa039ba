#!/usr/bin/env node
// `plinth` as an npm bin: runs the TypeScript CLI through tsx.
import { register } from 'tsx/esm/api';

register();
await import('../sidecar/cli.ts');
