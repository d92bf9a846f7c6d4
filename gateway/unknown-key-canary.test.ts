import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Express } from 'express';
import { pino } from 'pino';
import request from 'supertest';
import { loadPolicyFile } from '../policy/load.ts';
import { createCredential } from '../store/credentials.ts';
import { closeTestVault, openTestVault, testDatabases, type OpenedTestDatabase, type TestVault } from '../store/testing.ts';
import { createTestGateway, TEST_APP_ORIGIN, TEST_GATEWAY_ORIGIN } from './testing.ts';

const policy = loadPolicyFile(fileURLToPath(new URL('../examples/policy.yaml', import.meta.url)));

/**
 * Key names that stand for personal data sent where a field name belongs.
 * The first is a plain identifier, the kind of name that an error message
 * would be most tempted to repeat.
 */
const CANARIES = ['zqcanary7xk3', 'canary.q8v@example.test'];

interface Exchange {
  label: string;
  status: number;
  text: string;
}

for (const database of testDatabases()) {
  describe(`unknown key names on ${database.name}`, () => {
    let db: OpenedTestDatabase;
    let store: TestVault;
    let app: Express;
    const logLines: string[] = [];
    let secret = '';
    let abroad = '';

    before(async () => {
      ({ db, store } = await openTestVault(database, policy));
      secret = (
        await createCredential(db, {
          name: 'everything',
          location: 'in-country',
          scopes: {
            operations: ['records:create', 'records:read', 'records:update', 'records:lookup', 'records:erase', 'tokenize', 'detokenize', 'widget-sessions:create'],
            recordTypes: ['customer'],
            fields: { customer: { email: 'clear', name: 'clear' } },
          },
        })
      ).secret;
      abroad = (await createCredential(db, { name: 'aws', location: 'abroad', scopes: { operations: ['records:read'], recordTypes: ['customer'] } })).secret;
      const sink = new Writable({
        write(chunk: Buffer, _encoding, done) {
          logLines.push(...chunk.toString('utf8').split('\n').filter((line) => line !== ''));
          done();
        },
      });
      app = createTestGateway(db, policy, store, { logger: pino({ level: 'trace' }, sink) });
    });

    after(() => closeTestVault(db, store));

    const auth = (token: string) => ({ Authorization: `Bearer ${token}` });

    async function createSubject(): Promise<string> {
      const response = await request(app)
        .post('/api/v1/records')
        .set(auth(secret))
        .send({ recordType: 'customer', values: { name: 'Velmora Quint', email: 'velmora.q@example.test' }, purpose: 'signup' });
      assert.equal(response.status, 201, response.text);
      return response.body.subjectToken;
    }

    async function newSession(): Promise<string> {
      const response = await request(app)
        .post('/api/v1/widget-sessions')
        .set(auth(secret))
        .send({ recordType: 'customer', purpose: 'signup', parentOrigin: TEST_APP_ORIGIN });
      assert.equal(response.status, 201, response.text);
      return response.body.session;
    }

    /** Sends a request on every route with `canary` as an unknown key name, and returns what came back. */
    async function sendEverywhere(canary: string): Promise<Exchange[]> {
      const subjectToken = await createSubject();
      const session = await newSession();
      const values = { name: 'Velmora Quint', [canary]: 'x' };
      const query = `${encodeURIComponent(canary)}=1`;
      const calls: Array<[string, request.Test]> = [
        ['create top level', request(app).post('/api/v1/records').set(auth(secret)).send({ recordType: 'customer', values: { name: 'A B' }, purpose: 'signup', [canary]: 1 })],
        ['create values', request(app).post('/api/v1/records').set(auth(secret)).send({ recordType: 'customer', values, purpose: 'signup' })],
        ['update values', request(app).patch(`/api/v1/records/${subjectToken}`).set(auth(secret)).send({ recordType: 'customer', values, purpose: 'support' })],
        ['update top level', request(app).patch(`/api/v1/records/${subjectToken}`).set(auth(secret)).send({ recordType: 'customer', values: { name: 'C D' }, purpose: 'support', [canary]: 1 })],
        ['read query', request(app).get(`/api/v1/records/${subjectToken}?recordType=customer&${query}`).set(auth(secret)).set('X-Access-Purpose', 'support')],
        ['read abroad query', request(app).get(`/api/v1/records/${subjectToken}?recordType=customer&${query}`).set(auth(abroad)).set('X-Access-Purpose', 'support')],
        ['versions query', request(app).get(`/api/v1/records/${subjectToken}/versions?recordType=customer&${query}`).set(auth(secret)).set('X-Access-Purpose', 'support')],
        ['erase query', request(app).delete(`/api/v1/records/${subjectToken}?recordType=customer&${query}`).set(auth(secret)).set('X-Access-Purpose', 'support')],
        ['export query', request(app).get(`/api/v1/subjects/${subjectToken}/export?purpose=support&${query}`).set(auth(secret))],
        ['batch top level', request(app).post('/api/v1/records:batch').set(auth(secret)).send({ records: [{ recordType: 'customer', values: { name: 'E F' }, purpose: 'signup' }], [canary]: 1 })],
        ['batch item', request(app).post('/api/v1/records:batch').set(auth(secret)).send({ records: [{ recordType: 'customer', values: { name: 'E F' }, purpose: 'signup', [canary]: 1 }] })],
        ['batch item values', request(app).post('/api/v1/records:batch').set(auth(secret)).send({ records: [{ recordType: 'customer', values, purpose: 'signup' }] })],
        ['lookup top level', request(app).post('/api/v1/records/lookup').set(auth(secret)).send({ recordType: 'customer', field: 'email', value: 'a@example.test', purpose: 'support', [canary]: 1 })],
        ['lookup field', request(app).post('/api/v1/records/lookup').set(auth(secret)).send({ recordType: 'customer', field: canary, value: 'a@example.test', purpose: 'support' })],
        ['tokenize top level', request(app).post('/api/v1/tokenize').set(auth(secret)).send({ items: [{ recordType: 'customer', field: 'email', value: 'a@example.test' }], [canary]: 1 })],
        ['tokenize item', request(app).post('/api/v1/tokenize').set(auth(secret)).send({ items: [{ recordType: 'customer', field: 'email', value: 'a@example.test', [canary]: 1 }] })],
        ['tokenize field', request(app).post('/api/v1/tokenize').set(auth(secret)).send({ items: [{ recordType: 'customer', field: canary, value: 'a@example.test' }] })],
        ['detokenize top level', request(app).post('/api/v1/detokenize').set(auth(secret)).send({ purpose: 'support', items: [{ recordType: 'customer', field: 'email', token: 't' }], [canary]: 1 })],
        ['detokenize item', request(app).post('/api/v1/detokenize').set(auth(secret)).send({ purpose: 'support', items: [{ recordType: 'customer', field: 'email', token: 't', [canary]: 1 }] })],
        ['detokenize field', request(app).post('/api/v1/detokenize').set(auth(secret)).send({ purpose: 'support', items: [{ recordType: 'customer', field: canary, token: 't' }] })],
        ['widget session', request(app).post('/api/v1/widget-sessions').set(auth(secret)).send({ recordType: 'customer', purpose: 'signup', parentOrigin: TEST_APP_ORIGIN, [canary]: 1 })],
        ['widget submit top level', request(app).post('/widgets/v1/records').set(auth(session)).set('Origin', TEST_GATEWAY_ORIGIN).send({ values: { name: 'G H' }, [canary]: 1 })],
        ['widget submit values', request(app).post('/widgets/v1/records').set(auth(session)).set('Origin', TEST_GATEWAY_ORIGIN).send({ values })],
      ];
      const exchanges: Exchange[] = [];
      for (const [label, call] of calls) {
        const response = await call;
        exchanges.push({ label, status: response.status, text: response.text });
      }
      return exchanges;
    }

    for (const canary of CANARIES) {
      test(`key ${canary} is never echoed`, async () => {
        logLines.length = 0;
        const exchanges = await sendEverywhere(canary);

        const echoed = exchanges.filter((exchange) => exchange.text.toLowerCase().includes(canary.toLowerCase())).map((exchange) => exchange.label);
        assert.deepEqual(echoed, []);
        const logged = logLines.filter((line) => line.toLowerCase().includes(canary.toLowerCase()));
        assert.deepEqual(logged, []);
        assert.ok(logLines.length >= exchanges.length, `only ${logLines.length} log lines`);
      });
    }

    test('every route rejects the unknown key', async () => {
      const exchanges = await sendEverywhere(CANARIES[0] ?? '');
      // Item routes return 200 with an item error; every other route rejects the request.
      const itemRoutes = new Set(['batch item', 'batch item values', 'tokenize item', 'tokenize field', 'detokenize item', 'detokenize field']);
      for (const exchange of exchanges) {
        if (itemRoutes.has(exchange.label)) {
          assert.equal(exchange.status, 200, `${exchange.label}: ${exchange.text}`);
          assert.match(exchange.text, /"error"/, exchange.label);
        } else {
          assert.ok(exchange.status >= 400, `${exchange.label}: ${exchange.status} ${exchange.text}`);
          assert.ok(exchange.status < 500, `${exchange.label}: ${exchange.status} ${exchange.text}`);
        }
      }
    });

    test('unknown key is named by its position', async () => {
      const response = await request(app)
        .post('/api/v1/records')
        .set(auth(secret))
        .send({ recordType: 'customer', values: { name: 'Velmora Quint', email: 'velmora.q@example.test', [CANARIES[0] ?? '']: 'x' }, purpose: 'signup' });
      assert.equal(response.status, 400);
      assert.deepEqual(response.body.error.issues, [
        { path: '$.values', message: 'contains a field that record type customer does not declare at key position 3; unknown names are not repeated' },
      ]);

      const query = await request(app).get(`/api/v1/records/sub_x?${CANARIES[0] ?? ''}=1&recordType=customer`).set(auth(secret)).set('X-Access-Purpose', 'support');
      assert.equal(query.status, 400);
      assert.deepEqual(query.body.error.issues, [{ path: 'query', message: 'contains an unknown parameter at key position 1; unknown names are not repeated' }]);
    });
  });
}
