// `plinth config`: the effective configuration, with every secret masked.
import type { Source } from './dotenv.js';

const MASK = '********';
const SECRET_NAME = /password|secret|private|token|(^|_)key$/i;

/** A value fit to print: secrets masked, a URL's password masked. */
export function maskValue(name: string, value: unknown): unknown {
  if (value === undefined || value === null || value === '') return value;
  if (SECRET_NAME.test(name)) return MASK;
  if (typeof value === 'string' && /^[a-z][a-z0-9+.-]*:\/\//i.test(value)) {
    try {
      const u = new URL(value);
      if (u.password) {
        u.password = 'xxxxxxxx';
        return u.toString().replace(':xxxxxxxx@', `:${MASK}@`);
      }
    } catch {
      /* not a URL after all */
    }
  }
  return value;
}

/** The configuration as dotted keys and printable values, secrets masked. */
export function flattenConfig(config: object, prefix = ''): [string, unknown][] {
  const out: [string, unknown][] = [];
  for (const [key, value] of Object.entries(config)) {
    if (key === 'variables' && prefix === '') continue;
    const name = prefix ? `${prefix}.${key}` : key;
    if (value && typeof value === 'object' && !Array.isArray(value)) out.push(...flattenConfig(value, name));
    else out.push([name, maskValue(key, value)]);
  }
  return out;
}

export interface VariableReport {
  name: string;
  value: unknown;
  source: Source;
}

/** The variables Plinth read that were set, where each came from, secrets masked. */
export function setVariables(env: Record<string, string | undefined>, read: Iterable<string>, sources: Map<string, Source>): VariableReport[] {
  const out: VariableReport[] = [];
  for (const name of [...read].sort()) {
    const value = env[name];
    if (value === undefined || value === '') continue;
    out.push({ name, value: maskValue(name, value), source: sources.get(name) ?? 'environment' });
  }
  return out;
}
