import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import pino from 'pino';
import { parsePolicy } from '../policy/load.ts';
import type { Database } from '../store/database.ts';
import { createVault } from '../store/vault.ts';
import { openLocalKeyFile, type LocalKeyProvider } from '../tokenizer/keys/local-file.ts';
import { testDatabases } from '../store/testing.ts';
import type { Actor } from '../store/types.ts';
import { deterministicToken } from '../tokenizer/deterministic.ts';
import { createFolderDestination, type Destination } from './destinations/index.ts';
import type { PartialCopy } from './project.ts';
import { openReplicationHarness, type ReplicationHarness } from './testing/harness.ts';
import { testKeyring, testPolicy, testPolicyDocument } from './testing/fixtures.ts';
import { S3RVER_CREDENTIALS, startTestS3Server, type TestS3Server } from './testing/s3-server.ts';
import { startReplicationWorker, type ReplicationWorker, type ReplicationWorkerOptions } from './worker.ts';

// The S3 destination takes credentials from the default AWS chain; the environment comes first in it.
process.env.AWS_ACCESS_KEY_ID = S3RVER_CREDENTIALS.accessKeyId;
process.env.AWS_SECRET_ACCESS_KEY = S3RVER_CREDENTIALS.secretAccessKey;

const actor: Actor = { id: 'test-operator', location: 'in-country' };
const fastRetry = { baseMs: 20, maxMs: 200 };

function customerValues(index: number): Record<string, unknown> {
  return {
    name: `Testperson Nummer${index}`,
    email: `person${index}@example.de`,
    phone: '+49 151 1234567',
    nickname: `Nick${index}`,
    birthDate: '1990-04-03',
    postalCode: '10115',
    country: 'DE',
    loyaltyId: `LOY-${index}`,
  };
}

async function readCopy(folder: string, subjectToken: string): Promise<PartialCopy | undefined> {
  try {
    return JSON.parse(await readFile(path.join(folder, 'customer', `${subjectToken}.json`), 'utf8')) as PartialCopy;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      return undefined;
    }
    throw error;
  }
}

async function waitFor(condition: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Wraps a destination and records every call, so a test can check the order of deliveries. */
function recording(inner: Destination): { destination: Destination; calls: Array<{ op: 'put' | 'remove'; key: string; version?: number }> } {
  const calls: Array<{ op: 'put' | 'remove'; key: string; version?: number }> = [];
  return {
    calls,
    destination: {
      kind: inner.kind,
      async put(key, body) {
        await inner.put(key, body);
        calls.push({ op: 'put', key, version: (JSON.parse(body.toString('utf8')) as PartialCopy).version });
      },
      async remove(key) {
        await inner.remove(key);
        calls.push({ op: 'remove', key });
      },
      close: () => inner.close(),
    },
  };
}

for (const database of testDatabases()) {
  describe(`replication worker on ${database.name}`, () => {
    let harness: ReplicationHarness;
    let worker: ReplicationWorker | undefined;

    const start = (options: Partial<ReplicationWorkerOptions> = {}): ReplicationWorker => {
      worker = startReplicationWorker({ ...harness, pollMs: 20, retry: fastRetry, ...options });
      return worker;
    };
    const outbound = (): string => path.join(harness.dataDir, 'outbound');

    before(async () => {
      harness = await openReplicationHarness(database, testPolicy());
    });
    afterEach(async () => {
      await worker?.stop();
      worker = undefined;
    });
    after(async () => {
      await harness.close();
    });

    test('create puts a projected copy', async () => {
      const created = await harness.vault.create({ recordType: 'customer', values: customerValues(1), actor, purpose: 'signup' });
      const running = start();

      await running.drain();

      const copy = await readCopy(outbound(), created.subjectToken);
      assert.ok(copy, 'the copy must exist');
      assert.equal(copy.subjectToken, created.subjectToken);
      assert.equal(copy.recordType, 'customer');
      assert.equal(copy.version, created.version);
      assert.equal(copy.policyVersion, 3);
      assert.deepEqual(Object.keys(copy.fields).sort(), ['birthDate', 'country', 'email', 'nickname', 'postalCode']);
      assert.equal(copy.fields.email, deterministicToken(harness.keyring, 'customer.email', 'person1@example.de'));
      assert.equal(copy.fields.country, 'DE');

      const analytics = await readCopy(path.join(harness.dataDir, 'analytics'), created.subjectToken);
      assert.ok(analytics, 'the analytics copy must exist');
      assert.deepEqual(Object.keys(analytics.fields), ['country']);
      assert.notEqual(analytics.fields.country, 'DE');

      const partner = await readCopy(path.join(harness.dataDir, 'partner'), created.subjectToken);
      assert.ok(partner, 'the partner copy must exist');
      assert.match(String(partner.fields.loyaltyId), /^rnd_v1_[a-z2-7]{26}$/);
      assert.notEqual(partner.fields.email, copy.fields.email, 'own namespaces give other tokens');

      const uses = await harness.db.pool.query<{ destination: string; key_version: number }>(
        `SELECT u.destination, u.key_version FROM token_version_uses u JOIN subjects s ON s.id = u.subject_id
         WHERE s.token = $1 ORDER BY u.destination`,
        [created.subjectToken],
      );
      assert.deepEqual(uses.rows, [
        { destination: 'analytics', key_version: 1 },
        { destination: 'aws', key_version: 1 },
        { destination: 'partner', key_version: 1 },
      ]);

      assert.ok(running.stats.delivered >= 3);
      assert.equal(running.stats.pending, 0);
    });

    test('updates arrive in order', async () => {
      const created = await harness.vault.create({ recordType: 'customer', values: customerValues(2), actor, purpose: 'signup' });
      const recorder = recording(createFolderDestination(outbound()));
      const running = start({ destinations: new Map([['aws', recorder.destination]]) });

      let version = created.version;
      for (let step = 0; step < 6; step += 1) {
        const updated = await harness.vault.update({
          subjectToken: created.subjectToken,
          recordType: 'customer',
          values: { country: step % 2 === 0 ? 'FR' : 'AT', nickname: `Step${step}` },
          actor,
          purpose: 'support',
        });
        version = updated.version;
      }
      await running.drain();

      const key = `customer/${created.subjectToken}.json`;
      const versions = recorder.calls.filter((call) => call.key === key).map((call) => call.version ?? -1);
      assert.ok(versions.length >= 1);
      for (let index = 1; index < versions.length; index += 1) {
        assert.ok((versions[index] ?? 0) >= (versions[index - 1] ?? 0), `versions must not decrease: ${versions.join(',')}`);
      }
      const copy = await readCopy(outbound(), created.subjectToken);
      assert.equal(copy?.version, version);
      assert.equal(copy?.fields.country, 'AT');
      assert.equal(copy?.fields.nickname, 'St***');

      const partnerDir = path.join(harness.dataDir, 'partner');
      const partnerBefore = await readCopy(partnerDir, created.subjectToken);
      await harness.vault.update({ subjectToken: created.subjectToken, recordType: 'customer', values: { country: 'CH' }, actor, purpose: 'support' });
      await running.drain();
      const partnerAfter = await readCopy(partnerDir, created.subjectToken);
      assert.equal(partnerAfter?.version, version + 1);
      assert.equal(partnerAfter?.fields.loyaltyId, partnerBefore?.fields.loyaltyId, 'the random token of an unchanged value stays');
    });

    test('erase removes the copy', async () => {
      const created = await harness.vault.create({ recordType: 'customer', values: customerValues(3), actor, purpose: 'signup' });
      const running = start();
      await running.drain();
      assert.ok(await readCopy(outbound(), created.subjectToken));

      await harness.vault.erase({ subjectToken: created.subjectToken, actor, purpose: 'support' });
      await running.drain();

      assert.equal(await readCopy(outbound(), created.subjectToken), undefined);
      assert.equal(await readCopy(path.join(harness.dataDir, 'analytics'), created.subjectToken), undefined);
    });

    test('update then erase leaves no copy', async () => {
      const created = await harness.vault.create({ recordType: 'customer', values: customerValues(4), actor, purpose: 'signup' });
      await harness.vault.update({ subjectToken: created.subjectToken, recordType: 'customer', values: { country: 'PL' }, actor, purpose: 'support' });
      await harness.vault.erase({ subjectToken: created.subjectToken, actor, purpose: 'support' });
      const running = start();

      await running.drain();

      assert.equal(await readCopy(outbound(), created.subjectToken), undefined);
    });

    test('folder outage is retried without loss', async () => {
      const first = await harness.vault.create({ recordType: 'customer', values: customerValues(5), actor, purpose: 'signup' });
      const running = start();
      await running.drain();

      // A file in place of the folder makes every write fail, even for root, which ignores permission bits.
      await rm(outbound(), { recursive: true, force: true });
      await writeFile(outbound(), 'not a folder');
      const failedBefore = running.stats.failed;

      const second = await harness.vault.create({ recordType: 'customer', values: customerValues(6), actor, purpose: 'signup' });
      await harness.vault.update({ subjectToken: first.subjectToken, recordType: 'customer', values: { country: 'NL' }, actor, purpose: 'support' });
      await waitFor(() => running.stats.failed >= failedBefore + 3, 'failed deliveries to be retried');
      assert.ok(running.stats.pending > 0, 'undelivered events stay in the outbox');

      await rm(outbound());
      await running.drain();

      assert.equal((await readCopy(outbound(), first.subjectToken))?.fields.country, 'NL');
      assert.equal((await readCopy(outbound(), second.subjectToken))?.subjectToken, second.subjectToken);
      assert.ok((await stat(outbound())).isDirectory());

      const failures = harness.logLines().filter((line) => line.event === 'replication.delivery_failed');
      assert.ok(failures.length > 0);
      for (const line of failures) {
        assert.equal(line.destination, 'aws');
        assert.equal(typeof line.eventId, 'string');
        assert.equal(typeof line.errorCode, 'string');
        assert.notEqual(line.errorCode, 'unknown');
      }
    });

    test('short lease defers and redelivers', async () => {
      const tokens: string[] = [];
      for (let index = 0; index < 3; index += 1) {
        tokens.push((await harness.vault.create({ recordType: 'customer', values: customerValues(50 + index), actor, purpose: 'signup' })).subjectToken);
      }
      const inner = createFolderDestination(outbound());
      const slow: Destination = {
        kind: 'folder',
        async put(key, body) {
          await new Promise((resolve) => setTimeout(resolve, 80));
          await inner.put(key, body);
        },
        remove: (key) => inner.remove(key),
        close: () => inner.close(),
      };
      const running = start({ destinations: new Map([['aws', slow]]), leaseMs: 100, concurrency: 1 });

      await running.drain();

      for (const token of tokens) {
        assert.ok(await readCopy(outbound(), token), `copy of ${token} must exist`);
      }
      assert.ok(harness.logLines().some((line) => line.event === 'replication.lease_running_out'));
    });

    test('log lines contain no value', async () => {
      const log = JSON.stringify(harness.logLines());
      for (const value of ['Testperson', 'example.de', '1234567', 'Nick', '1990-04-03', '10115', 'LOY-']) {
        assert.equal(log.includes(value), false, `log must not contain ${value}`);
      }
    });

    test('two workers share the outbox', async () => {
      const tokens: string[] = [];
      for (let index = 0; index < 30; index += 1) {
        tokens.push((await harness.vault.create({ recordType: 'customer', values: customerValues(100 + index), actor, purpose: 'signup' })).subjectToken);
      }
      const firstWorker = startReplicationWorker({ ...harness, pollMs: 20, retry: fastRetry, batchSize: 4 });
      const secondWorker = startReplicationWorker({ ...harness, pollMs: 20, retry: fastRetry, batchSize: 4 });
      try {
        await Promise.all([firstWorker.drain(), secondWorker.drain()]);
      } finally {
        await Promise.all([firstWorker.stop(), secondWorker.stop()]);
      }

      for (const token of tokens) {
        assert.ok(await readCopy(outbound(), token), `copy of ${token} must exist`);
      }
      assert.ok(firstWorker.stats.delivered + secondWorker.stats.delivered >= 60);
    });

    test('stop finishes and stays stopped', async () => {
      const running = start();
      await running.stop();
      worker = undefined;

      const created = await harness.vault.create({ recordType: 'customer', values: customerValues(7), actor, purpose: 'signup' });
      await new Promise((resolve) => setTimeout(resolve, 100));

      assert.equal(await readCopy(outbound(), created.subjectToken), undefined);
      await assert.rejects(running.drain(100));
    });
  });

  describe(`replication worker with S3 on ${database.name}`, () => {
    let harness: ReplicationHarness;
    let server: TestS3Server;

    before(async () => {
      server = await startTestS3Server();
      const document = testPolicyDocument();
      document.destinations = {
        aws: {
          target: { kind: 's3', bucket: server.bucket, prefix: 'eu/', endpoint: server.endpoint, forcePathStyle: true },
          records: { customer: { email: 'token', country: 'clear' } },
        },
      };
      harness = await openReplicationHarness(database, parsePolicy(document));
    });
    after(async () => {
      await harness.close();
      await server.dispose();
    });

    test('S3 outage is retried without loss', async () => {
      const running = startReplicationWorker({ ...harness, pollMs: 20, retry: fastRetry });
      try {
        // s3rver 3.7 deletes a key's folder when it becomes empty, and a PUT of another key in that folder at the
        // same moment crashes it with ENOENT. The placeholder keeps the folder; AWS S3 has no folders.
        await server.putText('eu/customer/placeholder.txt', 'keeps the folder');
        const first = await harness.vault.create({ recordType: 'customer', values: customerValues(8), actor, purpose: 'signup' });
        await running.drain();
        const body = await server.getText(`eu/customer/${first.subjectToken}.json`);
        assert.ok(body);
        assert.deepEqual(Object.keys((JSON.parse(body) as PartialCopy).fields).sort(), ['country', 'email']);

        await server.stop();
        const second = await harness.vault.create({ recordType: 'customer', values: customerValues(9), actor, purpose: 'signup' });
        await harness.vault.erase({ subjectToken: first.subjectToken, actor, purpose: 'support' });
        await waitFor(() => running.stats.failed >= 2, 'deliveries to fail while S3 is down');

        await server.start();
        await running.drain();

        assert.deepEqual(await server.listKeys(), [`eu/customer/${second.subjectToken}.json`, 'eu/customer/placeholder.txt'].sort());
        const failure = harness.logLines().find((line) => line.event === 'replication.delivery_failed');
        assert.equal(failure?.errorCode, 'ECONNREFUSED');
      } finally {
        await running.stop();
      }
    });
  });
}

describe('replication worker without database', () => {
  test('logs outbox failures with backoff', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const logger = pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
    const unreachable = {
      kind: 'postgres',
      pool: { query: () => Promise.reject(refused) },
      close: () => Promise.resolve(),
    } as unknown as Database;
    const dataDir = await mkdtemp(path.join(tmpdir(), 'domicile-no-database-'));
    const keys: LocalKeyProvider = await openLocalKeyFile(path.join(dataDir, 'kek.json'));
    const keyring = testKeyring();
    const running = startReplicationWorker({
      db: unreachable,
      vault: createVault({ db: unreachable, policy: testPolicy(), keys, keyring, logger }),
      policy: testPolicy(),
      keyring,
      logger,
      dataDir,
      pollMs: 5,
    });

    await waitFor(() => lines.filter((line) => line.event === 'replication.outbox_failed').length >= 3, 'three logged outbox failures');
    await running.stop();

    const failures = lines.filter((line) => line.event === 'replication.outbox_failed');
    assert.deepEqual(failures.slice(0, 3).map((line) => line.consecutiveFailures), [1, 2, 4]);
    assert.equal(failures[0]?.errorCode, 'ECONNREFUSED');
    await assert.rejects(running.drain(50));
    await keys.close();
    await rm(dataDir, { recursive: true, force: true });
  });
});
