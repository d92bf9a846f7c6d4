import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { projectRecord, randomTokenRequests, type PartialCopy } from '../replication/project.ts';
import { memberValues, tokenTestPolicy } from '../store/fixtures/tokens.ts';
import { closeTestVault, openTestVault, testDatabases, type OpenedTestDatabase, type TestVault } from '../store/testing.ts';
import { randomTokenLookup } from '../store/token-store.ts';
import type { Actor } from '../store/types.ts';

const policy = tokenTestPolicy();
const actor: Actor = { id: 'credential:test', location: 'in-country' };

for (const database of testDatabases()) {
  describe(`per-destination token namespaces on ${database.name}`, () => {
    let db: OpenedTestDatabase;
    let store: TestVault;

    before(async () => {
      ({ db, store } = await openTestVault(database, policy));
    });

    after(() => closeTestVault(db, store));

    /** Projects a record the way the replication worker does: random tokens first, then the copy. */
    async function project(destination: string, subjectId: string): Promise<PartialCopy> {
      const view = await store.vault.loadForReplication(subjectId, 'member');
      assert.ok(view !== undefined);
      assert.ok(!('erased' in view));
      const tokens = await store.vault.tokens.randomTokensForSubject(view.subjectToken, randomTokenRequests(policy, destination, view));
      return projectRecord(policy, destination, view, store.keyring, { randomToken: randomTokenLookup(tokens) });
    }

    async function createMember(n: number): Promise<{ subjectId: string; subjectToken: string }> {
      const { subjectToken } = await store.vault.create({ recordType: 'member', values: memberValues(n), actor, purpose: 'signup' });
      const row = await db.pool.query<{ id: string }>('SELECT id FROM subjects WHERE token = $1', [subjectToken]);
      return { subjectId: row.rows[0]?.id ?? '', subjectToken };
    }

    test('own namespace gives other tokens', async () => {
      const member = await createMember(51);
      const shared = await project('warehouse', member.subjectId);
      const own = await project('partner', member.subjectId);

      assert.equal(own.subjectToken, shared.subjectToken);
      for (const field of ['email', 'phone', 'loyaltyId', 'memberNo']) {
        assert.ok(typeof shared.fields[field] === 'string', field);
        assert.notEqual(own.fields[field], shared.fields[field], field);
      }
      assert.deepEqual(shared.tokenVersions, { email: 1, phone: 1, loyaltyId: 1, memberNo: 1 });

      const api = await store.vault.tokens.tokenize({
        actor,
        recordTypes: ['member'],
        items: [{ recordType: 'member', field: 'email', value: memberValues(51).email }],
      });
      assert.deepEqual(api[0], { token: shared.fields.email, keyVersion: 1 });
    });

    test('projection keeps random tokens stable', async () => {
      const member = await createMember(52);
      const first = await project('partner', member.subjectId);
      const second = await project('partner', member.subjectId);
      assert.equal(second.fields.loyaltyId, first.fields.loyaltyId);
    });

    test('detokenize with destination resolves own tokens', async () => {
      const member = await createMember(53);
      const own = await project('partner', member.subjectId);
      const items = [
        { recordType: 'member', field: 'loyaltyId', token: String(own.fields.loyaltyId), destination: 'partner' },
        { recordType: 'member', field: 'phone', token: String(own.fields.phone), destination: 'partner', keyVersion: own.tokenVersions?.phone ?? 1 },
        { recordType: 'member', field: 'loyaltyId', token: String(own.fields.loyaltyId) },
      ];

      const results = await store.vault.tokens.detokenize({ actor, purpose: 'support', recordTypes: ['member'], items });
      assert.deepEqual(results[0], { value: memberValues(53).loyaltyId });
      assert.deepEqual(results[1], { value: '+493055501053' });
      assert.equal(results[2] !== undefined && 'error' in results[2] ? results[2].error.code : '', 'not_found');
    });

    test('erasure removes destination mappings', async () => {
      const member = await createMember(54);
      await project('partner', member.subjectId);
      await project('warehouse', member.subjectId);
      await store.vault.tokens.recordTokenVersion({ destination: 'partner', subjectToken: member.subjectToken, recordType: 'member', keyVersion: 1 });

      await store.vault.erase({ subjectToken: member.subjectToken, actor, purpose: 'support' });

      const mappings = await db.pool.query('SELECT 1 FROM token_mappings WHERE subject_id = $1', [member.subjectId]);
      const uses = await db.pool.query('SELECT 1 FROM token_version_uses WHERE subject_id = $1', [member.subjectId]);
      assert.equal(mappings.rowCount, 0);
      assert.equal(uses.rowCount, 0);
    });
  });
}
