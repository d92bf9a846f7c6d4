import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadPolicyFile } from '../policy/load.ts';
import { openLocalKeyFile } from '../tokenizer/keys/local-file.ts';
import { openDatabase } from './database.ts';
import { loadKeyring } from './keyring-store.ts';
import { verifyAudit } from './audit.ts';
import { silentLogger } from './testing.ts';
import { createVault } from './vault.ts';

const policy = loadPolicyFile(fileURLToPath(new URL('../examples/policy.yaml', import.meta.url)));
const childScript = fileURLToPath(new URL('./fixtures/write-then-wait.ts', import.meta.url));

/** Starts the child, returns the subject token it printed, then kills it with SIGKILL. */
async function writeAndKill(dataDir: string): Promise<string> {
  const child = spawn(process.execPath, ['--import', 'tsx', childScript, dataDir], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = once(child, 'exit');
  const lines = createInterface({ input: child.stdout });
  let token: string | undefined;
  for await (const line of lines) {
    token = line.trim();
    break;
  }
  child.kill('SIGKILL');
  const [code, signal] = (await exited) as [number | null, NodeJS.Signals | null];
  assert.equal(code, null);
  assert.equal(signal, 'SIGKILL');
  assert.ok(token !== undefined, 'child printed no subject token');
  assert.match(token, /^sub_[a-z2-7]{26}$/);
  return token;
}

test('acknowledged write survives SIGKILL of the embedded database', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'domicile-crash-'));
  try {
    const subjectToken = await writeAndKill(dataDir);

    const logger = silentLogger();
    // The dead child's lock file is stale, so this open takes it over.
    const db = await openDatabase({ dataDir, logger });
    try {
      const keys = await openLocalKeyFile(join(dataDir, 'keys', 'kek.json'));
      assert.equal(keys.created, false);
      const keyring = await loadKeyring(db, keys);
      const vault = createVault({ db, policy, keys, keyring, logger });
      const view = await vault.read({ subjectToken, recordType: 'customer', actor: { id: 'crash-test', location: 'in-country' }, purpose: 'support' });
      assert.equal(view.values['email'], 'crash.synthetic@example.org');
      assert.equal(view.values['name'], 'Crash Synthetic');

      const outbox = await db.pool.query('SELECT 1 FROM outbox WHERE subject_token = $1', [subjectToken]);
      assert.equal(outbox.rowCount, 1);
      assert.equal((await verifyAudit(db, keyring)).ok, true);
    } finally {
      await db.close();
    }
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
});
