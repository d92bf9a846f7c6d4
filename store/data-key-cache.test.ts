import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import type { KeyProvider, WrappedKey } from '../tokenizer/keys/provider.ts';
import { DataKeyCache } from './data-key-cache.ts';

/** A key provider whose unwrap returns a fresh copy of a fixed key per wrapped value and counts calls. */
function countingProvider(): { keys: KeyProvider; unwraps: () => number } {
  let calls = 0;
  const keys: KeyProvider = {
    kind: 'local',
    currentVersion: () => 'local:1',
    generateDataKey: () => Promise.reject(new Error('not used')),
    wrap: () => Promise.reject(new Error('not used')),
    unwrap: (wrapped: WrappedKey) => {
      calls += 1;
      return Promise.resolve(Buffer.from(wrapped.ciphertext.subarray(0, 32)));
    },
    close: () => Promise.resolve(),
  } as KeyProvider;
  return { keys, unwraps: () => calls };
}

function wrappedKey(): WrappedKey {
  return { kekVersion: 'local:1', ciphertext: randomBytes(60) };
}

describe('data key cache', () => {
  test('second unwrap of same wrapped key is a hit', async () => {
    const { keys, unwraps } = countingProvider();
    const cache = new DataKeyCache();
    const wrapped = wrappedKey();
    const first = await cache.unwrap(keys, 'subject-1', wrapped, { subject: 's1' });
    first.fill(0);
    const second = await cache.unwrap(keys, 'subject-1', wrapped, { subject: 's1' });
    assert.equal(unwraps(), 1);
    assert.deepEqual(second, wrapped.ciphertext.subarray(0, 32), 'zeroing a returned copy leaves the cached key intact');
  });

  test('rewrapped key is a miss', async () => {
    const { keys, unwraps } = countingProvider();
    const cache = new DataKeyCache();
    await cache.unwrap(keys, 'subject-1', wrappedKey(), { subject: 's1' });
    await cache.unwrap(keys, 'subject-1', wrappedKey(), { subject: 's1' });
    assert.equal(unwraps(), 2);
    assert.equal(cache.size, 1);
  });

  test('evicted key is unwrapped again', async () => {
    const { keys, unwraps } = countingProvider();
    const cache = new DataKeyCache();
    const wrapped = wrappedKey();
    await cache.unwrap(keys, 'subject-1', wrapped, { subject: 's1' });
    cache.evict('subject-1');
    assert.equal(cache.size, 0);
    await cache.unwrap(keys, 'subject-1', wrapped, { subject: 's1' });
    assert.equal(unwraps(), 2);
  });

  test('least recently used entry leaves first', async () => {
    const { keys, unwraps } = countingProvider();
    const cache = new DataKeyCache({ maxEntries: 2 });
    const a = wrappedKey();
    const b = wrappedKey();
    await cache.unwrap(keys, 'a', a, { subject: 'a' });
    await cache.unwrap(keys, 'b', b, { subject: 'b' });
    await cache.unwrap(keys, 'a', a, { subject: 'a' });
    await cache.unwrap(keys, 'c', wrappedKey(), { subject: 'c' });
    assert.equal(cache.size, 2);
    assert.equal(unwraps(), 3);
    await cache.unwrap(keys, 'a', a, { subject: 'a' });
    assert.equal(unwraps(), 3, 'a was used recently and stays');
    await cache.unwrap(keys, 'b', b, { subject: 'b' });
    assert.equal(unwraps(), 4, 'b was the oldest and left');
  });

  test('expired entry is a miss', async () => {
    const { keys, unwraps } = countingProvider();
    const cache = new DataKeyCache({ maxAgeMs: 0 });
    const wrapped = wrappedKey();
    await cache.unwrap(keys, 'subject-1', wrapped, { subject: 's1' });
    await cache.unwrap(keys, 'subject-1', wrapped, { subject: 's1' });
    assert.equal(unwraps(), 2);
  });
});
