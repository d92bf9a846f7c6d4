import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadPolicyFile } from '../policy/load.ts';
import { appendAudit, appendAuditEntries, verifyAudit } from './audit.ts';
import { countPendingAudit, sealAudit } from './audit-seal.ts';
import { openDatabase, withTransaction, type Database } from './database.ts';
import { migrate } from './migrate.ts';
import { closeTestVault, createScratchDatabase, createTestVault, openTestVault, silentLogger, testDatabases, type OpenedTestDatabase, type TestVault } from './testing.ts';
import type { Actor } from './types.ts';

const policy = loadPolicyFile(fileURLToPath(new URL('../examples/policy.yaml', import.meta.url)));
const actor: Actor = { id: 'seal-test', location: 'in-country' };

async function chainedCount(db: Database): Promise<number> {
  const result = await db.pool.query<{ count: number }>('SELECT count(*)::int AS count FROM audit_log');
  return result.rows[0]?.count ?? 0;
}

for (const database of testDatabases()) {
  describe(`audit sealing on ${database.name}`, () => {
    let db: OpenedTestDatabase;
    let store: TestVault;

    before(async () => {
      ({ db, store } = await openTestVault(database, policy));
    });
    after(() => closeTestVault(db, store));

    test('a transaction returns with its entries chained and none pending', async () => {
      const before = await chainedCount(db);
      await withTransaction(db, (client) =>
        appendAuditEntries(client, store.keyring, [
          { actor, action: 'record.read', fields: ['first'] },
          { actor, action: 'record.read', fields: ['second'] },
        ]),
      );
      assert.equal(await countPendingAudit(db), 0);
      const rows = await db.pool.query<{ fields: string[] }>('SELECT fields FROM audit_log WHERE seq > $1 ORDER BY seq', [before]);
      assert.deepEqual(rows.rows.map((row) => row.fields), [['first'], ['second']]);
      assert.equal((await verifyAudit(db, store.keyring)).ok, true);
    });

    test('a rolled-back transaction leaves no entry', async () => {
      const before = await chainedCount(db);
      await assert.rejects(
        withTransaction(db, async (client) => {
          await appendAudit(client, store.keyring, { actor, action: 'record.read', fields: ['rolled-back'] });
          throw new Error('operation failed after its audit entry');
        }),
        /operation failed/,
      );
      assert.equal(await countPendingAudit(db), 0);
      assert.equal(await chainedCount(db), before);
    });

    test('entries left pending, as by a process that stopped after its commit, are chained by the next seal', async () => {
      const before = await chainedCount(db);
      // Written outside withTransaction: nothing seals them after the commit.
      await appendAuditEntries(db.pool, store.keyring, [
        { actor, action: 'record.read', fields: ['left-1'] },
        { actor, action: 'record.read', fields: ['left-2'] },
      ]);
      assert.equal(await countPendingAudit(db), 2);
      assert.equal(await sealAudit(db, store.keyring), 2);
      assert.equal(await sealAudit(db, store.keyring), 0);
      assert.equal(await chainedCount(db), before + 2);
      assert.deepEqual(await verifyAudit(db, store.keyring), { ok: true, count: before + 2 });
    });

    test('an operation succeeds when its seal fails, and a later seal chains its entry', async () => {
      const before = await chainedCount(db);
      await db.pool.query("ALTER TABLE audit_log ADD CONSTRAINT reject_probe CHECK (action <> 'probe.read') NOT VALID");
      try {
        await withTransaction(db, (client) => appendAudit(client, store.keyring, { actor, action: 'probe.read', fields: [] }));
        assert.equal(await countPendingAudit(db), 1);
        assert.equal(await chainedCount(db), before);
        await assert.rejects(sealAudit(db, store.keyring));
        assert.equal(await countPendingAudit(db), 1);
      } finally {
        await db.pool.query('ALTER TABLE audit_log DROP CONSTRAINT reject_probe');
      }
      assert.equal(await sealAudit(db, store.keyring), 1);
      assert.deepEqual(await verifyAudit(db, store.keyring), { ok: true, count: before + 1 });
    });

    test('concurrent writers and sealers keep one chain without gaps or repeats', async () => {
      const before = await chainedCount(db);
      const writes = Array.from({ length: 60 }, (_, i) =>
        withTransaction(db, (client) => appendAudit(client, store.keyring, { actor, action: 'record.read', fields: [`w${i}`] })),
      );
      const seals = Array.from({ length: 5 }, () => sealAudit(db, store.keyring));
      await Promise.all([...writes, ...seals]);
      await sealAudit(db, store.keyring);
      assert.equal(await countPendingAudit(db), 0);
      const fields = await db.pool.query<{ field: string }>("SELECT fields[1] AS field FROM audit_log WHERE seq > $1 AND fields[1] LIKE 'w%'", [before]);
      assert.equal(new Set(fields.rows.map((row) => row.field)).size, 60);
      assert.deepEqual(await verifyAudit(db, store.keyring), { ok: true, count: before + 60 });
    });

    test('entries with quotes, backslashes and placeholders in their text are chained as written', async () => {
      const before = await chainedCount(db);
      const tricky: Actor = { id: "credential:o'brien\\ $2 '); DROP TABLE audit_log; --", location: 'abroad' };
      await withTransaction(db, (client) =>
        appendAudit(client, store.keyring, { actor: tricky, action: 'record.read', purpose: "it's $1 \\x00 ünïcode 🙂", fields: ["a'b", '$3'] }),
      );
      const rows = await db.pool.query<{ actor_id: string; purpose: string; fields: string[] }>('SELECT actor_id, purpose, fields FROM audit_log WHERE seq > $1', [before]);
      assert.deepEqual(rows.rows, [{ actor_id: tricky.id, purpose: "it's $1 \\x00 ünïcode 🙂", fields: ["a'b", '$3'] }]);
      assert.deepEqual(await verifyAudit(db, store.keyring), { ok: true, count: before + 1 });
    });

    test('vault operations answer after their entries are chained', async () => {
      const created = await store.vault.create({ recordType: 'customer', values: { name: 'Seal Synthetic', email: 'seal.synthetic@example.org' }, actor, purpose: 'signup' });
      await store.vault.read({ subjectToken: created.subjectToken, recordType: 'customer', actor, purpose: 'support' });
      assert.equal(await countPendingAudit(db), 0);
      const rows = await db.pool.query<{ action: string }>('SELECT action FROM audit_log WHERE subject_token = $1 ORDER BY seq', [created.subjectToken]);
      assert.deepEqual(rows.rows.map((row) => row.action), ['record.create', 'record.read']);
    });
  });
}

const adminUrl = process.env['DATABASE_URL'];
describe('audit sealing from two processes on one Postgres', { skip: adminUrl === undefined || adminUrl === '' ? 'DATABASE_URL is not set' : false }, () => {
  test('writers and sealers on two connection pools chain every entry once', async () => {
    const scratch = await createScratchDatabase(adminUrl ?? '');
    const dataDir = await mkdtemp(join(tmpdir(), 'domicile-seal-'));
    const first = Object.assign(await openDatabase({ databaseUrl: scratch.url, dataDir, logger: silentLogger() }), { dataDir });
    const second = await openDatabase({ databaseUrl: scratch.url, dataDir, logger: silentLogger() });
    try {
      await migrate(first, silentLogger());
      const { keyring, keys } = await createTestVault(first, policy);
      try {
        // Each pool stands for one gateway process: its own sealer, the same chain head.
        const work = [first, second].flatMap((db, side) => [
          ...Array.from({ length: 40 }, (_, i) =>
            withTransaction(db, (client) => appendAudit(client, keyring, { actor, action: 'record.read', fields: [`p${side}-${i}`] })),
          ),
          ...Array.from({ length: 3 }, () => sealAudit(db, keyring)),
        ]);
        await Promise.all(work);
        assert.equal(await countPendingAudit(first), 0);
        assert.deepEqual(await verifyAudit(second, keyring), { ok: true, count: 80 });
      } finally {
        await keys.close();
      }
    } finally {
      await second.close();
      await first.close();
      await scratch.drop();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
