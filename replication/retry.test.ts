import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DomicileError } from '../policy/errors.ts';
import { errorCode, retryDelayMs } from './retry.ts';

describe('retryDelayMs', () => {
  const policy = { baseMs: 1000, maxMs: 60_000 };

  test('doubles the ceiling per attempt', () => {
    assert.equal(retryDelayMs(1, policy, () => 1), 1000);
    assert.equal(retryDelayMs(2, policy, () => 1), 2000);
    assert.equal(retryDelayMs(5, policy, () => 1), 16_000);
  });

  test('jitter stays in the upper half', () => {
    assert.equal(retryDelayMs(3, policy, () => 0), 2000);
    assert.equal(retryDelayMs(3, policy, () => 0.5), 3000);
    for (let sample = 0; sample < 200; sample += 1) {
      const delay = retryDelayMs(4, policy);
      assert.ok(delay >= 4000, `delay ${delay} is below the range`);
      assert.ok(delay <= 8000, `delay ${delay} is above the range`);
    }
  });

  test('caps at maxMs', () => {
    assert.equal(retryDelayMs(30, policy, () => 1), 60_000);
    assert.equal(retryDelayMs(10_000, policy, () => 1), 60_000);
  });

  test('treats zero attempts as the first', () => {
    assert.equal(retryDelayMs(0, policy, () => 1), 1000);
  });
});

describe('errorCode', () => {
  test('takes the DomicileError code', () => {
    assert.equal(errorCode(new DomicileError('unavailable', 'down')), 'unavailable');
  });

  test('takes a system error code', () => {
    const error = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), { code: 'ECONNREFUSED' });
    assert.equal(errorCode(error), 'ECONNREFUSED');
  });

  test('takes an SDK error name', () => {
    const error = new Error('The specified bucket does not exist');
    error.name = 'NoSuchBucket';
    assert.equal(errorCode(error), 'NoSuchBucket');
  });

  test('never returns the message', () => {
    assert.equal(errorCode(new Error('erika@example.de is bad')), 'unknown');
    assert.equal(errorCode('erika@example.de'), 'unknown');
    const error = Object.assign(new Error('x'), { code: 'erika@example.de' });
    assert.equal(errorCode(error), 'unknown');
  });
});
