import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadPolicyFile } from '../policy/load.ts';
import { appendAudit, appendAuditEntries, missingAuditEntries, rejectedAuditEntries, verifyAudit } from './audit.ts';
import fc from 'fast-check';
import pg from 'pg';
import { auditSealerFor, countPendingAudit, quoteLiteral, sealAudit } from './audit-seal.ts';
import { openDatabase, withTransaction, type Database } from './database.ts';
import { migrate } from './migrate.ts';
import { checkOutIdleClients, closeTestVault, createScratchDatabase, createTestVault, openTestVault, silentLogger, testDatabases, type OpenedTestDatabase, type TestVault } from './testing.ts';
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

    test('stranded entries join the next seal', async () => {
      const before = await chainedCount(db);
      // Written outside withTransaction, as by a process that stopped after its commit: nothing seals them.
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

    test('a seal prepares its statements again after the session dropped them', async () => {
      await sealAudit(db, store.keyring);
      // Every idle connection of the pool loses the seal's prepared statements.
      for (const client of await checkOutIdleClients(db)) {
        const names = await client.query<{ name: string }>("SELECT name FROM pg_prepared_statements WHERE name LIKE 'domicile\\_audit\\_%'");
        for (const { name } of names.rows) await client.query(`DEALLOCATE ${name}`);
        client.release();
      }
      const before = await chainedCount(db);
      await appendAuditEntries(db.pool, store.keyring, [{ actor, action: 'record.read', fields: ['after-deallocate'] }]);
      assert.equal(await sealAudit(db, store.keyring), 1);
      assert.equal(await chainedCount(db), before + 1);
      assert.equal((await verifyAudit(db, store.keyring)).ok, true);
    });

    test('a seal prepares its statements again after a column changed its type', async () => {
      await sealAudit(db, store.keyring);
      for (const type of ['varchar(64)', 'text']) {
        // The prepared read now returns another row type: "cached plan must not change result type".
        await db.pool.query(`ALTER TABLE audit_pending ALTER COLUMN outcome TYPE ${type}`);
        const before = await chainedCount(db);
        await appendAuditEntries(db.pool, store.keyring, [{ actor, action: 'record.read', fields: [`after-${type}`] }]);
        assert.equal(await sealAudit(db, store.keyring), 1);
        assert.equal(await chainedCount(db), before + 1);
      }
      assert.equal((await verifyAudit(db, store.keyring)).ok, true);
    });

    test('a pending entry deleted before its seal is written again', async () => {
      const before = await chainedCount(db);
      // Committed on the pool and not yet sealed, as between a commit and its seal.
      await appendAuditEntries(db.pool, store.keyring, [
        { actor, action: 'record.read', fields: ['deleted-1'] },
        { actor, action: 'record.read', fields: ['deleted-2'] },
      ]);
      assert.equal((await db.pool.query('DELETE FROM audit_pending')).rowCount, 2);

      const sealer = auditSealerFor(db);
      await sealer.seal(store.keyring);
      // The check after that seal writes the entries again; this call waits for the seal that chains them.
      await sealer.seal(store.keyring);

      const rows = await db.pool.query<{ action: string; actor_id: string; fields: string[]; item_counts: Record<string, number> | null }>(
        'SELECT action, actor_id, fields, item_counts FROM audit_log WHERE seq > $1 ORDER BY seq',
        [before],
      );
      assert.deepEqual(rows.rows.map((row) => row.action), ['audit.entry_missing', 'record.read', 'record.read']);
      assert.equal(rows.rows[0]?.actor_id, 'system:audit-sealer');
      assert.deepEqual(rows.rows[0]?.item_counts, { entries: 2 });
      assert.deepEqual(rows.rows.slice(1).map((row) => row.fields), [['deleted-1'], ['deleted-2']]);
      assert.deepEqual(await missingAuditEntries(db), [before + 1]);
      assert.equal(await countPendingAudit(db), 0);
      assert.equal((await verifyAudit(db, store.keyring)).ok, true);
    });

    test('entries chained elsewhere are not written again', async () => {
      const before = await chainedCount(db);
      await appendAuditEntries(db.pool, store.keyring, [{ actor, action: 'record.read', fields: ['chained-elsewhere'] }]);
      // A seal outside this process's sealer, as by another process.
      assert.equal(await sealAudit(db, store.keyring), 1);
      await auditSealerFor(db).seal(store.keyring);
      await auditSealerFor(db).seal(store.keyring);
      assert.equal(await chainedCount(db), before + 1);
    });

    test('failed seal keeps the operation', async () => {
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

    /** Writes one genuine pending entry outside withTransaction, so nothing seals it yet, and returns its id. */
    async function leavePending(field: string): Promise<string> {
      await appendAuditEntries(db.pool, store.keyring, [{ actor, action: 'record.read', purpose: 'support', fields: [field] }]);
      const row = await db.pool.query<{ id: string }>('SELECT id FROM audit_pending WHERE fields[1] = $1', [field]);
      return row.rows[0]?.id ?? '';
    }

    test('edited, forged and malformed pending entries are rejected in the chain', async () => {
      const before = await chainedCount(db);
      const edited = await leavePending('edited');
      await db.pool.query("UPDATE audit_pending SET actor_id = 'someone-else' WHERE id = $1", [edited]);
      await leavePending('genuine');
      // Copies the genuine entry with another nonce and actor, as someone without the keyring could.
      await db.pool.query(
        `INSERT INTO audit_pending (at, actor_id, actor_location, action, purpose, subject_token, record_type, fields, value_hmacs, item_counts, outcome, key_version, nonce, mac)
         SELECT at, 'forger', actor_location, action, purpose, subject_token, record_type, fields, value_hmacs, item_counts, outcome, key_version, '\\x00ff'::bytea, mac
         FROM audit_pending WHERE fields[1] = 'genuine'`,
      );
      const malformed = await leavePending('malformed');
      await db.pool.query("UPDATE audit_pending SET at = 'infinity' WHERE id = $1", [malformed]);

      const rejected: string[] = [];
      assert.equal(await sealAudit(db, store.keyring, (entry) => rejected.push(entry.id)), 4);
      assert.equal(rejected.length, 3);
      assert.ok(rejected.includes(edited));
      assert.ok(rejected.includes(malformed));
      const rows = await db.pool.query<{ action: string; actor_id: string }>('SELECT action, actor_id FROM audit_log WHERE seq > $1 ORDER BY seq', [before]);
      assert.deepEqual(rows.rows.map((row) => row.actor_id).sort(), [actor.id, 'system:audit-sealer', 'system:audit-sealer', 'system:audit-sealer']);
      assert.equal((await rejectedAuditEntries(db)).length >= 3, true);
      assert.deepEqual(await verifyAudit(db, store.keyring), { ok: true, count: before + 4 });
    });

    test('a copied pending entry breaks the unique nonce', async () => {
      await leavePending('copied');
      await assert.rejects(
        db.pool.query(
          `INSERT INTO audit_pending (at, actor_id, actor_location, action, purpose, subject_token, record_type, fields, value_hmacs, item_counts, outcome, key_version, nonce, mac)
           SELECT at, actor_id, actor_location, action, purpose, subject_token, record_type, fields, value_hmacs, item_counts, outcome, key_version, nonce, mac
           FROM audit_pending WHERE fields[1] = 'copied'`,
        ),
        /duplicate key/,
      );
      await sealAudit(db, store.keyring);
    });

    test('a copy replayed after its seal is rejected', async () => {
      const before = await chainedCount(db);
      await leavePending('replayed');
      await db.pool.query('CREATE TEMP TABLE copied AS SELECT * FROM audit_pending WHERE fields[1] = $1', ['replayed']);
      assert.equal(await sealAudit(db, store.keyring), 1);
      await db.pool.query('INSERT INTO audit_pending SELECT * FROM copied');
      await db.pool.query('DROP TABLE copied');
      const rejected: string[] = [];
      assert.equal(await sealAudit(db, store.keyring, (entry) => rejected.push(entry.reason)), 1);
      assert.deepEqual(rejected, ['nonce is already chained: the entry was copied']);
      const actions = await db.pool.query<{ action: string }>('SELECT action FROM audit_log WHERE seq > $1 ORDER BY seq', [before]);
      assert.deepEqual(actions.rows.map((row) => row.action), ['record.read', 'audit.entry_rejected']);
      assert.deepEqual(await verifyAudit(db, store.keyring), { ok: true, count: before + 2 });
    });

    test('an oversized entry and a huge id are rejected without stopping the seal', async () => {
      const before = await chainedCount(db);
      const big = await leavePending('oversized');
      await db.pool.query("UPDATE audit_pending SET actor_id = repeat('x', 200000) WHERE id = $1", [big]);
      const huge = await leavePending('huge-id');
      await db.pool.query("UPDATE audit_pending SET id = 9007199254740993, actor_id = 'tampered' WHERE id = $1", [huge]);
      await leavePending('after-them');
      const rejected: string[] = [];
      assert.equal(await sealAudit(db, store.keyring, (entry) => rejected.push(entry.id)), 3);
      assert.deepEqual(rejected.sort(), [big, '9007199254740993'].sort());
      assert.equal(await countPendingAudit(db), 0);
      assert.deepEqual(await verifyAudit(db, store.keyring), { ok: true, count: before + 3 });
    });

    test('rows shaped unlike real entries are rejected without reading them', async () => {
      const before = await chainedCount(db);
      const columns = 'id, at, actor_id, actor_location, action, fields, value_hmacs, outcome, key_version, nonce, mac';
      const bad = [
        // A negative id sorts first in every batch.
        `(-1, now(), 'x', 'x', 'x', '{}', '{}', 'ok', 1, '\\x01', '\\x02')`,
        // All-NULL arrays print as text far longer than their stored size.
        `(-2, now(), 'x', 'x', 'x', array_fill(NULL::text, ARRAY[200000]), '{}', 'ok', 1, '\\x03', '\\x04')`,
        `(-3, now(), repeat('a', 300000), 'x', 'x', '{}', '{}', 'ok', 1, '\\x05', '\\x06')`,
        `(-4, now(), 'x', 'x', 'x', '{}', '[1, 2, 3]', 'ok', 1, '\\x07', '\\x08')`,
        `(-5, now(), 'x', 'x', 'x', '{{a,b},{c,d}}', '{}', 'ok', 1, '\\x09', '\\x0a')`,
        `(-6, now(), 'x', 'x', 'x', '{}', '{"k": {"nested": true}}', 'ok', 1, '\\x0b', '\\x0c')`,
      ];
      await db.pool.query(`INSERT INTO audit_pending (${columns}) VALUES ${bad.join(', ')}`);
      await leavePending('well-formed');
      const rejected: string[] = [];
      assert.equal(await sealAudit(db, store.keyring, (entry) => rejected.push(entry.id)), 7);
      assert.deepEqual(rejected.sort(), ['-1', '-2', '-3', '-4', '-5', '-6']);
      assert.equal(await countPendingAudit(db), 0);
      assert.deepEqual(await verifyAudit(db, store.keyring), { ok: true, count: before + 7 });
    });

    test('entries of a key version this keyring lacks wait without blocking others', async () => {
      const before = await chainedCount(db);
      const foreign = await leavePending('foreign-version');
      await db.pool.query('UPDATE audit_pending SET key_version = 99 WHERE id = $1', [foreign]);
      await leavePending('ordinary');
      assert.equal(await sealAudit(db, store.keyring), 1);
      assert.equal(await countPendingAudit(db), 1);
      assert.deepEqual(await verifyAudit(db, store.keyring), { ok: true, count: before + 1 });
      await db.pool.query('DELETE FROM audit_pending WHERE id = $1', [foreign]);
    });

    test('verification during concurrent seals never reports a removed end', async () => {
      const writes = Array.from({ length: 40 }, (_, i) =>
        withTransaction(db, (client) => appendAudit(client, store.keyring, { actor, action: 'record.read', fields: [`v${i}`] })),
      );
      const checks = Array.from({ length: 8 }, () => verifyAudit(db, store.keyring));
      const results = await Promise.all([...checks, ...writes]);
      for (const result of results.slice(0, checks.length)) {
        assert.equal((result as { ok: boolean }).ok, true);
      }
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

test('quoteLiteral quotes as pg escapeLiteral does', () => {
  for (const text of ["it's", 'back\\slash', "both ' and \\", '', '\'\'']) {
    assert.equal(quoteLiteral(text), pg.escapeLiteral(text));
  }
  fc.assert(fc.property(fc.string({ unit: 'binary' }), (text) => quoteLiteral(text) === pg.escapeLiteral(text)));
});

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
