// The sidecar's dependency rule, checked on every `npm test` (no stack needed): dependencies run
// one way, cli → app → features → core, with start/ beside (used by app and cli, built on core),
// and no module imports itself back through a cycle.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildGraph, findCycles, layerOf, layerViolations, parseImports, type FeatureAllowList } from './import-graph.js';

const SIDECAR = path.resolve(import.meta.dirname, '..', 'sidecar');

// Features that may import another feature, "importer -> imported": reason. Empty on purpose: a
// feature that needs another's work gets it handed in by app/start.ts, or the shared piece moves
// down to core/. Add an entry only with the reason it cannot be done that way.
const FEATURE_IMPORTS_ALLOWED: FeatureAllowList = {
  // A backup reads every stored object and a restore writes them, through the same adapters the
  // storage feature uses (disk, S3); a copy of the adapters in core/ would drift from them.
  'backup -> storage': 'reads and writes object bytes through storage/backends',
  // Bucket objects are stored by the same byte store, upload lifecycle (reserve, stream, commit or
  // discard), sweeper and download helpers as every other file; a second copy would drift.
  'buckets -> storage': 'stores and sends object bytes through storage/upload, backends, ranges and content-types',
};

function readTree(root: string): Map<string, string> {
  const tree = new Map<string, string>();
  for (const entry of fs.readdirSync(root, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile() || !entry.name.endsWith('.ts')) continue;
    const full = path.join(entry.parentPath, entry.name);
    tree.set(path.relative(root, full).split(path.sep).join('/'), fs.readFileSync(full, 'utf8'));
  }
  return tree;
}

describe('the sidecar import graph', () => {
  const graph = buildGraph(readTree(SIDECAR));

  it('is built from the real tree (the parser sees static, type and dynamic imports)', () => {
    const has = (from: string, to: string, kind: string) => graph.edges.some((e) => e.from === from && e.to === to && e.kind === kind);
    expect(graph.files).toContain('cli.ts');
    expect(has('cli.ts', 'app/start.ts', 'import')).toBe(true);
    expect(has('app/start.ts', 'core/config.ts', 'import type')).toBe(true);
    expect(has('storage/backends/index.ts', 'storage/backends/disk.ts', 'dynamic import')).toBe(true);
  });

  it('names only files that exist', () => {
    expect(graph.unresolved.map((e) => `${e.from}:${e.line} ${e.kind} '${e.specifier}' names no .ts file under sidecar/`)).toEqual([]);
  });

  it('keeps the layers: core is the floor, app the roof, start beside, features apart', () => {
    expect(layerViolations(graph, FEATURE_IMPORTS_ALLOWED)).toEqual([]);
  });

  it('has no import cycles', () => {
    expect(findCycles(graph)).toEqual([]);
  });

  it('allows only feature imports that exist (no stale entries in the allow-list)', () => {
    const used = new Set(
      graph.edges.flatMap((e) => {
        if (e.to === null) return [];
        const from = layerOf(e.from);
        const to = layerOf(e.to);
        return from.kind === 'feature' && to.kind === 'feature' && from.name !== to.name ? [`${from.name} -> ${to.name}`] : [];
      }),
    );
    expect(Object.keys(FEATURE_IMPORTS_ALLOWED).filter((k) => !used.has(k))).toEqual([]);
  });
});

describe('the import graph checker itself', () => {
  it('reads every form of import, with its line', () => {
    const text = [
      "import a from './a.js';",
      "import type { B } from './b.js';",
      "export { c } from './c.js';",
      'const d = await import(\'./d.js\');',
      "let e: typeof import('./e.js');",
      'const f = await import(name);',
      "import 'node:fs';",
    ].join('\n');
    expect(parseImports('x.ts', text)).toEqual([
      { specifier: './a.js', kind: 'import', line: 1 },
      { specifier: './b.js', kind: 'import type', line: 2 },
      { specifier: './c.js', kind: 'export from', line: 3 },
      { specifier: './d.js', kind: 'dynamic import', line: 4 },
      { specifier: './e.js', kind: 'type query', line: 5 },
      { specifier: 'node:fs', kind: 'import', line: 7 },
    ]);
  });

  it('ignores import-like text in strings and comments', () => {
    expect(parseImports('x.ts', "// import x from './a.js'\nconst s = \"import('./b.js')\";")).toEqual([]);
  });

  it('resolves .js specifiers to .ts files and reports the ones it cannot find', () => {
    const graph = buildGraph(
      new Map([
        ['auth/routes.ts', "import { x } from './schemas.js';\nimport { y } from './gone.js';\nimport fastify from 'fastify';"],
        ['auth/schemas.ts', ''],
      ]),
    );
    expect(graph.edges.map((e) => [e.from, e.to])).toEqual([
      ['auth/routes.ts', 'auth/schemas.ts'],
      ['auth/routes.ts', null],
    ]);
    expect(graph.unresolved.map((e) => `${e.from}:${e.line} ${e.specifier}`)).toEqual(['auth/routes.ts:2 ./gone.js']);
  });

  const broken = buildGraph(
    new Map([
      ['cli.ts', "import { start } from './app/start.js';"],
      ['app/start.ts', "import { routes } from '../billing/routes.js';"],
      ['core/db.ts', "import { fromDatabase } from './errors.js';"],
      ['core/errors.ts', "import type { Claims } from './db.js';\nimport { helper } from '../billing/helper.js';"],
      ['billing/routes.ts', "import { start } from '../app/start.js';\nimport { charge } from '../auth/charge.js';"],
      ['billing/helper.ts', ''],
      ['auth/charge.ts', "import { x } from '../cli.js';"],
      ['start/postgrest.ts', "import { y } from '../auth/charge.js';"],
      ['storage/service.ts', "import type { Child } from '../start/process.js';"],
      ['start/process.ts', ''],
    ]),
  );

  it('names the file, line and import of each layer violation', () => {
    expect(layerViolations(broken)).toEqual([
      "auth/charge.ts:1 import '../cli.js' (feature auth/ → cli.ts): cli.ts is the entry point: nothing imports it",
      "billing/routes.ts:1 import '../app/start.js' (feature billing/ → app/): app/ is the roof: only cli.ts imports it",
      'billing/routes.ts:2 import \'../auth/charge.js\' (feature billing/ → feature auth/): features do not import each other (allow "billing -> auth" in the test\'s list, with a reason, if it must)',
      "core/errors.ts:2 import '../billing/helper.js' (core/ → feature billing/): core/ is the floor and imports only core/",
      "start/postgrest.ts:1 import '../auth/charge.js' (start/ → feature auth/): start/ imports only core/ and start/",
      "storage/service.ts:1 import type '../start/process.js' (feature storage/ → start/): start/ is used by app/ and cli.ts only: a feature is handed what it needs in its Plinth context",
    ]);
  });

  it('lets an allow-list entry through, and only that one', () => {
    expect(layerViolations(broken, { 'billing -> auth': 'a made-up reason' }).some((v) => v.includes('feature billing/ → feature auth/'))).toBe(false);
    expect(layerViolations(broken, { 'auth -> billing': 'the other direction' }).some((v) => v.includes('feature billing/ → feature auth/'))).toBe(true);
  });

  it('reports every cycle with its path, type-only imports included', () => {
    expect(findCycles(broken)).toEqual([
      "app/start.ts (app/start.ts:1 import) → billing/routes.ts (billing/routes.ts:1 import) → app/start.ts",
      'core/db.ts (core/db.ts:1 import) → core/errors.ts (core/errors.ts:1 import type) → core/db.ts',
    ]);
    expect(findCycles(buildGraph(new Map([['a.ts', "import './a.js';"]])))).toEqual(['a.ts (a.ts:1 import) → a.ts']);
  });

  it('finds no cycle in a graph without one', () => {
    expect(findCycles(buildGraph(new Map([['a.ts', "import './b.js';"], ['b.ts', "import './c.js';"], ['c.ts', '']])))).toEqual([]);
  });
});
