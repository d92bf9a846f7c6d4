import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, beforeEach, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadPolicyFile } from '../policy/load.ts';
import { appendAudit, verifyAudit } from './audit.ts';
import { auditAnchorPath, openAuditAnchorer, verifyAuditAnchors, type AuditAnchorer } from './audit-anchor.ts';
import { withTransaction } from './database.ts';
import { createTestVault, silentLogger, testDatabases, type OpenedTestDatabase, type TestVault } from './testing.ts';
import type { Actor } from './types.ts';

const policy = loadPolicyFile(fileURLToPath(new URL('../examples/policy.yaml', import.meta.url)));
const actor: Actor = { id: 'anchor-test', location: 'in-country' };

for (const database of testDatabases()) {
  describe(`audit anchors on ${database.name}`, () => {
    let db: OpenedTestDatabase | undefined;
    let store: TestVault;
    let path: string;
    let anchorer: AuditAnchorer;

    async function appendRows(count: number): Promise<void> {
      const opened = current();
      for (let i = 0; i < count; i += 1) {
        await withTransaction(opened, (client) => appendAudit(client, store.keyring, { actor, action: 'record.read', purpose: 'support', fields: [`field${i}`] }));
      }
    }

    /** Deletes the audit rows after `seq` and moves the head back to row `seq`, as someone with database access could. */
    async function rewindTo(seq: number): Promise<void> {
      await current().pool.query('DELETE FROM audit_log WHERE seq > $1', [seq]);
      await current().pool.query('UPDATE audit_head SET seq = $1, hash = (SELECT hash FROM audit_log WHERE seq = $1) WHERE id = 1', [seq]);
    }

    function current(): OpenedTestDatabase {
      assert.ok(db !== undefined);
      return db;
    }

    beforeEach(async () => {
      await db?.close();
      db = await database.open();
      store = await createTestVault(db, policy);
      path = join(db.dataDir, 'audit-anchors.jsonl');
      anchorer = await openAuditAnchorer({ db, keyring: store.keyring, path, logger: silentLogger() });
      await appendRows(5);
    });
    after(async () => {
      await db?.close();
    });

    test('normal growth verifies', async () => {
      assert.equal((await anchorer.anchorOnce())?.headSeq, 5);
      await appendRows(3);
      assert.equal((await anchorer.anchorOnce())?.headSeq, 8);
      await appendRows(2);

      assert.deepEqual(await verifyAudit(current(), store.keyring), { ok: true, count: 10 });
      assert.deepEqual(await verifyAuditAnchors(current(), store.keyring, path), { ok: true, anchors: 2, lastSeq: 8 });
    });

    test('unmoved head writes no anchor', async () => {
      await anchorer.anchorOnce();
      assert.equal(await anchorer.anchorOnce(), undefined);
      const lines = (await readFile(path, 'utf8')).trim().split('\n');
      assert.equal(lines.length, 1);
    });

    test('deleted tail with rewound head is reported', async () => {
      await anchorer.anchorOnce();
      await rewindTo(3);

      assert.deepEqual(await verifyAudit(current(), store.keyring), { ok: true, count: 3 }, 'the shortened chain alone verifies');
      const result = await verifyAuditAnchors(current(), store.keyring, path);
      assert.equal(result.ok, false);
      assert.equal(!result.ok && result.seq, 5);
      assert.match(!result.ok ? result.reason : '', /missing/);
    });

    test('rewritten tail is reported', async () => {
      await anchorer.anchorOnce();
      await rewindTo(3);
      // Someone who also holds the keyring can write a new, valid tail.
      await appendRows(2);

      assert.deepEqual(await verifyAudit(current(), store.keyring), { ok: true, count: 5 });
      const result = await verifyAuditAnchors(current(), store.keyring, path);
      assert.equal(!result.ok && result.seq, 5);
      assert.match(!result.ok ? result.reason : '', /another hash/);
    });

    test('anchor after a rewind still reports the old anchor', async () => {
      await anchorer.anchorOnce();
      await rewindTo(2);
      await appendRows(4);
      assert.equal((await anchorer.anchorOnce())?.headSeq, 6);

      const result = await verifyAuditAnchors(current(), store.keyring, path);
      assert.equal(!result.ok && result.seq, 5);
    });

    test('edited anchor file is reported', async () => {
      await anchorer.anchorOnce();
      await appendRows(1);
      await anchorer.anchorOnce();
      const text = await readFile(path, 'utf8');
      await writeFile(path, text.replace('"headSeq":6', '"headSeq":4'));

      const result = await verifyAuditAnchors(current(), store.keyring, path);
      assert.equal(result.ok, false);
      assert.match(!result.ok ? result.reason : '', /line 2: line was changed/);
    });

    test('copy of anchor file kept elsewhere verifies', async () => {
      await anchorer.anchorOnce();
      const copy = join(current().dataDir, 'elsewhere', 'anchors-copy.jsonl');
      const reopened = await openAuditAnchorer({ db: current(), keyring: store.keyring, path: copy, logger: silentLogger() });
      await reopened.anchorOnce();
      await rewindTo(4);

      assert.equal((await verifyAuditAnchors(current(), store.keyring, copy)).ok, false);
      assert.deepEqual(await verifyAuditAnchors(current(), store.keyring, join(current().dataDir, 'none.jsonl')), { ok: true, anchors: 0, lastSeq: undefined });
    });

    test('reopened anchorer continues the chain', async () => {
      await anchorer.anchorOnce();
      await appendRows(2);
      const reopened = await openAuditAnchorer({ db: current(), keyring: store.keyring, path, logger: silentLogger() });
      assert.equal((await reopened.anchorOnce())?.seq, 2);
      assert.deepEqual(await verifyAuditAnchors(current(), store.keyring, path), { ok: true, anchors: 2, lastSeq: 7 });
    });
  });
}

test('anchor file path from environment', () => {
  assert.equal(auditAnchorPath('/srv/domicile', {}), '/srv/domicile/audit-anchors.jsonl');
  assert.equal(auditAnchorPath('/srv/domicile', { DOMICILE_AUDIT_ANCHOR_FILE: '/backup/anchors.jsonl' }), '/backup/anchors.jsonl');
});
