#!/usr/bin/env node
// Applies patches/<package>+<version>.patch to the installed copies of those packages, wherever
// npm put them: in Plinth's own node_modules, or hoisted into an app's when Plinth is a dependency.
// Each hunk is an exact-text replacement: applied once (a second run finds the new text and skips),
// and a hunk whose old text is missing fails the install loudly instead of leaving it unpatched.
// With --check it changes nothing and exits 1 if any hunk is not applied (`plinth doctor` runs it).
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(path.join(root, 'package.json'));

/** The folder of an installed package, found the way Plinth's own code will import it. */
function packageDir(name) {
  let dir = path.dirname(require.resolve(name));
  while (!fs.existsSync(path.join(dir, 'package.json')) || JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')).name !== name) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`cannot find the folder of ${name}`);
    dir = up;
  }
  return dir;
}

/** Files of a unified diff, each with its hunks as [old text, new text]. */
function parsePatch(text) {
  const files = [];
  let file;
  let hunk;
  for (const line of text.split('\n')) {
    if (line.startsWith('diff --git ')) {
      file = { path: '', hunks: [] };
      files.push(file);
      hunk = undefined;
    } else if (line.startsWith('+++ ')) {
      file.path = line.slice(4).replace(/^b\//, '');
    } else if (line.startsWith('--- ') || line.startsWith('index ')) {
      continue;
    } else if (line.startsWith('@@')) {
      hunk = { before: [], after: [] };
      file.hunks.push(hunk);
    } else if (hunk && (line.startsWith(' ') || line === '')) {
      hunk.before.push(line.slice(1));
      hunk.after.push(line.slice(1));
    } else if (hunk && line.startsWith('-')) {
      hunk.before.push(line.slice(1));
    } else if (hunk && line.startsWith('+')) {
      hunk.after.push(line.slice(1));
    }
  }
  for (const f of files) for (const h of f.hunks) {
    // The diff's last line break belongs to the file, not to the hunk.
    while (h.before.at(-1) === '' && h.after.at(-1) === '') (h.before.pop(), h.after.pop());
    h.before = h.before.join('\n');
    h.after = h.after.join('\n');
  }
  return files;
}

const patchDir = path.join(root, 'patches');
const checkOnly = process.argv.includes('--check');
let failed = false;
for (const name of fs.readdirSync(patchDir).filter((f) => f.endsWith('.patch')).sort()) {
  const [, pkg, version] = /^(.+)\+([^+]+)\.patch$/.exec(name.replace(/\+\+/g, '/')) ?? [];
  const dir = packageDir(pkg);
  const installed = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')).version;
  if (installed !== version) {
    console.error(`plinth: ${name} is for ${pkg} ${version}, but ${installed} is installed in ${dir}`);
    failed = true;
    continue;
  }
  for (const file of parsePatch(fs.readFileSync(path.join(patchDir, name), 'utf8'))) {
    const target = path.join(dir, file.path.replace(new RegExp(`^node_modules/${pkg}/`), ''));
    let text = fs.readFileSync(target, 'utf8');
    let changed = false;
    for (const { before, after } of file.hunks) {
      if (text.includes(after)) continue;
      if (checkOnly) {
        console.error(`plinth: ${target} lacks part of ${name}`);
        failed = true;
        break;
      }
      const at = text.indexOf(before);
      if (at < 0 || text.indexOf(before, at + 1) >= 0) {
        console.error(`plinth: ${name} does not apply to ${target}: the text it replaces is ${at < 0 ? 'not there' : 'there more than once'}`);
        failed = true;
        continue;
      }
      text = text.slice(0, at) + after + text.slice(at + before.length);
      changed = true;
    }
    if (changed) {
      fs.writeFileSync(target, text);
      console.log(`plinth: patched ${path.relative(process.cwd(), target) || target}`);
    }
  }
}
process.exit(failed ? 1 : 0);
