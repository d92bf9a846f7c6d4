import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import type { FieldPolicy } from '../policy/index.ts';
import { deterministicToken } from './deterministic.ts';
import { applyForm, fieldNamespace } from './form.ts';
import { formatPreservingDetokenize, formatPreservingToken } from './format-preserving.ts';
import { Keyring } from './keyring.ts';

const keyring = new Keyring(new Map([[1, Buffer.alloc(32, 3)]]), 1);

function field(overrides: Partial<FieldPolicy>): FieldPolicy {
  return { type: 'string', class: 'direct', egress: 'token', required: false, maxLength: 256, searchable: false, ...overrides };
}

describe('fieldNamespace', () => {
  test('defaults to recordType.field', () => {
    assert.equal(fieldNamespace('customer', 'email', field({})), 'customer.email');
  });

  test('uses a shared namespace when set', () => {
    assert.equal(fieldNamespace('customer', 'email', field({ token: { kind: 'deterministic', namespace: 'email' } })), 'email');
  });
});

describe('applyForm', () => {
  const context = { keyring, namespace: 'customer.email' };

  test('never leaves the field out', () => {
    assert.equal(applyForm(field({}), 'never', 'ana@example.com', context), undefined);
  });

  test('clear returns the value', () => {
    assert.equal(applyForm(field({}), 'clear', 'ana@example.com', context), 'ana@example.com');
  });

  test('token defaults to deterministic', () => {
    assert.equal(applyForm(field({}), 'token', 'ana@example.com', context), deterministicToken(keyring, 'customer.email', 'ana@example.com'));
  });

  test('numbers and booleans are tokenized by their text', () => {
    assert.equal(applyForm(field({ type: 'number' }), 'token', 42, context), deterministicToken(keyring, 'customer.email', '42'));
  });

  test('random tokens need the store callback', () => {
    const random = field({ token: { kind: 'random' } });
    assert.throws(() => applyForm(random, 'token', 'x', context), { code: 'internal' });
    assert.equal(applyForm(random, 'token', 'x', { ...context, randomToken: (namespace, value) => `${namespace}:${value.length}` }), 'customer.email:1');
  });

  test('format-preserving phone keeps plus, country code and digit count', () => {
    const phone = field({ type: 'phone', token: { kind: 'format-preserving' } });
    const token = applyForm(phone, 'token', '+447700900123', { keyring, namespace: 'customer.phone' });
    assert.equal(typeof token, 'string');
    assert.match(String(token), /^\+44[0-9]{10}$/);
    assert.notEqual(token, '+447700900123');
    assert.equal(formatPreservingDetokenize(keyring, 'customer.phone', 'phone', String(token)), '+447700900123');
  });

  test('format-preserving digits keep length and leading zeros', () => {
    const nationalId = field({ type: 'nationalId', token: { kind: 'format-preserving' } });
    const token = String(applyForm(nationalId, 'token', '012345672', { keyring, namespace: 'customer.nationalId' }));
    assert.match(token, /^[0-9]{9}$/);
    assert.equal(formatPreservingDetokenize(keyring, 'customer.nationalId', 'nationalId', token), '012345672');
  });

  test('mask and generalize apply the field rules', () => {
    const masked = field({ mask: { keep: 'last', count: 4, maskChar: '•' } });
    assert.equal(applyForm(masked, 'mask', '+447700900123', context), '•••••••••0123');
    const birthDate = field({ type: 'date', generalize: { date: 'year' } });
    assert.equal(applyForm(birthDate, 'generalize', '1988-07-14', context), '1988');
    const age = field({ type: 'date', generalize: { ageBand: 10 } });
    assert.equal(applyForm(age, 'generalize', '1988-07-14', { ...context, now: new Date('2024-07-14T00:00:00Z') }), '30-39');
  });

  test('mask or generalize without a rule is a policy error', () => {
    assert.throws(() => applyForm(field({}), 'mask', 'x', context), { code: 'invalid_policy' });
    assert.throws(() => applyForm(field({}), 'generalize', 'x', context), { code: 'invalid_policy' });
  });
});

describe('formatPreservingToken', () => {
  test('rejects values that are neither phones nor digit strings', () => {
    assert.throws(() => formatPreservingToken(keyring, 'a.b', 'postalCode', 'EC1A 1BB'), { code: 'invalid_value' });
    assert.throws(() => formatPreservingToken(keyring, 'a.b', 'string', '12345'), { code: 'invalid_value' });
  });

  test('rejects a national number shorter than six digits', () => {
    assert.throws(() => formatPreservingToken(keyring, 'a.b', 'phone', '+6831234'), {
      code: 'invalid_value',
      message: 'has a national number shorter than the 6 digits that format-preserving tokens need',
    });
  });

  test('namespaces give different tokens', () => {
    assert.notEqual(formatPreservingToken(keyring, 'a.b', 'nationalId', '0123456789'), formatPreservingToken(keyring, 'a.c', 'nationalId', '0123456789'));
  });

  test('property: phone tokens round trip and keep their shape', () => {
    const nationalNumber = fc.stringMatching(/^[0-9]{6,12}$/);
    const callingCode = fc.constantFrom('1', '7', '39', '44', '49', '81', '353', '971', '800');
    fc.assert(
      fc.property(callingCode, nationalNumber, (code, national) => {
        const phone = `+${code}${national}`;
        const token = formatPreservingToken(keyring, 'customer.phone', 'phone', phone);
        assert.equal(token.length, phone.length);
        assert.ok(token.startsWith(`+${code}`));
        assert.match(token, /^\+[0-9]+$/);
        assert.equal(formatPreservingDetokenize(keyring, 'customer.phone', 'phone', token), phone);
      }),
    );
  });

  test('property: digit tokens are deterministic and round trip', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[0-9]{6,30}$/), (digits) => {
        const token = formatPreservingToken(keyring, 'customer.nationalId', 'nationalId', digits);
        assert.equal(token, formatPreservingToken(keyring, 'customer.nationalId', 'nationalId', digits));
        assert.match(token, new RegExp(`^[0-9]{${digits.length}}$`));
        assert.equal(formatPreservingDetokenize(keyring, 'customer.nationalId', 'nationalId', token), digits);
      }),
    );
  });
});
