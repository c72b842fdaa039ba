// Where the Deno binary is: the one the `deno` npm package installed, never whatever is on PATH,
// so every machine runs the version Plinth was tested with.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);

export function denoBinary(): string {
  const pkg = path.dirname(require.resolve('deno/package.json'));
  const copied = path.join(pkg, process.platform === 'win32' ? 'deno.exe' : 'deno');
  if (fs.existsSync(copied)) return copied;
  // The package's postinstall copies the binary next to it; without it, the platform package holds it.
  const platform = `@deno/${process.platform}-${process.arch}${process.platform === 'linux' ? '-glibc' : ''}`;
  const fromPlatform = path.join(path.dirname(require.resolve(`${platform}/package.json`)), 'deno');
  if (fs.existsSync(fromPlatform)) return fromPlatform;
  throw new Error(`the deno binary was not found in ${pkg} nor ${platform}: reinstall the deno package (npm install)`);
}
