import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { DomicileError } from '../policy/errors.ts';
import { loadPolicyFile } from '../policy/load.ts';
import { verifyAudit } from './audit.ts';
import { closeTestVault, openTestVault, testDatabases, type OpenedTestDatabase, type TestVault } from './testing.ts';
import type { Actor } from './types.ts';

const policy = loadPolicyFile(fileURLToPath(new URL('../examples/policy.yaml', import.meta.url)));
const alice: Actor = { id: 'credential:alice', location: 'in-country' };
const bob: Actor = { id: 'credential:bob', location: 'abroad' };

function customer(n: number): Record<string, string> {
  return { name: `Grouped Person ${n}`, email: `grouped.${n}@example.test`, country: 'DE' };
}

for (const database of testDatabases()) {
  describe(`grouped creates on ${database.name}`, () => {
    let db: OpenedTestDatabase;
    let store: TestVault;

    before(async () => {
      ({ db, store } = await openTestVault(database, policy));
    });

    after(() => closeTestVault(db, store));

    test('concurrent creates keep their own results', async () => {
      const outcomes = await Promise.allSettled([
        store.vault.create({ recordType: 'customer', values: customer(1), actor: alice, purpose: 'signup' }),
        store.vault.create({ recordType: 'customer', values: { ...customer(2), email: 'not an email' }, actor: bob, purpose: 'signup' }),
        store.vault.create({ recordType: 'customer', values: customer(3), actor: bob, purpose: 'signup' }),
        store.vault.create({ recordType: 'customer', values: customer(4), actor: alice, purpose: 'curiosity' }),
      ]);
      assert.equal(outcomes[0]?.status, 'fulfilled');
      assert.equal(outcomes[2]?.status, 'fulfilled');
      const invalid = outcomes[1];
      assert.equal(invalid?.status, 'rejected');
      const invalidReason: unknown = invalid.status === 'rejected' ? invalid.reason : undefined;
      assert.ok(invalidReason instanceof DomicileError);
      assert.equal(invalidReason.issues[0]?.path, '$.values.email');
      const badPurpose = outcomes[3];
      assert.equal(badPurpose?.status, 'rejected');
      const purposeReason: unknown = badPurpose.status === 'rejected' ? badPurpose.reason : undefined;
      assert.ok(purposeReason instanceof DomicileError);
      assert.equal(purposeReason.issues[0]?.path, '$.purpose');

      const third = outcomes[2]?.status === 'fulfilled' ? outcomes[2].value.subjectToken : '';
      const versions = await db.pool.query<{ actor_id: string; actor_location: string }>(
        'SELECT v.actor_id, v.actor_location FROM record_versions v JOIN subjects s ON s.id = v.subject_id WHERE s.token = $1',
        [third],
      );
      assert.deepEqual(versions.rows, [{ actor_id: bob.id, actor_location: 'abroad' }]);
      const audit = await db.pool.query<{ actor_id: string }>("SELECT actor_id FROM audit_log WHERE action = 'record.create' AND subject_token = $1", [third]);
      assert.deepEqual(audit.rows, [{ actor_id: bob.id }]);
      assert.equal((await verifyAudit(db, store.keyring)).ok, true);
    });

    test('idempotency keys are per actor', async () => {
      const values = customer(5);
      const [first, again, other] = await Promise.all([
        store.vault.create({ recordType: 'customer', values, actor: alice, purpose: 'signup', idempotencyKey: 'shared-key' }),
        store.vault.create({ recordType: 'customer', values, actor: alice, purpose: 'signup', idempotencyKey: 'shared-key' }),
        store.vault.create({ recordType: 'customer', values, actor: bob, purpose: 'signup', idempotencyKey: 'shared-key' }),
      ]);
      assert.equal(again.subjectToken, first.subjectToken);
      assert.notEqual(other.subjectToken, first.subjectToken);
      await assert.rejects(
        store.vault.create({ recordType: 'customer', values: customer(6), actor: alice, purpose: 'signup', idempotencyKey: 'shared-key' }),
        (error: unknown) => error instanceof DomicileError && error.code === 'conflict',
      );
    });
  });
}
