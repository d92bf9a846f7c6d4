import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { DomicileError } from '../policy/index.ts';
import { loadConfig } from './config.ts';
import { startDomicile } from './start.ts';

describe('startDomicile', () => {
  let dataDir: string;

  before(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'domicile-start-'));
  });

  after(async () => {
    await rm(dataDir, { recursive: true, force: true });
  });

  it('rejects an invalid policy with the path of the entry', async () => {
    const policyFile = path.join(dataDir, 'policy.yaml');
    await writeFile(
      policyFile,
      [
        'version: 1',
        'defaultRegion: DE',
        'purposes: [support]',
        'recordTypes:',
        '  customer:',
        '    fields:',
        '      name: { type: string, class: direct, egress: never }',
        'destinations:',
        '  aws:',
        '    target: { kind: folder, path: outbound }',
        '    records:',
        '      customer: { name: clear }',
      ].join('\n'),
    );
    const config = loadConfig({ DOMICILE_DATA_DIR: dataDir, DOMICILE_POLICY: policyFile });

    await assert.rejects(startDomicile(config, 'all', pino({ level: 'silent' })), (error: unknown) => {
      assert.ok(error instanceof DomicileError);
      assert.equal(error.code, 'invalid_policy');
      assert.deepEqual(
        error.issues.map((issue) => issue.path),
        ['$.destinations.aws.records.customer.name'],
      );
      return true;
    });
  });

  it('rejects port 0 for the app listener', async () => {
    const config = loadConfig({ DOMICILE_DATA_DIR: dataDir, DOMICILE_APP_PORT: '0', DOMICILE_GATEWAY_PORT: '0' });
    await assert.rejects(startDomicile(config, 'gateway', pino({ level: 'silent' })), /DOMICILE_APP_PORT must not be 0/);

    // The failed start must have released the embedded database, so a worker can open it.
    const running = await startDomicile(config, 'worker', pino({ level: 'silent' }));
    assert.equal(running.appOrigin, undefined);
    await running.close();
  });
});
