import assert from 'node:assert/strict';
import { test } from 'node:test';
import { secureRandomBytes } from './random-pool.ts';

test('returns buffers of the asked size that do not share memory', () => {
  const first = secureRandomBytes(32);
  const second = secureRandomBytes(32);
  assert.equal(first.length, 32);
  assert.notEqual(first.buffer, second.buffer);
  first.fill(0);
  assert.notDeepEqual(second, Buffer.alloc(32));
});

test('never hands out the same bytes twice across block refills', () => {
  const seen = new Set<string>();
  // 16 bytes each over about 12 blocks of 4096 bytes.
  for (let i = 0; i < 3000; i += 1) {
    const hex = secureRandomBytes(16).toString('hex');
    assert.equal(seen.has(hex), false);
    seen.add(hex);
  }
});

test('serves sizes above the pooled limit and zero', () => {
  assert.equal(secureRandomBytes(0).length, 0);
  const large = secureRandomBytes(1000);
  assert.equal(large.length, 1000);
  assert.notDeepEqual(large, Buffer.alloc(1000));
});

test('bytes are roughly uniform', () => {
  const counts = new Array<number>(256).fill(0);
  for (let i = 0; i < 2000; i += 1) {
    for (const byte of secureRandomBytes(64)) counts[byte] = (counts[byte] ?? 0) + 1;
  }
  // 128,000 bytes: each value is expected 500 times; a healthy generator stays far inside 300..700.
  for (const count of counts) {
    assert.ok(count > 300);
    assert.ok(count < 700);
  }
});

test('rejects a negative or fractional size', () => {
  assert.throws(() => secureRandomBytes(-1), RangeError);
  assert.throws(() => secureRandomBytes(1.5), RangeError);
});
