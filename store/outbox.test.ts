import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadPolicyFile } from '../policy/load.ts';
import { claimOutbox, completeOutbox, failOutbox, outboxStats } from './outbox.ts';
import { closeTestVault, openTestVault, testDatabases, type OpenedTestDatabase, type TestVault } from './testing.ts';
import type { Actor } from './types.ts';

const policy = loadPolicyFile(fileURLToPath(new URL('../examples/policy.yaml', import.meta.url)));
const actor: Actor = { id: 'test-backend', location: 'in-country' };
const values = { name: 'Synthetic Person', email: 'synthetic.person@example.org' };

for (const database of testDatabases()) {
  describe(`outbox on ${database.name}`, () => {
    let db: OpenedTestDatabase;
    let store: TestVault;

    before(async () => {
      ({ db, store } = await openTestVault(database, policy));
    });
    after(() => closeTestVault(db, store));
    beforeEach(async () => {
      // Earlier tests' events would otherwise be claimed first.
      await db.pool.query('UPDATE outbox SET completed_at = now() WHERE completed_at IS NULL');
    });

    test('claim returns only the head event per subject', async () => {
      const a = await store.vault.create({ recordType: 'customer', values, actor, purpose: 'signup' });
      await store.vault.update({ subjectToken: a.subjectToken, recordType: 'customer', values: { country: 'DE' }, actor, purpose: 'support' });
      await store.vault.update({ subjectToken: a.subjectToken, recordType: 'customer', values: { country: 'FR' }, actor, purpose: 'support' });
      const b = await store.vault.create({ recordType: 'customer', values, actor, purpose: 'signup' });

      const first = await claimOutbox(db, { destination: 'aws', limit: 10, leaseMs: 60_000 });
      assert.deepEqual(first.map((event) => [event.subjectToken, event.recordVersion]), [[a.subjectToken, 1], [b.subjectToken, 1]]);
      assert.equal(first[0]?.op, 'upsert');
      assert.equal(first[0]?.recordType, 'customer');
      assert.equal(first[0]?.attempts, 1);

      const whileLeased = await claimOutbox(db, { destination: 'aws', limit: 10, leaseMs: 60_000 });
      assert.deepEqual(whileLeased, []);

      await completeOutbox(db, first.map((event) => event.id));
      const second = await claimOutbox(db, { destination: 'aws', limit: 10, leaseMs: 60_000 });
      assert.deepEqual(second.map((event) => [event.subjectToken, event.recordVersion]), [[a.subjectToken, 2]]);

      await completeOutbox(db, second.map((event) => event.id));
      const third = await claimOutbox(db, { destination: 'aws', limit: 10, leaseMs: 60_000 });
      assert.deepEqual(third.map((event) => event.recordVersion), [3]);
      await completeOutbox(db, third.map((event) => event.id));
    });

    test('failed event blocks its subject until retry time', async () => {
      const a = await store.vault.create({ recordType: 'customer', values, actor, purpose: 'signup' });
      await store.vault.update({ subjectToken: a.subjectToken, recordType: 'customer', values: { country: 'DE' }, actor, purpose: 'support' });

      const [head] = await claimOutbox(db, { destination: 'aws', limit: 10, leaseMs: 60_000 });
      assert.ok(head !== undefined);
      await failOutbox(db, head.id, { errorCode: 'destination_unavailable', retryAt: new Date(Date.now() + 3_600_000) });
      assert.deepEqual(await claimOutbox(db, { destination: 'aws', limit: 10, leaseMs: 60_000 }), []);

      const stats = await outboxStats(db);
      assert.deepEqual(
        stats.map((row) => [row.destination, row.open, row.retrying]),
        [['aws', 2, 1]],
      );

      await failOutbox(db, head.id, { errorCode: 'destination_unavailable', retryAt: new Date(Date.now() - 1000) });
      const [retried] = await claimOutbox(db, { destination: 'aws', limit: 10, leaseMs: 60_000 });
      assert.equal(retried?.id, head.id);
      assert.equal(retried?.attempts, 2);
      await completeOutbox(db, [head.id]);
      const [next] = await claimOutbox(db, { destination: 'aws', limit: 10, leaseMs: 60_000 });
      assert.equal(next?.recordVersion, 2);
      await completeOutbox(db, [next?.id ?? '']);
    });

    test('expired lease makes the event claimable again', async () => {
      await store.vault.create({ recordType: 'customer', values, actor, purpose: 'signup' });
      const [leased] = await claimOutbox(db, { destination: 'aws', limit: 1, leaseMs: 1 });
      assert.ok(leased !== undefined);
      await db.pool.query("UPDATE outbox SET lease_until = now() - interval '1 second' WHERE id = $1", [leased.id]);
      const [again] = await claimOutbox(db, { destination: 'aws', limit: 1, leaseMs: 60_000 });
      assert.equal(again?.id, leased.id);
      assert.equal(again?.attempts, 2);
      await completeOutbox(db, [leased.id]);
    });

    test('concurrent claimers never share an event', async () => {
      for (let i = 0; i < 20; i += 1) {
        await store.vault.create({ recordType: 'customer', values, actor, purpose: 'signup' });
      }
      const batches = await Promise.all(
        Array.from({ length: 4 }, () => claimOutbox(db, { destination: 'aws', limit: 8, leaseMs: 60_000 })),
      );
      const ids = batches.flat().map((event) => event.id);
      assert.equal(new Set(ids).size, ids.length);
      assert.equal(ids.length, 20);
      await completeOutbox(db, ids);
    });

    test('other destinations see no events', async () => {
      await store.vault.create({ recordType: 'customer', values, actor, purpose: 'signup' });
      assert.deepEqual(await claimOutbox(db, { destination: 'elsewhere', limit: 10, leaseMs: 60_000 }), []);
    });
  });
}
