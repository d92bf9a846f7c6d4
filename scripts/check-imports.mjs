#!/usr/bin/env node
// Checks the import rules between the module folders and reports import
// cycles. Imports are found by TypeScript's preProcessFile scanner, which
// skips comments and strings and finds static imports, `export ... from`,
// side-effect imports and dynamic `import('...')` with a string literal.
// Test files (*.test.ts) are exempt from the folder rules but count for cycles.
//
// Usage: node scripts/check-imports.mjs [--root DIR]
// Exits 1 and lists every violation as `file:line: message`.

import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const SOURCE_EXTENSIONS = ['.ts', '.mts', '.cts', '.tsx', '.js', '.mjs', '.cjs'];
const SCANNED_FOLDERS = [
  'policy', 'tokenizer', 'store', 'gateway', 'replication', 'cli', 'examples', 'infra', 'bench', 'test', 'scripts',
];
const SKIPPED_FOLDER_NAMES = new Set(['node_modules', 'data', '.git']);
// Browser scripts served by the gateway are not Node modules.
const SKIPPED_PATHS = new Set(['gateway/widgets/static']);

// Project folders that each folder may import, besides itself. A folder that
// is missing here (cli, bench, test, scripts) may import any of them.
const ALLOWED_PROJECT_IMPORTS = {
  policy: [],
  tokenizer: ['policy'],
  store: ['policy', 'tokenizer'],
  gateway: ['policy', 'tokenizer', 'store'],
  replication: ['policy', 'tokenizer', 'store'],
  examples: [],
  infra: [],
};

// Packages that do I/O, which tokenizer/ may use only inside tokenizer/keys/.
const TOKENIZER_IO_PACKAGES = [
  /^(node:)?(fs|fs\/promises|http|https|http2|net|tls|dgram|child_process)$/,
  /^pg($|\/)/,
  /^pg-/,
  /^express($|\/)/,
  /^@aws-sdk\//,
  /^@electric-sql\//,
];

function parseRoot(argv) {
  const index = argv.indexOf('--root');
  if (index === -1) return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
  const value = argv[index + 1];
  if (!value) throw new Error('--root needs a folder path');
  return path.resolve(value);
}

function toPosix(relative) {
  return relative.split(path.sep).join('/');
}

function listSourceFiles(root, folder) {
  const start = path.join(root, folder);
  if (!existsSync(start)) return [];
  const files = [];
  const pending = [start];
  while (pending.length > 0) {
    const dir = pending.pop();
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      const relative = toPosix(path.relative(root, full));
      if (entry.isDirectory()) {
        if (!entry.name.startsWith('.') && !SKIPPED_FOLDER_NAMES.has(entry.name) && !SKIPPED_PATHS.has(relative)) {
          pending.push(full);
        }
      } else if (entry.isFile() && SOURCE_EXTENSIONS.includes(path.extname(entry.name)) && !entry.name.endsWith('.d.ts')) {
        files.push(relative);
      }
    }
  }
  return files.sort();
}

function findImports(source) {
  const lineStarts = ts.computeLineStarts(source);
  return ts.preProcessFile(source, true, true).importedFiles.map((reference) => ({
    specifier: reference.fileName,
    line: ts.computeLineAndCharacterOfPosition(lineStarts, reference.pos).line + 1,
  }));
}

function resolveRelative(root, fromFile, specifier) {
  const base = path.resolve(root, path.dirname(fromFile), specifier);
  const candidates = [base, ...SOURCE_EXTENSIONS.map((ext) => base + ext),
    ...SOURCE_EXTENSIONS.map((ext) => path.join(base, `index${ext}`))];
  for (const candidate of candidates) {
    if (existsSync(candidate) && statSync(candidate).isFile()) return toPosix(path.relative(root, candidate));
  }
  return undefined;
}

function topFolder(relative) {
  return relative.split('/')[0];
}

function isTestFile(relative) {
  return /\.test\.[cm]?[jt]sx?$/.test(relative);
}

function checkFolderRule(file, target, line, violations) {
  const from = topFolder(file);
  const to = topFolder(target);
  const allowed = ALLOWED_PROJECT_IMPORTS[from];
  if (allowed === undefined || from === to || allowed.includes(to)) return;
  const rule = allowed.length === 0
    ? `${from}/ may import nothing of the project`
    : `${from}/ may import only ${allowed.map((name) => `${name}/`).join(', ')}`;
  violations.push(`${file}:${line}: imports ${target}, but ${rule}`);
}

function checkPackageRule(file, specifier, line, violations) {
  if (topFolder(file) !== 'tokenizer' || file.startsWith('tokenizer/keys/')) return;
  if (TOKENIZER_IO_PACKAGES.some((pattern) => pattern.test(specifier))) {
    violations.push(`${file}:${line}: imports '${specifier}', but tokenizer/ outside tokenizer/keys/ does no I/O`);
  }
}

// Returns the shortest import path from the first file of a strongly
// connected component back to itself, so the report shows a real cycle.
function traceCycle(graph, component) {
  const members = new Set(component);
  const start = [...component].sort()[0];
  const previous = new Map();
  const queue = [start];
  while (queue.length > 0) {
    const node = queue.shift();
    for (const next of graph.get(node) ?? []) {
      if (!members.has(next)) continue;
      if (next === start) {
        const trail = [node];
        while (trail[0] !== start) trail.unshift(previous.get(trail[0]));
        return [...trail, start];
      }
      if (!previous.has(next)) {
        previous.set(next, node);
        queue.push(next);
      }
    }
  }
  return [start, start];
}

// Finds strongly connected components with Tarjan's algorithm. Every component
// with more than one file, or a file that imports itself, contains a cycle.
function findCycles(graph) {
  const indexOf = new Map();
  const lowLink = new Map();
  const stack = [];
  const onStack = new Set();
  const cycles = [];
  let counter = 0;

  const visit = (node) => {
    indexOf.set(node, counter);
    lowLink.set(node, counter);
    counter += 1;
    stack.push(node);
    onStack.add(node);
    for (const next of graph.get(node) ?? []) {
      if (!indexOf.has(next)) {
        visit(next);
        lowLink.set(node, Math.min(lowLink.get(node), lowLink.get(next)));
      } else if (onStack.has(next)) {
        lowLink.set(node, Math.min(lowLink.get(node), indexOf.get(next)));
      }
    }
    if (lowLink.get(node) !== indexOf.get(node)) return;
    const component = [];
    let member;
    do {
      member = stack.pop();
      onStack.delete(member);
      component.push(member);
    } while (member !== node);
    if (component.length > 1 || graph.get(node)?.has(node)) cycles.push(traceCycle(graph, component));
  };

  for (const node of graph.keys()) if (!indexOf.has(node)) visit(node);
  return cycles;
}

export function checkImports(root) {
  const files = SCANNED_FOLDERS.flatMap((folder) => listSourceFiles(root, folder));
  const violations = [];
  const graph = new Map();
  let importCount = 0;

  for (const file of files) {
    const edges = new Set();
    graph.set(file, edges);
    for (const { specifier, line } of findImports(readFileSync(path.join(root, file), 'utf8'))) {
      importCount += 1;
      if (!specifier.startsWith('.')) {
        if (!isTestFile(file)) checkPackageRule(file, specifier, line, violations);
        continue;
      }
      const target = resolveRelative(root, file, specifier);
      if (target === undefined) {
        violations.push(`${file}:${line}: imports '${specifier}', which resolves to no file`);
        continue;
      }
      if (target.startsWith('..')) {
        violations.push(`${file}:${line}: imports '${specifier}', which is outside the repository`);
        continue;
      }
      edges.add(target);
      if (!isTestFile(file)) checkFolderRule(file, target, line, violations);
    }
  }
  for (const cycle of findCycles(graph)) violations.push(`import cycle: ${cycle.join(' -> ')}`);
  return { files: files.length, imports: importCount, violations };
}

function main() {
  const root = parseRoot(process.argv.slice(2));
  const { files, imports, violations } = checkImports(root);
  for (const violation of violations) console.error(violation);
  if (violations.length > 0) {
    console.error(`check-imports: ${violations.length} violations in ${files} files`);
    process.exitCode = 1;
    return;
  }
  console.log(`check-imports: ${files} files, ${imports} imports, no violations`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();
