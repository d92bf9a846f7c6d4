#!/usr/bin/env node
// Runs every *.test.ts of the module folders with node:test, one file at a
// time. Node 20's `node --test` does not expand glob patterns itself and runs
// zero files for a pattern it cannot match, so this script lists the files.
//
// Usage: node scripts/run-tests.mjs [file-or-folder ...]
// With arguments, only the test files inside those paths run.
// DOMICILE_REQUIRE_BROWSER=1 turns a browser test that was skipped because no
// Chromium was found into a failure of the run.

import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const TEST_FOLDERS = ['policy', 'tokenizer', 'store', 'gateway', 'replication', 'cli', 'examples', 'test'];
const SKIPPED_FOLDER_NAMES = new Set(['node_modules', 'data', '.git']);

// Browser tests skip with a reason that contains this phrase when no Chromium
// executable is found. The TAP reporter writes it as `# SKIP <reason>`.
const MISSING_BROWSER_PATTERN = /#\s*SKIP\b.*chromium not found/i;

// A single test that runs longer than this fails instead of hanging CI.
const TEST_TIMEOUT_MS = 10 * 60 * 1000;
// The whole run is stopped after this time, because a test file that leaves a
// handle open (a server, a socket, a timer) keeps its process alive after its
// last test and no per-test timeout catches that. Override with
// DOMICILE_TEST_RUN_TIMEOUT_MS.
const DEFAULT_RUN_TIMEOUT_MS = 30 * 60 * 1000;
const KILL_GRACE_MS = 10 * 1000;

function listTestFiles(start) {
  const found = [];
  let stat;
  try {
    stat = statSync(start);
  } catch {
    return found;
  }
  if (stat.isFile()) {
    if (start.endsWith('.test.ts')) found.push(start);
    return found;
  }
  for (const entry of readdirSync(start, { withFileTypes: true })) {
    if (entry.name.startsWith('.') || SKIPPED_FOLDER_NAMES.has(entry.name)) continue;
    const full = path.join(start, entry.name);
    if (entry.isDirectory()) found.push(...listTestFiles(full));
    else if (entry.isFile() && entry.name.endsWith('.test.ts')) found.push(full);
  }
  return found;
}

function selectTestFiles(requested) {
  const starts = requested.length > 0
    ? requested.map((p) => path.resolve(p))
    : TEST_FOLDERS.map((folder) => path.join(ROOT, folder));
  const files = new Set();
  for (const start of starts) {
    for (const file of listTestFiles(start)) files.add(path.relative(ROOT, file));
  }
  return [...files].sort();
}

function readRunTimeout() {
  const raw = process.env.DOMICILE_TEST_RUN_TIMEOUT_MS;
  if (raw === undefined || raw === '') return DEFAULT_RUN_TIMEOUT_MS;
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0) {
    console.error(`run-tests: DOMICILE_TEST_RUN_TIMEOUT_MS must be a positive integer of milliseconds, got '${raw}'`);
    process.exit(1);
  }
  return value;
}

// Sends a signal to the test runner and the test file processes it started.
function signalGroup(child, signal) {
  try {
    process.kill(-child.pid, signal);
  } catch {
    // The group has already exited.
  }
}

function runNodeTest(files, tapFile, runTimeoutMs) {
  const args = [
    '--import', 'tsx',
    '--test',
    '--test-concurrency=1',
    `--test-timeout=${TEST_TIMEOUT_MS}`,
    '--test-reporter=spec', '--test-reporter-destination=stdout',
    '--test-reporter=tap', `--test-reporter-destination=${tapFile}`,
    ...files,
  ];
  return new Promise((resolve, reject) => {
    // A process group of its own, so a timeout can stop the test files too.
    const child = spawn(process.execPath, args, { cwd: ROOT, env: process.env, stdio: 'inherit', detached: true });
    let timedOut = false;
    const forward = (signal) => signalGroup(child, signal);
    const timer = setTimeout(() => {
      timedOut = true;
      console.error(`\nrun-tests: timed out after ${runTimeoutMs} ms. A test file probably left a server, socket ` +
        'or timer open after its last test. Stopping the test processes.');
      signalGroup(child, 'SIGTERM');
      setTimeout(() => signalGroup(child, 'SIGKILL'), KILL_GRACE_MS).unref();
    }, runTimeoutMs);
    process.on('SIGINT', forward);
    process.on('SIGTERM', forward);
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      process.off('SIGINT', forward);
      process.off('SIGTERM', forward);
      resolve({ code, signal, timedOut });
    });
  });
}

// Reads the totals that the TAP reporter prints at the end (`# pass 12`).
function readTapTotals(tap) {
  const totals = {};
  for (const name of ['tests', 'pass', 'fail', 'cancelled', 'skipped', 'todo']) {
    const match = tap.match(new RegExp(`^# ${name} (\\d+)$`, 'm'));
    totals[name] = match ? Number(match[1]) : 0;
  }
  return totals;
}

// Node's totals count skipped tests but not skipped suites (a `describe` with `skip`),
// whose tests never run. Every skip, of either kind, is an `ok` line with `# SKIP`.
function countSkippedSuites(tap, skippedTests) {
  const skipLines = tap.split('\n').filter((line) => /^\s*ok \d+ .*# SKIP/.test(line)).length;
  return Math.max(0, skipLines - skippedTests);
}

function listMissingBrowserSkips(tap) {
  return tap
    .split('\n')
    .filter((line) => /^\s*ok \d+/.test(line) && MISSING_BROWSER_PATTERN.test(line))
    .map((line) => line.trim());
}

async function main() {
  const runTimeoutMs = readRunTimeout();
  const files = selectTestFiles(process.argv.slice(2));
  if (files.length === 0) {
    console.error('run-tests: no *.test.ts files found; nothing was tested');
    process.exit(1);
  }
  console.log(`run-tests: ${files.length} test files on Node ${process.version}` +
    (process.env.DATABASE_URL ? ' with DATABASE_URL set' : ' with PGlite only'));

  const tempDir = mkdtempSync(path.join(tmpdir(), 'domicile-tests-'));
  const tapFile = path.join(tempDir, 'report.tap');
  try {
    const { code, signal, timedOut } = await runNodeTest(files, tapFile, runTimeoutMs);
    let tap = '';
    try {
      tap = readFileSync(tapFile, 'utf8');
    } catch {
      console.error('run-tests: the TAP report was not written');
    }
    const totals = readTapTotals(tap);
    const missingBrowser = listMissingBrowserSkips(tap);
    const requireBrowser = process.env.DOMICILE_REQUIRE_BROWSER === '1';

    let exitCode = timedOut ? 1 : (code ?? 1);
    if (signal) console.error(`run-tests: node --test was stopped by ${signal}`);
    if (missingBrowser.length > 0) {
      const verdict = requireBrowser ? 'failing because DOMICILE_REQUIRE_BROWSER=1' : 'allowed';
      console.error(`run-tests: ${missingBrowser.length} browser tests or suites skipped, Chromium not found (${verdict}):`);
      for (const line of missingBrowser) console.error(`  ${line}`);
      if (requireBrowser && exitCode === 0) exitCode = 1;
    }
    const verdict = timedOut ? 'TIMED OUT' : (exitCode === 0 ? 'PASSED' : 'FAILED');
    console.log(`run-tests: ${verdict}: ${files.length} files, ` +
      `${totals.tests} tests, ${totals.pass} passed, ${totals.fail} failed, ` +
      `${totals.cancelled} cancelled, ${totals.skipped} skipped, ${countSkippedSuites(tap, totals.skipped)} suites skipped ` +
      `(${missingBrowser.length} for missing Chromium), ${totals.todo} todo`);
    process.exitCode = exitCode;
  } finally {
    rmSync(tempDir, { recursive: true, force: true });
  }
}

await main();
