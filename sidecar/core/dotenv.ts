// `.env` in the project folder: read once, under the real environment (which wins), so
// `plinth start` and every other command see the same settings docker-compose would.
import fs from 'node:fs';
import path from 'node:path';

export type Env = Record<string, string | undefined>;

/** Where each variable of a merged environment came from. */
export type Source = 'environment' | '.env';

/**
 * Parses the common `.env` dialect: `NAME=value`, optional `export `, `#` comments, single quotes
 * taken literally, double quotes with \n \t \" \\ escapes, and a trailing ` # comment` on unquoted values.
 */
export function parseDotEnv(text: string, file = '.env'): Record<string, string> {
  const out: Record<string, string> = {};
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
    if (!m) throw new DotEnvError(`${file}:${i + 1}: expected NAME=value, got ${JSON.stringify(line.slice(0, 40))}`);
    const [, name, rest] = m;
    let value: string;
    if (rest.startsWith("'") || rest.startsWith('"')) {
      const quote = rest[0];
      const end = rest.indexOf(quote, 1);
      // A double-quoted value may contain escaped quotes: find the first unescaped one.
      let close = end;
      if (quote === '"') {
        close = -1;
        for (let j = 1; j < rest.length; j++) {
          if (rest[j] === '\\') j++;
          else if (rest[j] === '"') {
            close = j;
            break;
          }
        }
      }
      if (close < 0) throw new DotEnvError(`${file}:${i + 1}: ${name} has an unterminated ${quote} quote`);
      const after = rest.slice(close + 1).trim();
      if (after !== '' && !after.startsWith('#')) throw new DotEnvError(`${file}:${i + 1}: unexpected text after the quoted value of ${name}`);
      value = rest.slice(1, close);
      if (quote === '"') value = value.replace(/\\([nrt"\\])/g, (_m, c: string) => ({ n: '\n', r: '\r', t: '\t', '"': '"', '\\': '\\' })[c]!);
    } else {
      value = rest.replace(/\s+#.*$/, '').trim();
    }
    out[name] = value;
  }
  return out;
}

export class DotEnvError extends Error {}

/** The environment with `<dir>/.env` underneath it; `sources` tells which variables the file gave. */
export function withDotEnv(env: Env, dir: string): { env: Env; sources: Map<string, Source> } {
  const file = path.join(dir, '.env');
  let text: string | undefined;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new DotEnvError(`cannot read ${file}: ${(err as Error).message}`);
  }
  const sources = new Map<string, Source>();
  for (const [k, v] of Object.entries(env)) if (v !== undefined) sources.set(k, 'environment');
  if (text === undefined) return { env, sources };
  const fromFile = parseDotEnv(text, file);
  const merged: Env = { ...env };
  for (const [k, v] of Object.entries(fromFile)) {
    if (merged[k] !== undefined) continue;
    merged[k] = v;
    sources.set(k, '.env');
  }
  return { env: merged, sources };
}

/** Levenshtein distance, for "did you mean" on a misspelt variable name. */
export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length];
}

/** The known name closest to `name`, if it is close enough to be a likely typo. */
export function closestName(name: string, known: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const k of known) {
    const d = editDistance(name, k);
    if (d < bestDistance) [best, bestDistance] = [k, d];
  }
  return best !== undefined && bestDistance <= Math.max(2, Math.floor(name.length / 3)) ? best : undefined;
}
