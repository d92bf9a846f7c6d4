import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadPolicyFile } from '../policy/load.ts';
import { loadKeyring } from './keyring-store.ts';
import { rewrapKeys } from './rewrap.ts';
import { closeTestVault, openTestVault, testDatabases, type OpenedTestDatabase, type TestVault } from './testing.ts';
import type { Actor } from './types.ts';

const policy = loadPolicyFile(fileURLToPath(new URL('../examples/policy.yaml', import.meta.url)));
const actor: Actor = { id: 'rewrap-test', location: 'in-country' };

for (const database of testDatabases()) {
  describe(`KEK rewrap on ${database.name}`, () => {
    let db: OpenedTestDatabase;
    let store: TestVault;

    before(async () => {
      ({ db, store } = await openTestVault(database, policy));
    });
    after(() => closeTestVault(db, store));

    test('rewrap moves every key to the new KEK', async () => {
      const tokens: string[] = [];
      for (let i = 0; i < 5; i += 1) {
        const created = await store.vault.create({
          recordType: 'customer',
          values: { name: `Rewrap Synthetic ${i}`, email: `rewrap.${i}@example.org` },
          actor,
          purpose: 'signup',
        });
        tokens.push(created.subjectToken);
      }
      const erasedToken = tokens.pop() ?? '';
      await store.vault.erase({ subjectToken: erasedToken, actor, purpose: 'support' });
      const oldVersion = store.keys.currentVersion();
      const blindBefore = store.keyring.derive('blind-index', 'customer.email');

      const newVersion = await store.keys.rotate();
      assert.notEqual(newVersion, oldVersion);
      const progress: Array<[number, number]> = [];
      const result = await rewrapKeys(db, store.keys, { batchSize: 2, onProgress: (done, total) => progress.push([done, total]) });
      assert.deepEqual(result, { dataKeys: 4, tokenizationSecrets: 1 });
      assert.deepEqual(progress.at(-1), [4, 4]);

      const versions = await db.pool.query<{ kek_version: string }>(
        'SELECT kek_version FROM data_keys UNION ALL SELECT kek_version FROM tokenization_keys',
      );
      assert.ok(versions.rows.every((row) => row.kek_version === newVersion));

      for (const subjectToken of tokens) {
        const view = await store.vault.read({ subjectToken, recordType: 'customer', actor, purpose: 'support' });
        assert.match(String(view.values['email']), /^rewrap\.\d@example\.org$/);
      }
      const keyring = await loadKeyring(db, store.keys);
      assert.deepEqual(keyring.derive('blind-index', 'customer.email'), blindBefore);
      assert.deepEqual(await rewrapKeys(db, store.keys), { dataKeys: 0, tokenizationSecrets: 0 });
    });
  });
}
