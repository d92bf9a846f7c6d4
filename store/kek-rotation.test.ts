import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { DomicileError } from '../policy/errors.ts';
import { loadPolicyFile } from '../policy/load.ts';
import { openLocalKeyFile, type LocalKeyProvider } from '../tokenizer/keys/local-file.ts';
import type { KeyProvider } from '../tokenizer/keys/provider.ts';
import { getJob } from './jobs.ts';
import { createKekRewrapRunner, kekStatus, retireKekVersion, startKekRotation } from './kek-rotation.ts';
import { openTestVault, silentLogger, testDatabases, type OpenedTestDatabase, type TestVault } from './testing.ts';
import type { Actor } from './types.ts';

const policy = loadPolicyFile(fileURLToPath(new URL('../examples/policy.yaml', import.meta.url)));
const actor: Actor = { id: 'rotation-test', location: 'in-country' };
const logger = silentLogger();

function values(n: number): Record<string, string> {
  return { name: `Rotation Synthetic ${n}`, email: `rotation.synthetic.${n}@example.org` };
}

/** Fails every unwrap after the first `limit`, like a provider that becomes unreachable mid-job. */
function failingAfter(keys: KeyProvider, limit: number): KeyProvider {
  let calls = 0;
  return {
    kind: keys.kind,
    currentVersion: () => keys.currentVersion(),
    generateDataKey: (context) => keys.generateDataKey(context),
    wrap: (plaintext, context) => keys.wrap(plaintext, context),
    unwrap: (wrapped, context) => {
      calls += 1;
      if (calls > limit) {
        return Promise.reject(new DomicileError('unavailable', 'key provider is unreachable'));
      }
      return keys.unwrap(wrapped, context);
    },
    close: () => Promise.resolve(),
  };
}

for (const database of testDatabases()) {
  describe(`KEK rotation on ${database.name}`, () => {
    let db: OpenedTestDatabase;
    let store: TestVault;
    let keyFile: string;
    let workerKeys: LocalKeyProvider;

    before(async () => {
      ({ db, store } = await openTestVault(database, policy));
      keyFile = join(db.dataDir, 'keys', 'kek.json');
      // The worker's provider is opened before the rotation, as in a running worker process.
      workerKeys = await openLocalKeyFile(keyFile);
    });
    after(async () => {
      await workerKeys.close();
      await db.close();
    });

    test('rotation under concurrent writes loses nothing', async () => {
      const tokens: string[] = [];
      for (let i = 0; i < 25; i += 1) {
        tokens.push((await store.vault.create({ recordType: 'customer', values: values(i), actor, purpose: 'signup' })).subjectToken);
      }
      const { job, previousVersion, kekVersion } = await startKekRotation(db, store.keys);
      assert.equal(previousVersion, 'local:1');
      assert.equal(kekVersion, 'local:2');
      assert.equal(job.total, 25);

      const before = await kekStatus(db);
      assert.equal(before.find((entry) => entry.kekVersion === 'local:1')?.dataKeys, 25);
      await assert.rejects(retireKekVersion(db, store.keys, 'local:1'), (error: unknown) => error instanceof DomicileError && error.code === 'conflict');

      const runner = createKekRewrapRunner({ db, keys: workerKeys, openKeys: () => openLocalKeyFile(keyFile), logger, batchSize: 4 });
      const writes = (async () => {
        for (let i = 25; i < 45; i += 1) {
          tokens.push((await store.vault.create({ recordType: 'customer', values: values(i), actor, purpose: 'signup' })).subjectToken);
          const updated = tokens[i % 10] ?? '';
          await store.vault.update({ subjectToken: updated, recordType: 'customer', values: { postalCode: `1011${i % 10}` }, actor, purpose: 'support' });
        }
      })();
      const ran = await runner.runOnce();
      await writes;
      assert.ok(ran !== undefined);
      assert.equal((await getJob(db, job.id))?.state, 'completed');

      for (const [i, subjectToken] of tokens.entries()) {
        const view = await store.vault.read({ subjectToken, recordType: 'customer', actor, purpose: 'support' });
        assert.equal(view.values['name'], values(i)['name']);
      }
      const after = await kekStatus(db);
      assert.equal(after.find((entry) => entry.kekVersion === 'local:1')?.dataKeys ?? 0, 0);
      assert.equal(after.find((entry) => entry.kekVersion === 'local:1')?.tokenizationSecrets ?? 0, 0);
      assert.equal(after.find((entry) => entry.kekVersion === 'local:2')?.dataKeys, 45);
      assert.equal(after.find((entry) => entry.kekVersion === 'local:2')?.tokenizationSecrets, 1);

      await retireKekVersion(db, store.keys, 'local:1');
      assert.equal((await kekStatus(db)).find((entry) => entry.kekVersion === 'local:1')?.retired, true);
      await assert.rejects(retireKekVersion(db, store.keys, 'local:2'), (error: unknown) => error instanceof DomicileError && error.code === 'conflict');
    });

    test('interrupted rewrap job resumes at its cursor', async () => {
      const { job, kekVersion } = await startKekRotation(db, store.keys);
      assert.equal(kekVersion, 'local:3');
      const fresh = await openLocalKeyFile(keyFile);
      try {
        const failing = createKekRewrapRunner({ db, keys: failingAfter(fresh, 10), openKeys: () => openLocalKeyFile(keyFile), logger, batchSize: 4 });
        await failing.runOnce();
        const interrupted = await getJob(db, job.id);
        assert.equal(interrupted?.state, 'pending');
        assert.equal(interrupted?.lastErrorCode, 'unavailable');
        assert.ok(interrupted?.cursor !== null, 'the job saved a cursor before it failed');
        assert.ok((interrupted?.done ?? 0) >= 8);

        // Make the retry due now instead of after the backoff.
        await db.pool.query('UPDATE jobs SET lease_until = now() WHERE id = $1', [job.id]);
        const resumed = createKekRewrapRunner({ db, keys: fresh, openKeys: () => openLocalKeyFile(keyFile), logger, batchSize: 4 });
        await resumed.runOnce();
        const finished = await getJob(db, job.id);
        assert.equal(finished?.state, 'completed');
        assert.equal(finished?.attempts, 2);
      } finally {
        await fresh.close();
      }
      const status = await kekStatus(db);
      assert.equal(status.find((entry) => entry.kekVersion === 'local:3')?.dataKeys, 45);
      assert.equal(status.find((entry) => entry.kekVersion === 'local:2')?.dataKeys ?? 0, 0);
    });
  });
}
