import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Express } from 'express';
import request from 'supertest';
import { loadPolicyFile } from '../policy/load.ts';
import { verifyAudit } from '../store/audit.ts';
import { createCredential, type CredentialScopes } from '../store/credentials.ts';
import { closeTestVault, openTestVault, testDatabases, type OpenedTestDatabase, type TestVault } from '../store/testing.ts';
import { createTestGateway } from './testing.ts';

const policy = loadPolicyFile(fileURLToPath(new URL('../examples/policy.yaml', import.meta.url)));

const person = {
  name: 'Oskabel Trennwiks',
  email: 'oskabel.t4q@example.test',
  phone: '+49 30 5559 2741',
  birthDate: '1984-11-02',
  postalCode: '80331',
  country: 'DE',
};
const CANARIES = ['Oskabel', 'Trennwiks', 'oskabel.t4q', '55592741', '1984-11-02', '80331'];

function leakedCanaries(text: string): string[] {
  return CANARIES.filter((canary) => text.toLowerCase().includes(canary.toLowerCase()));
}

const EVERYTHING: CredentialScopes = {
  operations: ['records:create', 'records:read', 'records:update', 'records:lookup', 'records:erase'],
  recordTypes: ['customer'],
};

for (const database of testDatabases()) {
  describe(`records API operations on ${database.name}`, () => {
    let db: OpenedTestDatabase;
    let store: TestVault;
    let app: Express;
    const secrets = { inCountry: '', abroad: '', createOnly: '', metrics: '', maskedEmail: '' };

    before(async () => {
      ({ db, store } = await openTestVault(database, policy));
      const make = async (name: string, location: 'in-country' | 'abroad', scopes: CredentialScopes) => (await createCredential(db, { name, location, scopes })).secret;
      secrets.inCountry = await make('crm', 'in-country', EVERYTHING);
      secrets.abroad = await make('aws', 'abroad', EVERYTHING);
      secrets.createOnly = await make('signup', 'in-country', { operations: ['records:create'], recordTypes: ['customer'] });
      secrets.metrics = await make('prometheus', 'in-country', { operations: ['metrics:read'], recordTypes: [] });
      secrets.maskedEmail = await make('support', 'in-country', { ...EVERYTHING, fields: { customer: { email: 'mask', country: 'clear' } } });
      app = createTestGateway(db, policy, store, {
        metricsPublic: false,
      });
    });

    after(() => closeTestVault(db, store));

    const auth = (secret: string) => ({ Authorization: `Bearer ${secret}` });

    async function createPerson(values: Record<string, unknown> = person): Promise<string> {
      const response = await request(app).post('/api/v1/records').set(auth(secrets.inCountry)).send({ recordType: 'customer', values, purpose: 'signup' });
      assert.equal(response.status, 201, response.text);
      assert.equal(response.headers['etag'], '"1"');
      return response.body.subjectToken;
    }

    function read(subjectToken: string, secret = secrets.inCountry) {
      return request(app).get(`/api/v1/records/${subjectToken}?recordType=customer`).set(auth(secret)).set('X-Access-Purpose', 'support');
    }

    function patch(subjectToken: string, values: Record<string, unknown>, ifMatch?: string) {
      const call = request(app).patch(`/api/v1/records/${subjectToken}`).set(auth(secrets.inCountry));
      return (ifMatch === undefined ? call : call.set('If-Match', ifMatch)).send({ recordType: 'customer', values, purpose: 'support' });
    }

    test('read sends version as ETag', async () => {
      const subjectToken = await createPerson();
      const response = await read(subjectToken);
      assert.equal(response.status, 200);
      assert.equal(response.headers['etag'], '"1"');
    });

    test('update with matching If-Match bumps version', async () => {
      const subjectToken = await createPerson();
      const response = await patch(subjectToken, { postalCode: '10115' }, '"1"');
      assert.equal(response.status, 200, response.text);
      assert.equal(response.body.version, 2);
      assert.equal(response.headers['etag'], '"2"');
      const after = await read(subjectToken);
      assert.equal(after.body.values.postalCode, '10115');
      assert.equal(after.headers['etag'], '"2"');
    });

    test('update with stale If-Match gives 412', async () => {
      const subjectToken = await createPerson();
      assert.equal((await patch(subjectToken, { postalCode: '10115' })).status, 200);
      const stale = await patch(subjectToken, { postalCode: '20095' }, '"1"');
      assert.equal(stale.status, 412);
      assert.equal(stale.body.error.code, 'precondition_failed');
      assert.match(stale.body.error.message, /current version 2 of the record does not match the expected version 1/);
      assert.equal((await read(subjectToken)).body.values.postalCode, '10115');
    });

    test('update without If-Match gives 428 when required', async () => {
      const strict = createTestGateway(db, policy, store, { metricsPublic: false, requireIfMatch: true });
      const subjectToken = await createPerson();
      const send = (ifMatch?: string) => {
        const call = request(strict).patch(`/api/v1/records/${subjectToken}`).set(auth(secrets.inCountry));
        return (ifMatch === undefined ? call : call.set('If-Match', ifMatch)).send({ recordType: 'customer', values: { postalCode: '10115' }, purpose: 'support' });
      };
      for (const ifMatch of [undefined, '*']) {
        const refused = await send(ifMatch);
        assert.equal(refused.status, 428, `If-Match ${String(ifMatch)}`);
        assert.equal(refused.body.error.code, 'precondition_required');
        assert.equal(refused.body.error.issues[0].path, 'header.if-match');
      }
      assert.equal((await read(subjectToken)).body.version, 1, 'a refused update changes nothing');
      const accepted = await send('"1"');
      assert.equal(accepted.status, 200, accepted.text);
      assert.equal(accepted.body.version, 2);
    });

    test('update rejects malformed If-Match and unknown fields', async () => {
      const subjectToken = await createPerson();
      const weak = await patch(subjectToken, { postalCode: '10115' }, 'W/"1"');
      assert.equal(weak.status, 400);
      assert.equal(weak.body.error.issues[0].path, 'header.if-match');
      const leadingZero = await patch(subjectToken, { postalCode: '10115' }, '"01"');
      assert.equal(leadingZero.status, 400, 'an entity tag matches only as written');
      const unknown = await patch(subjectToken, { shoeSize: 44 });
      assert.equal(unknown.status, 400);
      assert.equal(unknown.body.error.issues[0].path, '$.values');
      assert.match(unknown.body.error.issues[0].message, /at key position 1;/);
      const badValue = await patch(subjectToken, { email: 'Oskabel at nowhere' });
      assert.equal(badValue.status, 400);
      assert.equal(badValue.body.error.issues[0].path, '$.values.email');
      assert.deepEqual(leakedCanaries(badValue.text), []);
    });

    test('update needs records:update scope', async () => {
      const subjectToken = await createPerson();
      const response = await request(app)
        .patch(`/api/v1/records/${subjectToken}`)
        .set(auth(secrets.createOnly))
        .send({ recordType: 'customer', values: { country: 'FR' }, purpose: 'support' });
      assert.equal(response.status, 403);
      assert.match(response.body.error.message, /records:update/);
    });

    test('concurrent retries with one idempotency key create one subject', async () => {
      const before = await db.pool.query<{ count: string }>('SELECT count(*) FROM subjects');
      const send = () =>
        request(app)
          .post('/api/v1/records')
          .set(auth(secrets.inCountry))
          .set('Idempotency-Key', 'signup-race-1')
          .send({ recordType: 'customer', values: { ...person, email: 'race@example.test' }, purpose: 'signup' });
      const responses = await Promise.all(Array.from({ length: 8 }, send));
      for (const response of responses) {
        assert.equal(response.status, 201, response.text);
      }
      assert.equal(new Set(responses.map((response) => response.body.subjectToken)).size, 1);
      const afterCount = await db.pool.query<{ count: string }>('SELECT count(*) FROM subjects');
      assert.equal(Number(afterCount.rows[0]?.count), Number(before.rows[0]?.count) + 1);
    });

    test('lookup finds subject by email in body', async () => {
      const subjectToken = await createPerson({ ...person, email: 'Lookup.Me@Example.TEST' });
      const response = await request(app)
        .post('/api/v1/records/lookup')
        .set(auth(secrets.inCountry))
        .send({ recordType: 'customer', field: 'email', value: 'Lookup.Me@example.test', purpose: 'support' });
      assert.equal(response.status, 200, response.text);
      assert.deepEqual(response.body.subjectTokens, [subjectToken]);
    });

    test('lookup rejects fields that are not searchable', async () => {
      const notSearchable = await request(app)
        .post('/api/v1/records/lookup')
        .set(auth(secrets.inCountry))
        .send({ recordType: 'customer', field: 'phone', value: person.phone, purpose: 'support' });
      assert.equal(notSearchable.status, 400);
      assert.match(notSearchable.body.error.message, /phone is not searchable; searchable fields: email/);
      assert.deepEqual(leakedCanaries(notSearchable.text), []);

      const unknown = await request(app)
        .post('/api/v1/records/lookup')
        .set(auth(secrets.inCountry))
        .send({ recordType: 'customer', field: 'shoeSize', value: 44, purpose: 'support' });
      assert.equal(unknown.status, 400);
      assert.match(unknown.body.error.message, /\$\.field is not a field of record type customer/);
      assert.equal(unknown.text.includes('shoeSize'), false);
    });

    test('lookup rejects query parameters and missing scope', async () => {
      const query = await request(app)
        .post('/api/v1/records/lookup?value=x')
        .set(auth(secrets.inCountry))
        .send({ recordType: 'customer', field: 'email', value: person.email, purpose: 'support' });
      assert.equal(query.status, 400);
      const scope = await request(app)
        .post('/api/v1/records/lookup')
        .set(auth(secrets.createOnly))
        .send({ recordType: 'customer', field: 'email', value: person.email, purpose: 'support' });
      assert.equal(scope.status, 403);
    });

    test('versions list who changed which fields', async () => {
      const subjectToken = await createPerson();
      assert.equal((await patch(subjectToken, { postalCode: '10115', country: 'AT' })).status, 200);
      const response = await request(app)
        .get(`/api/v1/records/${subjectToken}/versions?recordType=customer`)
        .set(auth(secrets.inCountry))
        .set('X-Access-Purpose', 'support');
      assert.equal(response.status, 200, response.text);
      const [first, second] = response.body.versions;
      assert.equal(response.body.versions.length, 2);
      assert.equal(first.version, 1);
      assert.deepEqual([...first.changedFields].sort(), Object.keys(person).sort());
      assert.equal(first.purpose, 'signup');
      assert.equal(second.version, 2);
      assert.deepEqual([...second.changedFields].sort(), ['country', 'postalCode']);
      assert.match(second.actor, /^credential:/);
      assert.equal(second.policyVersion, policy.version);
      assert.deepEqual(leakedCanaries(response.text), []);
      assert.ok(!response.text.includes('10115'));

      const paged = await request(app)
        .get(`/api/v1/records/${subjectToken}/versions?recordType=customer&afterVersion=1&limit=5`)
        .set(auth(secrets.inCountry))
        .set('X-Access-Purpose', 'support');
      assert.deepEqual(paged.body.versions.map((version: { version: number }) => version.version), [2]);
    });

    test('versions are closed to callers abroad', async () => {
      const subjectToken = await createPerson();
      const response = await request(app)
        .get(`/api/v1/records/${subjectToken}/versions?recordType=customer`)
        .set(auth(secrets.abroad))
        .set('X-Access-Purpose', 'support');
      assert.equal(response.status, 403);
      assert.match(response.body.error.message, /in-country callers only/);
    });

    test('unknown query parameter gives 400 with its position', async () => {
      const subjectToken = await createPerson();
      const response = await request(app)
        .get(`/api/v1/records/${subjectToken}?recordType=customer&fields=all`)
        .set(auth(secrets.inCountry))
        .set('X-Access-Purpose', 'support');
      assert.equal(response.status, 400);
      assert.equal(response.body.error.issues[0].path, 'query');
      assert.match(response.body.error.issues[0].message, /unknown parameter at key position 2;/);
    });

    test('reads are audited with caller, purpose and visible fields', async () => {
      const subjectToken = await createPerson();
      const response = await read(subjectToken, secrets.maskedEmail);
      assert.equal(response.status, 200, response.text);
      assert.deepEqual(response.body.forms, { email: 'mask', country: 'clear' });
      const audit = await db.pool.query<{ actor_id: string; purpose: string; fields: string[] }>(
        `SELECT actor_id, purpose, fields FROM audit_log WHERE action = 'record.read' AND subject_token = $1`,
        [subjectToken],
      );
      assert.equal(audit.rows.length, 1);
      assert.match(audit.rows[0]?.actor_id ?? '', /^credential:/);
      assert.equal(audit.rows[0]?.purpose, 'support');
      assert.deepEqual([...(audit.rows[0]?.fields ?? [])].sort(), ['country', 'email']);
    });

    test('batch create gives per-item results', async () => {
      const response = await request(app)
        .post('/api/v1/records:batch')
        .set(auth(secrets.inCountry))
        .send({
          records: [
            { recordType: 'customer', values: { ...person, email: 'batch.one@example.test' }, purpose: 'signup', idempotencyKey: 'batch-1' },
            { recordType: 'customer', values: { ...person, email: 'not an email' }, purpose: 'signup' },
            { recordType: 'pet', values: {}, purpose: 'signup' },
            { recordType: 'customer', values: { ...person, email: 'batch.two@example.test' }, purpose: 'signup', extra: true },
            { recordType: 'customer', values: { ...person, email: 'batch.three@example.test' }, purpose: 'signup' },
          ],
        });
      assert.equal(response.status, 200, response.text);
      const results = response.body.results;
      assert.equal(results[0].status, 201);
      assert.equal(results[1].status, 400);
      assert.equal(results[1].error.issues[0].path, '$.records[1].values.email');
      assert.equal(results[2].status, 400);
      assert.equal(results[2].error.issues[0].path, '$.records[2].recordType');
      assert.equal(results[3].error.issues[0].path, '$.records[3]');
      assert.match(results[3].error.issues[0].message, /unknown field at key position 4;/);
      assert.equal(results[4].status, 201);
      assert.deepEqual(leakedCanaries(response.text), []);

      const readBack = await read(results[4].subjectToken);
      assert.equal(readBack.body.values.email, 'batch.three@example.test');
      const lookup = await request(app)
        .post('/api/v1/records/lookup')
        .set(auth(secrets.inCountry))
        .send({ recordType: 'customer', field: 'email', value: 'batch.one@example.test', purpose: 'support' });
      assert.deepEqual(lookup.body.subjectTokens, [results[0].subjectToken]);

      const retry = await request(app)
        .post('/api/v1/records:batch')
        .set(auth(secrets.inCountry))
        .send({ records: [{ recordType: 'customer', values: { ...person, email: 'batch.one@example.test' }, purpose: 'signup', idempotencyKey: 'batch-1' }] });
      assert.equal(retry.body.results[0].subjectToken, results[0].subjectToken);
      const outbox = await db.pool.query('SELECT 1 FROM outbox WHERE subject_token = $1', [results[0].subjectToken]);
      assert.equal(outbox.rowCount, 1);
      const verified = await verifyAudit(db, store.keyring);
      assert.equal(verified.ok, true, JSON.stringify(verified));
    });

    test('batch rejects more than 100 records', async () => {
      const records = Array.from({ length: 101 }, () => ({ recordType: 'customer', values: person, purpose: 'signup' }));
      const response = await request(app).post('/api/v1/records:batch').set(auth(secrets.inCountry)).send({ records });
      assert.equal(response.status, 400);
      assert.equal(response.body.error.issues[0].path, '$.records');
    });

    test('metrics need metrics:read credential', async () => {
      assert.equal((await request(app).get('/metrics')).status, 401);
      assert.equal((await request(app).get('/metrics').set(auth(secrets.inCountry))).status, 403);
      const subjectToken = await createPerson();
      await read(subjectToken);
      const response = await request(app).get('/metrics').set(auth(secrets.metrics));
      assert.equal(response.status, 200);
      assert.match(response.text, /domicile_http_requests_total\{method="GET",route="\/api\/v1\/records\/:subjectToken",status="200"\} \d+/);
      assert.match(response.text, /domicile_http_request_duration_seconds_bucket\{le="0\.001",method="POST",route="\/api\/v1\/records",status="201"\}/);
      assert.match(response.text, /domicile_outbox_pending\{destination="aws"\} \d+/);
      assert.match(response.text, /domicile_outbox_scrape_failed 0/);
      assert.ok(!response.text.includes(subjectToken));
      assert.deepEqual(leakedCanaries(response.text), []);
    });

    test('metrics are anonymous when public', async () => {
      const open = createTestGateway(db, policy, store, {
        metricsPublic: true,
      });
      const response = await request(open).get('/metrics');
      assert.equal(response.status, 200);
      assert.match(String(response.headers['content-type']), /^text\/plain/);
    });
  });
}
