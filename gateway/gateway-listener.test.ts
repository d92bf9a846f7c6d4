import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Express } from 'express';
import { pino } from 'pino';
import request from 'supertest';
import { loadPolicyFile } from '../policy/load.ts';
import { createCredential } from '../store/credentials.ts';
import { closeTestVault, openTestVault, testDatabases, type OpenedTestDatabase, type TestVault } from '../store/testing.ts';
import { createTestGateway } from './testing.ts';

const policy = loadPolicyFile(fileURLToPath(new URL('../examples/policy.yaml', import.meta.url)));

/** Synthetic person with distinctive values, so finding one in a response or log cannot be chance. */
const person = {
  name: 'Wquilzora Brenntakel',
  email: 'wquilzora.b7x@example.test',
  phone: '+49 30 5558 1937',
  birthDate: '1979-03-14',
  postalCode: '60313',
  country: 'DE',
};
const CANARIES = ['Wquilzora', 'Brenntakel', 'wquilzora.b7x', '55581937', '1979-03-14', '60313'];

function leakedCanaries(text: string): string[] {
  return CANARIES.filter((canary) => text.toLowerCase().includes(canary.toLowerCase()));
}

const ALL_OPERATIONS = ['records:create', 'records:read', 'records:erase', 'widget-sessions:create'] as const;

for (const database of testDatabases()) {
  describe(`records API on ${database.name}`, () => {
    let db: OpenedTestDatabase;
    let store: TestVault;
    let app: Express;
    const logLines: string[] = [];
    const secrets = { inCountry: '', abroad: '', readOnly: '', otherType: '' };

    before(async () => {
      ({ db, store } = await openTestVault(database, policy));
      secrets.inCountry = (await createCredential(db, { name: 'crm', location: 'in-country', scopes: { operations: [...ALL_OPERATIONS], recordTypes: ['customer'] } })).secret;
      secrets.abroad = (await createCredential(db, { name: 'aws-backend', location: 'abroad', scopes: { operations: [...ALL_OPERATIONS], recordTypes: ['customer'] } })).secret;
      secrets.readOnly = (await createCredential(db, { name: 'reports', location: 'in-country', scopes: { operations: ['records:read'], recordTypes: ['customer'] } })).secret;
      secrets.otherType = (await createCredential(db, { name: 'other', location: 'in-country', scopes: { operations: [...ALL_OPERATIONS], recordTypes: ['employee'] } })).secret;
      const logger = pino({ level: 'debug' }, { write: (line: string) => void logLines.push(line) });
      app = createTestGateway(db, policy, store, {
        logger,
        ready: async () => (await db.pool.query('SELECT 1')).rowCount === 1,
      });
    });

    after(() => closeTestVault(db, store));

    async function createPerson(secret = secrets.inCountry, values: Record<string, unknown> = person): Promise<string> {
      const response = await request(app)
        .post('/api/v1/records')
        .set('Authorization', `Bearer ${secret}`)
        .send({ recordType: 'customer', values, purpose: 'signup' });
      assert.equal(response.status, 201, response.text);
      return response.body.subjectToken;
    }

    test('health routes answer without credential', async () => {
      assert.equal((await request(app).get('/healthz')).status, 200);
      const ready = await request(app).get('/readyz');
      assert.equal(ready.status, 200);
      assert.equal(ready.body.checks.database, 'ok');
    });

    test('readiness fails while the process shuts down', async () => {
      const stopping = createTestGateway(db, policy, store, { stopping: () => true });
      const ready = await request(stopping).get('/readyz');
      assert.equal(ready.status, 503);
      assert.equal(ready.body.status, 'stopping');
      assert.equal((await request(stopping).get('/healthz')).status, 200);
    });

    test('records API rejects missing and unknown credentials', async () => {
      const missing = await request(app).post('/api/v1/records').send({ recordType: 'customer', values: person, purpose: 'signup' });
      assert.equal(missing.status, 401);
      assert.equal(missing.body.error.code, 'unauthenticated');
      assert.match(String(missing.headers['www-authenticate']), /^Bearer/);

      const wrong = await request(app).get('/api/v1/records/sub_x?recordType=customer').set('Authorization', 'Bearer dmc_aaaaaaaaaaaaaaaa_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx');
      assert.equal(wrong.status, 401);
    });

    test('create returns subject token and version', async () => {
      const response = await request(app)
        .post('/api/v1/records')
        .set('Authorization', `Bearer ${secrets.inCountry}`)
        .send({ recordType: 'customer', values: person, purpose: 'signup' });
      assert.equal(response.status, 201);
      assert.match(response.body.subjectToken, /^sub_[a-z2-7]{26}$/);
      assert.equal(response.body.version, 1);
    });

    test('create with same idempotency key returns first subject', async () => {
      const send = () =>
        request(app)
          .post('/api/v1/records')
          .set('Authorization', `Bearer ${secrets.inCountry}`)
          .set('Idempotency-Key', 'order-4711')
          .send({ recordType: 'customer', values: person, purpose: 'signup' });
      const first = await send();
      const second = await send();
      assert.equal(first.status, 201);
      assert.equal(second.body.subjectToken, first.body.subjectToken);
    });

    test('invalid value gives 400 naming the field, not the value', async () => {
      const response = await request(app)
        .post('/api/v1/records')
        .set('Authorization', `Bearer ${secrets.inCountry}`)
        .send({ recordType: 'customer', values: { ...person, email: 'Wquilzora-at-nowhere' }, purpose: 'signup' });
      assert.equal(response.status, 400);
      assert.ok(response.body.error.issues.some((issue: { path: string }) => issue.path === '$.values.email'), response.text);
      assert.deepEqual(leakedCanaries(response.text), []);
    });

    test('request shape errors name the field', async () => {
      const response = await request(app)
        .post('/api/v1/records')
        .set('Authorization', `Bearer ${secrets.inCountry}`)
        .send({ recordType: 'customer', values: person, purpose: 'curiosity' });
      assert.equal(response.status, 400);
      assert.equal(response.body.error.issues[0].path, '$.purpose');

      const noValues = await request(app).post('/api/v1/records').set('Authorization', `Bearer ${secrets.inCountry}`).send({ recordType: 'customer', purpose: 'signup' });
      assert.equal(noValues.status, 400);
      assert.equal(noValues.body.error.issues[0].path, '$.values');

      const extra = await request(app)
        .post('/api/v1/records')
        .set('Authorization', `Bearer ${secrets.inCountry}`)
        .send({ recordType: 'customer', values: person, purpose: 'signup', note: 1, [person.email]: 1 });
      assert.equal(extra.status, 400);
      assert.deepEqual(extra.body.error.issues.map((issue: { path: string }) => issue.path), ['$', '$']);
      assert.match(extra.body.error.issues[0].message, /at key position 4;/);
      assert.equal(extra.text.includes('note'), false);
      assert.deepEqual(leakedCanaries(extra.text), []);

      const unknownType = await request(app).post('/api/v1/records').set('Authorization', `Bearer ${secrets.inCountry}`).send({ recordType: 'pet', values: {}, purpose: 'signup' });
      assert.equal(unknownType.status, 400);
      assert.equal(unknownType.body.error.issues[0].path, '$.recordType');
    });

    test('body over the limit gives 413 without echo', async () => {
      const response = await request(app)
        .post('/api/v1/records')
        .set('Authorization', `Bearer ${secrets.inCountry}`)
        .send({ recordType: 'customer', values: { ...person, name: `Wquilzora ${'x'.repeat(70_000)}` }, purpose: 'signup' });
      assert.equal(response.status, 413);
      assert.equal(response.body.error.code, 'payload_too_large');
      assert.deepEqual(leakedCanaries(response.text), []);
    });

    test('non-JSON body gives 415', async () => {
      const response = await request(app)
        .post('/api/v1/records')
        .set('Authorization', `Bearer ${secrets.inCountry}`)
        .set('Content-Type', 'text/plain')
        .send(`name=${person.name}`);
      assert.equal(response.status, 415);
      assert.deepEqual(leakedCanaries(response.text), []);
    });

    test('body not matching Content-Encoding gives 400', async () => {
      const response = await request(app)
        .post('/api/v1/records')
        .set('Authorization', `Bearer ${secrets.inCountry}`)
        .set('Content-Type', 'application/json')
        .set('Content-Encoding', 'gzip')
        .send(JSON.stringify({ recordType: 'customer', values: person, purpose: 'signup' }));
      assert.equal(response.status, 400);
      assert.equal(response.body.error.message, 'request body does not match its Content-Encoding');
      assert.deepEqual(leakedCanaries(response.text), []);
    });

    test('__proto__ among values is an unknown field', async () => {
      const response = await request(app)
        .post('/api/v1/records')
        .set('Authorization', `Bearer ${secrets.inCountry}`)
        .set('Content-Type', 'application/json')
        .send(`{"recordType":"customer","purpose":"signup","values":{"__proto__":{"name":"x"},"name":"Ilse Varga","email":"ilse.v@example.test"}}`);
      assert.equal(response.status, 400);
      assert.deepEqual(
        response.body.error.issues.map((issue: { path: string }) => issue.path),
        ['$.values.__proto__'],
      );
    });

    test('malformed percent-encoding in path gives 400', async () => {
      const response = await request(app)
        .get('/api/v1/records/sub_%ZZ?recordType=customer')
        .set('Authorization', `Bearer ${secrets.inCountry}`)
        .set('X-Access-Purpose', 'support');
      assert.equal(response.status, 400);
      assert.equal(response.body.error.message, 'request path contains an invalid percent-encoding');
    });

    test('malformed JSON gives 400 without echo', async () => {
      const response = await request(app)
        .post('/api/v1/records')
        .set('Authorization', `Bearer ${secrets.inCountry}`)
        .set('Content-Type', 'application/json')
        .send(`{"values":{"name":"${person.name}"`);
      assert.equal(response.status, 400);
      assert.equal(response.body.error.message, 'request body is not valid JSON');
      assert.deepEqual(leakedCanaries(response.text), []);
    });

    test('bare JSON values and other charsets are named', async () => {
      for (const body of ['null', `"${person.name}"`, '42']) {
        const response = await request(app)
          .post('/api/v1/records')
          .set('Authorization', `Bearer ${secrets.inCountry}`)
          .set('Content-Type', 'application/json')
          .send(body);
        assert.equal(response.status, 400);
        assert.equal(response.body.error.message, 'request body must be a JSON object');
        assert.deepEqual(leakedCanaries(response.text), []);
      }
      const utf16 = await request(app)
        .post('/api/v1/records')
        .set('Authorization', `Bearer ${secrets.inCountry}`)
        .set('Content-Type', 'application/json; charset=utf-16')
        .send(Buffer.from('{"recordType":"customer"}', 'utf16le'));
      assert.equal(utf16.status, 415);
      assert.equal(utf16.body.error.message, 'request body must be JSON in UTF-8');
      for (const contentType of [
        'application/json; x="a;charset=utf-8"; charset=utf-16le',
        'application/json; charset=utf-8; charset=utf-16le',
        'application/json; charset =utf-16le',
        'application/json; charset\t= utf-16le',
      ]) {
        const smuggled = await request(app)
          .post('/api/v1/records')
          .set('Authorization', `Bearer ${secrets.inCountry}`)
          .set('Content-Type', contentType)
          .send(Buffer.from('{"recordType":"customer"}', 'utf16le'));
        assert.equal(smuggled.status, 415, contentType);
      }
      const utf8 = await request(app)
        .post('/api/v1/records')
        .set('Authorization', `Bearer ${secrets.inCountry}`)
        .set('Content-Type', 'application/json; charset="UTF-8"')
        .send('{}');
      assert.equal(utf8.status, 400);
    });

    test('scopes limit operations and record types', async () => {
      const subjectToken = await createPerson();
      const create = await request(app)
        .post('/api/v1/records')
        .set('Authorization', `Bearer ${secrets.readOnly}`)
        .send({ recordType: 'customer', values: person, purpose: 'signup' });
      assert.equal(create.status, 403);
      assert.match(create.body.error.message, /records:create/);

      const otherType = await request(app)
        .get(`/api/v1/records/${subjectToken}?recordType=customer`)
        .set('Authorization', `Bearer ${secrets.otherType}`)
        .set('X-Access-Purpose', 'support');
      assert.equal(otherType.status, 403);

      const erase = await request(app)
        .delete(`/api/v1/records/${subjectToken}?recordType=customer`)
        .set('Authorization', `Bearer ${secrets.readOnly}`)
        .set('X-Access-Purpose', 'support');
      assert.equal(erase.status, 403);
    });

    test('in-country caller reads clear values', async () => {
      const subjectToken = await createPerson();
      const response = await request(app)
        .get(`/api/v1/records/${subjectToken}?recordType=customer`)
        .set('Authorization', `Bearer ${secrets.readOnly}`)
        .set('X-Access-Purpose', 'support');
      assert.equal(response.status, 200, response.text);
      assert.equal(response.body.values.name, person.name);
      assert.equal(response.body.values.email, person.email);
      assert.equal(response.body.values.phone, '+493055581937');
      assert.equal(response.body.forms.name, 'clear');
      assert.equal(response.headers['cache-control'], 'no-store');
    });

    test('abroad caller sees egress forms, not clear values', async () => {
      const subjectToken = await createPerson();
      const response = await request(app)
        .get(`/api/v1/records/${subjectToken}?recordType=customer`)
        .set('Authorization', `Bearer ${secrets.abroad}`)
        .set('X-Access-Purpose', 'support');
      assert.equal(response.status, 200, response.text);
      const { values, forms } = response.body;
      assert.equal(values.name, undefined);
      assert.equal(values.phone, undefined);
      assert.match(values.email, /^det_v1_[a-z2-7]+$/);
      assert.equal(forms.email, 'token');
      assert.equal(values.birthDate, '1979');
      assert.equal(forms.birthDate, 'generalize');
      assert.equal(values.country, 'DE');
      assert.deepEqual(leakedCanaries(response.text), []);
    });

    test('read without access purpose gives 400 naming the header', async () => {
      const subjectToken = await createPerson();
      const response = await request(app).get(`/api/v1/records/${subjectToken}?recordType=customer`).set('Authorization', `Bearer ${secrets.inCountry}`);
      assert.equal(response.status, 400);
      assert.equal(response.body.error.issues[0].path, 'header.x-access-purpose');

      const noType = await request(app).get(`/api/v1/records/${subjectToken}`).set('Authorization', `Bearer ${secrets.inCountry}`).set('X-Access-Purpose', 'support');
      assert.equal(noType.status, 400);
      assert.equal(noType.body.error.issues[0].path, 'query.recordType');
    });

    test('read of unknown subject gives 404', async () => {
      const response = await request(app)
        .get(`/api/v1/records/sub_${'a'.repeat(26)}?recordType=customer`)
        .set('Authorization', `Bearer ${secrets.inCountry}`)
        .set('X-Access-Purpose', 'support');
      assert.equal(response.status, 404);
    });

    test('erase gives 204, then reads give 410', async () => {
      const subjectToken = await createPerson();
      const erase = await request(app)
        .delete(`/api/v1/records/${subjectToken}?recordType=customer`)
        .set('Authorization', `Bearer ${secrets.inCountry}`)
        .set('X-Access-Purpose', 'support');
      assert.equal(erase.status, 204);

      const read = await request(app)
        .get(`/api/v1/records/${subjectToken}?recordType=customer`)
        .set('Authorization', `Bearer ${secrets.inCountry}`)
        .set('X-Access-Purpose', 'support');
      assert.equal(read.status, 410);
      assert.equal(read.body.error.code, 'gone');
    });

    test('unexpected failure gives fixed 500 message', async () => {
      const failing = createTestGateway(db, policy, store, {
        vault: { ...store.vault, read: () => Promise.reject(new Error(`lookup failed for ${person.email}`)) },
        logger: pino({ level: 'debug' }, { write: (line: string) => void logLines.push(line) }),
      });
      const subjectToken = await createPerson();
      const response = await request(failing)
        .get(`/api/v1/records/${subjectToken}?recordType=customer`)
        .set('Authorization', `Bearer ${secrets.inCountry}`)
        .set('X-Access-Purpose', 'support');
      assert.equal(response.status, 500);
      assert.equal(response.body.error.code, 'internal');
      assert.deepEqual(leakedCanaries(response.text), []);
      const logged = logLines.find((line) => line.includes('request failed'));
      assert.ok(logged?.includes(String(response.headers['x-request-id'])));
    });

    test('unknown route gives 404 JSON', async () => {
      const response = await request(app).get('/api/v1/nothing');
      assert.equal(response.status, 404);
      assert.equal(response.body.error.code, 'not_found');
    });

    test('logs contain no values, secrets or subject tokens', async () => {
      const subjectToken = await createPerson();
      await request(app).get(`/api/v1/records/${subjectToken}?recordType=customer`).set('Authorization', `Bearer ${secrets.inCountry}`).set('X-Access-Purpose', 'support');
      const text = logLines.join('\n');
      assert.deepEqual(leakedCanaries(text), []);
      assert.ok(!text.includes(subjectToken));
      for (const secret of Object.values(secrets)) {
        assert.ok(!text.includes(secret));
      }
      assert.ok(text.includes('/api/v1/records/:subjectToken'));
    });
  });
}
