// The sidecar's import graph and the rules its layers keep. Pure: it is handed file texts and
// returns edges and violations, so tests can feed it a made-up tree and watch it fail.
import path from 'node:path';
import ts from 'typescript';

export type ImportKind = 'import' | 'import type' | 'export from' | 'dynamic import' | 'type query';

export interface ImportRef {
  specifier: string;
  kind: ImportKind;
  line: number;
}

export interface Edge extends ImportRef {
  from: string;
  /** The imported file, relative to the root; null for packages and node: builtins. */
  to: string | null;
}

export interface Graph {
  files: string[];
  edges: Edge[];
  /** Relative imports that name no file in the tree: a typo, or a file outside the root. */
  unresolved: Edge[];
}

/** Every module a file names: static imports, `import type`, re-exports, `import('…')` with a literal, `typeof import('…')`. */
export function parseImports(fileName: string, text: string): ImportRef[] {
  const source = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const found: ImportRef[] = [];
  const add = (node: ts.Node, specifier: ts.Node | undefined, kind: ImportKind) => {
    if (specifier && ts.isStringLiteralLike(specifier)) {
      found.push({ specifier: specifier.text, kind, line: source.getLineAndCharacterOfPosition(node.getStart(source)).line + 1 });
    }
  };
  const visit = (node: ts.Node) => {
    if (ts.isImportDeclaration(node)) {
      add(node, node.moduleSpecifier, node.importClause?.isTypeOnly ? 'import type' : 'import');
    } else if (ts.isExportDeclaration(node)) {
      add(node, node.moduleSpecifier, 'export from');
    } else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) {
      add(node, node.moduleReference.expression, 'import');
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      add(node, node.arguments[0], 'dynamic import');
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) {
      add(node, node.argument.literal, 'type query');
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

/** A relative specifier as a file of the tree: `./x.js` is `./x.ts` (NodeNext), `./dir` is `./dir/index.ts`. */
function resolve(from: string, specifier: string, files: ReadonlySet<string>): string | null {
  const base = path.posix.join(path.posix.dirname(from), specifier);
  const candidates = [base, base.replace(/\.js$/, '.ts'), base.replace(/\.js$/, '.d.ts'), `${base}.ts`, `${base}.d.ts`, `${base}/index.ts`];
  return candidates.find((c) => files.has(c)) ?? null;
}

/** Builds the graph of a tree given as path → text (posix paths relative to one root). */
export function buildGraph(tree: ReadonlyMap<string, string>): Graph {
  const files = [...tree.keys()].sort();
  const known = new Set(files);
  const edges: Edge[] = [];
  const unresolved: Edge[] = [];
  for (const from of files) {
    for (const ref of parseImports(from, tree.get(from)!)) {
      if (!ref.specifier.startsWith('.')) {
        edges.push({ ...ref, from, to: null });
        continue;
      }
      const to = resolve(from, ref.specifier, known);
      (to ? edges : unresolved).push({ ...ref, from, to });
    }
  }
  return { files, edges, unresolved };
}

export type Layer = { kind: 'cli' | 'app' | 'core' | 'start' | 'types' } | { kind: 'feature'; name: string };

/** The layer of a path under the sidecar root: any top-level folder that is not a known layer is a feature. */
export function layerOf(file: string): Layer {
  if (file === 'cli.ts') return { kind: 'cli' };
  const top = file.split('/')[0];
  if (top === 'app' || top === 'core' || top === 'start' || top === 'types') return { kind: top };
  // A loose top-level file other than cli.ts gets no free pass: it is checked as a feature of its own.
  return { kind: 'feature', name: top.replace(/\.ts$/, '') };
}

const describeLayer = (l: Layer) => (l.kind === 'feature' ? `feature ${l.name}/` : l.kind === 'cli' ? 'cli.ts' : `${l.kind}/`);

/** A feature allowed to import another, with the reason it may. Keys read "importer -> imported". */
export type FeatureAllowList = Readonly<Record<string, string>>;

/** Why an edge breaks the layering, or null when it keeps it. */
export function layerRule(from: Layer, to: Layer, allow: FeatureAllowList = {}): string | null {
  if (from.kind === 'core' && to.kind !== 'core') return 'core/ is the floor and imports only core/';
  if (to.kind === 'app' && from.kind !== 'cli' && from.kind !== 'app') return 'app/ is the roof: only cli.ts imports it';
  if (to.kind === 'cli') return 'cli.ts is the entry point: nothing imports it';
  if (from.kind === 'start' && to.kind !== 'core' && to.kind !== 'start') return 'start/ imports only core/ and start/';
  if (from.kind === 'feature' && to.kind === 'start') return 'start/ is used by app/ and cli.ts only: a feature is handed what it needs in its Plinth context';
  if (from.kind === 'feature' && to.kind === 'feature' && from.name !== to.name && !(`${from.name} -> ${to.name}` in allow)) {
    return `features do not import each other (allow "${from.name} -> ${to.name}" in the test's list, with a reason, if it must)`;
  }
  return null;
}

/** Every edge between files of the tree that breaks the layering, as one readable line each. */
export function layerViolations(graph: Graph, allow: FeatureAllowList = {}): string[] {
  const out: string[] = [];
  for (const e of graph.edges) {
    if (e.to === null) continue;
    const from = layerOf(e.from);
    const to = layerOf(e.to);
    const why = layerRule(from, to, allow);
    if (why) out.push(`${e.from}:${e.line} ${e.kind} '${e.specifier}' (${describeLayer(from)} → ${describeLayer(to)}): ${why}`);
  }
  return out;
}

/**
 * Every import cycle, one path per strongly connected component (a → b → … → a), each edge shown
 * with its line so the import to cut is visible. Type-only imports count: a cycle of types is
 * still two modules that cannot be understood apart.
 */
export function findCycles(graph: Graph): string[] {
  const next = new Map<string, Edge[]>(graph.files.map((f) => [f, []]));
  for (const e of graph.edges) if (e.to !== null) next.get(e.from)!.push(e);

  // Tarjan's strongly connected components.
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];
  let counter = 0;
  const connect = (v: string) => {
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    onStack.add(v);
    for (const { to } of next.get(v)!) {
      if (!index.has(to!)) {
        connect(to!);
        low.set(v, Math.min(low.get(v)!, low.get(to!)!));
      } else if (onStack.has(to!)) {
        low.set(v, Math.min(low.get(v)!, index.get(to!)!));
      }
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      components.push(component);
    }
  };
  for (const f of graph.files) if (!index.has(f)) connect(f);

  const cycles: string[] = [];
  for (const component of components) {
    const members = new Set(component);
    const start = [...component].sort()[0];
    const selfLoop = next.get(start)!.find((e) => e.to === start);
    if (component.length === 1 && !selfLoop) continue;
    // Shortest way back to the start inside the component (breadth first), so the path is minimal.
    const via = new Map<string, Edge>();
    const queue = [start];
    let back: Edge | undefined = selfLoop;
    while (!back && queue.length > 0) {
      const v = queue.shift()!;
      for (const e of next.get(v)!) {
        if (!members.has(e.to!)) continue;
        if (e.to === start) {
          back = e;
          break;
        }
        if (!via.has(e.to!)) {
          via.set(e.to!, e);
          queue.push(e.to!);
        }
      }
    }
    const path: Edge[] = [back!];
    for (let v = back!.from; v !== start; v = via.get(v)!.from) path.unshift(via.get(v)!);
    cycles.push([start, ...path.map((e) => `(${e.from}:${e.line} ${e.kind}) → ${e.to}`)].join(' '));
  }
  return cycles.sort();
}
