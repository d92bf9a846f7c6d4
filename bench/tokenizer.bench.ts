// Tokenizer throughput on one core, each case next to its baseline in the same run:
// - deterministic tokens over already normalized values, against a plain
//   `crypto.createHmac('sha256', key).update(value).digest()` loop (goal: ratio >= 0.7);
// - FF1 encryptions of 10-digit values (AES-256), against FF3-1 of the `ff3`
//   package on the same values (goal: ratio >= 1.3).
//
// Cases alternate in short slices and the reported ratio is the median of
// paired slices, so drift of the machine (turbo, other load) hits both sides alike. Settings (environment): BENCH_DURATION_MS (measured
// time per case, default 3000), BENCH_WARMUP_MS (default 500).

import { createHmac, randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { FF1 } from '../tokenizer/ff1.ts';
import { deterministicToken } from '../tokenizer/deterministic.ts';
import { Keyring } from '../tokenizer/keyring.ts';
import { readSetting } from './harness.ts';

interface FF3Cipher {
  encrypt(plaintext: string): string;
}
type FF3CipherConstructor = new (key: string, tweak: string, radix?: number) => FF3Cipher;

const require = createRequire(import.meta.url);
const FF3Cipher = require('ff3/lib/FF3Cipher') as FF3CipherConstructor;

/** Length of one measured slice; the cases alternate slice by slice. */
const SLICE_MS = 50;
const VALUE_COUNT = 4096;

interface Case {
  name: string;
  /** Runs the operation once; `index` picks the input value. */
  run(index: number): unknown;
  operations: number;
  elapsedMs: number;
}

function makeCase(name: string, run: (index: number) => unknown): Case {
  return { name, run, operations: 0, elapsedMs: 0 };
}

/** Runs `target` for about `ms` milliseconds and adds its counts. */
function runSlice(target: Case, ms: number): void {
  let sink = 0;
  let operations = 0;
  const started = performance.now();
  const deadline = started + ms;
  while (performance.now() < deadline) {
    for (let k = 0; k < 256; k++) {
      const result = target.run(target.operations + operations);
      sink ^= typeof result === 'string' ? result.length : 1;
      operations++;
    }
  }
  target.elapsedMs += performance.now() - started;
  target.operations += operations;
  if (sink === -1) console.log('unreachable');
}

/** Median of the ratios of paired slices; pairs run in ABBA order so steady drift cancels. */
function compare(candidate: Case, baseline: Case, durationMs: number, warmupMs: number, goal: number): void {
  for (const target of [candidate, baseline]) {
    runSlice(target, warmupMs);
    target.operations = 0;
    target.elapsedMs = 0;
  }
  const ratios: number[] = [];
  let pair = 0;
  while (candidate.elapsedMs < durationMs || baseline.elapsedMs < durationMs) {
    const order = pair % 2 === 0 ? [candidate, baseline] : [baseline, candidate];
    const before = order.map((target) => ({ operations: target.operations, elapsedMs: target.elapsedMs }));
    for (const target of order) {
      runSlice(target, SLICE_MS);
    }
    const sliceRate = (index: number): number => {
      const target = order[index] as Case;
      const start = before[index] as { operations: number; elapsedMs: number };
      return (target.operations - start.operations) / (target.elapsedMs - start.elapsedMs);
    };
    ratios.push(order[0] === candidate ? sliceRate(0) / sliceRate(1) : sliceRate(1) / sliceRate(0));
    pair++;
  }
  ratios.sort((a, b) => a - b);
  const ratio = ratios[Math.floor(ratios.length / 2)] ?? Number.NaN;
  const rate = (target: Case): number => (target.operations * 1000) / target.elapsedMs;
  for (const target of [candidate, baseline]) {
    console.log(`${target.name.padEnd(48)} ${Math.round(rate(target)).toLocaleString('en-US').padStart(12)} ops/s  n=${target.operations}`);
  }
  console.log(`ratio ${candidate.name} / ${baseline.name}: x${ratio.toFixed(2)}, median of ${ratios.length} paired slices (goal >= ${goal}) ${ratio >= goal ? 'met' : 'NOT met'}\n`);
}

function main(): void {
  const durationMs = readSetting('BENCH_DURATION_MS', 3000);
  const warmupMs = readSetting('BENCH_WARMUP_MS', 500);
  console.log(`node ${process.version}, one core, ${durationMs} ms per case\n`);

  const keyring = new Keyring(new Map([[1, randomBytes(32)]]), 1);
  const hmacKey = keyring.derive('deterministic', 'customer.email');
  const emails = Array.from({ length: VALUE_COUNT }, (_, i) => `user.${i}.${randomBytes(4).toString('hex')}@example.com`);
  compare(
    makeCase('deterministicToken', (i) => deterministicToken(keyring, 'customer.email', emails[i % VALUE_COUNT] ?? '')),
    makeCase('createHmac sha256 digest (baseline)', (i) => createHmac('sha256', hmacKey).update(emails[i % VALUE_COUNT] ?? '').digest()),
    durationMs,
    warmupMs,
    0.7,
  );

  const digits = Array.from({ length: VALUE_COUNT }, () => String(randomBytes(6).readUIntBE(0, 6) % 10_000_000_000).padStart(10, '0'));
  const key = randomBytes(32);
  const ff1 = new FF1(key, 10);
  const ff3 = new FF3Cipher(key.toString('hex'), randomBytes(7).toString('hex'), 10);
  compare(
    makeCase('FF1 AES-256, 10 digits', (i) => ff1.encrypt(digits[i % VALUE_COUNT] ?? '')),
    makeCase('ff3 package FF3-1 AES-256, 10 digits (baseline)', (i) => ff3.encrypt(digits[i % VALUE_COUNT] ?? '')),
    durationMs,
    warmupMs,
    1.3,
  );
}

main();
