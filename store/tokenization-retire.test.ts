import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import request from 'supertest';
import { createTestGateway } from '../gateway/testing.ts';
import { loadPolicyFile } from '../policy/load.ts';
import { verifyAudit } from './audit.ts';
import { createCredential } from './credentials.ts';
import { openAuditAnchorer, verifyAuditAnchors } from './audit-anchor.ts';
import { loadKeyring, rotateTokenizationSecret } from './keyring-store.ts';
import { rewrapKeys } from './rewrap.ts';
import { closeTestVault, openTestVault, silentLogger, testDatabases, type OpenedTestDatabase, type TestVault } from './testing.ts';
import { retireTokenizationSecret, tokenizationKeyUsage } from './tokenization-retire.ts';
import type { Actor } from './types.ts';
import { createVault } from './vault.ts';

const policy = loadPolicyFile(fileURLToPath(new URL('../examples/policy.yaml', import.meta.url)));
const actor: Actor = { id: 'retire-test', location: 'in-country' };
const operator: Actor = { id: 'operator:test', location: 'in-country' };

for (const database of testDatabases()) {
  describe(`retired tokenization keys on ${database.name}`, () => {
    let db: OpenedTestDatabase;
    let store: TestVault;

    before(async () => {
      ({ db, store } = await openTestVault(database, policy));
    });
    after(() => closeTestVault(db, store));

    test('a version with audit entries retires and its entries still verify', async () => {
      const anchorPath = join(db.dataDir, 'anchors.jsonl');
      // Audit entries and an anchor under version 1; the erasure removes the blind index that needed version 1.
      const created = await store.vault.create({ recordType: 'customer', values: { name: 'Retire Synthetic', email: 'retire.synthetic@example.org' }, actor, purpose: 'signup' });
      await store.vault.read({ subjectToken: created.subjectToken, recordType: 'customer', actor, purpose: 'support' });
      await (await openAuditAnchorer({ db, keyring: store.keyring, path: anchorPath, logger: silentLogger() })).anchorOnce();
      await store.vault.erase({ subjectToken: created.subjectToken, actor, purpose: 'support' });
      const usage = await tokenizationKeyUsage(db.pool, 1);
      assert.ok(usage.auditEntries > 0);
      assert.equal(usage.blindIndexes + usage.randomTokens + usage.partialCopies, 0);

      await rotateTokenizationSecret(db, store.keys);
      const rotated = await loadKeyring(db, store.keys);
      await retireTokenizationSecret(db, store.keys, rotated, 1, operator);

      // A KEK rotation rewraps the retained audit keys like a secret.
      await store.keys.rotate();
      const rewrapped = await rewrapKeys(db, store.keys);
      assert.equal(rewrapped.tokenizationSecrets, 2);

      const reloaded = await loadKeyring(db, store.keys);
      assert.equal(reloaded.has(1), false);
      assert.equal(reloaded.hasAuditKeys(1), true);
      assert.throws(() => reloaded.derive('blind-index', 'customer.email', 1), /not in the keyring/);
      const count = Number((await db.pool.query<{ n: string }>('SELECT count(*) AS n FROM audit_log')).rows[0]?.n);
      assert.deepEqual(await verifyAudit(db, reloaded), { ok: true, count });
      const anchors = await verifyAuditAnchors(db, reloaded, anchorPath);
      assert.equal(anchors.ok, true);

      // The gateway keeps working under the new version, and the chain keeps verifying.
      const vault = createVault({ db, policy, keys: store.keys, keyring: reloaded, logger: silentLogger() });
      await vault.create({ recordType: 'customer', values: { name: 'After Retire', email: 'after.retire@example.org' }, actor, purpose: 'signup' });
      assert.deepEqual(await verifyAudit(db, reloaded), { ok: true, count: count + 1 });
    });

    test('a retired version cannot be retired again', async () => {
      const keyring = await loadKeyring(db, store.keys);
      await assert.rejects(retireTokenizationSecret(db, store.keys, keyring, 1, operator), /does not exist or was already retired/);
    });
  });
}

for (const database of testDatabases()) {
  describe(`writes under a retired tokenization key version on ${database.name}`, () => {
    let db: OpenedTestDatabase;
    let store: TestVault;

    before(async () => {
      ({ db, store } = await openTestVault(database, policy));
    });
    after(() => closeTestVault(db, store));

    async function countRows(table: 'subjects' | 'blind_index'): Promise<number> {
      return Number((await db.pool.query<{ n: string }>(`SELECT count(*) AS n FROM ${table}`)).rows[0]?.n);
    }

    test('a write in flight is counted before the retirement', async () => {
      await rotateTokenizationSecret(db, store.keys);
      const rotated = await loadKeyring(db, store.keys);
      const subjectId = randomUUID();
      const writer = await db.pool.connect();
      let retiring: Promise<void> | undefined;
      try {
        await writer.query('BEGIN');
        await writer.query("INSERT INTO subjects (id, token) VALUES ($1, 'sub_inflightretiretestaaaaaaaa')", [subjectId]);
        await writer.query("INSERT INTO blind_index (record_type, field, key_version, digest, subject_id) VALUES ('customer', 'email', 1, '\\x01', $1)", [subjectId]);
        // The retirement waits for the uncommitted blind index row (its table lock on Postgres, the one pooled connection on PGlite).
        retiring = retireTokenizationSecret(db, store.keys, rotated, 1, operator);
        retiring.catch(() => undefined);
        await new Promise((resolve) => setTimeout(resolve, 200));
        await writer.query('COMMIT');
      } finally {
        writer.release();
      }
      await assert.rejects(retiring, /still needed by 1 search blind indexes/);

      await db.pool.query('DELETE FROM blind_index WHERE subject_id = $1', [subjectId]);
      await db.pool.query('DELETE FROM subjects WHERE id = $1', [subjectId]);
    });

    test('a process with keys loaded before the retirement cannot write under it', async () => {
      // store.vault loaded the keys while version 1 was current.
      const current = await loadKeyring(db, store.keys);
      assert.equal(current.currentVersion, 2);
      await retireTokenizationSecret(db, store.keys, current, 1, operator);
      const subjects = await countRows('subjects');
      const indexes = await countRows('blind_index');

      await assert.rejects(
        store.vault.create({ recordType: 'customer', values: { name: 'Stale Writer', email: 'stale.writer@example.org' }, actor, purpose: 'signup' }),
        (error: unknown) => (error as { code?: unknown }).code === 'DK001',
      );
      assert.equal(await countRows('subjects'), subjects);
      assert.equal(await countRows('blind_index'), indexes);

      const vault = createVault({ db, policy, keys: store.keys, keyring: current, logger: silentLogger() });
      await vault.create({ recordType: 'customer', values: { name: 'Fresh Writer', email: 'fresh.writer@example.org' }, actor, purpose: 'signup' });
      assert.equal(await countRows('subjects'), subjects + 1);
      const versions = await db.pool.query<{ key_version: number }>('SELECT DISTINCT key_version FROM blind_index');
      assert.deepEqual(versions.rows.map((row) => row.key_version), [2]);
    });

    test('the API answers 503 to a stale process without echoing values', async () => {
      const { secret } = await createCredential(db, { name: 'stale', location: 'in-country', scopes: { operations: ['records:create'], recordTypes: ['customer'] } });
      const app = createTestGateway(db, policy, store);
      const response = await request(app)
        .post('/api/v1/records')
        .set('Authorization', `Bearer ${secret}`)
        .send({ recordType: 'customer', values: { name: 'Qvintorel Staleness', email: 'qvintorel.stale@example.org' }, purpose: 'signup' });
      assert.equal(response.status, 503);
      assert.equal(response.body.error.code, 'unavailable');
      assert.match(response.body.error.message, /restarted to load the current tokenization keys/);
      assert.equal(response.text.toLowerCase().includes('qvintorel'), false);
    });
  });
}
