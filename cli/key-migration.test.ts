import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { DomicileError } from '../policy/errors.ts';
import { loadPolicyFile } from '../policy/load.ts';
import { openDatabase } from '../store/database.ts';
import { loadKeyring } from '../store/keyring-store.ts';
import { migrate } from '../store/migrate.ts';
import { createVault } from '../store/vault.ts';
import { startKmsDouble, type KmsDouble } from '../test/kms-double.ts';
import { openLocalKeyFile } from '../tokenizer/keys/local-file.ts';
import { loadConfig } from './config.ts';
import { openKeyProvider } from './key-provider.ts';
import { prepareLifecycle } from './lifecycle.ts';
import { startDomicile } from './start.ts';

const run = promisify(execFile);
const root = fileURLToPath(new URL('..', import.meta.url));
const policyFile = join(root, 'examples', 'policy.yaml');
const logger = pino({ level: 'silent' });
const AWS_ENV = { AWS_ACCESS_KEY_ID: 'AKIDDOMICILETEST', AWS_SECRET_ACCESS_KEY: 'test-secret' };

/** Runs `domicile <args>` in a child process with only the given environment on top of PATH. */
async function domicile(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, ['--no-warnings', '--import', 'tsx', join(root, 'cli', 'main.ts'), ...args], {
      env: { PATH: process.env['PATH'] ?? '', DOMICILE_POLICY: policyFile, DOMICILE_LOG_LEVEL: 'silent', ...env },
      timeout: 120_000,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    return { code: failed.code ?? 1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' };
  }
}

/** Sets `variables` in process.env for the in-process start, and returns a function that puts the old values back. */
function setEnvironment(variables: Record<string, string>): () => void {
  const previous = Object.fromEntries(Object.keys(variables).map((name) => [name, process.env[name]]));
  Object.assign(process.env, variables);
  return () => {
    for (const [name, value] of Object.entries(previous)) {
      if (value === undefined) {
        delete process.env[name];
      } else {
        process.env[name] = value;
      }
    }
  };
}

describe('secondary key provider settings', () => {
  test('secondary equal to primary is invalid', () => {
    assert.throws(() => loadConfig({ DOMICILE_SECONDARY_KEY_PROVIDER: 'local' }), /DOMICILE_SECONDARY_KEY_PROVIDER must differ from DOMICILE_KEY_PROVIDER/);
  });

  test('secondary aws-kms needs the KMS settings', () => {
    assert.throws(
      () => loadConfig({ DOMICILE_SECONDARY_KEY_PROVIDER: 'aws-kms' }),
      (error: unknown) => {
        assert.ok(error instanceof DomicileError);
        assert.deepEqual(error.issues.map((issue) => issue.path).sort(), ['DOMICILE_KMS_KEY_ID', 'DOMICILE_KMS_REGION']);
        assert.match(error.message, /required when DOMICILE_SECONDARY_KEY_PROVIDER is aws-kms/);
        return true;
      },
    );
  });

  test('secondary aws-kms reads the KMS settings', () => {
    const config = loadConfig({ DOMICILE_SECONDARY_KEY_PROVIDER: 'aws-kms', DOMICILE_KMS_KEY_ID: 'key-1', DOMICILE_KMS_REGION: 'eu-central-1' });
    assert.equal(config.keyProvider, 'local');
    assert.equal(config.secondaryKeyProvider, 'aws-kms');
    assert.deepEqual(config.kms, { keyId: 'key-1', region: 'eu-central-1', endpoint: undefined });
  });

  test('KMS settings without an aws-kms provider are ignored', () => {
    assert.equal(loadConfig({ DOMICILE_KMS_KEY_ID: 'key-1', DOMICILE_KMS_REGION: 'eu-central-1' }).kms, undefined);
  });
});

describe('domicile keys migrate on the embedded database', () => {
  let double: KmsDouble;
  let dataDir: string;
  let keyId: string;
  let localEnv: Record<string, string>;
  let migratingEnv: Record<string, string>;
  let kmsEnv: Record<string, string>;

  before(async () => {
    double = await startKmsDouble();
    keyId = double.createKey().arn;
    dataDir = await mkdtemp(join(tmpdir(), 'domicile-key-migration-'));
    const kmsSettings = { DOMICILE_KMS_KEY_ID: keyId, DOMICILE_KMS_REGION: double.region, DOMICILE_KMS_ENDPOINT: double.endpoint, ...AWS_ENV };
    localEnv = { DOMICILE_DATA_DIR: dataDir };
    migratingEnv = { ...localEnv, ...kmsSettings, DOMICILE_SECONDARY_KEY_PROVIDER: 'aws-kms' };
    kmsEnv = { ...localEnv, ...kmsSettings, DOMICILE_KEY_PROVIDER: 'aws-kms' };

    // Four subjects under the local key file, written as the gateway would.
    const keys = await openLocalKeyFile(join(dataDir, 'kek.json'));
    const db = await openDatabase({ dataDir, logger });
    try {
      await migrate(db, logger);
      const keyring = await loadKeyring(db, keys);
      const vault = createVault({ db, policy: loadPolicyFile(policyFile), keys, keyring, logger });
      for (let i = 0; i < 4; i += 1) {
        await vault.create({ recordType: 'customer', values: { name: `Cli Synthetic ${i}`, email: `cli.synthetic.${i}@example.org` }, actor: { id: 'cli-test', location: 'in-country' }, purpose: 'signup' });
      }
    } finally {
      await db.close();
      await keys.close();
    }
  });

  after(async () => {
    await double.stop();
    await rm(dataDir, { recursive: true, force: true });
  });

  test('target that is not configured is rejected', async () => {
    const result = await domicile(['keys', 'migrate', '--to', 'aws-kms'], localEnv);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /set DOMICILE_SECONDARY_KEY_PROVIDER=aws-kms with DOMICILE_KMS_KEY_ID and DOMICILE_KMS_REGION/);
  });

  test('migrate to aws-kms moves every key and status shows it', async () => {
    const migrated = await domicile(['keys', 'migrate', '--to', 'aws-kms'], migratingEnv);
    assert.equal(migrated.code, 0, migrated.stderr);
    assert.match(migrated.stdout, new RegExp(`new keys are wrapped with kms:${keyId} \\(was local:1\\)`));
    assert.match(migrated.stdout, /migration job \d+ completed: 4 data keys rewrapped/);

    const status = await domicile(['keys', 'status'], migratingEnv);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, new RegExp(`current KEK version: kms:${keyId} \\(AWS KMS\\)`));
    assert.match(status.stdout, /^AWS KMS: 4 data keys, 1 tokenization secrets$/m);
    assert.match(status.stdout, /^local key file: 0 data keys, 0 tokenization secrets \(wraps no key: it can be removed from the configuration\)$/m);
    assert.match(status.stdout, /migration from local to aws-kms .*: completed, 4\/4 data keys/);
  });

  test('processes with both providers wrap new keys with the target', async () => {
    const config = loadConfig({ ...migratingEnv, DOMICILE_POLICY: policyFile });
    const restore = setEnvironment(AWS_ENV);
    const keys = await openKeyProvider(config);
    const db = await openDatabase({ dataDir, logger });
    try {
      assert.equal(keys.currentVersion(), 'local:1', 'the configured primary wraps until the newest job is read');
      const keyring = await loadKeyring(db, keys);
      const lifecycle = await prepareLifecycle(config, db, keys, keyring, logger);
      try {
        assert.equal(lifecycle.keys.currentVersion(), `kms:${keyId}`);
        const { wrapped } = await lifecycle.keys.generateDataKey({ subject: 'sub_lifecycle' });
        assert.equal(wrapped.kekVersion, `kms:${keyId}`);
      } finally {
        await lifecycle.close();
      }
    } finally {
      await db.close();
      await keys.close();
      restore();
    }
  });

  test('start-up rejects a configuration that drops KMS', async () => {
    const config = loadConfig({ ...localEnv, DOMICILE_POLICY: policyFile });
    await assert.rejects(startDomicile(config, 'worker', logger), (error: unknown) => {
      assert.ok(error instanceof DomicileError);
      assert.match(error.message, new RegExp(`4 data keys and 1 tokenization secrets are wrapped by KEK version kms:${keyId}`));
      assert.match(error.message, /set DOMICILE_SECONDARY_KEY_PROVIDER=aws-kms/);
      return true;
    });

    const status = await domicile(['keys', 'status'], localEnv);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, new RegExp(`kms:${keyId}: 4 data keys, 1 tokenization secrets \\(no configured key provider can unwrap it\\)`));
  });

  test('start-up accepts aws-kms alone once no local key is left', async () => {
    const restore = setEnvironment(AWS_ENV);
    try {
      const running = await startDomicile(loadConfig({ ...kmsEnv, DOMICILE_POLICY: policyFile }), 'worker', logger);
      await running.close();
    } finally {
      restore();
    }
  });

  test('migrate back to local and the start-up names the key file', async () => {
    const back = await domicile(['keys', 'migrate', '--to', 'local'], { ...kmsEnv, DOMICILE_SECONDARY_KEY_PROVIDER: 'local' });
    assert.equal(back.code, 0, back.stderr);
    assert.match(back.stdout, /migration job \d+ completed: 4 data keys rewrapped with local:1/);

    const again = await domicile(['keys', 'migrate', '--to', 'local'], { ...kmsEnv, DOMICILE_SECONDARY_KEY_PROVIDER: 'local' });
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /nothing to migrate/);

    const missingFile = loadConfig({ ...kmsEnv, DOMICILE_SECONDARY_KEY_PROVIDER: 'local', DOMICILE_KEY_FILE: join(dataDir, 'elsewhere.json'), DOMICILE_POLICY: policyFile });
    const restore = setEnvironment(AWS_ENV);
    try {
      await assert.rejects(startDomicile(missingFile, 'worker', logger), /local key file .*elsewhere\.json \(DOMICILE_KEY_FILE\) does not exist/);
    } finally {
      restore();
    }
  });
});
