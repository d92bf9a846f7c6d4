import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';
import { parsePolicy } from '../policy/load.ts';
import type { Policy } from '../policy/schema.ts';
import { recordWithRandomTokens } from '../gateway/random-egress.ts';
import type { PartialCopy } from '../replication/project.ts';
import { startReplicationWorker } from '../replication/worker.ts';
import { getJob } from '../store/jobs.ts';
import { startMaintenanceWorker } from '../store/maintenance.ts';
import { loadKeyring, rotateTokenizationSecret } from '../store/keyring-store.ts';
import { countStaleCopies, createRetokenizeRunner, startRetokenize } from '../store/retokenize.ts';
import { openTestVault, closeTestVault, silentLogger, testDatabases } from '../store/testing.ts';
import { tokenizationKeyUsage } from '../store/tokenization-retire.ts';
import { createTokenStore } from '../store/token-store.ts';
import type { Actor } from '../store/types.ts';
import { createVault } from '../store/vault.ts';
import { isIbanValid, isLuhnValid } from '../tokenizer/check-digits.ts';
import { formatPreservingDetokenize, formatPreservingToken } from '../tokenizer/format-preserving.ts';
import type { Keyring } from '../tokenizer/keyring.ts';

const actor: Actor = { id: 'fp-test', location: 'in-country' };
const abroad: Actor = { id: 'fp-test-abroad', location: 'abroad' };
const logger = silentLogger();

const policy: Policy = parsePolicy({
  version: 1,
  defaultRegion: 'DE',
  purposes: ['support'],
  recordTypes: {
    member: {
      fields: {
        email: { type: 'email', class: 'direct', egress: 'token', token: { kind: 'format-preserving' } },
        phone: { type: 'phone', class: 'direct', egress: 'token', token: { kind: 'format-preserving' } },
        card: { type: 'nationalId', class: 'direct', egress: 'token', token: { kind: 'format-preserving', checkDigit: 'luhn' } },
        iban: { type: 'nationalId', class: 'direct', egress: 'token', token: { kind: 'format-preserving', checkDigit: 'iban-mod97' } },
        code: { type: 'nationalId', class: 'direct', egress: 'token', token: { kind: 'format-preserving', fallback: 'random' } },
      },
    },
  },
  destinations: {
    abroad: { target: { kind: 'folder', path: 'abroad' }, records: { member: { email: 'token', phone: 'token', card: 'token', iban: 'token', code: 'token' } } },
  },
});

function memberValues(index: number): Record<string, string> {
  return {
    email: `synthetic.member${index}@example.org`,
    phone: `+49 151 1234${String(index).padStart(3, '0')}`,
    card: '4111111111111111',
    iban: 'DE89370400440532013000',
    code: index % 2 === 0 ? '4242' : '42424242',
  };
}

async function readCopy(dataDir: string, subjectToken: string): Promise<PartialCopy> {
  return JSON.parse(await readFile(path.join(dataDir, 'abroad', 'member', `${subjectToken}.json`), 'utf8')) as PartialCopy;
}

function assertCopyTokens(copy: PartialCopy, keyring: Keyring, version: number, values: Record<string, string>): void {
  const fp = (field: string, type: 'email' | 'phone' | 'nationalId', options = {}): string =>
    formatPreservingDetokenize(keyring, `member.${field}`, type, String(copy.fields[field]), version, options);
  assert.equal(fp('email', 'email'), values.email);
  assert.match(String(copy.fields.email), /^[0-9a-z]{9}\.[0-9a-z]+@[0-9a-z.]+\.invalid$/);
  assert.match(String(copy.fields.phone), /^\+49[0-9]{10}$/);
  assert.ok(isLuhnValid(String(copy.fields.card)));
  assert.equal(fp('card', 'nationalId', { checkDigit: 'luhn' }), '4111111111111111');
  assert.ok(isIbanValid(String(copy.fields.iban)));
  assert.equal(fp('iban', 'nationalId', { checkDigit: 'iban-mod97' }), 'DE89370400440532013000');
}

for (const database of testDatabases()) {
  describe(`format-preserving tokens end to end (${database.name})`, () => {
    test('tokenize API falls back below the floor', async () => {
      const { db, store } = await openTestVault(database, policy);
      try {
        const tokens = createTokenStore({ db, policy, keys: store.keys, keyring: store.keyring, logger });
        const items = [
          { recordType: 'member', field: 'code', value: '4242' },
          { recordType: 'member', field: 'code', value: '4242' },
          { recordType: 'member', field: 'code', value: '42424242' },
          { recordType: 'member', field: 'phone', value: '+683 1234' },
          { recordType: 'member', field: 'card', value: '4111111111111112' },
          { recordType: 'member', field: 'email', value: 'Ana.Lima@Example.COM' },
        ];
        const results = await tokens.tokenize({ actor: abroad, recordTypes: ['member'], items });
        const [short, again, long, phone, card, email] = results.map((result) => ('token' in result ? result.token : result.error.code));
        assert.match(String(short), /^rnd_v1_[a-z2-7]{26}$/);
        assert.equal(again, short, 'fallback tokens are stable');
        assert.match(String(long), /^[0-9]{8}$/);
        assert.equal(phone, 'invalid_value');
        assert.equal(card, 'invalid_value');
        assert.match(String(email), /^[0-9a-z]{3}\.[0-9a-z]{4}@[0-9a-z]+\.invalid$/);

        const back = await tokens.detokenize({
          actor,
          purpose: 'support',
          recordTypes: ['member'],
          items: [
            { recordType: 'member', field: 'code', token: String(short) },
            { recordType: 'member', field: 'code', token: String(long) },
            { recordType: 'member', field: 'email', token: String(email) },
          ],
        });
        assert.deepEqual(back, [{ value: '4242' }, { value: '42424242' }, { value: 'ana.lima@example.com' }]);
      } finally {
        await closeTestVault(db, store);
      }
    });

    test('record read abroad falls back below the floor', async () => {
      const { db, store } = await openTestVault(database, policy);
      try {
        const { subjectToken } = await store.vault.create({ recordType: 'member', values: memberValues(2), actor, purpose: 'support' });
        const view = await store.vault.read({ subjectToken, recordType: 'member', actor, purpose: 'support' });
        const response = await recordWithRandomTokens({ policy, keyring: store.keyring, vault: store.vault }, view, { location: 'abroad', scopes: {} });
        assert.match(String(response.values.code), /^rnd_v1_[a-z2-7]{26}$/);
        assert.ok(isLuhnValid(String(response.values.card)));
        assert.ok(isIbanValid(String(response.values.iban)));
        assert.match(String(response.values.email), /^[0-9a-z]{9}\.[0-9a-z]+@[0-9a-z.]+\.invalid$/);
        assert.deepEqual(response.tokenVersions, { email: 1, phone: 1, card: 1, iban: 1, code: 1 });

        const again = await recordWithRandomTokens({ policy, keyring: store.keyring, vault: store.vault }, view, { location: 'abroad', scopes: {} });
        assert.equal(again.values.code, response.values.code);
        const back = await store.vault.tokens.detokenize({
          actor,
          purpose: 'support',
          recordTypes: ['member'],
          items: [{ recordType: 'member', field: 'code', token: String(response.values.code) }],
        });
        assert.deepEqual(back, [{ value: '4242' }]);
      } finally {
        await closeTestVault(db, store);
      }
    });

    test('retokenize job re-issues copies under the new version', async () => {
      const { db, store } = await openTestVault(database, policy);
      try {
        const created: Array<{ subjectToken: string; values: Record<string, string> }> = [];
        for (let index = 1; index <= 5; index++) {
          const values = memberValues(index);
          const { subjectToken } = await store.vault.create({ recordType: 'member', values, actor, purpose: 'support' });
          const view = await store.vault.read({ subjectToken, recordType: 'member', actor, purpose: 'support' });
          created.push({ subjectToken, values: Object.fromEntries(Object.entries(view.values).map(([key, value]) => [key, String(value)])) });
        }

        const first = startReplicationWorker({ db, vault: store.vault, tokens: store.vault.tokens, policy, keyring: store.keyring, logger, dataDir: db.dataDir, pollMs: 20 });
        await first.drain();
        await first.stop();
        for (const { subjectToken, values } of created) {
          const copy = await readCopy(db.dataDir, subjectToken);
          assertCopyTokens(copy, store.keyring, 1, values);
          if (values.code === '4242') {
            assert.match(String(copy.fields.code), /^rnd_v1_/);
          }
        }

        await rotateTokenizationSecret(db, store.keys);
        const keyring = await loadKeyring(db, store.keys);
        assert.equal(keyring.currentVersion, 2);
        assert.equal(await countStaleCopies(db, 2), 5);

        const { job } = await startRetokenize(db, 2);
        assert.equal(job.total, 5);
        assert.equal((await startRetokenize(db, 2)).resumed, true);

        // The first run stops after one batch, as a stopped process would; the second resumes at its cursor.
        const stopping = createRetokenizeRunner({ db, policy, logger, batchSize: 2, onProgress: () => { throw new Error('process stopped'); } });
        await stopping.runOnce();
        const stopped = await getJob(db, job.id);
        assert.equal(stopped?.state, 'pending');
        assert.equal(stopped?.done, 2);
        await db.pool.query('UPDATE jobs SET lease_until = now() WHERE id = $1', [job.id]);
        const progress: number[] = [];
        await createRetokenizeRunner({ db, policy, logger, batchSize: 2, onProgress: (done) => progress.push(done) }).runOnce();
        const completed = await getJob(db, job.id);
        assert.equal(completed?.state, 'completed');
        assert.equal(completed?.done, 5);
        assert.deepEqual(progress, [4, 5]);
        const queued = await db.pool.query<{ count: string }>("SELECT count(*) AS count FROM outbox WHERE completed_at IS NULL AND op = 'upsert'");
        assert.equal(Number(queued.rows[0]?.count), 5);

        const vault = createVault({ db, policy, keys: store.keys, keyring, logger });
        const second = startReplicationWorker({ db, vault, tokens: vault.tokens, policy, keyring, logger, dataDir: db.dataDir, pollMs: 20 });
        await second.drain();
        await second.stop();
        for (const { subjectToken, values } of created) {
          const copy = await readCopy(db.dataDir, subjectToken);
          assertCopyTokens(copy, keyring, 2, values);
          assert.equal(copy.fields.email, formatPreservingToken(keyring, 'member.email', 'email', values.email ?? ''));
          if (values.code === '4242') {
            assert.match(String(copy.fields.code), /^rnd_v2_/);
          }
        }
        const usage = await tokenizationKeyUsage(db.pool, 1);
        assert.equal(usage.partialCopies, 0);
        assert.equal(await countStaleCopies(db, 2), 0);
        // The version 1 mappings of the replaced fallback tokens stay until random mappings are re-tokenized too.
        assert.equal(usage.randomTokens, 2);
      } finally {
        await closeTestVault(db, store);
      }
    });

    test('maintenance worker runs a retokenize job', async () => {
      const { db, store } = await openTestVault(database, policy);
      try {
        for (let index = 1; index <= 3; index++) {
          await store.vault.create({ recordType: 'member', values: memberValues(index), actor, purpose: 'support' });
        }
        const replication = startReplicationWorker({ db, vault: store.vault, tokens: store.vault.tokens, policy, keyring: store.keyring, logger, dataDir: db.dataDir, pollMs: 20 });
        await replication.drain();
        await replication.stop();

        await rotateTokenizationSecret(db, store.keys);
        const keyring = await loadKeyring(db, store.keys);
        const { job } = await startRetokenize(db, 2);
        const maintenance = startMaintenanceWorker({
          deps: { db, policy, keys: store.keys, keyring, logger },
          rewrap: { runOnce: () => Promise.resolve(undefined) },
          retokenize: createRetokenizeRunner({ db, policy, logger }),
          intervalMs: 50,
          logger,
        });
        try {
          const deadline = Date.now() + 30_000;
          while ((await getJob(db, job.id))?.state !== 'completed' && Date.now() < deadline) {
            await new Promise((resolve) => setTimeout(resolve, 50));
          }
        } finally {
          await maintenance.stop();
        }
        assert.equal((await getJob(db, job.id))?.state, 'completed');
        const queued = await db.pool.query<{ count: string }>("SELECT count(*) AS count FROM outbox WHERE completed_at IS NULL AND op = 'upsert'");
        assert.equal(Number(queued.rows[0]?.count), 3);
      } finally {
        await closeTestVault(db, store);
      }
    });
  });
}
