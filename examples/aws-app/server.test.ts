import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import request from 'supertest';
import { createAppListener } from '../../gateway/app-listener.ts';
import { createGatewayApp } from '../../gateway/gateway-listener.ts';
import { loadPolicyFile } from '../../policy/load.ts';
import { createCredential } from '../../store/credentials.ts';
import { createTestVault, silentLogger, testDatabases, type OpenedTestDatabase, type TestVault } from '../../store/testing.ts';
import { freePort } from '../../test/support.ts';
import { startExampleApp, type ExampleApp } from './server.ts';

const policy = loadPolicyFile(fileURLToPath(new URL('../policy.yaml', import.meta.url)));

async function listen(server: http.Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

async function close(server: http.Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

const [database] = testDatabases();

describe('example app behind the app listener', () => {
  let db: OpenedTestDatabase;
  let store: TestVault;
  let example: ExampleApp;
  const gatewayServer = http.createServer();
  let appListener: http.Server;
  let appOrigin = '';
  let gatewayOrigin = '';

  before(async () => {
    assert.ok(database !== undefined);
    db = await database.open();
    store = await createTestVault(db, policy);
    const { secret } = await createCredential(db, { name: 'example', location: 'abroad', scopes: { operations: ['widget-sessions:create'], recordTypes: ['customer'] } });

    gatewayOrigin = `http://127.0.0.1:${await listen(gatewayServer)}`;
    // The app origin must be known before the gateway and the example app start.
    const appPort = await freePort();
    appOrigin = `http://127.0.0.1:${appPort}`;
    gatewayServer.on(
      'request',
      createGatewayApp({ vault: store.vault, db, policy, keyring: store.keyring, logger: silentLogger(), appOrigins: [appOrigin], gatewayOrigin, ready: async () => true }),
    );
    example = await startExampleApp({ port: 0, host: '127.0.0.1', gatewayOrigin, appOrigin, apiCredential: secret });
    appListener = createAppListener({ upstream: example.url, logger: silentLogger() });
    appListener.listen(appPort, '127.0.0.1');
    await once(appListener, 'listening');
  });

  after(async () => {
    await example.close();
    await close(appListener);
    await close(gatewayServer);
    await store.keys.close();
    await db.close();
  });

  test('page embeds the gateway script without inline script', async () => {
    const response = await request(appOrigin).get('/');
    assert.equal(response.status, 200);
    assert.ok(response.text.includes(`<script src="${gatewayOrigin}/embed.js"></script>`));
    assert.ok(response.text.includes('<script src="/app.js"></script>'));
    assert.ok(!/<script>/.test(response.text));
    assert.match(String(response.headers['content-security-policy']), new RegExp(`frame-src ${gatewayOrigin}`));
    assert.equal((await request(appOrigin).get('/app.js')).status, 200);
  });

  test('session route returns a gateway widget session', async () => {
    const response = await request(appOrigin).post('/session');
    assert.equal(response.status, 200, response.text);
    assert.match(response.body.session, /^[\w-]+\.[\w-]+\.[\w-]+$/);
    const widget = await request(gatewayOrigin).get(`/widgets/collect?session=${encodeURIComponent(response.body.session)}`);
    assert.equal(widget.status, 200);
    assert.match(String(widget.headers['content-security-policy']), new RegExp(`frame-ancestors ${appOrigin}`));
  });

  test('customers route stores subject tokens only', async () => {
    const subjectToken = `sub_${'b'.repeat(26)}`;
    const created = await request(appOrigin).post('/api/customers').send({ subjectToken });
    assert.equal(created.status, 201);
    const rejected = await request(appOrigin).post('/api/customers').send({ subjectToken: 'jane@example.test' });
    assert.equal(rejected.status, 400);
    assert.ok(!rejected.text.includes('jane'));

    const list = await request(appOrigin).get('/api/customers');
    assert.deepEqual(
      list.body.customers.map((customer: { subjectToken: string }) => customer.subjectToken),
      [subjectToken],
    );
  });

  test('received records each request with its body', () => {
    const posted = example.received.find((entry) => entry.method === 'POST' && entry.url === '/api/customers');
    assert.ok(posted !== undefined);
    assert.match(posted.body, /"subjectToken":"sub_b{26}"/);
    assert.equal(posted.headers['x-forwarded-host'], new URL(appOrigin).host);
  });
});
