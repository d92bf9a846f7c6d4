import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { graphemes } from './graphemes.ts';
import { maskValue } from './mask.ts';

describe('maskValue', () => {
  test('keeps the last digits', () => {
    assert.equal(maskValue('4111111111111111', { keep: 'last', count: 4, maskChar: '•' }), '••••••••••••1111');
  });

  test('keeps the first characters', () => {
    assert.equal(maskValue('ana.lima@example.com', { keep: 'first', count: 2, maskChar: '*' }), 'an******************');
  });

  test('never splits an emoji sequence', () => {
    const name = 'Ana 👩🏽‍⚕️ Lima';
    assert.equal(maskValue(name, { keep: 'first', count: 5, maskChar: '•' }), 'Ana 👩🏽‍⚕️•••••');
    assert.equal(maskValue(name, { keep: 'last', count: 4, maskChar: '•' }), '••••••Lima');
    assert.equal(maskValue('👩🏽‍⚕️👩🏽‍⚕️', { keep: 'last', count: 1, maskChar: '•' }), '•👩🏽‍⚕️');
  });

  test('shows at most half of a short value', () => {
    assert.equal(maskValue('123456', { keep: 'last', count: 4, maskChar: '•' }), '•••456');
    assert.equal(maskValue('1', { keep: 'last', count: 4, maskChar: '•' }), '•');
  });

  test('count 0 masks everything', () => {
    assert.equal(maskValue('山田 太郎', { keep: 'first', count: 0, maskChar: '•' }), '•••••');
  });

  test('rejects a lone surrogate as mask character', () => {
    assert.throws(() => maskValue('123456', { keep: 'last', count: 2, maskChar: '\ud800' }), { code: 'invalid_policy' });
  });

  test('property: never yields lone surrogates and keeps the cluster count', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: 'grapheme', maxLength: 40 }),
        fc.constantFrom('first' as const, 'last' as const),
        fc.integer({ min: 0, max: 64 }),
        fc.constantFrom('•', '*', 'x', '█'),
        (value, keep, count, maskChar) => {
          const masked = maskValue(value, { keep, count, maskChar });
          assert.doesNotMatch(masked, /\p{Cs}/u);
          assert.equal(graphemes(masked).length, graphemes(value).length);
        },
      ),
    );
  });

  test('property: output of astral text is well-formed', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 40 }), fc.integer({ min: 0, max: 64 }), (value, count) => {
        fc.pre(!/\p{Cs}/u.test(value));
        assert.doesNotMatch(maskValue(value, { keep: 'last', count, maskChar: '•' }), /\p{Cs}/u);
      }),
    );
  });
});
