import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { DomicileError } from '../policy/errors.ts';
import { startKmsDouble, type KmsDouble } from '../test/kms-double.ts';
import { loadConfig, productionWarnings } from './config.ts';
import { openKeyProvider } from './key-provider.ts';

const run = promisify(execFile);
const MAIN = fileURLToPath(new URL('./main.ts', import.meta.url));
const PASSPHRASE = 'a passphrase for the test only';

let folder: string;

before(async () => {
  folder = await mkdtemp(join(tmpdir(), 'domicile-cli-keys-'));
});

after(async () => {
  await rm(folder, { recursive: true, force: true });
});

/** Runs `domicile <args>` in a child process with only the given environment on top of PATH. */
async function domicile(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, ['--no-warnings', '--import', 'tsx', MAIN, ...args], {
      env: { PATH: process.env['PATH'] ?? '', DOMICILE_LOG_LEVEL: 'silent', ...env },
      timeout: 120_000,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    return { code: failed.code ?? 1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' };
  }
}

describe('key provider settings', () => {
  test('local is the default provider', () => {
    const config = loadConfig({ DOMICILE_DATA_DIR: folder });
    assert.equal(config.keyProvider, 'local');
    assert.equal(config.kms, undefined);
    assert.ok(productionWarnings(config).some((warning) => warning.includes('local file')));
  });

  test('aws-kms reads key id, region and endpoint', () => {
    const config = loadConfig({
      DOMICILE_KEY_PROVIDER: 'aws-kms',
      DOMICILE_KMS_KEY_ID: 'arn:aws:kms:eu-central-1:111122223333:key/0b6c3a52-0000-4000-8000-000000000001',
      DOMICILE_KMS_REGION: 'eu-central-1',
      DOMICILE_KMS_ENDPOINT: 'https://kms.example.internal',
    });
    assert.deepEqual(config.kms, {
      keyId: 'arn:aws:kms:eu-central-1:111122223333:key/0b6c3a52-0000-4000-8000-000000000001',
      region: 'eu-central-1',
      endpoint: 'https://kms.example.internal',
    });
    assert.equal(productionWarnings(config).some((warning) => warning.includes('local file')), false);
  });

  test('aws-kms falls back to AWS_REGION', () => {
    const config = loadConfig({ DOMICILE_KEY_PROVIDER: 'aws-kms', DOMICILE_KMS_KEY_ID: 'key-1', AWS_REGION: 'me-central-1' });
    assert.equal(config.kms?.region, 'me-central-1');
  });

  test('aws-kms without key id or region names both settings', () => {
    assert.throws(
      () => loadConfig({ DOMICILE_KEY_PROVIDER: 'aws-kms' }),
      (error: unknown) => {
        assert.ok(error instanceof DomicileError);
        assert.deepEqual(error.issues.map((issue) => issue.path).sort(), ['DOMICILE_KMS_KEY_ID', 'DOMICILE_KMS_REGION']);
        return true;
      },
    );
    assert.throws(() => loadConfig({ DOMICILE_KEY_PROVIDER: 'vault' }), /DOMICILE_KEY_PROVIDER/);
    assert.throws(() => loadConfig({ DOMICILE_KMS_ENDPOINT: 'not a url' }), /DOMICILE_KMS_ENDPOINT/);
  });
});

describe('openKeyProvider', () => {
  let double: KmsDouble;

  before(async () => {
    double = await startKmsDouble();
  });

  after(async () => {
    await double.stop();
  });

  test('local provider creates the key file', async () => {
    const keyFile = join(folder, 'open-local', 'kek.json');
    const keys = await openKeyProvider(loadConfig({ DOMICILE_KEY_FILE: keyFile }));
    try {
      assert.equal(keys.kind, 'local');
      assert.equal(keys.created, true);
      assert.equal((await stat(keyFile)).mode & 0o777, 0o600);
    } finally {
      await keys.close();
    }
  });

  test('aws-kms provider wraps through the configured endpoint', async () => {
    const { keyId } = double.createKey();
    const previous = { id: process.env['AWS_ACCESS_KEY_ID'], secret: process.env['AWS_SECRET_ACCESS_KEY'] };
    process.env['AWS_ACCESS_KEY_ID'] = 'AKIDDOMICILETEST';
    process.env['AWS_SECRET_ACCESS_KEY'] = 'test-secret';
    const keys = await openKeyProvider(
      loadConfig({ DOMICILE_KEY_PROVIDER: 'aws-kms', DOMICILE_KMS_KEY_ID: keyId, DOMICILE_KMS_REGION: double.region, DOMICILE_KMS_ENDPOINT: double.endpoint }),
    );
    try {
      assert.equal(keys.kind, 'aws-kms');
      assert.equal(keys.created, false);
      const { plaintext, wrapped } = await keys.generateDataKey({ subject: 'sub_alpha' });
      assert.equal(wrapped.kekVersion, `kms:${keyId}`);
      assert.deepEqual(await keys.unwrap(wrapped, { subject: 'sub_alpha' }), plaintext);
    } finally {
      await keys.close();
      restore('AWS_ACCESS_KEY_ID', previous.id);
      restore('AWS_SECRET_ACCESS_KEY', previous.secret);
    }
  });

  test('domicile migrate and audit verify run with aws-kms', async () => {
    const { arn } = double.createKey();
    const env = {
      DOMICILE_DATA_DIR: join(folder, 'kms-data'),
      DOMICILE_KEY_PROVIDER: 'aws-kms',
      DOMICILE_KMS_KEY_ID: arn,
      DOMICILE_KMS_REGION: double.region,
      DOMICILE_KMS_ENDPOINT: double.endpoint,
      AWS_ACCESS_KEY_ID: 'AKIDDOMICILETEST',
      AWS_SECRET_ACCESS_KEY: 'test-secret',
    };
    const encrypts = double.calls.get('Encrypt') ?? 0;
    const migrated = await domicile(['migrate'], env);
    assert.equal(migrated.code, 0, migrated.stderr);
    assert.equal(double.calls.get('Encrypt'), encrypts + 1, 'the first tokenization secret is wrapped by KMS');

    const decrypts = double.calls.get('Decrypt') ?? 0;
    const verified = await domicile(['audit', 'verify'], env);
    assert.equal(verified.code, 0, verified.stderr);
    assert.equal(double.calls.get('Decrypt'), decrypts + 1, 'the tokenization secret is unwrapped by KMS');
  });
});

function restore(name: string, value: string | undefined): void {
  if (value === undefined) {
    delete process.env[name];
  } else {
    process.env[name] = value;
  }
}

describe('domicile keys export and import', () => {
  test('export then import restores the same key file', async () => {
    const dataDir = join(folder, 'cli-export');
    const keys = await openKeyProvider(loadConfig({ DOMICILE_DATA_DIR: dataDir }));
    await keys.close();
    const out = join(folder, 'cli-export.json');

    const exported = await domicile(['keys', 'export', '--out', out], { DOMICILE_DATA_DIR: dataDir, DOMICILE_KEY_PASSPHRASE: PASSPHRASE });
    assert.equal(exported.code, 0, exported.stderr);
    assert.equal((await stat(out)).mode & 0o777, 0o600);

    const again = await domicile(['keys', 'export', '--out', out], { DOMICILE_DATA_DIR: dataDir, DOMICILE_KEY_PASSPHRASE: PASSPHRASE });
    assert.equal(again.code, 1);
    assert.match(again.stderr, /already exists/);

    const restoredFile = join(folder, 'cli-restored', 'kek.json');
    const imported = await domicile(['keys', 'import', '--in', out], { DOMICILE_KEY_FILE: restoredFile, DOMICILE_KEY_PASSPHRASE: PASSPHRASE });
    assert.equal(imported.code, 0, imported.stderr);
    assert.deepEqual(JSON.parse(await readFile(restoredFile, 'utf8')), JSON.parse(await readFile(join(dataDir, 'kek.json'), 'utf8')));

    const wrong = await domicile(['keys', 'import', '--in', out], { DOMICILE_KEY_FILE: join(folder, 'cli-wrong', 'kek.json'), DOMICILE_KEY_PASSPHRASE: 'not the passphrase at all' });
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /wrong passphrase/);
  });

  test('without passphrase and terminal the command fails', async () => {
    const result = await domicile(['keys', 'export', '--out', join(folder, 'none.json')], { DOMICILE_DATA_DIR: join(folder, 'cli-none') });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /DOMICILE_KEY_PASSPHRASE/);
  });

  test('passphrase flag does not exist', async () => {
    const result = await domicile(['keys', 'export', '--out', join(folder, 'flag.json'), '--passphrase', PASSPHRASE], { DOMICILE_DATA_DIR: join(folder, 'cli-flag') });
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /unknown option/);
  });
});
