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
  return { name: `Read Person ${n}`, email: `read.${n}@example.test`, country: 'DE' };
}

function codeOf(outcome: PromiseSettledResult<unknown> | undefined): string | undefined {
  if (outcome?.status !== 'rejected') return undefined;
  const reason: unknown = outcome.reason;
  return reason instanceof DomicileError ? reason.code : 'not a DomicileError';
}

for (const database of testDatabases()) {
  describe(`grouped reads on ${database.name}`, () => {
    let db: OpenedTestDatabase;
    let store: TestVault;

    before(async () => {
      ({ db, store } = await openTestVault(database, policy));
    });

    after(() => closeTestVault(db, store));

    test('concurrent reads keep their own results', async () => {
      const one = await store.vault.create({ recordType: 'customer', values: customer(1), actor: alice, purpose: 'signup' });
      const two = await store.vault.create({ recordType: 'customer', values: customer(2), actor: alice, purpose: 'signup' });
      const erased = await store.vault.create({ recordType: 'customer', values: customer(3), actor: alice, purpose: 'signup' });
      await store.vault.read({ subjectToken: erased.subjectToken, recordType: 'customer', actor: alice, purpose: 'support' });
      await store.vault.erase({ subjectToken: erased.subjectToken, actor: alice, purpose: 'support' });
      const before = await db.pool.query<{ count: string }>("SELECT count(*) FROM audit_log WHERE action = 'record.read'");

      const outcomes = await Promise.allSettled([
        store.vault.read({ subjectToken: one.subjectToken, recordType: 'customer', actor: alice, purpose: 'support' }),
        store.vault.read({ subjectToken: two.subjectToken, recordType: 'customer', actor: bob, purpose: 'support', fields: ['email'] }),
        store.vault.read({ subjectToken: erased.subjectToken, recordType: 'customer', actor: alice, purpose: 'support' }),
        store.vault.read({ subjectToken: 'sub_aaaaaaaaaaaaaaaaaaaaaaaaaa', recordType: 'customer', actor: alice, purpose: 'support' }),
        store.vault.read({ subjectToken: one.subjectToken, recordType: 'order', actor: alice, purpose: 'support' }),
        store.vault.read({ subjectToken: one.subjectToken, recordType: 'customer', actor: alice, purpose: 'curiosity' }),
      ]);

      const first = outcomes[0];
      assert.equal(first?.status === 'fulfilled' && first.value.values['email'], 'read.1@example.test');
      const second = outcomes[1];
      assert.deepEqual(second?.status === 'fulfilled' && second.value.values, { email: 'read.2@example.test' });
      assert.equal(codeOf(outcomes[2]), 'gone');
      assert.equal(codeOf(outcomes[3]), 'not_found');
      assert.equal(codeOf(outcomes[4]), 'not_found');
      assert.equal(codeOf(outcomes[5]), 'invalid_request');

      const reads = await db.pool.query<{ actor_id: string; subject_token: string; fields: string[] }>(
        "SELECT actor_id, subject_token, fields FROM audit_log WHERE action = 'record.read' ORDER BY seq OFFSET $1",
        [Number(before.rows[0]?.count ?? 0)],
      );
      assert.equal(reads.rows.length, 2, 'one audit entry per record returned');
      const bobRead = reads.rows.find((row) => row.actor_id === bob.id);
      assert.deepEqual(bobRead?.fields, ['email']);
      assert.equal(bobRead?.subject_token, two.subjectToken);
      assert.equal((await verifyAudit(db, store.keyring)).ok, true);
    });

    test('reads beside writes keep one chain', async () => {
      const created = await store.vault.create({ recordType: 'customer', values: customer(10), actor: alice, purpose: 'signup' });
      const operations: Array<Promise<unknown>> = [];
      for (let i = 0; i < 20; i += 1) {
        operations.push(store.vault.read({ subjectToken: created.subjectToken, recordType: 'customer', actor: alice, purpose: 'support' }));
        operations.push(store.vault.create({ recordType: 'customer', values: customer(100 + i), actor: alice, purpose: 'signup' }));
        if (i % 5 === 0) {
          operations.push(store.vault.update({ subjectToken: created.subjectToken, recordType: 'customer', values: { name: `Renamed ${i}` }, actor: alice, purpose: 'support' }));
        }
      }
      await Promise.all(operations);

      const read = await store.vault.read({ subjectToken: created.subjectToken, recordType: 'customer', actor: alice, purpose: 'support' });
      assert.match(String(read.values['name']), /^Renamed /);
      assert.equal((await verifyAudit(db, store.keyring)).ok, true);
    });

    test('read after erasure is gone', async () => {
      const created = await store.vault.create({ recordType: 'customer', values: customer(50), actor: alice, purpose: 'signup' });
      await store.vault.read({ subjectToken: created.subjectToken, recordType: 'customer', actor: alice, purpose: 'support' });
      await store.vault.erase({ subjectToken: created.subjectToken, actor: alice, purpose: 'support' });
      await assert.rejects(
        store.vault.read({ subjectToken: created.subjectToken, recordType: 'customer', actor: alice, purpose: 'support' }),
        (error: unknown) => error instanceof DomicileError && error.code === 'gone',
      );
    });
  });
}
