import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { openLocalKeyFile } from '../tokenizer/keys/local-file.ts';
import { createCredential, listCredentials, revokeCredential, verifyCredential } from './credentials.ts';
import { loadKeyring, rotateTokenizationSecret } from './keyring-store.ts';
import { testDatabases, type OpenedTestDatabase } from './testing.ts';

for (const database of testDatabases()) {
  describe(`credentials and keyring on ${database.name}`, () => {
    let db: OpenedTestDatabase;

    before(async () => {
      db = await database.open();
    });
    after(async () => {
      await db.close();
    });

    test('credential secret verifies until revoked', async () => {
      const scopes = { operations: ['records:create' as const, 'records:read' as const], recordTypes: ['customer'] };
      const { id, secret } = await createCredential(db, { name: 'aws-backend', location: 'abroad', scopes });
      assert.match(secret, new RegExp(`^dmc_${id}_[A-Za-z0-9_-]{43}$`));

      const verified = await verifyCredential(db, secret);
      assert.equal(verified?.id, id);
      assert.equal(verified?.location, 'abroad');
      assert.deepEqual(verified?.scopes, scopes);

      const stored = await db.pool.query<{ row: string }>('SELECT row_to_json(c)::text AS row FROM credentials c');
      assert.equal(stored.rows[0]?.row.includes(secret.slice(-43)), false);

      assert.equal(await verifyCredential(db, `${secret.slice(0, -1)}x`), undefined);
      assert.equal(await verifyCredential(db, 'dmc_short'), undefined);

      assert.equal(await revokeCredential(db, id), true);
      assert.equal(await revokeCredential(db, id), false);
      assert.equal(await verifyCredential(db, secret), undefined);
      const listed = await listCredentials(db);
      assert.ok(listed.some((credential) => credential.id === id && credential.revokedAt !== undefined));
    });

    test('invalid scopes are rejected', async () => {
      await assert.rejects(
        createCredential(db, { name: 'bad', location: 'in-country', scopes: { operations: ['records:delete' as never], recordTypes: [] } }),
        { code: 'invalid_request' },
      );
    });

    test('keyring loads the same secrets twice', async () => {
      const keys = await openLocalKeyFile(join(db.dataDir, 'keys', 'kek.json'));
      const first = await loadKeyring(db, keys);
      const second = await loadKeyring(db, keys);
      assert.equal(first.currentVersion, 1);
      assert.deepEqual(first.derive('deterministic', 'customer.email'), second.derive('deterministic', 'customer.email'));
    });

    test('rotation adds a current version', async () => {
      const keys = await openLocalKeyFile(join(db.dataDir, 'keys', 'kek.json'));
      const before = await loadKeyring(db, keys);
      const version = await rotateTokenizationSecret(db, keys);
      assert.equal(version, before.currentVersion + 1);
      const after = await loadKeyring(db, keys);
      assert.equal(after.currentVersion, version);
      assert.deepEqual(after.derive('blind-index', 'customer.email', 1), before.derive('blind-index', 'customer.email', 1));
      const stored = await db.pool.query<{ wrapped: Buffer }>('SELECT wrapped FROM tokenization_keys');
      assert.equal(stored.rowCount, version);
    });
  });
}
