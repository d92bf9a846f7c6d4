import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { DomicileError } from '../policy/errors.ts';
import { loadPolicyFile } from '../policy/load.ts';
import { policySchema, type Policy } from '../policy/schema.ts';
import { loadKeyring } from './keyring-store.ts';
import { createKekRewrapRunner } from './kek-rotation.ts';
import { startMaintenanceWorker } from './maintenance.ts';
import { RETENTION_ACTOR, eraseLapsedSubjects } from './retention.ts';
import { closeTestVault, openTestVault, silentLogger, testDatabases, type OpenedTestDatabase, type TestVault } from './testing.ts';
import type { Actor } from './types.ts';
import type { VaultDeps } from './vault-common.ts';

const examplePolicy = loadPolicyFile(fileURLToPath(new URL('../examples/policy.yaml', import.meta.url)));
const customer = examplePolicy.recordTypes['customer'];
assert.ok(customer !== undefined);
const policy: Policy = { ...examplePolicy, recordTypes: { ...examplePolicy.recordTypes, customer: { ...customer, retention: { days: 30 } } } };
const actor: Actor = { id: 'retention-test', location: 'in-country' };

describe('retention in the policy schema', () => {
  test('retention days must be a positive integer', () => {
    const document = JSON.parse(JSON.stringify(policy)) as { recordTypes: { customer: { retention: unknown } } };
    document.recordTypes.customer.retention = { days: 0 };
    assert.equal(policySchema.safeParse(document).success, false);
    document.recordTypes.customer.retention = { days: 1.5 };
    assert.equal(policySchema.safeParse(document).success, false);
    document.recordTypes.customer.retention = { days: 30, hours: 2 };
    assert.equal(policySchema.safeParse(document).success, false);
    document.recordTypes.customer.retention = { days: 30 };
    assert.equal(policySchema.safeParse(document).success, true);
  });
});

for (const database of testDatabases()) {
  describe(`retention on ${database.name}`, () => {
    let db: OpenedTestDatabase;
    let store: TestVault;
    let deps: VaultDeps;

    before(async () => {
      ({ db, store } = await openTestVault(database, policy));
      deps = { db, policy, keys: store.keys, keyring: await loadKeyring(db, store.keys), logger: silentLogger() };
    });
    after(() => closeTestVault(db, store));

    test('lapsed subjects are erased once', async () => {
      const tokens: string[] = [];
      for (let i = 0; i < 6; i += 1) {
        const created = await store.vault.create({ recordType: 'customer', values: { name: `Retention Synthetic ${i}`, email: `retention.${i}@example.org` }, actor, purpose: 'signup' });
        tokens.push(created.subjectToken);
      }
      const lapsed = tokens.slice(0, 4);
      await db.pool.query(
        `UPDATE records SET updated_at = now() - interval '31 days'
         WHERE subject_id IN (SELECT id FROM subjects WHERE token = ANY($1::text[]))`,
        [lapsed],
      );
      // Changed 29 days ago: within the retention period.
      await db.pool.query(`UPDATE records SET updated_at = now() - interval '29 days' WHERE subject_id = (SELECT id FROM subjects WHERE token = $1)`, [tokens[4]]);

      const passes = await Promise.all([eraseLapsedSubjects(deps, { batchSize: 3 }), eraseLapsedSubjects(deps, { batchSize: 3 })]);
      const more = await eraseLapsedSubjects(deps, { batchSize: 3 });
      assert.equal(passes[0] + passes[1] + more, 4);
      assert.equal(await eraseLapsedSubjects(deps), 0);

      for (const token of lapsed) {
        await assert.rejects(
          store.vault.read({ subjectToken: token, recordType: 'customer', actor, purpose: 'support' }),
          (error: unknown) => error instanceof DomicileError && error.code === 'gone',
        );
      }
      for (const token of tokens.slice(4)) {
        const view = await store.vault.read({ subjectToken: token, recordType: 'customer', actor, purpose: 'support' });
        assert.ok(view.values['name'] !== undefined);
      }
      const audit = await db.pool.query<{ actor_id: string; purpose: string; count: string }>(
        `SELECT actor_id, purpose, count(*) AS count FROM audit_log WHERE action = 'subject.erase' GROUP BY actor_id, purpose`,
      );
      assert.deepEqual(audit.rows.map((row) => ({ ...row, count: Number(row.count) })), [{ actor_id: RETENTION_ACTOR.id, purpose: 'system:retention', count: 4 }]);
    });

    test('maintenance worker erases lapsed subjects', async () => {
      const created = await store.vault.create({ recordType: 'customer', values: { name: 'Worker Lapsed', email: 'worker.lapsed@example.org' }, actor, purpose: 'signup' });
      await db.pool.query(`UPDATE records SET updated_at = now() - interval '45 days' WHERE subject_id = (SELECT id FROM subjects WHERE token = $1)`, [created.subjectToken]);
      const rewrap = createKekRewrapRunner({ db, keys: store.keys, openKeys: () => Promise.resolve(store.keys), logger: silentLogger() });
      const worker = startMaintenanceWorker({ deps, rewrap, intervalMs: 50, logger: silentLogger() });
      try {
        let erased = false;
        for (let attempt = 0; attempt < 200 && !erased; attempt += 1) {
          const row = await db.pool.query<{ erased_at: Date | null }>('SELECT erased_at FROM subjects WHERE token = $1', [created.subjectToken]);
          erased = row.rows[0]?.erased_at !== null;
          if (!erased) {
            await new Promise((resolve) => setTimeout(resolve, 50));
          }
        }
        assert.equal(erased, true, 'the worker did not erase the lapsed subject');
      } finally {
        await worker.stop();
      }
    });

    test('retention purpose must be a policy purpose', async () => {
      const created = await store.vault.create({ recordType: 'customer', values: { name: 'Retention Purpose', email: 'retention.purpose@example.org' }, actor, purpose: 'signup' });
      await db.pool.query(`UPDATE records SET updated_at = now() - interval '40 days' WHERE subject_id = (SELECT id FROM subjects WHERE token = $1)`, [created.subjectToken]);
      await assert.rejects(
        eraseLapsedSubjects(deps, { purpose: 'not_a_purpose', leaseMs: 0 }),
        (error: unknown) => error instanceof DomicileError && error.code === 'invalid_request',
      );
      assert.equal(await eraseLapsedSubjects(deps, { purpose: 'support' }), 1);
    });
  });
}
