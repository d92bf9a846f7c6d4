/// <reference lib="dom" />
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { startExampleApp, type ExampleApp } from '../../examples/aws-app/server.ts';
import { loadPolicyFile } from '../../policy/load.ts';
import { createCredential } from '../../store/credentials.ts';
import { createTestVault, silentLogger, testDatabases, type OpenedTestDatabase, type TestVault } from '../../store/testing.ts';
import { findCanaries, findChromium, freePort, launchChromium, NO_CHROMIUM } from '../../test/support.ts';
import { createGatewayApp } from '../gateway-listener.ts';

const chromiumPath = findChromium();
const policy = loadPolicyFile(fileURLToPath(new URL('../../examples/policy.yaml', import.meta.url)));
const CANARIES = ['Xoblantes', 'Querdivan', 'xoblantes.q9', '4477120'];

describe('collect widget in Chromium', { skip: chromiumPath === undefined ? NO_CHROMIUM : false }, () => {
  let db: OpenedTestDatabase;
  let store: TestVault;
  let example: ExampleApp;
  let browser: Browser;
  let context: BrowserContext;
  const gatewayServer = http.createServer();
  const consoleErrors: string[] = [];

  before(async () => {
    const [database] = testDatabases();
    assert.ok(database !== undefined);
    db = await database.open();
    store = await createTestVault(db, policy);
    const { secret } = await createCredential(db, { name: 'example', location: 'abroad', scopes: { operations: ['widget-sessions:create'], recordTypes: ['customer'] } });

    gatewayServer.listen(0, '127.0.0.1');
    await once(gatewayServer, 'listening');
    // localhost and 127.0.0.1 are different origins, as the app and the gateway are in production.
    const gatewayOrigin = `http://localhost:${(gatewayServer.address() as AddressInfo).port}`;
    const appPort = await freePort();
    const appOrigin = `http://127.0.0.1:${appPort}`;
    example = await startExampleApp({ port: appPort, host: '127.0.0.1', gatewayOrigin, appOrigin, apiCredential: secret });

    gatewayServer.on(
      'request',
      createGatewayApp({ vault: store.vault, db, policy, keyring: store.keyring, logger: silentLogger(), appOrigins: [appOrigin], gatewayOrigin, ready: async () => true }),
    );
    browser = await launchChromium(chromiumPath ?? '');
    context = await browser.newContext({ locale: 'de-DE' });
  });

  after(async () => {
    await context?.close();
    await browser?.close();
    await example?.close();
    gatewayServer.closeAllConnections();
    await new Promise<void>((resolve) => gatewayServer.close(() => resolve()));
    await store?.keys.close();
    await db?.close();
  });

  async function openHostPage(): Promise<Page> {
    const page = await context.newPage();
    page.on('console', (message) => {
      if (message.type() === 'error') {
        consoleErrors.push(message.text());
      }
    });
    await page.goto(`${example.url}/`);
    await page.frameLocator('#domicile-widget iframe').locator('form#collect').waitFor();
    return page;
  }

  test('widget shows labels in the browser locale', async () => {
    const page = await openHostPage();
    const widget = page.frameLocator('#domicile-widget iframe');
    assert.equal(await widget.locator('label[for="field-name"]').innerText(), 'Vollständiger Name *');
    assert.equal(await widget.locator('button[type="submit"]').innerText(), 'Speichern');
    await page.close();
  });

  test('widget shows missing required field', async () => {
    const page = await openHostPage();
    const widget = page.frameLocator('#domicile-widget iframe');
    await widget.locator('button[type="submit"]').click();
    await widget.locator('#error-name').waitFor();
    assert.equal(await widget.locator('#error-name').innerText(), 'Dieses Feld ist erforderlich.');
    assert.equal(await widget.locator('input[name="name"]').getAttribute('aria-invalid'), 'true');
    await page.close();
  });

  test('widget shows server error next to field', async () => {
    const page = await openHostPage();
    const widget = page.frameLocator('#domicile-widget iframe');
    await widget.locator('input[name="name"]').fill('Xoblantes Querdivan');
    await widget.locator('input[name="email"]').fill('xoblantes.q9@example.test');
    // A browser accepts any text in a tel input; only the gateway checks that it is a phone number.
    await widget.locator('input[name="phone"]').fill('12');
    await widget.locator('button[type="submit"]').click();
    await widget.locator('#error-phone').waitFor();
    assert.equal(await widget.locator('#error-phone').innerText(), 'Geben Sie eine Telefonnummer ein; für eine Nummer aus einem anderen Land mit Ländervorwahl, etwa +49.');
    assert.equal(await widget.locator('#error-name').isHidden(), true);
    assert.equal(await page.locator('#subject-token').innerText(), 'none yet');
    await page.close();
  });

  test('widget passes only the subject token to the host', async () => {
    const page = await openHostPage();
    const widget = page.frameLocator('#domicile-widget iframe');
    await widget.locator('input[name="name"]').fill('Xoblantes Querdivan');
    await widget.locator('input[name="email"]').fill('xoblantes.q9@example.test');
    await widget.locator('input[name="phone"]').fill('030 4477120');
    await widget.locator('select[name="country"]').selectOption('AT');
    await widget.locator('button[type="submit"]').click();

    const tokenText = page.locator('#subject-token');
    await tokenText.filter({ hasText: /^sub_[a-z2-7]{26}$/ }).waitFor();
    const subjectToken = await tokenText.innerText();
    await page.locator('#customers').filter({ hasText: subjectToken }).waitFor();

    const hostHtml = await page.evaluate(() => document.documentElement.outerHTML);
    assert.deepEqual(findCanaries(hostHtml, CANARIES), []);
    assert.deepEqual(findCanaries(JSON.stringify(example.received), CANARIES), []);
    assert.equal(await widget.locator('input[name="name"]').inputValue(), '', 'the form keeps no value after saving');
    await page.close();
  });

  test('embed ignores messages from other sources', async () => {
    const page = await openHostPage();
    // Messages from one window arrive in order, so once the marker arrives the
    // embed script has already handled the forged message.
    await page.evaluate(
      () =>
        new Promise<void>((resolve) => {
          window.addEventListener('message', (event) => {
            if (event.data === 'marker') {
              resolve();
            }
          });
          window.postMessage({ type: 'domicile:record-created', subjectToken: `sub_${'c'.repeat(26)}` }, '*');
          window.postMessage('marker', '*');
        }),
    );
    assert.equal(await page.locator('#subject-token').innerText(), 'none yet');
    await page.close();
  });

  test('pages run without CSP violations', () => {
    assert.deepEqual(
      consoleErrors.filter((text) => /Content Security Policy/i.test(text)),
      [],
    );
  });
});
