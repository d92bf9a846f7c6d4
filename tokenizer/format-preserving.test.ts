import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import type { FieldPolicy } from '../policy/index.ts';
import { ibanCheckDigits, isIbanValid, isLuhnValid, luhnCheckDigit } from './check-digits.ts';
import { applyForm, tokenKindOf } from './form.ts';
import { DomainFloorError, formatPreservingDetokenize, formatPreservingToken, isBelowDomainFloor, type FormatPreservingOptions } from './format-preserving.ts';
import { Keyring } from './keyring.ts';
import { normalizeValue } from './normalize.ts';

const keyring = new Keyring(new Map([[1, Buffer.alloc(32, 7)], [2, Buffer.alloc(32, 8)]]), 2);

/** RFC 5322 dot-atom local part and a host name of RFC 1123 labels, as mail validators check them. */
const VALID_ADDRESS = /^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+(?:\.[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+)*@(?:(?!-)[a-z0-9-]{1,63}(?<!-)\.)+[a-z]{2,63}$/;

function assertValidAddress(address: string): void {
  assert.match(address, VALID_ADDRESS);
  const at = address.lastIndexOf('@');
  assert.ok(at <= 64, 'local part at most 64 octets');
  assert.ok(address.length - at - 1 <= 253, 'domain at most 253 octets');
}

function roundTrip(type: FieldPolicy['type'], value: string, options: FormatPreservingOptions = {}): string {
  const token = formatPreservingToken(keyring, 'customer.f', type, value, undefined, options);
  assert.equal(formatPreservingDetokenize(keyring, 'customer.f', type, token, undefined, options), value);
  return token;
}

function field(overrides: Partial<FieldPolicy>): FieldPolicy {
  return { type: 'string', class: 'direct', egress: 'token', required: false, maxLength: 256, searchable: false, ...overrides };
}

describe('check digits', () => {
  test('luhn published examples', () => {
    assert.equal(luhnCheckDigit('7992739871'), '3');
    assert.ok(isLuhnValid('79927398713'));
    assert.ok(isLuhnValid('4111111111111111'));
    assert.ok(!isLuhnValid('79927398710'));
  });

  test('iban published examples', () => {
    assert.ok(isIbanValid('DE89370400440532013000'));
    assert.ok(isIbanValid('GB82WEST12345698765432'));
    assert.equal(ibanCheckDigits('GB', 'WEST12345698765432'), '82');
    assert.ok(!isIbanValid('DE88370400440532013000'));
  });
});

describe('format-preserving email', () => {
  test('tokenized domain under .invalid', () => {
    const token = roundTrip('email', 'ana.lima+news@example.com');
    assertValidAddress(token);
    assert.match(token, /^[0-9a-z]{3}\.[0-9a-z]{4}\+[0-9a-z]{4}@([0-9a-z]{8})+\.invalid$/);
    assert.notEqual(token.split('@')[0], 'ana.lima+news');
  });

  test('kept domain', () => {
    const token = roundTrip('email', 'jose_o-neil@mail.example.org', { emailDomain: 'keep' });
    assertValidAddress(token);
    assert.match(token, /^[0-9a-z]{4}_[0-9a-z]-[0-9a-z]{4}@mail\.example\.org$/);
  });

  test('punycode domain round trips', () => {
    const normalized = String(normalizeValue('email', 'Jorg@München.example', { defaultRegion: 'DE', maxLength: 256 }));
    assertValidAddress(roundTrip('email', normalized));
  });

  test('same local part differs per domain', () => {
    const options = { emailDomain: 'keep' } as const;
    const first = formatPreservingToken(keyring, 'c.e', 'email', 'maria@one.example', undefined, options);
    const second = formatPreservingToken(keyring, 'c.e', 'email', 'maria@two.example', undefined, options);
    assert.notEqual(first.split('@')[0], second.split('@')[0]);
  });

  test('short local part below the floor', () => {
    assert.throws(() => formatPreservingToken(keyring, 'c.e', 'email', 'a.b@example.com'), (error: unknown) => {
      assert.ok(error instanceof DomainFloorError);
      assert.equal(error.code, 'invalid_value');
      assert.equal(error.message, 'has 2 letters and digits in the local part, fewer than the 4 that format-preserving tokens need');
      return true;
    });
    assert.ok(isBelowDomainFloor('email', 'abc@example.com'));
    assert.ok(!isBelowDomainFloor('email', 'abcd@example.com'));
  });

  test('non-ASCII local part rejected', () => {
    assert.throws(() => formatPreservingToken(keyring, 'c.e', 'email', 'jürgen@example.com'), (error: unknown) => {
      assert.ok(!(error instanceof DomainFloorError));
      assert.match(String((error as Error).message), /ASCII/);
      return true;
    });
  });

  test('forged domain token rejected', () => {
    assert.throws(() => formatPreservingDetokenize(keyring, 'c.e', 'email', 'abcd@example.com'), { code: 'invalid_value' });
    assert.throws(() => formatPreservingDetokenize(keyring, 'c.e', 'email', 'abcd@abc.invalid'), { code: 'invalid_value' });
  });

  test('very long domain rejected', () => {
    const domain = `${Array.from({ length: 4 }, () => 'a'.repeat(58)).join('.')}.example`;
    assert.throws(() => formatPreservingToken(keyring, 'c.e', 'email', `abcd@${domain}`), { code: 'invalid_value' });
  });

  test('property: shape kept and round trip', () => {
    const atom = fc.stringMatching(/^[a-z0-9!#$%&'*+\-/=?^_`{|}~]{1,12}$/);
    const local = fc
      .array(atom, { minLength: 1, maxLength: 4 })
      .map((atoms) => atoms.join('.'))
      .filter((text) => text.length <= 64 && (text.match(/[0-9a-z]/g)?.length ?? 0) >= 4);
    const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?$/);
    const domain = fc.tuple(fc.array(label, { minLength: 1, maxLength: 4 }), fc.stringMatching(/^[a-z]{2,10}$/)).map(([labels, tld]) => [...labels, tld].join('.'));
    fc.assert(
      fc.property(local, domain, fc.constantFrom<'keep' | 'tokenize'>('keep', 'tokenize'), (localPart, host, emailDomain) => {
        const address = `${localPart}@${host}`;
        const token = roundTrip('email', address, { emailDomain });
        assertValidAddress(token);
        const tokenLocal = token.slice(0, token.lastIndexOf('@'));
        assert.equal(tokenLocal.length, localPart.length);
        assert.equal(tokenLocal.replace(/[0-9a-z]/g, ''), localPart.replace(/[0-9a-z]/g, ''));
        assert.ok(emailDomain === 'keep' ? token.endsWith(`@${host}`) : token.endsWith('.invalid'));
      }),
    );
  });
});

describe('format-preserving check digits', () => {
  test('luhn token keeps a valid check digit', () => {
    const token = roundTrip('nationalId', '4111111111111111', { checkDigit: 'luhn' });
    assert.match(token, /^[0-9]{16}$/);
    assert.ok(isLuhnValid(token));
  });

  test('luhn value with a wrong check digit rejected', () => {
    assert.throws(() => formatPreservingToken(keyring, 'c.n', 'nationalId', '4111111111111112', undefined, { checkDigit: 'luhn' }), {
      code: 'invalid_value',
      message: 'has an invalid Luhn check digit',
    });
  });

  test('iban keeps country code, layout and check digits', () => {
    const token = roundTrip('nationalId', 'GB82WEST12345698765432', { checkDigit: 'iban-mod97' });
    assert.ok(isIbanValid(token));
    assert.match(token, /^GB[0-9]{2}WEST[0-9]{14}$/);
    const german = roundTrip('nationalId', 'DE89370400440532013000', { checkDigit: 'iban-mod97' });
    assert.ok(isIbanValid(german));
    assert.match(german, /^DE[0-9]{20}$/);
  });

  test('iban with five letters encrypts them', () => {
    const bban = 'ABCDE123456789';
    const iban = `MT${ibanCheckDigits('MT', bban)}${bban}`;
    const token = roundTrip('nationalId', iban, { checkDigit: 'iban-mod97' });
    assert.match(token, /^MT[0-9]{2}[A-Z]{5}[0-9]{9}$/);
    assert.ok(isIbanValid(token));
  });

  test('iban with wrong check digits rejected', () => {
    assert.throws(() => formatPreservingToken(keyring, 'c.n', 'nationalId', 'DE88370400440532013000', undefined, { checkDigit: 'iban-mod97' }), {
      code: 'invalid_value',
      message: 'has invalid IBAN check digits',
    });
  });

  test('property: luhn valid and round trip', () => {
    const luhnNumber = fc.stringMatching(/^[0-9]{6,24}$/).map((payload) => payload + luhnCheckDigit(payload));
    fc.assert(
      fc.property(luhnNumber, (value) => {
        const token = roundTrip('nationalId', value, { checkDigit: 'luhn' });
        assert.equal(token.length, value.length);
        assert.ok(isLuhnValid(token));
      }),
    );
  });

  test('property: iban valid, layout kept and round trip', () => {
    const iban = fc
      .tuple(fc.stringMatching(/^[A-Z]{2}$/), fc.stringMatching(/^[0-9A-Z]{11,30}$/))
      .filter(([, bban]) => bban.replace(/[A-Z]/g, '').length >= 6)
      .map(([country, bban]) => `${country}${ibanCheckDigits(country, bban)}${bban}`);
    fc.assert(
      fc.property(iban, (value) => {
        const token = roundTrip('nationalId', value, { checkDigit: 'iban-mod97' });
        assert.ok(isIbanValid(token));
        assert.equal(token.slice(0, 2), value.slice(0, 2));
        assert.equal(token.slice(4).replace(/[0-9]/g, '9').replace(/[A-Z]/g, 'A'), value.slice(4).replace(/[0-9]/g, '9').replace(/[A-Z]/g, 'A'));
      }),
    );
  });
});

describe('domain floor fallback', () => {
  const short = field({ type: 'nationalId', token: { kind: 'format-preserving' } });
  const withFallback = field({ type: 'nationalId', token: { kind: 'format-preserving', fallback: 'random' } });

  test('short value rejected without fallback', () => {
    assert.equal(tokenKindOf(short, '12345'), 'format-preserving');
    assert.throws(() => applyForm(short, 'token', '12345', { keyring, namespace: 'c.n' }), (error: unknown) => error instanceof DomainFloorError);
  });

  test('short value gets a random token with fallback', () => {
    assert.equal(tokenKindOf(withFallback, '12345'), 'random');
    assert.equal(tokenKindOf(withFallback, '123456'), 'format-preserving');
    const token = applyForm(withFallback, 'token', '12345', { keyring, namespace: 'c.n', randomToken: (namespace, value) => `rnd:${namespace}:${value.length}` });
    assert.equal(token, 'rnd:c.n:5');
    assert.throws(() => applyForm(withFallback, 'token', '12345', { keyring, namespace: 'c.n' }), { code: 'internal' });
  });

  test('other invalid values still rejected with fallback', () => {
    assert.equal(tokenKindOf(withFallback, 'AB12'), 'format-preserving');
    assert.throws(() => applyForm(withFallback, 'token', 'AB12', { keyring, namespace: 'c.n' }), { code: 'invalid_value' });
  });

  test('email below the floor falls back', () => {
    const email = field({ type: 'email', token: { kind: 'format-preserving', fallback: 'random' } });
    assert.equal(tokenKindOf(email, 'li@example.com'), 'random');
    assert.equal(tokenKindOf(email, 'lina@example.com'), 'format-preserving');
  });
});

describe('format-preserving stored formats', () => {
  // Tokens abroad must keep resolving, so a change of alphabet, tweak or layout must fail here.
  test('known tokens unchanged', () => {
    assert.equal(formatPreservingToken(keyring, 'customer.f', 'email', 'ana.lima+news@example.com'), 'vek.f8ur+ou8h@991qmpg6h338rn2n.invalid');
    assert.equal(formatPreservingToken(keyring, 'customer.f', 'email', 'ana.lima+news@example.com', undefined, { emailDomain: 'keep' }), 'vek.f8ur+ou8h@example.com');
    assert.equal(formatPreservingToken(keyring, 'customer.f', 'nationalId', '4111111111111111', undefined, { checkDigit: 'luhn' }), '4558294612910627');
    assert.equal(formatPreservingToken(keyring, 'customer.f', 'nationalId', 'GB82WEST12345698765432', undefined, { checkDigit: 'iban-mod97' }), 'GB39WEST32536988102922');
  });
});

describe('format-preserving versions', () => {
  test('old version still detokenizes', () => {
    const old = formatPreservingToken(keyring, 'c.e', 'email', 'maria.silva@example.com', 1);
    assert.equal(formatPreservingDetokenize(keyring, 'c.e', 'email', old, 1), 'maria.silva@example.com');
    assert.notEqual(old, formatPreservingToken(keyring, 'c.e', 'email', 'maria.silva@example.com'));
  });
});
