#!/usr/bin/env node
// Runs the benchmarks one after another with tsx: every bench/*.bench.ts, or
// only the files or names given on the command line (`proxy` or
// `bench/proxy.bench.ts`). Exits 1 when any benchmark fails.

import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BENCH_DIR = path.join(ROOT, 'bench');

function resolveBench(name) {
  const candidates = [path.resolve(name), path.join(BENCH_DIR, name), path.join(BENCH_DIR, `${name}.bench.ts`)];
  return candidates.find((candidate) => candidate.endsWith('.bench.ts') && existsSync(candidate));
}

const requested = process.argv.slice(2);
const files = requested.length > 0
  ? requested.map((name) => resolveBench(name) ?? name)
  : readdirSync(BENCH_DIR).filter((name) => name.endsWith('.bench.ts')).sort().map((name) => path.join(BENCH_DIR, name));

const missing = files.filter((file) => !existsSync(file));
if (missing.length > 0) {
  console.error(`run-bench: no benchmark file for: ${missing.join(', ')}`);
  process.exit(1);
}
if (files.length === 0) {
  console.error('run-bench: no bench/*.bench.ts files found');
  process.exit(1);
}

const failures = [];
for (const file of files) {
  const relative = path.relative(ROOT, file);
  console.log(`\n== ${relative}`);
  const result = spawnSync(process.execPath, ['--import', 'tsx', file], { cwd: ROOT, env: process.env, stdio: 'inherit' });
  if (result.status !== 0) failures.push(`${relative} (${result.signal ?? `exit ${result.status}`})`);
}

if (failures.length > 0) {
  console.error(`\nrun-bench: ${failures.length} of ${files.length} benchmarks failed: ${failures.join(', ')}`);
  process.exit(1);
}
console.log(`\nrun-bench: ${files.length} benchmarks finished`);
