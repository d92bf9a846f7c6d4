import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadPolicyFile } from '../policy/load.ts';
import { verifyAudit } from './audit.ts';
import { openAuditAnchorer, verifyAuditAnchors } from './audit-anchor.ts';
import { loadKeyring, rotateTokenizationSecret } from './keyring-store.ts';
import { rewrapKeys } from './rewrap.ts';
import { closeTestVault, openTestVault, silentLogger, testDatabases, type OpenedTestDatabase, type TestVault } from './testing.ts';
import { retireTokenizationSecret, tokenizationKeyUsage } from './tokenization-retire.ts';
import type { Actor } from './types.ts';
import { createVault } from './vault.ts';

const policy = loadPolicyFile(fileURLToPath(new URL('../examples/policy.yaml', import.meta.url)));
const actor: Actor = { id: 'retire-test', location: 'in-country' };
const operator: Actor = { id: 'operator:test', location: 'in-country' };

for (const database of testDatabases()) {
  describe(`retired tokenization keys on ${database.name}`, () => {
    let db: OpenedTestDatabase;
    let store: TestVault;

    before(async () => {
      ({ db, store } = await openTestVault(database, policy));
    });
    after(() => closeTestVault(db, store));

    test('a version with audit entries retires and its entries still verify', async () => {
      const anchorPath = join(db.dataDir, 'anchors.jsonl');
      // Audit entries and an anchor under version 1; the erasure removes the blind index that needed version 1.
      const created = await store.vault.create({ recordType: 'customer', values: { name: 'Retire Synthetic', email: 'retire.synthetic@example.org' }, actor, purpose: 'signup' });
      await store.vault.read({ subjectToken: created.subjectToken, recordType: 'customer', actor, purpose: 'support' });
      await (await openAuditAnchorer({ db, keyring: store.keyring, path: anchorPath, logger: silentLogger() })).anchorOnce();
      await store.vault.erase({ subjectToken: created.subjectToken, actor, purpose: 'support' });
      const usage = await tokenizationKeyUsage(db.pool, 1);
      assert.ok(usage.auditEntries > 0);
      assert.equal(usage.blindIndexes + usage.randomTokens + usage.partialCopies, 0);

      await rotateTokenizationSecret(db, store.keys);
      const rotated = await loadKeyring(db, store.keys);
      await retireTokenizationSecret(db, store.keys, rotated, 1, operator);

      // A KEK rotation rewraps the retained audit keys like a secret.
      await store.keys.rotate();
      const rewrapped = await rewrapKeys(db, store.keys);
      assert.equal(rewrapped.tokenizationSecrets, 2);

      const reloaded = await loadKeyring(db, store.keys);
      assert.equal(reloaded.has(1), false);
      assert.equal(reloaded.hasAuditKeys(1), true);
      assert.throws(() => reloaded.derive('blind-index', 'customer.email', 1), /not in the keyring/);
      const count = Number((await db.pool.query<{ n: string }>('SELECT count(*) AS n FROM audit_log')).rows[0]?.n);
      assert.deepEqual(await verifyAudit(db, reloaded), { ok: true, count });
      const anchors = await verifyAuditAnchors(db, reloaded, anchorPath);
      assert.equal(anchors.ok, true);

      // The gateway keeps working under the new version, and the chain keeps verifying.
      const vault = createVault({ db, policy, keys: store.keys, keyring: reloaded, logger: silentLogger() });
      await vault.create({ recordType: 'customer', values: { name: 'After Retire', email: 'after.retire@example.org' }, actor, purpose: 'signup' });
      assert.deepEqual(await verifyAudit(db, reloaded), { ok: true, count: count + 1 });
    });

    test('a retired version cannot be retired again', async () => {
      const keyring = await loadKeyring(db, store.keys);
      await assert.rejects(retireTokenizationSecret(db, store.keys, keyring, 1, operator), /does not exist or was already retired/);
    });
  });
}
