import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { DomicileError } from '../policy/errors.ts';
import { loadPolicyFile } from '../policy/load.ts';
import { startKmsDouble, type KmsDouble } from '../test/kms-double.ts';
import { AwsKmsKeyProvider, type AwsKmsOptions } from '../tokenizer/keys/aws-kms.ts';
import { openLocalKeyFile } from '../tokenizer/keys/local-file.ts';
import type { KeyProvider } from '../tokenizer/keys/provider.ts';
import { RoutingKeyProvider } from '../tokenizer/keys/routing.ts';
import { getJob } from './jobs.ts';
import { kekProviderStatus, startKekMigration, storedKekVersions } from './kek-migration.ts';
import { createKekRewrapRunner } from './kek-rotation.ts';
import { loadKeyring } from './keyring-store.ts';
import { dataKeyContext } from './record-crypto.ts';
import { silentLogger, testDatabases, type OpenedTestDatabase, type TestDatabase } from './testing.ts';
import type { Actor } from './types.ts';
import { createVault, type Vault } from './vault.ts';

const policy = loadPolicyFile(fileURLToPath(new URL('../examples/policy.yaml', import.meta.url)));
const actor: Actor = { id: 'migration-test', location: 'in-country' };
const logger = silentLogger();
const CREDENTIALS = { accessKeyId: 'AKIDDOMICILETEST', secretAccessKey: 'test-secret' };

function values(n: number): Record<string, string> {
  return { name: `Migration Synthetic ${n}`, email: `migration.synthetic.${n}@example.org` };
}

/** One installation: a database, its key file, a KMS key of the double, and a gateway vault over the local key file and KMS. */
interface Installation {
  db: OpenedTestDatabase;
  keyFile: string;
  keyId: string;
  /** Opens the local key file and the KMS key together, wrapping with the local key file, as a process configured with both does. */
  openKeys(kmsOptions?: Partial<AwsKmsOptions>): Promise<RoutingKeyProvider>;
  gatewayKeys: RoutingKeyProvider;
  vault: Vault;
  close(): Promise<void>;
}

async function openInstallation(database: TestDatabase, double: KmsDouble): Promise<Installation> {
  const db = await database.open();
  const keyFile = join(db.dataDir, 'keys', 'kek.json');
  const { arn: keyId } = double.createKey();
  const openKeys = async (kmsOptions: Partial<AwsKmsOptions> = {}): Promise<RoutingKeyProvider> => {
    const kms = new AwsKmsKeyProvider({ keyId, region: double.region, endpoint: double.endpoint, credentials: CREDENTIALS, maxAttempts: 1, ...kmsOptions });
    return new RoutingKeyProvider(await openLocalKeyFile(keyFile), kms);
  };
  const gatewayKeys = await openKeys();
  const keyring = await loadKeyring(db, gatewayKeys);
  const vault = createVault({ db, policy, keys: gatewayKeys, keyring, logger });
  return {
    db,
    keyFile,
    keyId,
    openKeys,
    gatewayKeys,
    vault,
    close: async () => {
      await gatewayKeys.close();
      await db.close();
    },
  };
}

async function createSubjects(vault: Vault, from: number, to: number): Promise<string[]> {
  const tokens: string[] = [];
  for (let i = from; i < to; i += 1) {
    tokens.push((await vault.create({ recordType: 'customer', values: values(i), actor, purpose: 'signup' })).subjectToken);
  }
  return tokens;
}

async function countByVersion(db: OpenedTestDatabase): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (const entry of await storedKekVersions(db)) {
    counts.set(entry.kekVersion, entry.dataKeys);
  }
  return counts;
}

/** Unwraps every stored data key with `keys`, so a row that is half old and half new wrap fails the test. */
async function unwrapEveryDataKey(db: OpenedTestDatabase, keys: KeyProvider): Promise<number> {
  const rows = await db.pool.query<{ token: string; kek_version: string; wrapped: Buffer }>(
    'SELECT s.token, d.kek_version, d.wrapped FROM data_keys d JOIN subjects s ON s.id = d.subject_id',
  );
  for (const row of rows.rows) {
    const key = await keys.unwrap({ kekVersion: row.kek_version, ciphertext: row.wrapped }, dataKeyContext(row.token));
    assert.equal(key.length, 32);
  }
  return rows.rows.length;
}

/** Wraps through `keys`, but runs `before` ahead of wrap number `at`, such as disabling the KMS key or hanging. */
function interceptWrap(keys: RoutingKeyProvider, at: number, before: () => Promise<void>): KeyProvider {
  let calls = 0;
  return {
    kind: keys.kind,
    currentVersion: () => keys.currentVersion(),
    generateDataKey: (context) => keys.generateDataKey(context),
    wrap: async (plaintext, context) => {
      calls += 1;
      if (calls === at) {
        await before();
      }
      return keys.wrap(plaintext, context);
    },
    unwrap: (wrapped, context) => keys.unwrap(wrapped, context),
    close: () => keys.close(),
  };
}

for (const database of testDatabases()) {
  describe(`KEK migration from the local key file to KMS on ${database.name}`, () => {
    let double: KmsDouble;
    const opened: Installation[] = [];

    before(async () => {
      double = await startKmsDouble();
    });
    after(async () => {
      for (const installation of opened) {
        await installation.close();
      }
      await double.stop();
    });

    async function install(): Promise<Installation> {
      const installation = await openInstallation(database, double);
      opened.push(installation);
      return installation;
    }

    test('migration under concurrent writes loses nothing', async () => {
      const { db, vault, gatewayKeys, openKeys, keyId } = await install();
      const tokens = await createSubjects(vault, 0, 25);
      const kmsVersion = `kms:${keyId}`;

      const operatorKeys = await openKeys();
      const { job, previousVersion, kekVersion } = await startKekMigration(db, operatorKeys, 'aws-kms');
      await operatorKeys.close();
      assert.equal(previousVersion, 'local:1');
      assert.equal(kekVersion, kmsVersion);
      assert.ok(job !== undefined);
      assert.equal(job.total, 25);
      assert.equal(job.params['toProvider'], 'aws-kms');

      const workerKeys = await openKeys();
      const openTarget = async (target: string): Promise<KeyProvider> => {
        const keys = await openKeys();
        keys.useVersion(target);
        return keys;
      };
      const runner = createKekRewrapRunner({ db, keys: workerKeys, openKeys: openTarget, logger, batchSize: 4 });
      const erased = tokens[3] ?? '';
      const writes = (async () => {
        for (let i = 25; i < 45; i += 1) {
          // The gateway reads the migration job after a few writes, as after one maintenance interval.
          if (i === 30) {
            assert.equal(gatewayKeys.useVersion(kekVersion), true);
          }
          tokens.push((await vault.create({ recordType: 'customer', values: values(i), actor, purpose: 'signup' })).subjectToken);
          await vault.update({ subjectToken: tokens[i % 10] ?? '', recordType: 'customer', values: { postalCode: `2022${i % 10}` }, actor, purpose: 'support' });
        }
        await vault.erase({ subjectToken: erased, actor, purpose: 'support' });
      })();
      const ran = await runner.runOnce();
      await writes;
      await workerKeys.close();
      assert.equal(ran?.id, job.id);
      assert.equal((await getJob(db, job.id))?.state, 'completed');

      // A write that wrapped with the local key file behind the job's last pass is moved by running the migration again.
      if (((await countByVersion(db)).get('local:1') ?? 0) > 0) {
        const again = await startKekMigration(db, gatewayKeys, 'aws-kms');
        assert.ok(again.job !== undefined);
        await createKekRewrapRunner({ db, keys: gatewayKeys, openKeys: openTarget, logger }).runOnce();
      }

      for (const [i, subjectToken] of tokens.entries()) {
        if (subjectToken === erased) {
          await assert.rejects(vault.read({ subjectToken, recordType: 'customer', actor, purpose: 'support' }), (error: unknown) => error instanceof DomicileError && error.code === 'gone');
          continue;
        }
        const view = await vault.read({ subjectToken, recordType: 'customer', actor, purpose: 'support' });
        assert.equal(view.values['name'], values(i)['name']);
      }
      const stored = await storedKekVersions(db);
      assert.deepEqual(stored, [{ kekVersion: kmsVersion, dataKeys: 44, tokenizationSecrets: 1 }]);
      const created = await vault.create({ recordType: 'customer', values: values(99), actor, purpose: 'signup' });
      const row = await db.pool.query<{ kek_version: string }>('SELECT d.kek_version FROM data_keys d JOIN subjects s ON s.id = d.subject_id WHERE s.token = $1', [created.subjectToken]);
      assert.equal(row.rows[0]?.kek_version, kmsVersion, 'new data keys go to KMS once the migration started');
    });

    test('KMS failure mid-way leaves every key whole and the job resumes', async () => {
      const { db, vault, openKeys, keyId } = await install();
      const tokens = await createSubjects(vault, 0, 30);
      const operatorKeys = await openKeys();
      const { job } = await startKekMigration(db, operatorKeys, 'aws-kms');
      assert.ok(job !== undefined);

      const workerKeys = await openKeys();
      workerKeys.useVersion(`kms:${keyId}`);
      const disabling = interceptWrap(workerKeys, 11, async () => double.setEnabled(keyId, false));
      const failing = createKekRewrapRunner({ db, keys: disabling, openKeys: () => Promise.reject(new Error('not used')), logger, batchSize: 4 });
      await failing.runOnce();

      const interrupted = await getJob(db, job.id);
      assert.equal(interrupted?.state, 'pending');
      assert.equal(interrupted?.lastErrorCode, 'unavailable');
      assert.ok(interrupted?.cursor !== null, 'the job saved a cursor before it failed');
      assert.equal(interrupted?.done, 8);
      const counts = await countByVersion(db);
      assert.equal(counts.get(`kms:${keyId}`), 10);
      assert.equal(counts.get('local:1'), 20);

      // Reads fail closed while the KMS key is disabled, and keys still under the local key file read on.
      const movedRow = await db.pool.query<{ token: string }>("SELECT s.token FROM data_keys d JOIN subjects s ON s.id = d.subject_id WHERE d.kek_version LIKE 'kms:%' LIMIT 1");
      const moved = movedRow.rows[0]?.token ?? '';
      await assert.rejects(vault.read({ subjectToken: moved, recordType: 'customer', actor, purpose: 'support' }), (error: unknown) => error instanceof DomicileError && error.code === 'unavailable');
      const localRow = await db.pool.query<{ token: string }>("SELECT s.token FROM data_keys d JOIN subjects s ON s.id = d.subject_id WHERE d.kek_version = 'local:1' LIMIT 1");
      const unmoved = await vault.read({ subjectToken: localRow.rows[0]?.token ?? '', recordType: 'customer', actor, purpose: 'support' });
      assert.match(String(unmoved.values['name']), /^Migration Synthetic /);

      const status = await kekProviderStatus(db, operatorKeys);
      assert.deepEqual(status.map((entry) => [entry.provider, entry.dataKeys, entry.tokenizationSecrets]), [['aws-kms', 10, 0], ['local', 20, 1]]);
      assert.ok(status.every((entry) => entry.versions.every((version) => version.canUnwrap)));
      const localOnly = new RoutingKeyProvider(await openLocalKeyFile(join(db.dataDir, 'keys', 'kek.json')));
      try {
        const withoutKms = await kekProviderStatus(db, localOnly);
        assert.equal(withoutKms.find((entry) => entry.provider === 'aws-kms')?.versions[0]?.canUnwrap, false);
      } finally {
        await localOnly.close();
      }

      double.setEnabled(keyId, true);
      assert.equal(await unwrapEveryDataKey(db, operatorKeys), 30);
      await db.pool.query('UPDATE jobs SET lease_until = now() WHERE id = $1', [job.id]);
      await createKekRewrapRunner({ db, keys: workerKeys, openKeys: () => Promise.reject(new Error('not used')), logger, batchSize: 4 }).runOnce();
      const finished = await getJob(db, job.id);
      assert.equal(finished?.state, 'completed');
      assert.equal(finished?.attempts, 2);
      assert.equal(finished?.done, finished?.total);
      assert.deepEqual(await storedKekVersions(db), [{ kekVersion: `kms:${keyId}`, dataKeys: 30, tokenizationSecrets: 1 }]);
      for (const [i, subjectToken] of tokens.entries()) {
        const view = await vault.read({ subjectToken, recordType: 'customer', actor, purpose: 'support' });
        assert.equal(view.values['name'], values(i)['name']);
      }
      await workerKeys.close();
      await operatorKeys.close();
    });

    test('interrupted migration resumes after the lease', async () => {
      const { db, vault, openKeys, keyId } = await install();
      await createSubjects(vault, 0, 20);
      const operatorKeys = await openKeys();
      const { job } = await startKekMigration(db, operatorKeys, 'aws-kms');
      await operatorKeys.close();
      assert.ok(job !== undefined);

      // Worker A stops inside its third batch, as a frozen or killed process would, holding the job's lease.
      let release: (error: Error) => void = () => undefined;
      const frozen = new Promise<void>((_resolve, reject) => {
        release = reject;
      });
      let reachedFreeze: () => void = () => undefined;
      const atFreeze = new Promise<void>((resolve) => {
        reachedFreeze = resolve;
      });
      const keysA = await openKeys();
      keysA.useVersion(`kms:${keyId}`);
      const runnerA = createKekRewrapRunner({
        db,
        keys: interceptWrap(keysA, 10, async () => {
          reachedFreeze();
          await frozen;
        }),
        openKeys: () => Promise.reject(new Error('not used')),
        logger,
        batchSize: 4,
      });
      const runningA = runnerA.runOnce();
      await atFreeze;
      const stalled = await getJob(db, job.id);
      assert.equal(stalled?.state, 'running');
      assert.equal(stalled?.done, 8);

      // The lease runs out; worker B takes the job over from A's cursor.
      await db.pool.query('UPDATE jobs SET lease_until = now() WHERE id = $1', [job.id]);
      const keysB = await openKeys();
      keysB.useVersion(`kms:${keyId}`);
      const encrypts = double.calls.get('Encrypt') ?? 0;
      await createKekRewrapRunner({ db, keys: keysB, openKeys: () => Promise.reject(new Error('not used')), logger, batchSize: 4 }).runOnce();
      const finished = await getJob(db, job.id);
      assert.equal(finished?.state, 'completed');
      assert.equal(finished?.attempts, 2);
      // Keys that A rewrapped after its last saved batch count as done too.
      assert.equal(finished?.done, 20);
      assert.equal(finished?.total, 20);
      assert.ok((double.calls.get('Encrypt') ?? 0) - encrypts <= 13, 'worker B does not rewrap the batches that A saved');
      // Keys that A rewrapped after its last saved batch count as done too.
      assert.equal(finished?.done, 20);
      assert.equal(finished?.total, 20);

      // Worker A wakes up with an error; its failure must not reopen the completed job.
      release(new DomicileError('unavailable', 'worker A lost its connection'));
      await runningA;
      assert.equal((await getJob(db, job.id))?.state, 'completed');
      assert.deepEqual(await storedKekVersions(db), [{ kekVersion: `kms:${keyId}`, dataKeys: 20, tokenizationSecrets: 1 }]);
      assert.equal(await unwrapEveryDataKey(db, keysB), 20);
      await keysA.close();
      await keysB.close();
    });

    test('migrating to the provider that already wraps everything queues nothing', async () => {
      const { db, vault, openKeys } = await install();
      await createSubjects(vault, 0, 2);
      const keys = await openKeys();
      try {
        const result = await startKekMigration(db, keys, 'local');
        assert.equal(result.job, undefined);
        assert.equal(result.kekVersion, 'local:1');
      } finally {
        await keys.close();
      }
      const jobs = await db.pool.query("SELECT id FROM jobs WHERE kind = 'kek-rewrap'");
      assert.equal(jobs.rowCount, 0);
    });

    test('unreachable KMS queues no migration', async () => {
      const { db, vault, openKeys } = await install();
      await createSubjects(vault, 0, 3);
      double.delayMs = 1_500;
      const hung = await openKeys({ requestTimeoutMs: 300 });
      try {
        await assert.rejects(startKekMigration(db, hung, 'aws-kms'), (error: unknown) => error instanceof DomicileError && error.code === 'unavailable');
      } finally {
        double.delayMs = 0;
        await hung.close();
      }
      const jobs = await db.pool.query("SELECT id FROM jobs WHERE kind = 'kek-rewrap'");
      assert.equal(jobs.rowCount, 0);
      assert.equal(hung.currentVersion(), 'local:1');
      assert.deepEqual(await storedKekVersions(db), [{ kekVersion: 'local:1', dataKeys: 3, tokenizationSecrets: 1 }]);
    });

    test('migration back to the local key file', async () => {
      const { db, vault, openKeys, keyId } = await install();
      const tokens = await createSubjects(vault, 0, 6);
      const keys = await openKeys();
      const openTarget = async (target: string): Promise<KeyProvider> => {
        const opened = await openKeys();
        opened.useVersion(target);
        return opened;
      };
      try {
        const toKms = await startKekMigration(db, keys, 'aws-kms');
        assert.equal(toKms.kekVersion, `kms:${keyId}`);
        await createKekRewrapRunner({ db, keys, openKeys: openTarget, logger }).runOnce();
        const toLocal = await startKekMigration(db, keys, 'local');
        assert.equal(toLocal.kekVersion, 'local:1');
        assert.equal(toLocal.job?.total, 6);
        await createKekRewrapRunner({ db, keys, openKeys: openTarget, logger }).runOnce();
        assert.deepEqual(await storedKekVersions(db), [{ kekVersion: 'local:1', dataKeys: 6, tokenizationSecrets: 1 }]);
        const again = await startKekMigration(db, keys, 'local');
        assert.equal(again.job, undefined, 'nothing is left to migrate');
      } finally {
        await keys.close();
      }
      const view = await vault.read({ subjectToken: tokens[5] ?? '', recordType: 'customer', actor, purpose: 'support' });
      assert.equal(view.values['name'], values(5)['name']);
      const localOnly = new RoutingKeyProvider(await openLocalKeyFile(join(db.dataDir, 'keys', 'kek.json')));
      await assert.rejects(startKekMigration(db, localOnly, 'aws-kms'), (error: unknown) => error instanceof DomicileError && error.code === 'invalid_request');
      await localOnly.close();
    });
  });
}
