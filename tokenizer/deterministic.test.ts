import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { base32Encode } from './base32.ts';
import { blindIndex } from './blind-index.ts';
import { deterministicToken, hmacSha256, parseToken } from './deterministic.ts';
import { Keyring, generateTokenizationSecret } from './keyring.ts';
import { generateRandomToken } from './random.ts';

const hex = (text: string): Buffer => Buffer.from(text, 'hex');
const ascii = (text: string): Buffer => Buffer.from(text, 'ascii');

/** RFC 4231 section 4, HMAC-SHA-256 results. Test case 5 (truncated output) does not apply. */
const RFC_4231 = [
  {
    name: 'test case 1',
    key: Buffer.alloc(20, 0x0b),
    data: ascii('Hi There'),
    mac: 'b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7',
  },
  {
    name: 'test case 2',
    key: ascii('Jefe'),
    data: ascii('what do ya want for nothing?'),
    mac: '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843',
  },
  {
    name: 'test case 3',
    key: Buffer.alloc(20, 0xaa),
    data: Buffer.alloc(50, 0xdd),
    mac: '773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe',
  },
  {
    name: 'test case 4',
    key: hex('0102030405060708090a0b0c0d0e0f10111213141516171819'),
    data: Buffer.alloc(50, 0xcd),
    mac: '82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b',
  },
  {
    name: 'test case 6',
    key: Buffer.alloc(131, 0xaa),
    data: ascii('Test Using Larger Than Block-Size Key - Hash Key First'),
    mac: '60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54',
  },
  {
    name: 'test case 7',
    key: Buffer.alloc(131, 0xaa),
    data: ascii(
      'This is a test using a larger than block-size key and a larger than block-size data. ' +
        'The key needs to be hashed before being used by the HMAC algorithm.',
    ),
    mac: '9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2',
  },
];

const fixedKeyring = (): Keyring =>
  new Keyring(
    new Map([
      [1, Buffer.alloc(32, 1)],
      [2, Buffer.alloc(32, 2)],
    ]),
    2,
  );

describe('hmacSha256', () => {
  for (const vector of RFC_4231) {
    test(`RFC 4231 ${vector.name}`, () => {
      assert.equal(hmacSha256(vector.key, vector.data).toString('hex'), vector.mac);
    });
  }

  test('string input is hashed as UTF-8', () => {
    const key = Buffer.alloc(32, 7);
    assert.deepEqual(hmacSha256(key, 'Zoë'), hmacSha256(key, Buffer.from('Zoë', 'utf8')));
  });
});

describe('base32Encode', () => {
  test('RFC 4648 section 10 vectors, lowercase, no padding', () => {
    const cases = [
      ['', ''],
      ['f', 'my'],
      ['fo', 'mzxq'],
      ['foo', 'mzxw6'],
      ['foob', 'mzxw6yq'],
      ['fooba', 'mzxw6ytb'],
      ['foobar', 'mzxw6ytboi'],
    ] as const;
    for (const [input, expected] of cases) {
      assert.equal(base32Encode(ascii(input)), expected, input);
    }
  });
});

describe('deterministicToken', () => {
  test('is det_v<version>_ and base32 of the first 20 HMAC bytes', () => {
    const keyring = fixedKeyring();
    const token = deterministicToken(keyring, 'customer.email', 'ana.lima@example.com');
    const mac = hmacSha256(keyring.derive('deterministic', 'customer.email', 2), 'ana.lima@example.com');
    assert.equal(token, `det_v2_${base32Encode(mac.subarray(0, 20))}`);
    assert.match(token, /^det_v2_[a-z2-7]{32}$/);
  });

  test('stored format is pinned for a fixed secret', () => {
    // Tokens stored abroad depend on HKDF salt, info layout, HMAC and base32: this must never change.
    const keyring = new Keyring(new Map([[1, Buffer.alloc(32, 1)]]), 1);
    assert.equal(deterministicToken(keyring, 'customer.email', 'ana.lima@example.com'), 'det_v1_cg6repdsip2nhxuq667cjlzj7noytchy');
  });

  test('older version gives the token of that version', () => {
    const keyring = fixedKeyring();
    const old = deterministicToken(keyring, 'customer.email', 'x', 1);
    assert.match(old, /^det_v1_/);
    assert.notEqual(old.slice(7), deterministicToken(keyring, 'customer.email', 'x').slice(7));
  });

  test('unknown version is rejected', () => {
    assert.throws(() => deterministicToken(fixedKeyring(), 'customer.email', 'x', 9), { code: 'internal' });
  });

  test('property: same value, namespace and key give the same token', () => {
    const keyring = new Keyring(new Map([[1, generateTokenizationSecret()]]), 1);
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme' }), (value) => {
        assert.equal(deterministicToken(keyring, 'a.b', value), deterministicToken(keyring, 'a.b', value));
      }),
    );
  });

  test('property: distinct namespaces give distinct tokens', () => {
    const keyring = new Keyring(new Map([[1, generateTokenizationSecret()]]), 1);
    const namespace = fc.stringMatching(/^[a-z][a-zA-Z0-9_]{0,20}\.[a-z][a-zA-Z0-9_]{0,20}$/);
    fc.assert(
      fc.property(namespace, namespace, fc.string({ unit: 'grapheme' }), (first, second, value) => {
        fc.pre(first !== second);
        assert.notEqual(deterministicToken(keyring, first, value), deterministicToken(keyring, second, value));
      }),
    );
  });

  test('property: distinct values give distinct tokens', () => {
    const keyring = new Keyring(new Map([[1, generateTokenizationSecret()]]), 1);
    fc.assert(
      fc.property(fc.string(), fc.string(), (first, second) => {
        fc.pre(first !== second);
        assert.notEqual(deterministicToken(keyring, 'a.b', first), deterministicToken(keyring, 'a.b', second));
      }),
    );
  });
});

describe('parseToken', () => {
  test('parses a deterministic token', () => {
    const token = deterministicToken(fixedKeyring(), 'customer.email', 'x');
    assert.deepEqual(parseToken(token), { kind: 'deterministic', version: 2, body: token.slice(7) });
  });

  test('parses a random token', () => {
    const token = generateRandomToken();
    assert.match(token, /^rnd_v1_[a-z2-7]{26}$/);
    assert.deepEqual(parseToken(token), { kind: 'random', version: 1, body: token.slice(7) });
  });

  test('rejects malformed tokens', () => {
    const body = 'a'.repeat(32);
    for (const token of ['', 'det_v1_', `det_v0_${body}`, `det_v01_${body}`, `det_v1_${body}a`, `det_v1_${'A'.repeat(32)}`, `det_v1_${'1'.repeat(32)}`, `xyz_v1_${body}`, `rnd_v1_${body}`, `sub_${body}`]) {
      assert.equal(parseToken(token), undefined, token);
    }
  });
});

describe('blindIndex', () => {
  test('is 32 bytes, keyed apart from tokens', () => {
    const keyring = fixedKeyring();
    const index = blindIndex(keyring, 'customer.email', 'x');
    assert.equal(index.length, 32);
    assert.deepEqual(index, hmacSha256(keyring.derive('blind-index', 'customer.email'), 'x'));
    assert.notDeepEqual(index, hmacSha256(keyring.derive('deterministic', 'customer.email'), 'x'));
  });

  test('differs between namespaces and versions', () => {
    const keyring = fixedKeyring();
    assert.notDeepEqual(blindIndex(keyring, 'a.b', 'x'), blindIndex(keyring, 'a.c', 'x'));
    assert.notDeepEqual(blindIndex(keyring, 'a.b', 'x', 1), blindIndex(keyring, 'a.b', 'x', 2));
  });
});

describe('Keyring', () => {
  test('rejects a secret of the wrong size', () => {
    assert.throws(() => new Keyring(new Map([[1, Buffer.alloc(16)]]), 1), { code: 'internal' });
  });

  test('rejects a missing current version', () => {
    assert.throws(() => new Keyring(new Map([[1, Buffer.alloc(32)]]), 2), { code: 'internal' });
  });

  test('derives distinct keys per purpose', () => {
    const keyring = fixedKeyring();
    const keys = (['deterministic', 'blind-index', 'ff1', 'audit'] as const).map((purpose) => keyring.derive(purpose, 'a.b').toString('hex'));
    assert.equal(new Set(keys).size, 4);
  });

  test('secrets are not enumerable', () => {
    const keyring = fixedKeyring();
    assert.deepEqual(Object.keys(keyring), ['currentVersion']);
    assert.doesNotMatch(JSON.stringify(keyring), /0101/);
  });

  test('lists versions in order', () => {
    assert.deepEqual(fixedKeyring().versions(), [1, 2]);
  });
});
