import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { DomicileError } from '../policy/errors.ts';
import { parseToken } from '../tokenizer/deterministic.ts';
import { verifyAudit } from './audit.ts';
import { memberValues, tokenTestPolicy } from './fixtures/tokens.ts';
import { loadKeyring, rotateTokenizationSecret } from './keyring-store.ts';
import { closeTestVault, openTestVault, testDatabases, type OpenedTestDatabase, type TestVault } from './testing.ts';
import type { DetokenizeResult, TokenizeResult } from './token-store.ts';
import { retireTokenizationSecret, tokenizationKeyUsage } from './tokenization-retire.ts';
import type { Actor } from './types.ts';
import { createVault } from './vault.ts';

const policy = tokenTestPolicy();
const actor: Actor = { id: 'credential:test', location: 'in-country' };
const scope = ['member', 'note'];

function tokenOf(result: TokenizeResult | undefined): string {
  assert.ok(result !== undefined && 'token' in result, `expected a token, got ${JSON.stringify(result)}`);
  return result.token;
}

function valueOf(result: DetokenizeResult | undefined): string | number | boolean {
  assert.ok(result !== undefined && 'value' in result, `expected a value, got ${JSON.stringify(result)}`);
  return result.value;
}

function errorCodeOf(result: TokenizeResult | DetokenizeResult | undefined): string {
  assert.ok(result !== undefined && 'error' in result, `expected an item error, got ${JSON.stringify(result)}`);
  return result.error.code;
}

for (const database of testDatabases()) {
  describe(`token store on ${database.name}`, () => {
    let db: OpenedTestDatabase;
    let store: TestVault;

    before(async () => {
      ({ db, store } = await openTestVault(database, policy));
    });

    after(() => closeTestVault(db, store));

    async function subjectRandomToken(subjectToken: string, field: 'loyaltyId' | 'memberNo', value: string): Promise<string> {
      const tokens = await store.vault.tokens.randomTokensForSubject(subjectToken, [
        { namespace: `member.${field}`, value, stable: field === 'memberNo' },
      ]);
      const token = [...tokens.values()][0];
      assert.ok(token !== undefined);
      return token;
    }

    test('subject random token round trip', async () => {
      const values = memberValues(1);
      const { subjectToken } = await store.vault.create({ recordType: 'member', values, actor, purpose: 'signup' });

      const token = await subjectRandomToken(subjectToken, 'loyaltyId', values.loyaltyId ?? '');
      assert.match(token, /^rnd_v1_[a-z2-7]{26}$/);
      assert.equal(await subjectRandomToken(subjectToken, 'loyaltyId', values.loyaltyId ?? ''), token);

      const [result] = await store.vault.tokens.detokenize({ actor, purpose: 'support', recordTypes: scope, items: [{ recordType: 'member', field: 'loyaltyId', token }] });
      assert.equal(valueOf(result), values.loyaltyId);
    });

    test('erasure removes random token mappings', async () => {
      const values = memberValues(2);
      const { subjectToken } = await store.vault.create({ recordType: 'member', values, actor, purpose: 'signup' });
      const token = await subjectRandomToken(subjectToken, 'loyaltyId', values.loyaltyId ?? '');

      await store.vault.erase({ subjectToken, actor, purpose: 'support' });

      const rows = await db.pool.query('SELECT 1 FROM token_mappings WHERE token = $1', [token]);
      assert.equal(rows.rowCount, 0);
      const [result] = await store.vault.tokens.detokenize({ actor, purpose: 'support', recordTypes: scope, items: [{ recordType: 'member', field: 'loyaltyId', token }] });
      assert.equal(errorCodeOf(result), 'not_found');
      await assert.rejects(subjectRandomToken(subjectToken, 'loyaltyId', values.loyaltyId ?? ''), DomicileError);
    });

    test('stable random tokens shared per value', async () => {
      const first = await store.vault.create({ recordType: 'member', values: memberValues(3), actor, purpose: 'signup' });
      const second = await store.vault.create({ recordType: 'member', values: { ...memberValues(4), memberNo: 'MB999111' }, actor, purpose: 'signup' });
      const third = await store.vault.create({ recordType: 'member', values: { ...memberValues(5), memberNo: 'MB999111' }, actor, purpose: 'signup' });

      const shared = await subjectRandomToken(second.subjectToken, 'memberNo', 'MB999111');
      assert.equal(await subjectRandomToken(third.subjectToken, 'memberNo', 'MB999111'), shared);
      assert.notEqual(await subjectRandomToken(first.subjectToken, 'memberNo', 'MB880003'), shared);

      const [apiToken] = await store.vault.tokens.tokenize({ actor, recordTypes: scope, items: [{ recordType: 'member', field: 'memberNo', value: 'mb-999 111' }] });
      assert.equal(tokenOf(apiToken), shared);

      // Erasing one holder keeps the token resolvable for the others.
      await store.vault.erase({ subjectToken: second.subjectToken, actor, purpose: 'support' });
      const [result] = await store.vault.tokens.detokenize({ actor, purpose: 'support', recordTypes: scope, items: [{ recordType: 'member', field: 'memberNo', token: shared }] });
      assert.equal(valueOf(result), 'MB999111');
    });

    test('concurrent stable tokenize gives one token', async () => {
      const calls = Array.from({ length: 6 }, () =>
        store.vault.tokens.tokenize({ actor, recordTypes: scope, items: [{ recordType: 'member', field: 'memberNo', value: 'MB424242' }] }),
      );
      const tokens = (await Promise.all(calls)).map(([result]) => tokenOf(result));
      assert.equal(new Set(tokens).size, 1);
      const rows = await db.pool.query("SELECT 1 FROM token_mappings WHERE namespace = 'member.memberNo' AND subject_id IS NULL AND token = $1", [tokens[0]]);
      assert.equal(rows.rowCount, 1);
    });

    test('unstable random tokens differ per subject', async () => {
      const first = await store.vault.create({ recordType: 'member', values: memberValues(6), actor, purpose: 'signup' });
      const second = await store.vault.create({ recordType: 'member', values: memberValues(6), actor, purpose: 'signup' });
      assert.notEqual(
        await subjectRandomToken(first.subjectToken, 'loyaltyId', 'LOY-70006'),
        await subjectRandomToken(second.subjectToken, 'loyaltyId', 'LOY-70006'),
      );
    });

    test('tokenize gives each kind and item errors', async () => {
      const items = [
        { recordType: 'member', field: 'email', value: ' Ada@Example.TEST ' },
        { recordType: 'member', field: 'phone', value: '030 5551234567' },
        { recordType: 'member', field: 'loyaltyId', value: 'LOY-1' },
        { recordType: 'member', field: 'loyaltyId', value: 'LOY-1' },
        { recordType: 'member', field: 'name', value: 'Someone' },
        { recordType: 'member', field: 'nope', value: 'x' },
        { recordType: 'ghost', field: 'email', value: 'x@example.test' },
        { recordType: 'member', field: 'email', value: 'not an email' },
        { recordType: 'note', field: 'text', value: 'hello' },
      ];
      const results = await store.vault.tokens.tokenize({ actor, recordTypes: ['member'], items });

      assert.equal(results.length, items.length);
      assert.match(tokenOf(results[0]), /^det_v1_[a-z2-7]{32}$/);
      assert.match(tokenOf(results[1]), /^\+49[0-9]{12}$/);
      assert.notEqual(tokenOf(results[1]), '+49305551234567');
      assert.match(tokenOf(results[2]), /^rnd_v1_/);
      assert.notEqual(tokenOf(results[3]), tokenOf(results[2]));
      assert.equal(errorCodeOf(results[4]), 'forbidden');
      assert.equal(errorCodeOf(results[5]), 'invalid_request');
      assert.equal(errorCodeOf(results[6]), 'invalid_request');
      assert.equal(errorCodeOf(results[7]), 'invalid_value');
      assert.equal(errorCodeOf(results[8]), 'forbidden');
      assert.deepEqual(results[7] !== undefined && 'error' in results[7] ? results[7].error.path : '', '$.items[7].value');
    });

    test('detokenize reverses random and format-preserving', async () => {
      const tokens = await store.vault.tokens.tokenize({
        actor,
        recordTypes: scope,
        items: [
          { recordType: 'member', field: 'phone', value: '+49 30 5551234567' },
          { recordType: 'member', field: 'loyaltyId', value: 'LOY-42' },
          { recordType: 'member', field: 'email', value: 'ada@example.test' },
        ],
      });
      const results = await store.vault.tokens.detokenize({
        actor,
        purpose: 'billing',
        recordTypes: scope,
        items: [
          { recordType: 'member', field: 'phone', token: tokenOf(tokens[0]) },
          { recordType: 'member', field: 'loyaltyId', token: tokenOf(tokens[1]) },
          { recordType: 'member', field: 'email', token: tokenOf(tokens[2]) },
          { recordType: 'member', field: 'loyaltyId', token: 'rnd_v1_aaaaaaaaaaaaaaaaaaaaaaaaaa' },
          { recordType: 'member', field: 'loyaltyId', token: 'not-a-token' },
        ],
      });
      assert.equal(valueOf(results[0]), '+49305551234567');
      assert.equal(valueOf(results[1]), 'LOY-42');
      assert.equal(errorCodeOf(results[2]), 'not_reversible');
      assert.equal(errorCodeOf(results[3]), 'not_found');
      assert.equal(errorCodeOf(results[4]), 'invalid_value');
    });

    test('detokenize audited with purpose and counts', async () => {
      const [token] = await store.vault.tokens.tokenize({ actor, recordTypes: scope, items: [{ recordType: 'member', field: 'loyaltyId', value: 'LOY-77' }] });
      await store.vault.tokens.detokenize({
        actor,
        purpose: 'billing',
        recordTypes: scope,
        items: [
          { recordType: 'member', field: 'loyaltyId', token: tokenOf(token) },
          { recordType: 'member', field: 'loyaltyId', token: tokenOf(token) },
        ],
      });
      const audit = await db.pool.query<{ actor_id: string; purpose: string; fields: string[]; item_counts: Record<string, number> }>(
        "SELECT actor_id, purpose, fields, item_counts FROM audit_log WHERE action = 'tokens.detokenize' ORDER BY seq DESC LIMIT 1",
      );
      assert.deepEqual(audit.rows[0], { actor_id: 'credential:test', purpose: 'billing', fields: ['loyaltyId'], item_counts: { loyaltyId: 2 } });
      assert.deepEqual(await verifyAudit(db, store.keyring), { ok: true, count: Number((await db.pool.query('SELECT count(*) AS n FROM audit_log')).rows[0].n) });
    });

    test('failed audit write fails detokenize', async () => {
      const [token] = await store.vault.tokens.tokenize({ actor, recordTypes: scope, items: [{ recordType: 'member', field: 'loyaltyId', value: 'LOY-78' }] });
      await db.pool.query('ALTER TABLE audit_pending ADD CONSTRAINT reject_detokenize CHECK (action <> \'tokens.detokenize\') NOT VALID');
      try {
        await assert.rejects(
          store.vault.tokens.detokenize({ actor, purpose: 'billing', recordTypes: scope, items: [{ recordType: 'member', field: 'loyaltyId', token: tokenOf(token) }] }),
        );
      } finally {
        await db.pool.query('ALTER TABLE audit_pending DROP CONSTRAINT reject_detokenize');
      }
    });

    test('rotation keeps old tokens resolvable', async () => {
      const before = await store.vault.tokens.tokenize({
        actor,
        recordTypes: scope,
        items: [
          { recordType: 'member', field: 'phone', value: '+49 30 5559876543' },
          { recordType: 'member', field: 'loyaltyId', value: 'LOY-900' },
          { recordType: 'member', field: 'email', value: 'rotate@example.test' },
        ],
      });
      const version = await rotateTokenizationSecret(db, store.keys);
      const keyring = await loadKeyring(db, store.keys);
      assert.equal(keyring.currentVersion, version);
      const vault = createVault({ db, policy, keys: store.keys, keyring, logger: (await import('./testing.ts')).silentLogger() });

      const after = await vault.tokens.tokenize({
        actor,
        recordTypes: scope,
        items: [
          { recordType: 'member', field: 'phone', value: '+49 30 5559876543' },
          { recordType: 'member', field: 'loyaltyId', value: 'LOY-901' },
          { recordType: 'member', field: 'email', value: 'rotate@example.test' },
        ],
      });
      assert.equal(parseToken(tokenOf(after[1]))?.version, version);
      assert.equal(parseToken(tokenOf(after[2]))?.version, version);
      assert.notEqual(tokenOf(after[2]), tokenOf(before[2]));
      assert.notEqual(tokenOf(after[0]), tokenOf(before[0]));
      assert.deepEqual(after[0] !== undefined && 'keyVersion' in after[0] ? after[0].keyVersion : 0, version);

      const resolved = await vault.tokens.detokenize({
        actor,
        purpose: 'support',
        recordTypes: scope,
        items: [
          { recordType: 'member', field: 'phone', token: tokenOf(before[0]), keyVersion: 1 },
          { recordType: 'member', field: 'loyaltyId', token: tokenOf(before[1]) },
          { recordType: 'member', field: 'phone', token: tokenOf(after[0]) },
          { recordType: 'member', field: 'phone', token: tokenOf(before[0]), keyVersion: 99 },
        ],
      });
      assert.equal(valueOf(resolved[0]), '+49305559876543');
      assert.equal(valueOf(resolved[1]), 'LOY-900');
      assert.equal(valueOf(resolved[2]), '+49305559876543');
      assert.equal(errorCodeOf(resolved[3]), 'not_found');
    });

    test('retire rejects versions still needed', async () => {
      const keyring = await loadKeyring(db, store.keys);
      const operator: Actor = { id: 'operator:test', location: 'in-country' };
      const usage = await tokenizationKeyUsage(db.pool, 1);
      assert.ok(usage.randomTokens > 0);
      await assert.rejects(retireTokenizationSecret(db, store.keys, keyring, 1, operator), /still needed by .*random token mappings/);
      await assert.rejects(retireTokenizationSecret(db, store.keys, keyring, keyring.currentVersion, operator), /current version/);

      // A version that was current while nothing used it can go.
      const unused = await rotateTokenizationSecret(db, store.keys);
      const newest = await rotateTokenizationSecret(db, store.keys);
      const rotated = await loadKeyring(db, store.keys);
      assert.equal(rotated.currentVersion, newest);
      await retireTokenizationSecret(db, store.keys, rotated, unused, operator);
      const reloaded = await loadKeyring(db, store.keys);
      assert.equal(reloaded.has(unused), false);
      assert.equal(reloaded.hasAuditKeys(unused), true);
      assert.throws(() => reloaded.derive('deterministic', 'customer.email', unused), /not in the keyring/);
      await assert.rejects(retireTokenizationSecret(db, store.keys, rotated, unused, operator), /does not exist/);
    });
  });
}
