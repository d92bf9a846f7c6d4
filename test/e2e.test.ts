/// <reference lib="dom" />
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Browser } from 'playwright-core';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { loadConfig } from '../cli/config.ts';
import { createLogger } from '../cli/logger.ts';
import { startDomicile, type Running } from '../cli/start.ts';
import { createScratchDatabase } from '../store/testing.ts';
import { S3RVER_CREDENTIALS, startTestS3Server, type TestS3Server } from '../replication/testing/s3-server.ts';
import { findCanaries, findChromium, freePort, launchChromium, LogCapture, NO_CHROMIUM, waitFor } from './support.ts';

const chromiumPath = findChromium();
const examplePolicyFile = fileURLToPath(new URL('../examples/policy.yaml', import.meta.url));

/** Unique values typed into the widget; none of them may appear anywhere outside the country in this form. */
const INPUT = {
  name: 'Qxcanary Vbkmerle',
  email: 'canary.m4z8t2@example.test',
  phone: '+49 30 7748 2915',
  birthDate: '1983-11-27',
  postalCode: '60313',
  country: 'DE',
};
const CANARIES = ['Qxcanary', 'Vbkmerle', 'canary.m4z8t2', 'm4z8t2', '77482915', '1983-11-27', '60313'];

async function readJson(file: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(file, 'utf8'));
  } catch {
    return undefined;
  }
}

describe('end-to-end flow in a browser', { skip: chromiumPath === undefined ? NO_CHROMIUM : false }, () => {
  let dataDir: string;
  let s3: TestS3Server;
  let running: Running;
  let browser: Browser;
  let dropDatabase: (() => Promise<void>) | undefined;
  const logs = new LogCapture();

  before(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'domicile-e2e-'));
    s3 = await startTestS3Server('partial-copies');

    const policy = parseYaml(await readFile(examplePolicyFile, 'utf8')) as { destinations: Record<string, unknown> };
    policy.destinations['awsS3'] = {
      target: { kind: 's3', bucket: 'partial-copies', prefix: 'eu', region: 'us-east-1', endpoint: s3.endpoint, forcePathStyle: true },
      records: { customer: { email: 'token', birthDate: 'generalize', country: 'clear' } },
    };
    const policyFile = path.join(dataDir, 'policy.yaml');
    await writeFile(policyFile, stringifyYaml(policy));

    let databaseUrl: string | undefined;
    if (process.env.DATABASE_URL !== undefined && process.env.DATABASE_URL !== '') {
      const scratch = await createScratchDatabase(process.env.DATABASE_URL);
      databaseUrl = scratch.url;
      dropDatabase = () => scratch.drop();
    }
    const config = loadConfig({
      DOMICILE_DATA_DIR: dataDir,
      DOMICILE_POLICY: policyFile,
      DOMICILE_APP_PORT: String(await freePort()),
      DOMICILE_GATEWAY_PORT: String(await freePort()),
      DOMICILE_REPLICATION_POLL_MS: '50',
      ...(databaseUrl === undefined ? {} : { DATABASE_URL: databaseUrl }),
    });
    // The S3 destination takes its credentials from the standard AWS chain.
    process.env.AWS_ACCESS_KEY_ID = S3RVER_CREDENTIALS.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = S3RVER_CREDENTIALS.secretAccessKey;
    running = await startDomicile(config, 'all', createLogger('debug', logs));
    browser = await launchChromium(chromiumPath ?? '');
  });

  after(async () => {
    await browser?.close();
    await running?.close();
    await dropDatabase?.();
    await s3?.dispose();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('collects in the widget and replicates only the permitted copy', async () => {
    const page = await browser.newPage();
    await page.goto(`${running.appOrigin}/`);

    const iframe = page.locator('#domicile-widget iframe');
    await iframe.waitFor();
    assert.equal(new URL((await iframe.getAttribute('src')) ?? '').origin, running.gatewayOrigin);
    // Until the iframe has navigated, it contains the initial about:blank document, which the host may read.
    await page.frameLocator('#domicile-widget iframe').locator('form').first().waitFor();
    const hostCanRead = await page.evaluate(() => {
      const frame = document.querySelector('#domicile-widget iframe') as HTMLIFrameElement | null;
      try {
        return frame?.contentDocument !== null && frame?.contentDocument !== undefined;
      } catch {
        return false;
      }
    });
    assert.equal(hostCanRead, false, 'the host page must not read into the widget iframe');

    const widget = page.frameLocator('#domicile-widget iframe');
    for (const [field, value] of Object.entries(INPUT)) {
      const select = widget.locator(`select[name="${field}"]`);
      if ((await select.count()) > 0) {
        await select.selectOption(value);
      } else {
        await widget.locator(`input[name="${field}"]`).fill(value);
      }
    }
    await widget.locator('button[type="submit"]').click();

    const tokenText = page.locator('#subject-token');
    await tokenText.filter({ hasText: /sub_[a-z2-7]{26}/ }).waitFor({ timeout: 30_000 });
    const subjectToken = ((await tokenText.textContent()) ?? '').match(/sub_[a-z2-7]{26}/)?.[0] ?? '';
    assert.match(subjectToken, /^sub_[a-z2-7]{26}$/);

    await page.locator('#customers').filter({ hasText: subjectToken }).waitFor({ timeout: 30_000 });
    const hostText = await page.evaluate(() => document.documentElement.outerHTML);
    assert.deepEqual(findCanaries(hostText, CANARIES), [], 'the host page must hold no personal data');

    const folderCopy = await waitFor('the folder partial copy', () =>
      readJson(path.join(dataDir, 'outbound', 'customer', `${subjectToken}.json`)),
    );
    const folderFields = (folderCopy as { fields: Record<string, unknown> }).fields;
    assert.deepEqual(Object.keys(folderFields).sort(), ['birthDate', 'country', 'email', 'postalCode']);
    assert.match(String(folderFields.email), /^det_v1_[a-z2-7]{32}$/);
    assert.equal(folderFields.birthDate, '1983');
    assert.equal(folderFields.postalCode, '60');
    assert.equal(folderFields.country, 'DE');
    assert.equal((folderCopy as { subjectToken: string }).subjectToken, subjectToken);

    const s3Copy = await waitFor('the S3 partial copy', async () => {
      const text = await s3.getText(`eu/customer/${subjectToken}.json`);
      // s3rver may serve an object before its upload finished, so an unparsable body means "not yet".
      try {
        return text === undefined ? undefined : (JSON.parse(text) as { fields: Record<string, unknown> });
      } catch {
        return undefined;
      }
    });
    assert.deepEqual(Object.keys(s3Copy.fields).sort(), ['birthDate', 'country', 'email']);
    assert.match(String(s3Copy.fields.email), /^det_v1_[a-z2-7]{32}$/);
    assert.equal(s3Copy.fields.birthDate, '1983');

    const tables = await running.db.pool.query<{ table_name: string }>(
      "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
    );
    let databaseText = '';
    for (const { table_name: table } of tables.rows) {
      const rows = await running.db.pool.query(`SELECT * FROM "${table}"`);
      databaseText += JSON.stringify(rows.rows);
    }
    assert.ok(databaseText.includes(subjectToken), 'the scan must see the stored record');
    assert.deepEqual(findCanaries(databaseText, CANARIES), [], 'no plaintext value may be stored in any column');

    const upstreamText = JSON.stringify(running.example?.received ?? []);
    assert.ok(upstreamText.includes(subjectToken), 'the upstream must have received the subject token');
    assert.deepEqual(findCanaries(upstreamText, CANARIES), [], 'the upstream must receive no personal data');

    const copiesText = JSON.stringify(folderCopy) + JSON.stringify(s3Copy);
    assert.deepEqual(findCanaries(copiesText, CANARIES), []);
    assert.ok(logs.lines.length > 0, 'the logs must have been captured');
    assert.deepEqual(findCanaries(logs.text(), CANARIES), [], 'the logs must hold no personal data');
    await page.close();
  });
});
