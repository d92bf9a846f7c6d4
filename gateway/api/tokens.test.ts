import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Express } from 'express';
import request from 'supertest';
import { createCredential } from '../../store/credentials.ts';
import { memberValues, tokenTestPolicy } from '../../store/fixtures/tokens.ts';
import { closeTestVault, openTestVault, testDatabases, type OpenedTestDatabase, type TestVault } from '../../store/testing.ts';
import { TOKEN_BATCH_MAX } from './tokens.ts';
import { createTestGateway } from '../testing.ts';

const policy = tokenTestPolicy();

interface AuditRow {
  actor_id: string;
  action: string;
  purpose: string | null;
  record_type: string | null;
  fields: string[];
  item_counts: Record<string, number> | null;
}

for (const database of testDatabases()) {
  describe(`tokenize and detokenize API on ${database.name}`, () => {
    let db: OpenedTestDatabase;
    let store: TestVault;
    let app: Express;
    const secrets = { inCountry: '', abroad: '', readOnly: '', otherType: '', phoneOnly: '' };

    before(async () => {
      ({ db, store } = await openTestVault(database, policy));
      const operations = ['tokenize', 'detokenize', 'records:create', 'records:read'] as const;
      secrets.inCountry = (await createCredential(db, { name: 'crm', location: 'in-country', scopes: { operations: [...operations], recordTypes: ['member'] } })).secret;
      secrets.abroad = (await createCredential(db, { name: 'aws', location: 'abroad', scopes: { operations: [...operations], recordTypes: ['member'] } })).secret;
      secrets.readOnly = (await createCredential(db, { name: 'reports', location: 'in-country', scopes: { operations: ['records:read'], recordTypes: ['member'] } })).secret;
      secrets.otherType = (await createCredential(db, { name: 'notes', location: 'in-country', scopes: { operations: [...operations], recordTypes: ['note'] } })).secret;
      secrets.phoneOnly = (
        await createCredential(db, {
          name: 'sms',
          location: 'in-country',
          scopes: { operations: [...operations], recordTypes: ['member'], fields: { member: { phone: 'token' } } },
        })
      ).secret;
      app = createTestGateway(db, policy, store);
    });

    after(() => closeTestVault(db, store));

    function tokenize(secret: string, items: unknown[]): request.Test {
      return request(app).post('/api/v1/tokenize').set('Authorization', `Bearer ${secret}`).send({ items });
    }

    function detokenize(secret: string, body: Record<string, unknown>): request.Test {
      return request(app).post('/api/v1/detokenize').set('Authorization', `Bearer ${secret}`).send(body);
    }

    async function lastAudit(action: string): Promise<AuditRow | undefined> {
      const result = await db.pool.query<AuditRow>(
        'SELECT actor_id, action, purpose, record_type, fields, item_counts FROM audit_log WHERE action = $1 ORDER BY seq DESC LIMIT 1',
        [action],
      );
      return result.rows[0];
    }

    test('field grants limit tokenize and detokenize', async () => {
      const tokenized = await tokenize(secrets.phoneOnly, [
        { recordType: 'member', field: 'email', value: 'maelis.r@example.test' },
        { recordType: 'member', field: 'phone', value: '+49 30 5551234567' },
      ]);
      assert.equal(tokenized.status, 200);
      assert.equal(tokenized.body.results[0].error.code, 'forbidden');
      assert.equal(tokenized.body.results[0].error.path, '$.items[0].field');
      assert.match(String(tokenized.body.results[1].token), /^\+49[0-9]{12}$/);

      const revealed = await detokenize(secrets.phoneOnly, {
        purpose: 'support',
        items: [{ recordType: 'member', field: 'phone', token: String(tokenized.body.results[1].token) }],
      });
      assert.equal(revealed.status, 200);
      assert.equal(revealed.body.results[0].error.code, 'forbidden', 'a token grant does not reveal clear values');
    });

    test('tokenize reports item errors per item', async () => {
      const response = await tokenize(secrets.inCountry, [
        { recordType: 'member', field: 'email', value: 'kvothe.q9@example.test' },
        { recordType: 'member', field: 'email' },
        { recordType: 'member', field: 'email', value: 'no-at-sign-zq7' },
        { recordType: 'member', field: 'phone', value: '+49 30 5551234567' },
        { recordType: 'member', field: 'loyaltyId', value: 'LOY-55' },
        'not an object',
      ]);

      assert.equal(response.status, 200);
      const results = response.body.results as Array<Record<string, { code: string; path: string }> & { token?: string; keyVersion?: number }>;
      assert.equal(results.length, 6);
      assert.match(String(results[0]?.token), /^det_v1_/);
      assert.equal(results[0]?.keyVersion, 1);
      assert.equal(results[1]?.error?.code, 'invalid_request');
      assert.equal(results[1]?.error?.path, '$.items[1].value');
      assert.equal(results[2]?.error?.code, 'invalid_value');
      assert.equal(results[2]?.error?.path, '$.items[2].value');
      assert.match(String(results[3]?.token), /^\+49[0-9]{12}$/);
      assert.match(String(results[4]?.token), /^rnd_v1_[a-z2-7]{26}$/);
      assert.equal(results[5]?.error?.path, '$.items[5]');
      assert.ok(!response.text.includes('no-at-sign-zq7'));
      assert.ok(!response.text.includes('kvothe'));
    });

    test('tokenize open to callers abroad and audited', async () => {
      const response = await tokenize(secrets.abroad, [
        { recordType: 'member', field: 'email', value: 'a1@example.test' },
        { recordType: 'member', field: 'email', value: 'a2@example.test' },
        { recordType: 'member', field: 'loyaltyId', value: 'LOY-56' },
      ]);

      assert.equal(response.status, 200);
      const audit = await lastAudit('tokens.tokenize');
      assert.ok(audit?.actor_id.startsWith('credential:'));
      assert.equal(audit?.record_type, 'member');
      assert.deepEqual(audit?.fields, ['email', 'loyaltyId']);
      assert.deepEqual(audit?.item_counts, { email: 2, loyaltyId: 1 });
    });

    test('batch above limit gives 413', async () => {
      const items = Array.from({ length: TOKEN_BATCH_MAX + 1 }, (_, index) => ({ recordType: 'member', field: 'email', value: `m${index}@example.test` }));
      const response = await tokenize(secrets.inCountry, items);
      assert.equal(response.status, 413);
      assert.match(response.body.error.message, new RegExp(`maximum per request is ${TOKEN_BATCH_MAX}`));

      const full = await tokenize(secrets.inCountry, items.slice(0, TOKEN_BATCH_MAX));
      assert.equal(full.status, 200);
      assert.equal(full.body.results.length, TOKEN_BATCH_MAX);
    });

    test('missing scope gives 403', async () => {
      const tokenizeResponse = await tokenize(secrets.readOnly, [{ recordType: 'member', field: 'email', value: 'x@example.test' }]);
      assert.equal(tokenizeResponse.status, 403);
      assert.match(tokenizeResponse.body.error.message, /scope tokenize/);

      const detokenizeResponse = await detokenize(secrets.readOnly, { purpose: 'support', items: [{ recordType: 'member', field: 'loyaltyId', token: 'rnd_v1_aaaaaaaaaaaaaaaaaaaaaaaaaa' }] });
      assert.equal(detokenizeResponse.status, 403);
      assert.match(detokenizeResponse.body.error.message, /scope detokenize/);

      const otherType = await tokenize(secrets.otherType, [{ recordType: 'member', field: 'email', value: 'x@example.test' }]);
      assert.equal(otherType.status, 200);
      assert.equal(otherType.body.results[0].error.code, 'forbidden');
    });

    test('detokenize abroad gives 403', async () => {
      const response = await detokenize(secrets.abroad, { purpose: 'support', items: [{ recordType: 'member', field: 'loyaltyId', token: 'rnd_v1_aaaaaaaaaaaaaaaaaaaaaaaaaa' }] });
      assert.equal(response.status, 403);
      assert.equal(response.body.error.code, 'forbidden');
      assert.match(response.body.error.message, /in-country callers only/);
    });

    test('detokenize needs a policy purpose', async () => {
      const items = [{ recordType: 'member', field: 'loyaltyId', token: 'rnd_v1_aaaaaaaaaaaaaaaaaaaaaaaaaa' }];
      const missing = await detokenize(secrets.inCountry, { items });
      assert.equal(missing.status, 400);
      assert.equal(missing.body.error.issues[0].path, '$.purpose');

      const unknown = await detokenize(secrets.inCountry, { purpose: 'curiosity', items });
      assert.equal(unknown.status, 400);
      assert.equal(unknown.body.error.issues[0].path, '$.purpose');
    });

    test('detokenize round trip audited', async () => {
      const tokens = await tokenize(secrets.abroad, [
        { recordType: 'member', field: 'phone', value: '+49 30 5557654321' },
        { recordType: 'member', field: 'loyaltyId', value: 'LOY-57' },
        { recordType: 'member', field: 'email', value: 'b1@example.test' },
      ]);
      const [phone, loyalty, email] = tokens.body.results as Array<{ token: string; keyVersion: number }>;
      assert.ok(phone);
      assert.ok(loyalty);
      assert.ok(email);

      const response = await detokenize(secrets.inCountry, {
        purpose: 'billing',
        items: [
          { recordType: 'member', field: 'phone', token: phone.token, keyVersion: phone.keyVersion },
          { recordType: 'member', field: 'loyaltyId', token: loyalty.token },
          { recordType: 'member', field: 'email', token: email.token },
        ],
      });
      assert.equal(response.status, 200);
      assert.deepEqual(response.body.results[0], { value: '+49305557654321' });
      assert.deepEqual(response.body.results[1], { value: 'LOY-57' });
      assert.equal(response.body.results[2].error.code, 'not_reversible');
      assert.equal(response.headers['cache-control'], 'no-store');

      const audit = await lastAudit('tokens.detokenize');
      assert.equal(audit?.purpose, 'billing');
      assert.deepEqual(audit?.fields, ['email', 'loyaltyId', 'phone']);
      assert.deepEqual(audit?.item_counts, { loyaltyId: 1, phone: 1 });
    });

    test('record read abroad shows random tokens', async () => {
      const first = await request(app)
        .post('/api/v1/records')
        .set('Authorization', `Bearer ${secrets.inCountry}`)
        .send({ recordType: 'member', values: memberValues(31), purpose: 'signup' });
      assert.equal(first.status, 201);
      const read = (secret: string, subjectToken: string): request.Test =>
        request(app).get(`/api/v1/records/${subjectToken}?recordType=member`).set('Authorization', `Bearer ${secret}`).set('X-Access-Purpose', 'support');

      const abroad = await read(secrets.abroad, first.body.subjectToken);
      assert.equal(abroad.status, 200);
      assert.match(abroad.body.values.loyaltyId, /^rnd_v1_[a-z2-7]{26}$/);
      assert.match(abroad.body.values.memberNo, /^rnd_v1_[a-z2-7]{26}$/);
      assert.equal(abroad.body.forms.loyaltyId, 'token');
      assert.deepEqual(abroad.body.tokenVersions, { email: 1, phone: 1, loyaltyId: 1, memberNo: 1 });
      assert.equal(abroad.body.values.name, undefined);
      const again = await read(secrets.abroad, first.body.subjectToken);
      assert.equal(again.body.values.loyaltyId, abroad.body.values.loyaltyId);

      const inCountry = await read(secrets.inCountry, first.body.subjectToken);
      assert.equal(inCountry.body.values.loyaltyId, 'LOY-70031');

      const revealed = await detokenize(secrets.inCountry, { purpose: 'support', items: [{ recordType: 'member', field: 'loyaltyId', token: abroad.body.values.loyaltyId }] });
      assert.deepEqual(revealed.body.results[0], { value: 'LOY-70031' });
    });
  });
}
