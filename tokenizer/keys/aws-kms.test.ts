import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Express } from 'express';
import request from 'supertest';
import { createGatewayApp } from '../../gateway/gateway-listener.ts';
import { DomicileError } from '../../policy/errors.ts';
import { loadPolicyFile } from '../../policy/load.ts';
import { createCredential } from '../../store/credentials.ts';
import { loadKeyring } from '../../store/keyring-store.ts';
import { silentLogger, testDatabases, type OpenedTestDatabase } from '../../store/testing.ts';
import { createVault, type Vault } from '../../store/vault.ts';
import { startKmsDouble, type KmsDouble } from '../../test/kms-double.ts';
import { AwsKmsKeyProvider, type AwsKmsOptions } from './aws-kms.ts';

const CREDENTIALS = { accessKeyId: 'AKIDDOMICILETEST', secretAccessKey: 'test-secret-of-the-double' };
const UNWRAP_FAILED = 'wrapped key could not be unwrapped with AWS KMS';

function providerFor(double: KmsDouble, keyId: string, options: Partial<AwsKmsOptions> = {}): AwsKmsKeyProvider {
  return new AwsKmsKeyProvider({
    keyId,
    region: double.region,
    endpoint: double.endpoint,
    credentials: CREDENTIALS,
    connectionTimeoutMs: 500,
    requestTimeoutMs: 1_000,
    ...options,
  });
}

function isDomicileError(code: string, message?: RegExp | string) {
  return (error: unknown): boolean => {
    assert.ok(error instanceof DomicileError, String(error));
    assert.equal(error.code, code, error.message);
    if (typeof message === 'string') assert.equal(error.message, message);
    if (message instanceof RegExp) assert.match(error.message, message);
    return true;
  };
}

describe('AwsKmsKeyProvider with the KMS double', () => {
  let double: KmsDouble;
  let keyId: string;
  let provider: AwsKmsKeyProvider;

  before(async () => {
    double = await startKmsDouble();
    keyId = double.createKey().keyId;
    provider = providerFor(double, keyId);
  });

  after(async () => {
    await provider.close();
    await double.stop();
  });

  test('generateDataKey round trips 32 bytes', async () => {
    const { plaintext, wrapped } = await provider.generateDataKey({ subject: 'sub_alpha' });
    assert.equal(plaintext.length, 32);
    assert.equal(wrapped.kekVersion, `kms:${keyId}`);
    assert.equal(wrapped.ciphertext.includes(plaintext), false);
    assert.deepEqual(await provider.unwrap(wrapped, { subject: 'sub_alpha' }), plaintext);
  });

  test('wrap and unwrap round trip', async () => {
    const secret = Buffer.alloc(32, 7);
    const wrapped = await provider.wrap(secret, { purpose: 'tokenization-secret', version: '1' });
    assert.deepEqual(await provider.unwrap(wrapped, { version: '1', purpose: 'tokenization-secret' }), secret);
  });

  test('wrong encryption context fails', async () => {
    const { wrapped } = await provider.generateDataKey({ subject: 'sub_alpha' });
    await assert.rejects(provider.unwrap(wrapped, { subject: 'sub_bravo' }), isDomicileError('internal', UNWRAP_FAILED));
    await assert.rejects(provider.unwrap(wrapped, {}), isDomicileError('internal', UNWRAP_FAILED));
    await assert.rejects(provider.unwrap(wrapped, { subject: 'sub_alpha', extra: 'x' }), isDomicileError('internal', UNWRAP_FAILED));
  });

  test('tampered ciphertext fails', async () => {
    const { wrapped } = await provider.generateDataKey({ subject: 'sub_alpha' });
    const tampered = Buffer.from(wrapped.ciphertext);
    tampered[tampered.length - 20] = (tampered[tampered.length - 20] ?? 0) ^ 0x01;
    await assert.rejects(provider.unwrap({ ...wrapped, ciphertext: tampered }, { subject: 'sub_alpha' }), isDomicileError('internal', UNWRAP_FAILED));
    const truncated = wrapped.ciphertext.subarray(0, 10);
    await assert.rejects(provider.unwrap({ ...wrapped, ciphertext: truncated }, { subject: 'sub_alpha' }), isDomicileError('internal', UNWRAP_FAILED));
  });

  test('double base64-encoded ciphertext fails', async () => {
    const { wrapped } = await provider.generateDataKey({ subject: 'sub_alpha' });
    const encodedTwice = Buffer.from(wrapped.ciphertext.toString('base64'), 'utf8');
    await assert.rejects(provider.unwrap({ ...wrapped, ciphertext: encodedTwice }, { subject: 'sub_alpha' }), isDomicileError('internal', UNWRAP_FAILED));
  });

  test('ciphertext of another key fails', async () => {
    const other = providerFor(double, double.createKey().keyId);
    try {
      const { wrapped } = await other.generateDataKey({ subject: 'sub_alpha' });
      const relabeled = { kekVersion: provider.currentVersion(), ciphertext: wrapped.ciphertext };
      await assert.rejects(provider.unwrap(relabeled, { subject: 'sub_alpha' }), isDomicileError('internal', UNWRAP_FAILED));
    } finally {
      await other.close();
    }
  });

  test('disabled key gives unavailable', async () => {
    const disabledKey = double.createKey().keyId;
    const disabled = providerFor(double, disabledKey);
    try {
      const { plaintext, wrapped } = await disabled.generateDataKey({ subject: 'sub_alpha' });
      double.setEnabled(disabledKey, false);
      await assert.rejects(disabled.unwrap(wrapped, { subject: 'sub_alpha' }), isDomicileError('unavailable', /^key provider unavailable: .*disabled/));
      await assert.rejects(disabled.generateDataKey({ subject: 'sub_bravo' }), isDomicileError('unavailable', /^key provider unavailable: /));
      double.setEnabled(disabledKey, true);
      assert.deepEqual(await disabled.unwrap(wrapped, { subject: 'sub_alpha' }), plaintext);
    } finally {
      await disabled.close();
    }
  });

  test('unknown key gives internal naming the key', async () => {
    const unknown = providerFor(double, '00000000-1111-2222-3333-444444444444');
    try {
      await assert.rejects(unknown.generateDataKey({ subject: 'sub_alpha' }), isDomicileError('internal', /00000000-1111-2222-3333-444444444444.*not found/));
      await assert.rejects(unknown.wrap(Buffer.alloc(32), {}), isDomicileError('internal', /not found/));
    } finally {
      await unknown.close();
    }
  });

  test('foreign KEK version is rejected', async () => {
    const decrypts = double.calls.get('Decrypt') ?? 0;
    await assert.rejects(provider.unwrap({ kekVersion: 'local:1', ciphertext: Buffer.alloc(60) }, {}), isDomicileError('internal', /does not belong to AWS KMS/));
    assert.equal(double.calls.get('Decrypt') ?? 0, decrypts);
  });

  test('alias as key id is rejected', () => {
    assert.throws(() => providerFor(double, 'alias/domicile'), isDomicileError('invalid_request', /not an alias/));
    assert.throws(() => providerFor(double, 'arn:aws:kms:eu-central-1:111122223333:alias/domicile'), isDomicileError('invalid_request', /not an alias/));
  });

  test('rotation rewraps with ReEncrypt', async () => {
    const { plaintext, wrapped } = await provider.generateDataKey({ subject: 'sub_alpha' });
    const newKeyId = double.createKey().keyId;
    const rotated = providerFor(double, newKeyId);
    try {
      assert.notEqual(rotated.currentVersion(), provider.currentVersion());
      assert.deepEqual(await rotated.unwrap(wrapped, { subject: 'sub_alpha' }), plaintext, 'old wraps still unwrap after rotation');

      const reEncrypts = double.calls.get('ReEncrypt') ?? 0;
      const rewrapped = await rotated.rewrap(wrapped, { subject: 'sub_alpha' });
      assert.equal(double.calls.get('ReEncrypt'), reEncrypts + 1);
      assert.equal(rewrapped.kekVersion, `kms:${newKeyId}`);
      assert.deepEqual(await rotated.unwrap(rewrapped, { subject: 'sub_alpha' }), plaintext);

      double.setEnabled(keyId, false);
      assert.deepEqual(await rotated.unwrap(rewrapped, { subject: 'sub_alpha' }), plaintext, 'the rewrapped key no longer needs the old key');
      double.setEnabled(keyId, true);
      await assert.rejects(rotated.rewrap(wrapped, { subject: 'sub_bravo' }), isDomicileError('internal', UNWRAP_FAILED));
    } finally {
      double.setEnabled(keyId, true);
      await rotated.close();
    }
  });

  test('provider hides its client from inspection', () => {
    assert.deepEqual(Object.keys(provider).sort(), ['created', 'keyId', 'kind']);
    assert.doesNotMatch(JSON.stringify(provider), /test-secret-of-the-double/);
  });
});

describe('AwsKmsKeyProvider when KMS is down', () => {
  test('stopped KMS gives unavailable', async () => {
    const double = await startKmsDouble();
    const keyId = double.createKey().keyId;
    const provider = providerFor(double, keyId);
    try {
      const { wrapped } = await provider.generateDataKey({ subject: 'sub_alpha' });
      await double.stop();
      await assert.rejects(provider.unwrap(wrapped, { subject: 'sub_alpha' }), isDomicileError('unavailable', /^key provider unavailable: /));
      await assert.rejects(provider.generateDataKey({ subject: 'sub_bravo' }), isDomicileError('unavailable', /^key provider unavailable: /));
    } finally {
      await provider.close();
    }
  });

  test('hung KMS gives unavailable after the request timeout', async () => {
    const double = await startKmsDouble();
    const keyId = double.createKey().keyId;
    const provider = providerFor(double, keyId, { requestTimeoutMs: 200, maxAttempts: 1 });
    try {
      double.delayMs = 5_000;
      await assert.rejects(provider.generateDataKey({ subject: 'sub_alpha' }), isDomicileError('unavailable', /^key provider unavailable: /));
    } finally {
      await provider.close();
      await double.stop();
    }
  });
});

const policy = loadPolicyFile(fileURLToPath(new URL('../../examples/policy.yaml', import.meta.url)));
const person = { name: 'Ylvarra Quendisto', email: 'ylvarra.q4k@example.test', phone: '+49 30 5558 2741', birthDate: '1984-11-02', postalCode: '10115', country: 'DE' };

for (const database of testDatabases()) {
  describe(`vault with AWS KMS keys on ${database.name}`, () => {
    let db: OpenedTestDatabase;
    let double: KmsDouble;
    let provider: AwsKmsKeyProvider;
    let vault: Vault;
    let app: Express;
    let secret: string;
    const actor = { id: 'test', location: 'in-country' } as const;

    before(async () => {
      db = await database.open();
      double = await startKmsDouble();
      provider = providerFor(double, double.createKey().arn);
      const keyring = await loadKeyring(db, provider);
      vault = createVault({ db, policy, keys: provider, keyring, logger: silentLogger() });
      secret = (await createCredential(db, { name: 'crm', location: 'in-country', scopes: { operations: ['records:create', 'records:read'], recordTypes: ['customer'] } })).secret;
      app = createGatewayApp({
        vault,
        db,
        policy,
        keyring,
        logger: silentLogger(),
        appOrigins: ['http://localhost:8080'],
        gatewayOrigin: 'http://localhost:8081',
        ready: async () => true,
      });
    });

    after(async () => {
      await provider.close();
      await double.stop();
      await db.close();
    });

    test('stores KMS key versions and reads the record back', async () => {
      const { subjectToken } = await vault.create({ recordType: 'customer', values: person, actor, purpose: 'signup' });
      const view = await vault.read({ subjectToken, recordType: 'customer', actor, purpose: 'support' });
      assert.equal(view.values['email'], person.email);

      const dataKeys = await db.pool.query<{ kek_version: string }>('SELECT kek_version FROM data_keys');
      const secrets = await db.pool.query<{ kek_version: string }>('SELECT kek_version FROM tokenization_keys');
      for (const row of [...dataKeys.rows, ...secrets.rows]) {
        assert.equal(row.kek_version, provider.currentVersion());
      }
    });

    test('keyring loads again through KMS', async () => {
      const reloaded = await loadKeyring(db, provider);
      assert.equal(reloaded.currentVersion, 1);
    });

    test('API returns 503 for reads and writes when KMS is down', async () => {
      const created = await request(app)
        .post('/api/v1/records')
        .set('Authorization', `Bearer ${secret}`)
        .send({ recordType: 'customer', values: person, purpose: 'signup' });
      assert.equal(created.status, 201, created.text);
      const subjectToken: string = created.body.subjectToken;

      await double.stop();

      const read = await request(app)
        .get(`/api/v1/records/${subjectToken}?recordType=customer`)
        .set('Authorization', `Bearer ${secret}`)
        .set('X-Access-Purpose', 'support');
      assert.equal(read.status, 503, read.text);
      assert.equal(read.body.error.code, 'unavailable');
      assert.doesNotMatch(read.text, /Ylvarra|ylvarra\.q4k/);

      const write = await request(app)
        .post('/api/v1/records')
        .set('Authorization', `Bearer ${secret}`)
        .send({ recordType: 'customer', values: person, purpose: 'signup' });
      assert.equal(write.status, 503, write.text);
      assert.equal(write.body.error.code, 'unavailable');
      assert.doesNotMatch(write.text, /Ylvarra|ylvarra\.q4k/);
    });
  });
}
