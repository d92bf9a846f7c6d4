import assert from 'node:assert/strict';
import { after, beforeEach, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadPolicyFile } from '../policy/load.ts';
import { appendAudit, auditValueHmac, verifyAudit } from './audit.ts';
import { withTransaction } from './database.ts';
import { createTestVault, testDatabases, type OpenedTestDatabase, type TestVault } from './testing.ts';
import type { Actor } from './types.ts';

const policy = loadPolicyFile(fileURLToPath(new URL('../examples/policy.yaml', import.meta.url)));
const actor: Actor = { id: 'auditor-test', location: 'in-country' };

for (const database of testDatabases()) {
  describe(`audit log on ${database.name}`, () => {
    let db: OpenedTestDatabase | undefined;
    let store: TestVault;

    /** A fresh database with five chained rows, so each test can tamper freely. */
    beforeEach(async () => {
      await db?.close();
      db = await database.open();
      store = await createTestVault(db, policy);
      const opened = db;
      for (let i = 1; i <= 5; i += 1) {
        await withTransaction(opened, (client) =>
          appendAudit(client, store.keyring, { actor, action: 'record.read', purpose: 'support', fields: [`field${i}`] }),
        );
      }
    });
    after(async () => {
      await db?.close();
    });

    function opened(): OpenedTestDatabase {
      assert.ok(db !== undefined);
      return db;
    }

    test('intact chain verifies', async () => {
      assert.deepEqual(await verifyAudit(opened(), store.keyring), { ok: true, count: 5 });
    });

    test('edited row is reported', async () => {
      await opened().pool.query("UPDATE audit_log SET actor_id = 'someone-else' WHERE seq = 3");
      const result = await verifyAudit(opened(), store.keyring);
      assert.equal(result.ok, false);
      assert.equal(!result.ok && result.seq, 3);
    });

    test('edited field list is reported', async () => {
      await opened().pool.query("UPDATE audit_log SET fields = ARRAY['other'] WHERE seq = 4");
      const result = await verifyAudit(opened(), store.keyring);
      assert.equal(!result.ok && result.seq, 4);
    });

    test('deleted row is reported', async () => {
      await opened().pool.query('DELETE FROM audit_log WHERE seq = 2');
      const result = await verifyAudit(opened(), store.keyring);
      assert.equal(!result.ok && result.seq, 2);
    });

    test('deleted and renumbered rows are reported', async () => {
      await opened().pool.query('DELETE FROM audit_log WHERE seq = 2');
      await opened().pool.query('UPDATE audit_log SET seq = seq - 1 WHERE seq > 2');
      const result = await verifyAudit(opened(), store.keyring);
      assert.equal(!result.ok && result.seq, 2);
    });

    test('deleted last row is reported', async () => {
      await opened().pool.query('DELETE FROM audit_log WHERE seq = 5');
      const result = await verifyAudit(opened(), store.keyring);
      assert.equal(!result.ok && result.seq, 5);
    });

    test('reordered rows are reported', async () => {
      await opened().pool.query('UPDATE audit_log SET seq = -seq WHERE seq IN (2, 3)');
      await opened().pool.query('UPDATE audit_log SET seq = CASE seq WHEN -2 THEN 3 ELSE 2 END WHERE seq IN (-2, -3)');
      const result = await verifyAudit(opened(), store.keyring);
      assert.equal(!result.ok && result.seq, 2);
    });

    test('vault writes are audited with field names only', async () => {
      const { subjectToken } = await store.vault.create({
        recordType: 'customer',
        values: { name: 'Audit Synthetic', email: 'audit.synthetic@example.org' },
        actor,
        purpose: 'signup',
      });
      await store.vault.lookup({ recordType: 'customer', field: 'email', value: 'audit.synthetic@example.org', actor, purpose: 'support' });

      const rows = await opened().pool.query<{ action: string; subject_token: string | null; fields: string[]; value_hmacs: Record<string, string> }>(
        'SELECT action, subject_token, fields, value_hmacs FROM audit_log WHERE seq > 5 ORDER BY seq',
      );
      assert.deepEqual(rows.rows.map((row) => row.action), ['record.create', 'record.lookup']);
      assert.equal(rows.rows[0]?.subject_token, subjectToken);
      assert.deepEqual(rows.rows[0]?.fields.sort(), ['email', 'name']);
      assert.deepEqual(rows.rows[1]?.value_hmacs, {
        email: auditValueHmac(store.keyring, 'audit.synthetic@example.org'),
      });
      const text = JSON.stringify(rows.rows);
      assert.equal(text.includes('audit.synthetic@example.org'), false);
      assert.deepEqual(await verifyAudit(opened(), store.keyring), { ok: true, count: 7 });
    });

    test('concurrent appends keep one chain', async () => {
      await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          withTransaction(opened(), (client) => appendAudit(client, store.keyring, { actor, action: 'record.read', fields: [`c${i}`] })),
        ),
      );
      assert.deepEqual(await verifyAudit(opened(), store.keyring), { ok: true, count: 15 });
    });
  });
}
