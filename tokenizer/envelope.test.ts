import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { decryptValue, encryptValue } from './envelope.ts';

const key = randomBytes(32);
const aad = 'customer.email.sub_abcdefghijklmnopqrstuvwxyz';
const FAILED = { code: 'internal', message: 'value could not be decrypted' };

describe('envelope', () => {
  test('blob layout is format byte, nonce, ciphertext, tag', () => {
    const blob = encryptValue(key, 'abc', aad);
    assert.equal(blob[0], 0x01);
    assert.equal(blob.length, 1 + 12 + 3 + 16);
  });

  test('same value encrypts differently each time', () => {
    assert.notDeepEqual(encryptValue(key, 'abc', aad), encryptValue(key, 'abc', aad));
  });

  test('property: decrypt inverts encrypt', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme' }), fc.string(), (plaintext, context) => {
        assert.equal(decryptValue(key, encryptValue(key, plaintext, context), context), plaintext);
      }),
    );
  });

  test('other AAD, key, flipped bit or truncation fail with one message', () => {
    const blob = encryptValue(key, 'Zoë', aad);
    assert.throws(() => decryptValue(key, blob, 'customer.phone.sub_abcdefghijklmnopqrstuvwxyz'), FAILED);
    assert.throws(() => decryptValue(randomBytes(32), blob, aad), FAILED);
    assert.throws(() => decryptValue(key, blob.subarray(0, 20), aad), FAILED);
    assert.throws(() => decryptValue(key, Buffer.alloc(0), aad), FAILED);
    assert.throws(() => decryptValue(randomBytes(16), blob, aad), FAILED);
    for (const index of [0, 1, 13, blob.length - 1]) {
      const tampered = Buffer.from(blob);
      tampered[index] = (tampered[index] ?? 0) ^ 1;
      assert.throws(() => decryptValue(key, tampered, aad), FAILED, `byte ${index}`);
    }
  });

  test('failure carries no cause', () => {
    assert.throws(
      () => decryptValue(key, Buffer.alloc(40), aad),
      (error: Error) => error.cause === undefined,
    );
  });

  test('rejects a data key of the wrong size', () => {
    assert.throws(() => encryptValue(randomBytes(16), 'abc', aad), { code: 'internal' });
  });
});
