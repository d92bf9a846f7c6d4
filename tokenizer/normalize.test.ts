import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { FieldType } from '../policy/index.ts';
import { deterministicToken } from './deterministic.ts';
import { Keyring } from './keyring.ts';
import { normalizeValue } from './normalize.ts';

const options = { defaultRegion: 'DE', maxLength: 256 };
const keyring = new Keyring(new Map([[1, Buffer.alloc(32, 9)]]), 1);

const normalize = (type: FieldType, raw: unknown, region = 'DE'): unknown =>
  normalizeValue(type, raw, { defaultRegion: region, maxLength: 256 });
const tokenOf = (type: FieldType, raw: string): string =>
  deterministicToken(keyring, 'customer.field', String(normalizeValue(type, raw, options)));

/** Synthetic values that real users enter; none belongs to a real person. */
const NAME_NFC = 'Zo\u00eb \u00d1\u00fa\u00f1ez-\u00c1lvarez';
const NAME_NFD = 'Zoe\u0308 N\u0303u\u0301n\u0303ez-A\u0301lvarez';

describe('normalizeValue string', () => {
  test('NFC and NFD names give the same token', () => {
    assert.notEqual(NAME_NFC, NAME_NFD);
    assert.equal(normalize('string', NAME_NFD), NAME_NFC);
    assert.equal(tokenOf('string', NAME_NFD), tokenOf('string', NAME_NFC));
  });

  test('keeps scripts, emoji and apostrophes as typed', () => {
    for (const name of ['山田 太郎', 'محمد عبد الله', 'Ana 👩🏽‍⚕️ Lima', 'D’Angelo O\'Connor-Smith']) {
      assert.equal(normalize('string', name), name);
    }
  });

  test('folds no case in names', () => {
    // Case mapping depends on the language: Turkish dotted I, Greek final sigma.
    assert.equal(normalize('string', 'İstanbul'), 'İstanbul');
    assert.equal(normalize('string', 'ΟΔΥΣΣΕΥΣ'), 'ΟΔΥΣΣΕΥΣ');
    assert.notEqual(tokenOf('string', 'ΟΔΥΣΣΕΥΣ'), tokenOf('string', 'Οδυσσεύς'));
    assert.notEqual(tokenOf('string', 'D’Angelo'), tokenOf('string', "D'Angelo"));
  });

  test('keeps the case of non-ASCII letters in email local parts', () => {
    assert.equal(normalize('email', 'İpek@Example.com'), 'İpek@example.com');
    assert.equal(normalize('email', 'ΣΟΦΊΑ@example.gr'), 'ΣΟΦΊΑ@example.gr');
  });

  test('keeps line breaks of addresses and turns CR LF into LF', () => {
    assert.equal(normalize('string', 'Flat 2\nThe Old Mill\n12 High St\nLondon EC1A 1BB'), 'Flat 2\nThe Old Mill\n12 High St\nLondon EC1A 1BB');
    assert.equal(normalize('string', '〒060-0000\r\n北海道札幌市中央区北1条西1-1-1'), '〒060-0000\n北海道札幌市中央区北1条西1-1-1');
  });

  test('trims surrounding white space', () => {
    assert.equal(normalize('string', '  Ana Lima \t'), 'Ana Lima');
  });

  test('rejects NUL with a message that does not contain the value', () => {
    assert.throws(
      () => normalize('string', 'Ana\u0000Lima'),
      (error: Error & { code?: string }) => {
        assert.equal(error.code, 'invalid_value');
        assert.equal(error.message, 'contains a NUL character');
        assert.doesNotMatch(error.message, /Ana|Lima/);
        return true;
      },
    );
  });

  test('rejects other control characters and lone surrogates', () => {
    assert.throws(() => normalize('string', 'Ana\u0007Lima'), { code: 'invalid_value', message: 'contains a control character' });
    assert.throws(() => normalize('string', 'Ana\u0085Lima'), { code: 'invalid_value' });
    assert.throws(() => normalize('string', 'Ana\ud800Lima'), { code: 'invalid_value', message: 'contains a lone surrogate (invalid UTF-16)' });
  });

  test('rejects line breaks outside string fields', () => {
    assert.throws(() => normalize('email', 'ana\n@example.com'), { code: 'invalid_value', message: 'contains a control character or line break' });
    assert.throws(() => normalize('postalCode', 'EC1A\t1BB'), { code: 'invalid_value' });
  });

  test('rejects empty, non-string and too long values', () => {
    assert.throws(() => normalize('string', '   '), { message: 'must not be empty' });
    assert.throws(() => normalize('string', 42), { message: 'must be a string' });
    assert.throws(() => normalizeValue('string', 'abcd', { defaultRegion: 'DE', maxLength: 3 }), { message: 'is longer than 3 characters' });
  });

  test('counts length in code points', () => {
    assert.equal(normalizeValue('string', '👩🏽‍⚕️', { defaultRegion: 'DE', maxLength: 5 }), '👩🏽‍⚕️');
    assert.throws(() => normalizeValue('string', '👩🏽‍⚕️', { defaultRegion: 'DE', maxLength: 4 }), { code: 'invalid_value' });
  });
});

describe('normalizeValue email', () => {
  test('IDN and punycode domains give the same token', () => {
    assert.equal(normalize('email', 'jürgen.müller@münchen.example'), 'jürgen.müller@xn--mnchen-3ya.example');
    assert.equal(normalize('email', 'jürgen.müller@xn--mnchen-3ya.example'), 'jürgen.müller@xn--mnchen-3ya.example');
    assert.equal(tokenOf('email', 'jürgen.müller@münchen.example'), tokenOf('email', 'jürgen.müller@xn--mnchen-3ya.example'));
  });

  test('keeps plus tags and lowercases ASCII letters', () => {
    assert.equal(normalize('email', 'Ana.Lima+Newsletter@Example.COM'), 'ana.lima+newsletter@example.com');
    assert.notEqual(tokenOf('email', 'ana.lima+newsletter@example.com'), tokenOf('email', 'ana.lima@example.com'));
  });

  test('keeps the case of non-ASCII letters of the local part', () => {
    assert.equal(normalize('email', 'JÜRGEN@example.com'), 'jÜrgen@example.com');
  });

  test('trims surrounding spaces', () => {
    assert.equal(normalize('email', ' ana.lima@example.com '), 'ana.lima@example.com');
  });

  test('NFD local part equals NFC local part', () => {
    assert.equal(normalize('email', 'ju\u0308rgen@example.com'), 'j\u00fcrgen@example.com');
  });

  test('drops the trailing dot of the root', () => {
    assert.equal(normalize('email', 'ana@example.com.'), 'ana@example.com');
  });

  test('rejects malformed addresses', () => {
    for (const raw of ['ana', '@example.com', 'ana@', 'ana lima@example.com', 'ana..lima@example.com', '.ana@example.com', 'ana@localhost', 'ana@-example.com', 'ana@example..com', 'ana@1.2.3.4', '"ana lima"@example.com', `${'a'.repeat(65)}@example.com`]) {
      assert.throws(() => normalize('email', raw), { code: 'invalid_value' }, raw);
    }
  });
});

describe('normalizeValue phone', () => {
  test('international numbers become E.164', () => {
    assert.equal(normalize('phone', '+44 7700 900123'), '+447700900123');
    assert.equal(normalize('phone', '+39 06 1234 5678'), '+390612345678');
    assert.equal(normalize('phone', '0044 20 7946 0958'), '+442079460958');
  });

  test('national numbers use the default region', () => {
    assert.equal(normalize('phone', '020 7946 0958', 'GB'), '+442079460958');
    assert.equal(normalize('phone', '030 12345678', 'DE'), '+493012345678');
  });

  test('a trunk prefix in parentheses is dropped', () => {
    assert.equal(normalize('phone', '+44 (0)20 7946 0958'), '+442079460958');
    assert.equal(normalize('phone', '+49 (0)30 12345678'), '+493012345678');
  });

  test('Arabic-Indic and Eastern Arabic-Indic digits are read', () => {
    assert.equal(normalize('phone', '+٤٤ ٢٠ ٧٩٤٦ ٠٩٥٨'), '+442079460958');
    assert.equal(normalize('phone', '+۴۴ ۲۰ ۷۹۴۶ ۰۹۵۸'), '+442079460958');
    assert.equal(normalize('phone', '＋４４ ２０ ７９４６ ０９５８'), '+442079460958');
  });

  test('rejects impossible numbers and extensions', () => {
    assert.throws(() => normalize('phone', '+44 12'), { code: 'invalid_value' });
    assert.throws(() => normalize('phone', 'not a number'), { code: 'invalid_value' });
    assert.throws(() => normalize('phone', '+44 20 7946 0958 ext. 12'), { message: 'has an extension, which phone fields do not accept' });
  });
});

describe('normalizeValue date', () => {
  test('keeps a leap day', () => {
    assert.equal(normalize('date', '2000-02-29'), '2000-02-29');
  });

  test('a timestamp with an offset keeps its local date', () => {
    assert.equal(normalize('date', '1988-07-14T23:30:00-05:00'), '1988-07-14');
    assert.equal(normalize('date', '1988-07-15T00:30:00+02:00'), '1988-07-15');
    assert.equal(normalize('date', '1988-07-14T23:30:00.123Z'), '1988-07-14');
  });

  test('rejects impossible dates and times', () => {
    for (const raw of ['1999-02-29', '2000-13-01', '2000-00-10', '2000-04-31', '0000-01-01', '2000-1-1', '14.07.1988', '1988-07-14T24:00:00Z', '1988-07-14T10:00:00+25:00']) {
      assert.throws(() => normalize('date', raw), { code: 'invalid_value' }, raw);
    }
  });
});

describe('normalizeValue country, postal code, national id', () => {
  test('country codes are uppercased and checked', () => {
    assert.equal(normalize('country', ' de '), 'DE');
    assert.equal(normalize('country', 'GB'), 'GB');
    for (const raw of ['UK', 'XK', 'EU', 'ZZ', 'DEU', 'D']) {
      assert.throws(() => normalize('country', raw), { message: 'is not an ISO 3166-1 alpha-2 country code' }, raw);
    }
  });

  test('postal codes are uppercased with inner space collapsed', () => {
    assert.equal(normalize('postalCode', ' ec1a   1bb '), 'EC1A 1BB');
    assert.equal(normalize('postalCode', '060-0000'), '060-0000');
    assert.equal(normalize('postalCode', '０６０-００００'), '060-0000');
    assert.throws(() => normalize('postalCode', '〒060-0000'), { code: 'invalid_value' });
  });

  test('national ids lose spaces and hyphens and keep leading zeros', () => {
    assert.equal(normalize('nationalId', '012345672'), '012345672');
    assert.equal(normalize('nationalId', '012-345 672'), '012345672');
    assert.equal(normalize('nationalId', 'ab 12 34 56 c'), 'AB123456C');
    assert.throws(() => normalize('nationalId', '0123#45672'), { code: 'invalid_value' });
  });
});

describe('normalizeValue number and boolean', () => {
  test('numbers from JSON numbers and decimal strings', () => {
    assert.equal(normalize('number', 12.5), 12.5);
    assert.equal(normalize('number', '12.5'), 12.5);
    assert.equal(normalize('number', -0), 0);
    assert.ok(Object.is(normalize('number', -0), 0));
  });

  test('rejects non-finite and non-numeric numbers', () => {
    for (const raw of [Number.NaN, Number.POSITIVE_INFINITY, '12,5', '0x10', '', true, null]) {
      assert.throws(() => normalize('number', raw), { code: 'invalid_value' }, String(raw));
    }
  });

  test('booleans from booleans and their strings', () => {
    assert.equal(normalize('boolean', false), false);
    assert.equal(normalize('boolean', 'true'), true);
    assert.throws(() => normalize('boolean', 'yes'), { message: 'must be true or false' });
  });
});
