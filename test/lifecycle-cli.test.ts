import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { loadPolicyFile } from '../policy/load.ts';
import { openDatabase, type Database } from '../store/database.ts';
import { erasureLogPath, openErasureLog } from '../store/erasure-log.ts';
import { loadKeyring } from '../store/keyring-store.ts';
import { migrate } from '../store/migrate.ts';
import { silentLogger } from '../store/testing.ts';
import type { Actor } from '../store/types.ts';
import { createVault, type Vault } from '../store/vault.ts';
import { openLocalKeyFile } from '../tokenizer/keys/local-file.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const policyFile = join(root, 'examples', 'policy.yaml');
const policy = loadPolicyFile(policyFile);
const actor: Actor = { id: 'cli-test', location: 'in-country' };
const logger = silentLogger();

/** Runs the CLI as an operator would; resolves with its exit code and output. */
async function domicile(env: Record<string, string>, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, ['--import', 'tsx', join(root, 'cli', 'main.ts'), ...args], {
      cwd: root,
      env: { PATH: process.env['PATH'] ?? '', DOMICILE_POLICY: policyFile, DOMICILE_LOG_LEVEL: 'silent', ...env },
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

/** Opens the data folder's database and a vault that writes the erasure log, runs `fn`, and closes everything. */
async function withVault(dataDir: string, keyFile: string, logPath: string, fn: (vault: Vault, db: Database) => Promise<void>): Promise<void> {
  const keys = await openLocalKeyFile(keyFile);
  const db = await openDatabase({ dataDir, logger });
  try {
    await migrate(db, logger);
    const keyring = await loadKeyring(db, keys);
    const erasureLog = await openErasureLog(logPath, keyring);
    await fn(createVault({ db, policy, keys, keyring, logger, erasureLog }), db);
  } finally {
    await db.close();
    await keys.close();
  }
}

// The CLI runs on the embedded database here; restoring into real Postgres is covered by store/erasure.test.ts.
describe('backup, restore and rotation commands', () => {
  const folders: string[] = [];
  after(async () => {
    for (const folder of folders) {
      await rm(folder, { recursive: true, force: true });
    }
  });

  test('restore keeps erased subjects erased', async () => {
    const source = await mkdtemp(join(tmpdir(), 'domicile-cli-source-'));
    const target = await mkdtemp(join(tmpdir(), 'domicile-cli-target-'));
    folders.push(source, target);
    const keyFile = join(source, 'kek.json');
    const logPath = erasureLogPath(source, {});
    const backupFile = join(source, 'backup.dmc');
    const tokens = { kept: '', erased: '' };

    await withVault(source, keyFile, logPath, async (vault) => {
      tokens.kept = (await vault.create({ recordType: 'customer', values: { name: 'Kept Synthetic', email: 'kept.synthetic@example.org' }, actor, purpose: 'signup' })).subjectToken;
      tokens.erased = (await vault.create({ recordType: 'customer', values: { name: 'Erased Synthetic', email: 'erased.synthetic@example.org' }, actor, purpose: 'signup' })).subjectToken;
    });

    const backup = await domicile({ DOMICILE_DATA_DIR: source }, 'backup', '--out', backupFile);
    assert.equal(backup.code, 0, backup.stderr);
    assert.match(backup.stdout, /wrote \d+ rows/);

    await withVault(source, keyFile, logPath, async (vault) => {
      await vault.erase({ subjectToken: tokens.erased, actor, purpose: 'support' });
    });

    const rotate = await domicile({ DOMICILE_DATA_DIR: source }, 'keys', 'rotate');
    assert.equal(rotate.code, 0, rotate.stderr);
    assert.match(rotate.stdout, /completed: 1 data keys rewrapped/);
    const status = await domicile({ DOMICILE_DATA_DIR: source }, 'keys', 'status');
    assert.match(status.stdout, /local:1: 0 data keys, 0 tokenization secrets/);
    assert.match(status.stdout, /local:2: 1 data keys, 1 tokenization secrets/);
    const retire = await domicile({ DOMICILE_DATA_DIR: source }, 'keys', 'retire', '--version', 'local:2');
    assert.equal(retire.code, 1);
    assert.match(retire.stderr, /current version/);

    const restoreEnv = { DOMICILE_DATA_DIR: target, DOMICILE_KEY_FILE: keyFile, DOMICILE_ERASURE_LOG: logPath };
    const restore = await domicile(restoreEnv, 'restore', '--in', backupFile);
    assert.equal(restore.code, 0, restore.stderr);
    assert.match(restore.stdout, /erased 1 subjects again/);

    await withVault(target, keyFile, join(target, 'unused-erasure-log.jsonl'), async (vault, db) => {
      await assert.rejects(vault.read({ subjectToken: tokens.erased, recordType: 'customer', actor, purpose: 'support' }), /erased/);
      const view = await vault.read({ subjectToken: tokens.kept, recordType: 'customer', actor, purpose: 'support' });
      assert.equal(view.values['name'], 'Kept Synthetic');
      const keys = await db.pool.query('SELECT 1 FROM data_keys d JOIN subjects s ON s.id = d.subject_id WHERE s.token = $1', [tokens.erased]);
      assert.equal(keys.rows.length, 0);
    });

    const again = await domicile(restoreEnv, 'restore', '--in', backupFile);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /not empty/);
  });
});
