import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Express } from 'express';
import request from 'supertest';
import { loadPolicyFile } from '../../policy/load.ts';
import { createCredential } from '../../store/credentials.ts';
import { closeTestVault, openTestVault, testDatabases, type OpenedTestDatabase, type TestVault } from '../../store/testing.ts';
import { Keyring } from '../../tokenizer/keyring.ts';
import { createTestGateway, TEST_APP_ORIGIN, TEST_GATEWAY_ORIGIN } from '../testing.ts';
import { chooseLocale } from './i18n.ts';
import { createSessionSigner } from './session.ts';

const policy = loadPolicyFile(fileURLToPath(new URL('../../examples/policy.yaml', import.meta.url)));
const APP_ORIGIN = TEST_APP_ORIGIN;
const GATEWAY_ORIGIN = TEST_GATEWAY_ORIGIN;
const SESSION_KEY = Buffer.alloc(32, 7);

test('chooseLocale prefers query, then Accept-Language', () => {
  assert.equal(chooseLocale('de-AT', () => 'fr'), 'de');
  assert.equal(chooseLocale('xx', () => 'es'), 'es');
  assert.equal(chooseLocale(undefined, () => false), 'en');
});

test('session signer rejects tampered and foreign sessions', async () => {
  const signer = createSessionSigner({ key: SESSION_KEY }, GATEWAY_ORIGIN);
  const { session } = await signer.sign({ credentialId: 'c1', recordType: 'customer', purpose: 'signup', parentOrigin: APP_ORIGIN });
  const claims = await signer.verify(session);
  assert.equal(claims.recordType, 'customer');
  assert.equal(claims.parentOrigin, APP_ORIGIN);
  assert.ok(claims.exp - claims.iat === 600);

  const [header, payload, signature] = session.split('.');
  const forged = Buffer.from(JSON.stringify({ ...claims, parentOrigin: 'https://evil.example' })).toString('base64url');
  await assert.rejects(signer.verify(`${header}.${forged}.${signature}`), { code: 'unauthenticated' });

  const otherKey = createSessionSigner({ key: Buffer.alloc(32, 9) }, GATEWAY_ORIGIN);
  await assert.rejects(otherKey.verify(session), { code: 'unauthenticated' });
  const otherIssuer = createSessionSigner({ key: SESSION_KEY }, 'http://other.example');
  await assert.rejects(otherIssuer.verify(session), { code: 'unauthenticated' });
  assert.ok(payload !== undefined);
});

test('keyring session signer verifies across rotation', async () => {
  const before = new Keyring(new Map([[1, Buffer.alloc(32, 1)]]), 1);
  const rotated = new Keyring(new Map([[1, Buffer.alloc(32, 1)], [2, Buffer.alloc(32, 2)]]), 2);
  const { session } = await createSessionSigner({ keyring: before }, GATEWAY_ORIGIN).sign({ credentialId: 'c1', recordType: 'customer', purpose: 'signup', parentOrigin: APP_ORIGIN });

  const replica = createSessionSigner({ keyring: rotated }, GATEWAY_ORIGIN);
  assert.equal((await replica.verify(session)).recordType, 'customer');
  const fresh = await replica.sign({ credentialId: 'c1', recordType: 'customer', purpose: 'signup', parentOrigin: APP_ORIGIN });
  assert.equal(JSON.parse(Buffer.from(fresh.session.split('.')[0] ?? '', 'base64url').toString()).kid, 'v2');
  await assert.rejects(createSessionSigner({ keyring: before }, GATEWAY_ORIGIN).verify(fresh.session), { code: 'unauthenticated' });
  await assert.rejects(createSessionSigner({ key: SESSION_KEY }, GATEWAY_ORIGIN).verify(session), { code: 'unauthenticated' });
});

test('session signer rejects short keys', () => {
  assert.throws(() => createSessionSigner({ key: Buffer.alloc(16) }, GATEWAY_ORIGIN), { code: 'invalid_request' });
});

for (const database of testDatabases()) {
  describe(`widgets on ${database.name}`, () => {
    let db: OpenedTestDatabase;
    let store: TestVault;
    let app: Express;
    let secret = '';
    let limitedSecret = '';

    before(async () => {
      ({ db, store } = await openTestVault(database, policy));
      secret = (await createCredential(db, { name: 'aws', location: 'abroad', scopes: { operations: ['widget-sessions:create'], recordTypes: ['customer'] } })).secret;
      limitedSecret = (await createCredential(db, { name: 'ro', location: 'abroad', scopes: { operations: ['records:read'], recordTypes: ['customer'] } })).secret;
      app = createTestGateway(db, policy, store, {
        sessionKey: SESSION_KEY,
      });
    });

    after(() => closeTestVault(db, store));

    async function newSession(): Promise<string> {
      const response = await request(app)
        .post('/api/v1/widget-sessions')
        .set('Authorization', `Bearer ${secret}`)
        .send({ recordType: 'customer', purpose: 'signup', parentOrigin: APP_ORIGIN });
      assert.equal(response.status, 201, response.text);
      return response.body.session;
    }

    test('widget session returns session and widget URL', async () => {
      const response = await request(app)
        .post('/api/v1/widget-sessions')
        .set('Authorization', `Bearer ${secret}`)
        .send({ recordType: 'customer', purpose: 'signup', parentOrigin: APP_ORIGIN });
      assert.equal(response.status, 201);
      assert.equal(response.body.widgetUrl, `${GATEWAY_ORIGIN}/widgets/collect?session=${encodeURIComponent(response.body.session)}`);
      assert.ok(Date.parse(response.body.expiresAt) > Date.now());
    });

    test('widget session rejects unknown parent origin', async () => {
      const response = await request(app)
        .post('/api/v1/widget-sessions')
        .set('Authorization', `Bearer ${secret}`)
        .send({ recordType: 'customer', purpose: 'signup', parentOrigin: 'https://evil.example' });
      assert.equal(response.status, 400);
      assert.equal(response.body.error.issues[0].path, '$.parentOrigin');
    });

    test('widget session needs its scope', async () => {
      const response = await request(app)
        .post('/api/v1/widget-sessions')
        .set('Authorization', `Bearer ${limitedSecret}`)
        .send({ recordType: 'customer', purpose: 'signup', parentOrigin: APP_ORIGIN });
      assert.equal(response.status, 403);
    });

    test('collect page has strict CSP and localized labels', async () => {
      const session = await newSession();
      const response = await request(app).get(`/widgets/collect?session=${encodeURIComponent(session)}`).set('Accept-Language', 'de-DE,de;q=0.9,en;q=0.5');
      assert.equal(response.status, 200);
      const csp = String(response.headers['content-security-policy']);
      assert.match(csp, /default-src 'none'/);
      assert.match(csp, /script-src 'self'/);
      assert.match(csp, /connect-src 'self'/);
      assert.match(csp, new RegExp(`frame-ancestors ${APP_ORIGIN}(;|$)`));
      assert.equal(response.headers['x-frame-options'], undefined);
      assert.match(response.text, /<html lang="de">/);
      assert.match(response.text, /Vollständiger Name/);
      assert.match(response.text, /type="email"/);
      assert.match(response.text, /type="tel"/);
      assert.match(response.text, /type="date"/);
      assert.match(response.text, /<select[^>]+name="country"/);
      assert.ok(!/<script>/.test(response.text), 'the page has an inline script');
    });

    test('collect page locale comes from query first', async () => {
      const session = await newSession();
      const response = await request(app).get(`/widgets/collect?session=${encodeURIComponent(session)}&locale=fr`).set('Accept-Language', 'de');
      assert.match(response.text, /Nom complet/);
      assert.match(response.text, /Enregistrer/);
    });

    test('collect page with invalid session shows expiry', async () => {
      const response = await request(app).get('/widgets/collect?session=abc.def.ghi&locale=es');
      assert.equal(response.status, 401);
      assert.match(response.text, /caducado/);
      assert.match(String(response.headers['content-security-policy']), new RegExp(`frame-ancestors ${APP_ORIGIN}`));
    });

    test('embed script carries gateway origin', async () => {
      const response = await request(app).get('/embed.js');
      assert.equal(response.status, 200);
      assert.match(String(response.headers['content-type']), /javascript/);
      assert.equal(response.headers['cross-origin-resource-policy'], 'cross-origin');
      assert.ok(response.text.includes(`const GATEWAY_ORIGIN = "${GATEWAY_ORIGIN}";`));
    });

    test('widget assets are served, unknown ones are not', async () => {
      assert.equal((await request(app).get('/widgets/static/collect.js')).status, 200);
      assert.equal((await request(app).get('/widgets/static/collect.css')).status, 200);
      assert.equal((await request(app).get('/widgets/static/other.js')).status, 404);
    });

    test('widget submit creates record with session', async () => {
      const session = await newSession();
      const response = await request(app)
        .post('/widgets/v1/records')
        .set('Authorization', `Bearer ${session}`)
        .set('Origin', GATEWAY_ORIGIN)
        .send({ values: { name: 'Quennet Dorvalis', email: 'quennet.d@example.test', country: 'FR' } });
      assert.equal(response.status, 201, response.text);
      assert.match(response.body.subjectToken, /^sub_[a-z2-7]{26}$/);
      assert.deepEqual(Object.keys(response.body), ['subjectToken']);
    });

    test('widget session creates one subject only', async () => {
      const session = await newSession();
      const values = { name: 'Ilvane Corradi', email: 'ilvane.c@example.test', country: 'IT' };
      const send = (body: object) =>
        request(app).post('/widgets/v1/records').set('Authorization', `Bearer ${session}`).set('Origin', GATEWAY_ORIGIN).send(body);

      const first = await send({ values });
      assert.equal(first.status, 201, first.text);
      const retry = await send({ values });
      assert.equal(retry.status, 201, 'a retry with the same values is safe');
      assert.equal(retry.body.subjectToken, first.body.subjectToken);
      const other = await send({ values: { ...values, email: 'someone.else@example.test' } });
      assert.equal(other.status, 409);
      assert.ok(!other.text.includes('someone.else'));
    });

    test('widget submit reports field issues without values', async () => {
      const session = await newSession();
      const response = await request(app)
        .post('/widgets/v1/records')
        .set('Authorization', `Bearer ${session}`)
        .send({ values: { name: 'Quennet Dorvalis', email: 'quennet-at-nowhere' } });
      assert.equal(response.status, 400);
      assert.ok(response.body.error.issues.some((issue: { path: string }) => issue.path === '$.values.email'));
      assert.ok(!response.text.includes('quennet'));
    });

    test('widget submit rejects bad session and foreign origin', async () => {
      const noSession = await request(app).post('/widgets/v1/records').send({ values: {} });
      assert.equal(noSession.status, 401);

      const session = await newSession();
      const foreign = await request(app)
        .post('/widgets/v1/records')
        .set('Authorization', `Bearer ${session}`)
        .set('Origin', APP_ORIGIN)
        .send({ values: { name: 'Quennet Dorvalis', email: 'quennet.d@example.test' } });
      assert.equal(foreign.status, 403);
    });

    test('form post without script gets 415', async () => {
      const response = await request(app).post('/widgets/v1/records').type('form').send({ name: 'Quennet Dorvalis' });
      assert.equal(response.status, 415);
      assert.ok(!response.text.includes('Quennet'));
    });
  });
}
