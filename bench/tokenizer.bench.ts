// Tokenizer throughput on one core, each case next to its baseline in the same run:
// - deterministic tokens over already normalized values, against a plain
//   `crypto.createHmac('sha256', key).update(value).digest()` loop (goal: ratio >= 0.7);
// - FF1 encryptions of 10-digit values (AES-256), against FF3-1 of the `ff3`
//   package on the same values (goal: ratio >= 1.3);
// - the cost of normalization per field type, and of each format-preserving
//   format, each with its time per value as a multiple of one deterministic
//   token (no goal: it shows where the time of a tokenize call goes).
//
// Cases alternate in short slices and the reported ratio is the median of
// paired slices, so drift of the machine (turbo, other load) hits both sides alike. Settings (environment): BENCH_DURATION_MS (measured
// time per case, default 3000), BENCH_WARMUP_MS (default 500).

import { createHmac, randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import type { FieldType } from '../policy/schema.ts';
import { luhnCheckDigit, ibanCheckDigits } from '../tokenizer/check-digits.ts';
import { FF1 } from '../tokenizer/ff1.ts';
import { deterministicToken } from '../tokenizer/deterministic.ts';
import { formatPreservingToken, type FormatPreservingOptions } from '../tokenizer/format-preserving.ts';
import { Keyring } from '../tokenizer/keyring.ts';
import { normalizeValue } from '../tokenizer/normalize.ts';
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

/** Runs one case alone for `durationMs` after a warm-up and returns its rate in operations per second. */
function measure(target: Case, durationMs: number, warmupMs: number): number {
  runSlice(target, warmupMs);
  target.operations = 0;
  target.elapsedMs = 0;
  while (target.elapsedMs < durationMs) {
    runSlice(target, SLICE_MS);
  }
  return (target.operations * 1000) / target.elapsedMs;
}

function printCost(name: string, rate: number, tokenRate: number): void {
  const nanoseconds = 1e9 / rate;
  console.log(
    `${name.padEnd(48)} ${Math.round(rate).toLocaleString('en-US').padStart(12)} ops/s  ${Math.round(nanoseconds).toLocaleString('en-US').padStart(7)} ns/value  x${(tokenRate / rate).toFixed(2)} of a deterministic token`,
  );
}

/** Raw values as users type them, one generator per field type; `i` varies them so no cache helps. */
const RAW_VALUES: Record<FieldType, (i: number) => unknown> = {
  string: (i) => `  Zoë O’Brien-Łukasz ${i}  `,
  email: (i) => `Ana.Lima+${i}@Münchën.Example`,
  phone: (i) => `(030) 1234 ${String(i % 10_000).padStart(4, '0')}`,
  date: (i) => `19${String(50 + (i % 50))}-07-14T23:30:00+02:00`,
  postalCode: (i) => ` ec1a  ${i % 10}bb `,
  country: () => 'de',
  nationalId: (i) => `12 345-678 ${i % 10}`,
  number: (i) => i * 1.5,
  boolean: (i) => i % 2 === 0,
};

function reportNormalization(keyring: Keyring, tokenRate: number, durationMs: number, warmupMs: number): void {
  console.log('normalization per field type (raw input to normalized value)');
  for (const [type, raw] of Object.entries(RAW_VALUES) as Array<[FieldType, (i: number) => unknown]>) {
    const inputs = Array.from({ length: VALUE_COUNT }, (_, i) => raw(i));
    const rate = measure(makeCase(type, (i) => normalizeValue(type, inputs[i % VALUE_COUNT], { defaultRegion: 'DE', maxLength: 256 })), durationMs, warmupMs);
    printCost(`normalize ${type}`, rate, tokenRate);
  }
  console.log('');

  console.log('format-preserving tokens per format (normalized value to token)');
  const formats: Array<{ name: string; type: FieldType; value: (i: number) => string; options?: FormatPreservingOptions }> = [
    { name: 'phone E.164', type: 'phone', value: (i) => `+4930123${String(i % 100_000).padStart(5, '0')}` },
    { name: 'email, domain tokenized', type: 'email', value: (i) => `ana.lima.${i}@example.com` },
    { name: 'email, domain kept', type: 'email', value: (i) => `ana.lima.${i}@example.com`, options: { emailDomain: 'keep' } },
    { name: 'luhn, 16 digits', type: 'nationalId', value: (i) => { const payload = `411111${String(i).padStart(9, '0')}`; return payload + luhnCheckDigit(payload); }, options: { checkDigit: 'luhn' } },
    { name: 'IBAN DE, mod 97', type: 'nationalId', value: (i) => { const bban = `37040044${String(i).padStart(10, '0')}`; return `DE${ibanCheckDigits('DE', bban)}${bban}`; }, options: { checkDigit: 'iban-mod97' } },
  ];
  for (const format of formats) {
    const values = Array.from({ length: VALUE_COUNT }, (_, i) => format.value(i));
    const run = (i: number): string => formatPreservingToken(keyring, 'bench.field', format.type, values[i % VALUE_COUNT] ?? '', undefined, format.options ?? {});
    printCost(`formatPreservingToken ${format.name}`, measure(makeCase(format.name, run), durationMs, warmupMs), tokenRate);
  }
  console.log('');
}

function main(): void {
  const durationMs = readSetting('BENCH_DURATION_MS', 3000);
  const warmupMs = readSetting('BENCH_WARMUP_MS', 500);
  console.log(`node ${process.version}, one core, ${durationMs} ms per case\n`);

  const keyring = new Keyring(new Map([[1, randomBytes(32)]]), 1);
  const hmacKey = keyring.derive('deterministic', 'customer.email');
  const emails = Array.from({ length: VALUE_COUNT }, (_, i) => `user.${i}.${randomBytes(4).toString('hex')}@example.com`);
  const tokenCase = makeCase('deterministicToken', (i) => deterministicToken(keyring, 'customer.email', emails[i % VALUE_COUNT] ?? ''));
  compare(
    tokenCase,
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

  reportNormalization(keyring, (tokenCase.operations * 1000) / tokenCase.elapsedMs, Math.min(durationMs, 1000), warmupMs);
}

main();
