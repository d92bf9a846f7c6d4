import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { DEFAULT_ALPHABET, FF1 } from './ff1.ts';

/** FF1 sample values of NIST SP 800-38G (examples of the NIST Cryptographic Standards and Guidelines site). */
const NIST_SAMPLES = [
  { sample: 1, key: '2B7E151628AED2A6ABF7158809CF4F3C', tweak: '', radix: 10, plaintext: '0123456789', ciphertext: '2433477484' },
  { sample: 2, key: '2B7E151628AED2A6ABF7158809CF4F3C', tweak: '39383736353433323130', radix: 10, plaintext: '0123456789', ciphertext: '6124200773' },
  { sample: 3, key: '2B7E151628AED2A6ABF7158809CF4F3C', tweak: '3737373770717273373737', radix: 36, plaintext: '0123456789abcdefghi', ciphertext: 'a9tv40mll9kdu509eum' },
  { sample: 4, key: '2B7E151628AED2A6ABF7158809CF4F3CEF4359D8D580AA4F', tweak: '', radix: 10, plaintext: '0123456789', ciphertext: '2830668132' },
  { sample: 5, key: '2B7E151628AED2A6ABF7158809CF4F3CEF4359D8D580AA4F', tweak: '39383736353433323130', radix: 10, plaintext: '0123456789', ciphertext: '2496655549' },
  { sample: 6, key: '2B7E151628AED2A6ABF7158809CF4F3CEF4359D8D580AA4F', tweak: '3737373770717273373737', radix: 36, plaintext: '0123456789abcdefghi', ciphertext: 'xbj3kv35jrawxv32ysr' },
  { sample: 7, key: '2B7E151628AED2A6ABF7158809CF4F3CEF4359D8D580AA4F7F036D6F04FC6A94', tweak: '', radix: 10, plaintext: '0123456789', ciphertext: '6657667009' },
  { sample: 8, key: '2B7E151628AED2A6ABF7158809CF4F3CEF4359D8D580AA4F7F036D6F04FC6A94', tweak: '39383736353433323130', radix: 10, plaintext: '0123456789', ciphertext: '1001623463' },
  { sample: 9, key: '2B7E151628AED2A6ABF7158809CF4F3CEF4359D8D580AA4F7F036D6F04FC6A94', tweak: '3737373770717273373737', radix: 36, plaintext: '0123456789abcdefghi', ciphertext: 'xs8a0azh2avyalyzuwd' },
];

/** Forces the BigInt path for every length, to check it against the Number path. */
class BigIntFF1 extends FF1 {
  protected override readonly exactModulusLimit = 0;
}

const KEY_256 = Buffer.from(NIST_SAMPLES[8]?.key ?? '', 'hex');

describe('FF1 NIST SP 800-38G samples', () => {
  for (const sample of NIST_SAMPLES) {
    const bits = (sample.key.length / 2) * 8;
    const key = Buffer.from(sample.key, 'hex');
    const tweak = Buffer.from(sample.tweak, 'hex');

    test(`sample ${sample.sample} (AES-${bits}, radix ${sample.radix}) encrypts`, () => {
      assert.equal(new FF1(key, sample.radix).encrypt(sample.plaintext, tweak), sample.ciphertext);
    });

    test(`sample ${sample.sample} (AES-${bits}, radix ${sample.radix}) decrypts`, () => {
      assert.equal(new FF1(key, sample.radix).decrypt(sample.ciphertext, tweak), sample.plaintext);
    });

    test(`sample ${sample.sample} on the BigInt path`, () => {
      const ff1 = new BigIntFF1(key, sample.radix);
      assert.equal(ff1.encrypt(sample.plaintext, tweak), sample.ciphertext);
      assert.equal(ff1.decrypt(sample.ciphertext, tweak), sample.plaintext);
    });
  }
});

describe('FF1 domain floor', () => {
  test('rejects radix^length below 1,000,000', () => {
    const ff1 = new FF1(KEY_256, 10);
    assert.throws(() => ff1.encrypt('12345'), {
      code: 'invalid_value',
      message: 'is too short for FF1: radix 10 needs at least 6 characters so that radix^length >= 1000000',
    });
    assert.throws(() => ff1.decrypt('12345'), { code: 'invalid_value' });
  });

  test('accepts exactly 1,000,000 values', () => {
    assert.equal(new FF1(KEY_256, 10).encrypt('000000').length, 6);
  });

  test('minimum length per radix', () => {
    assert.equal(new FF1(KEY_256, 2).minLength(), 20);
    assert.equal(new FF1(KEY_256, 10).minLength(), 6);
    assert.equal(new FF1(KEY_256, 16).minLength(), 5);
    assert.equal(new FF1(KEY_256, 36).minLength(), 4);
  });
});

describe('FF1 input checks', () => {
  test('rejects characters outside the alphabet without naming them', () => {
    assert.throws(() => new FF1(KEY_256, 10).encrypt('12345a789'), {
      code: 'invalid_value',
      message: 'contains a character outside the FF1 alphabet of radix 10',
    });
  });

  test('rejects bad keys, radixes and alphabets', () => {
    assert.throws(() => new FF1(Buffer.alloc(20), 10), { code: 'internal' });
    assert.throws(() => new FF1(KEY_256, 1), { code: 'internal' });
    assert.throws(() => new FF1(KEY_256, 37), { code: 'internal' });
    assert.throws(() => new FF1(KEY_256, 3, 'aab'), { code: 'internal' });
  });

  test('custom alphabet maps numerals by position', () => {
    const digits = new FF1(KEY_256, 10).encrypt('0123456789');
    const letters = new FF1(KEY_256, 10, 'abcdefghij').encrypt('abcdefghij');
    assert.equal(letters, [...digits].map((digit) => 'abcdefghij'[Number(digit)]).join(''));
  });

  test('key is not enumerable', () => {
    assert.ok(!Object.keys(new FF1(KEY_256, 10)).includes('cipher'));
  });
});

const radixAndText = fc.integer({ min: 2, max: 36 }).chain((radix) => {
  let minLength = 1;
  while (radix ** minLength < 1_000_000) {
    minLength++;
  }
  const numeral = fc.integer({ min: 0, max: radix - 1 }).map((i) => DEFAULT_ALPHABET.charAt(i));
  const text = fc.array(numeral, { minLength: Math.max(minLength, 2), maxLength: 40 }).map((chars) => chars.join(''));
  return fc.tuple(fc.constant(radix), text);
});

const keyBytes = fc.constantFrom(16, 24, 32).chain((length) => fc.uint8Array({ minLength: length, maxLength: length }));

describe('FF1 properties', () => {
  test('decrypt inverts encrypt', () => {
    fc.assert(
      fc.property(keyBytes, radixAndText, fc.uint8Array({ maxLength: 40 }), (key, [radix, text], tweak) => {
        const ff1 = new FF1(Buffer.from(key), radix);
        assert.equal(ff1.decrypt(ff1.encrypt(text, Buffer.from(tweak)), Buffer.from(tweak)), text);
      }),
    );
  });

  test('ciphertext keeps length and alphabet', () => {
    fc.assert(
      fc.property(keyBytes, radixAndText, (key, [radix, text]) => {
        const ciphertext = new FF1(Buffer.from(key), radix).encrypt(text);
        assert.equal(ciphertext.length, text.length);
        const alphabet = DEFAULT_ALPHABET.slice(0, radix);
        assert.ok([...ciphertext].every((char) => alphabet.includes(char)));
      }),
    );
  });

  test('Number and BigInt paths agree', () => {
    fc.assert(
      fc.property(keyBytes, radixAndText, fc.uint8Array({ maxLength: 20 }), (key, [radix, text], tweak) => {
        const expected = new BigIntFF1(Buffer.from(key), radix).encrypt(text, Buffer.from(tweak));
        assert.equal(new FF1(Buffer.from(key), radix).encrypt(text, Buffer.from(tweak)), expected);
      }),
    );
  });

  test('tweak changes the ciphertext', () => {
    const ff1 = new FF1(KEY_256, 10);
    assert.notEqual(ff1.encrypt('0123456789', Buffer.from('a')), ff1.encrypt('0123456789', Buffer.from('b')));
  });
});
