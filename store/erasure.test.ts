import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { DomicileError } from '../policy/errors.ts';
import { loadPolicyFile } from '../policy/load.ts';
import { openLocalKeyFile, type LocalKeyProvider } from '../tokenizer/keys/local-file.ts';
import type { Keyring } from '../tokenizer/keyring.ts';
import { writeBackup } from './backup.ts';
import type { Database } from './database.ts';
import { erasureLogPath, openErasureLog, readErasureLog } from './erasure-log.ts';
import { loadKeyring } from './keyring-store.ts';
import { reapplyErasures, restoreBackup } from './restore.ts';
import { silentLogger, testDatabases, type OpenedTestDatabase } from './testing.ts';
import type { Actor } from './types.ts';
import { createVault, type Vault } from './vault.ts';

const policy = loadPolicyFile(fileURLToPath(new URL('../examples/policy.yaml', import.meta.url)));
const actor: Actor = { id: 'erasure-test', location: 'in-country' };
const logger = silentLogger();

/** Synthetic people whose values are distinctive enough that a match in a dump cannot be chance. */
function person(n: number): Record<string, string> {
  return { name: `Qwelmira Trastovic${n}`, email: `qwelmira.trastovic${n}@example.org`, phone: `+49 151 2345678${n}`, birthDate: '1979-03-0' + String(n + 1) };
}

async function expectCode(promise: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(promise, (error: unknown) => error instanceof DomicileError && error.code === code);
}

async function countRows(db: Database, sql: string, parameters: unknown[]): Promise<number> {
  const result = await db.pool.query<{ count: string }>(sql, parameters);
  return Number(result.rows[0]?.count ?? 0);
}

/** Dumps every row of every table as JSON text, to scan for leftovers of a subject. */
async function dumpAllTables(db: Database): Promise<string> {
  const tables = await db.pool.query<{ table_name: string }>(
    `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'`,
  );
  let text = '';
  for (const { table_name: table } of tables.rows) {
    const rows = await db.pool.query<{ row: string }>(`SELECT row_to_json(t)::text AS row FROM "${table}" t`);
    text += rows.rows.map((row) => row.row).join('\n');
  }
  return text;
}

interface Opened {
  db: OpenedTestDatabase;
  keys: LocalKeyProvider;
  keyring: Keyring;
  vault: Vault;
  logPath: string;
}

async function openStore(db: OpenedTestDatabase, keyFile: string, logPath: string): Promise<Opened> {
  const keys = await openLocalKeyFile(keyFile);
  const keyring = await loadKeyring(db, keys);
  const erasureLog = await openErasureLog(logPath, keyring);
  const vault = createVault({ db, policy, keys, keyring, logger, erasureLog });
  return { db, keys, keyring, vault, logPath };
}

for (const database of testDatabases()) {
  describe(`erasure on ${database.name}`, () => {
    let store: Opened;

    before(async () => {
      const db = await database.open();
      store = await openStore(db, join(db.dataDir, 'keys', 'kek.json'), erasureLogPath(db.dataDir, {}));
    });
    after(async () => {
      await store.keys.close();
      await store.db.close();
    });

    test('erasure leaves nothing decryptable', async () => {
      const { vault, db } = store;
      const kept = await vault.create({ recordType: 'customer', values: person(1), actor, purpose: 'signup' });
      const erased = await vault.create({ recordType: 'customer', values: person(2), actor, purpose: 'signup' });
      await vault.update({ subjectToken: erased.subjectToken, recordType: 'customer', values: { postalCode: '10117' }, actor, purpose: 'support' });
      const subjectId = (await db.pool.query<{ id: string }>('SELECT id FROM subjects WHERE token = $1', [erased.subjectToken])).rows[0]?.id;

      await vault.erase({ subjectToken: erased.subjectToken, actor, purpose: 'support' });

      assert.equal(await countRows(db, 'SELECT count(*) FROM data_keys WHERE subject_id = $1', [subjectId]), 0);
      assert.equal(await countRows(db, 'SELECT count(*) FROM blind_index WHERE subject_id = $1', [subjectId]), 0);
      assert.equal(await countRows(db, "SELECT count(*) FROM records WHERE subject_id = $1 AND fields <> '{}'::jsonb", [subjectId]), 0);
      assert.equal(await countRows(db, 'SELECT count(*) FROM record_versions WHERE subject_id = $1 AND fields IS NOT NULL', [subjectId]), 0);
      assert.equal(await countRows(db, 'SELECT count(*) FROM subjects WHERE id = $1 AND erased_at IS NOT NULL', [subjectId]), 1);
      for (const destination of Object.keys(policy.destinations)) {
        const events = await countRows(db, "SELECT count(*) FROM outbox WHERE subject_id = $1 AND destination = $2 AND op = 'erase'", [subjectId, destination]);
        assert.equal(events, 1, `erase event for ${destination}`);
      }
      const audited = await countRows(db, "SELECT count(*) FROM audit_log WHERE subject_token = $1 AND action = 'subject.erase'", [erased.subjectToken]);
      assert.equal(audited, 1);

      const dump = await dumpAllTables(db);
      for (const value of Object.values(person(2))) {
        assert.ok(!dump.toLowerCase().includes(value.toLowerCase()), 'a value of the erased subject is in some table');
      }
      await expectCode(vault.read({ subjectToken: erased.subjectToken, recordType: 'customer', actor, purpose: 'support' }), 'gone');
      const view = await vault.read({ subjectToken: kept.subjectToken, recordType: 'customer', actor, purpose: 'support' });
      assert.equal(view.values['name'], person(1)['name']);
    });

    test('erasure log records the subject token', async () => {
      const { vault, keyring, logPath } = store;
      const created = await vault.create({ recordType: 'customer', values: person(3), actor, purpose: 'signup' });
      await vault.erase({ subjectToken: created.subjectToken, actor, purpose: 'support' });

      const { entries, verification } = await readErasureLog(logPath, keyring);
      assert.deepEqual(verification, { ok: true });
      assert.ok(entries.some((entry) => entry.subjectToken === created.subjectToken));
      const text = await readFile(logPath, 'utf8');
      assert.ok(!text.includes('Qwelmira'), 'the erasure log holds a personal value');
    });

    test('erasure log detects an edited line', async () => {
      const { keyring, logPath } = store;
      const original = await readFile(logPath, 'utf8');
      const lines = original.trimEnd().split('\n');
      const first = JSON.parse(lines[0] ?? '{}') as { erasedAt: string };
      first.erasedAt = '2000-01-01T00:00:00.000Z';
      const tamperedPath = `${logPath}.tampered`;
      await writeFile(tamperedPath, [JSON.stringify(first), ...lines.slice(1)].join('\n') + '\n');
      const edited = await readErasureLog(tamperedPath, keyring);
      assert.equal(edited.verification.ok, false);

      await writeFile(tamperedPath, lines.slice(1).join('\n') + '\n');
      const removed = await readErasureLog(tamperedPath, keyring);
      assert.equal(removed.verification.ok, false);
      assert.equal(removed.entries.length, lines.length - 1, 'entries after a broken line are still returned');
    });
  });

  describe(`backup and restore on ${database.name}`, () => {
    let source: Opened;
    let target: OpenedTestDatabase | undefined;

    before(async () => {
      const db = await database.open();
      source = await openStore(db, join(db.dataDir, 'keys', 'kek.json'), erasureLogPath(db.dataDir, {}));
    });
    after(async () => {
      await source.keys.close();
      await source.db.close();
      await target?.close();
    });

    test('restored backup keeps erased subjects erased', async () => {
      const { vault } = source;
      const kept = await vault.create({ recordType: 'customer', values: person(4), actor, purpose: 'signup' });
      const doomed = await vault.create({ recordType: 'customer', values: person(5), actor, purpose: 'signup' });
      const backupFile = join(source.db.dataDir, 'backup.dmc');
      const progress: number[] = [];
      
      const written = await writeBackup(source.db, source.keys, backupFile, { onProgress: (done) => progress.push(done) });
      assert.ok(written.rows > 0);
      assert.ok(progress.length > 0);
      const raw = await readFile(backupFile);
      assert.ok(!raw.includes(Buffer.from(person(5)['email'] ?? '')), 'an email address is readable in the backup file');
      assert.ok(!raw.includes(Buffer.from(doomed.subjectToken)), 'subject tokens are readable in the backup file');

      
      await vault.erase({ subjectToken: doomed.subjectToken, actor, purpose: 'support' });
      
      target = await database.open({ migrate: false });
      const restored = await restoreBackup(target, source.keys, backupFile, { logger });
      
      assert.equal(restored.rows, written.rows);
      const keyring = await loadKeyring(target, source.keys);
      const restoredVault = createVault({ db: target, policy, keys: source.keys, keyring, logger });
      const before = await restoredVault.read({ subjectToken: doomed.subjectToken, recordType: 'customer', actor, purpose: 'support' });
      assert.equal(before.values['name'], person(5)['name'], 'the backup predates the erasure');

      const { entries } = await readErasureLog(source.logPath, source.keyring);
      const erased = await reapplyErasures({ db: target, policy, keys: source.keys, keyring, logger }, entries);
      assert.equal(erased, 1);

      await expectCode(restoredVault.read({ subjectToken: doomed.subjectToken, recordType: 'customer', actor, purpose: 'support' }), 'gone');
      const doomedId = (await target.pool.query<{ id: string }>('SELECT id FROM subjects WHERE token = $1', [doomed.subjectToken])).rows[0]?.id;
      assert.equal(await countRows(target, 'SELECT count(*) FROM data_keys WHERE subject_id = $1', [doomedId]), 0);
      assert.equal(await countRows(target, "SELECT count(*) FROM records WHERE subject_id = $1 AND fields <> '{}'::jsonb", [doomedId]), 0);
      assert.equal(await countRows(target, "SELECT count(*) FROM outbox WHERE subject_id = $1 AND op = 'erase' AND completed_at IS NULL", [doomedId]), 1);
      const view = await restoredVault.read({ subjectToken: kept.subjectToken, recordType: 'customer', actor, purpose: 'support' });
      assert.equal(view.values['email'], person(4)['email']);

      // The restored ids continue after the backup's, so new outbox events do not collide.
      await restoredVault.create({ recordType: 'customer', values: person(6), actor, purpose: 'signup' });
      const { verifyAudit } = await import('./audit.ts');
      assert.equal((await verifyAudit(target, keyring)).ok, true);
    });

    test('restore rejects a non-empty database', async () => {
      assert.ok(target !== undefined);
      const backupFile = join(source.db.dataDir, 'backup.dmc');
      await expectCode(restoreBackup(target, source.keys, backupFile, { logger }), 'conflict');
      const forced = await restoreBackup(target, source.keys, backupFile, { logger, force: true });
      assert.ok(forced.rows > 0);
    });

    test('restore rejects a changed backup', async () => {
      assert.ok(target !== undefined);
      const backupFile = join(source.db.dataDir, 'backup.dmc');
      const bytes = await readFile(backupFile);
      bytes[bytes.length - 20] = (bytes[bytes.length - 20] ?? 0) ^ 1;
      await writeFile(`${backupFile}.changed`, bytes);
      await expectCode(restoreBackup(target, source.keys, `${backupFile}.changed`, { logger, force: true }), 'invalid_request');
      await writeFile(`${backupFile}.cut`, bytes.subarray(0, bytes.length - 40));
      await expectCode(restoreBackup(target, source.keys, `${backupFile}.cut`, { logger, force: true }), 'invalid_request');
    });
  });
}
