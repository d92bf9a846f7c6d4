import assert from 'node:assert/strict';
import { chmod, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DomicileError } from '../../policy/errors.ts';
import { exportLocalKeyFile, importLocalKeyFile } from './local-file-export.ts';
import { openLocalKeyFile } from './local-file.ts';

const PASSPHRASE = 'correct horse battery staple';
/** Lowest accepted scrypt cost, so the tests stay fast; the default cost is tested once. */
const FAST = { N: 2 ** 14, r: 8, p: 1 };

let folder: string;
let counter = 0;

before(async () => {
  folder = await mkdtemp(join(tmpdir(), 'domicile-kek-export-'));
});

after(async () => {
  await rm(folder, { recursive: true, force: true });
});

function nextPath(): string {
  counter += 1;
  return join(folder, `case-${counter}`, 'kek.json');
}

function hasCode(code: string, message?: RegExp) {
  return (error: unknown): boolean => {
    assert.ok(error instanceof DomicileError, String(error));
    assert.equal(error.code, code, error.message);
    if (message !== undefined) assert.match(error.message, message);
    return true;
  };
}

describe('exportLocalKeyFile and importLocalKeyFile', () => {
  test('export imports into a new file that unwraps old keys', async () => {
    const source = await openLocalKeyFile(nextPath());
    const wrapped = await source.wrap(Buffer.alloc(32, 9), { subject: 'sub_alpha' });
    const data = await exportLocalKeyFile(source.path, PASSPHRASE, FAST);

    const target = nextPath();
    assert.equal(await importLocalKeyFile(target, data, PASSPHRASE), 'created');
    assert.equal((await stat(target)).mode & 0o777, 0o600);
    const restored = await openLocalKeyFile(target);
    assert.equal(restored.created, false);
    assert.deepEqual(await restored.unwrap(wrapped, { subject: 'sub_alpha' }), Buffer.alloc(32, 9));
  });

  test('export contains no key material in clear', async () => {
    const source = await openLocalKeyFile(nextPath());
    const keyFile = JSON.parse(await readFile(source.path, 'utf8')) as { keys: Record<string, string> };
    const data = (await exportLocalKeyFile(source.path, PASSPHRASE, FAST)).toString('utf8');
    for (const kek of Object.values(keyFile.keys)) {
      assert.equal(data.includes(kek), false);
      assert.equal(data.includes(Buffer.from(kek, 'base64').toString('hex')), false);
    }
    assert.equal(JSON.parse(data).format, 'domicile-local-kek-export-v1');
  });

  test('default scrypt cost round trips', async () => {
    const source = await openLocalKeyFile(nextPath());
    const data = await exportLocalKeyFile(source.path, PASSPHRASE);
    assert.equal(JSON.parse(data.toString('utf8')).kdf.N, 2 ** 17);
    assert.equal(await importLocalKeyFile(nextPath(), data, PASSPHRASE), 'created');
  });

  test('wrong passphrase is rejected with one fixed message', async () => {
    const source = await openLocalKeyFile(nextPath());
    const data = await exportLocalKeyFile(source.path, PASSPHRASE, FAST);
    const target = nextPath();
    await assert.rejects(importLocalKeyFile(target, data, 'correct horse battery stapler'), hasCode('invalid_request', /wrong passphrase or changed file/));
    await assert.rejects(stat(target), { code: 'ENOENT' });
  });

  test('changed export is rejected', async () => {
    const source = await openLocalKeyFile(nextPath());
    const document = JSON.parse((await exportLocalKeyFile(source.path, PASSPHRASE, FAST)).toString('utf8'));

    const ciphertext = Buffer.from(document.ciphertext, 'base64');
    ciphertext[0] = (ciphertext[0] ?? 0) ^ 0x01;
    const flipped = Buffer.from(JSON.stringify({ ...document, ciphertext: ciphertext.toString('base64') }));
    await assert.rejects(importLocalKeyFile(nextPath(), flipped, PASSPHRASE), hasCode('invalid_request', /wrong passphrase or changed file/));

    const weakened = Buffer.from(JSON.stringify({ ...document, kdf: { ...document.kdf, N: 2 ** 15 } }));
    await assert.rejects(importLocalKeyFile(nextPath(), weakened, PASSPHRASE), hasCode('invalid_request', /wrong passphrase or changed file/));
  });

  test('crafted scrypt cost and garbage are rejected before deriving', async () => {
    const source = await openLocalKeyFile(nextPath());
    const document = JSON.parse((await exportLocalKeyFile(source.path, PASSPHRASE, FAST)).toString('utf8'));
    const expensive = Buffer.from(JSON.stringify({ ...document, kdf: { ...document.kdf, N: 2 ** 30 } }));
    await assert.rejects(importLocalKeyFile(nextPath(), expensive, PASSPHRASE), hasCode('invalid_request', /kdf must be scrypt/));
    await assert.rejects(importLocalKeyFile(nextPath(), Buffer.from('not json'), PASSPHRASE), hasCode('invalid_request', /not JSON/));
    await assert.rejects(importLocalKeyFile(nextPath(), Buffer.from('{"format":"other"}'), PASSPHRASE), hasCode('invalid_request', /format must be/));
  });

  test('short passphrase is rejected on export', async () => {
    const source = await openLocalKeyFile(nextPath());
    await assert.rejects(exportLocalKeyFile(source.path, 'short', FAST), hasCode('invalid_request', /at least 12 characters/));
  });

  test('import refuses to overwrite a different key file', async () => {
    const source = await openLocalKeyFile(nextPath());
    const data = await exportLocalKeyFile(source.path, PASSPHRASE, FAST);
    const other = await openLocalKeyFile(nextPath());
    const before = await readFile(other.path, 'utf8');
    await assert.rejects(importLocalKeyFile(other.path, data, PASSPHRASE), hasCode('conflict', /already exists with a different key version 1/));
    assert.equal(await readFile(other.path, 'utf8'), before);
  });

  test('import of the same keys leaves the file unchanged', async () => {
    const source = await openLocalKeyFile(nextPath());
    const data = await exportLocalKeyFile(source.path, PASSPHRASE, FAST);
    assert.equal(await importLocalKeyFile(source.path, data, PASSPHRASE), 'unchanged');
  });

  test('import of a rotated export extends an older copy', async () => {
    const path = nextPath();
    const source = await openLocalKeyFile(path);
    const oldCopy = nextPath();
    assert.equal(await importLocalKeyFile(oldCopy, await exportLocalKeyFile(path, PASSPHRASE, FAST), PASSPHRASE), 'created');

    await source.rotate();
    const wrapped = await source.wrap(Buffer.alloc(32, 3), {});
    const rotatedExport = await exportLocalKeyFile(path, PASSPHRASE, FAST);
    assert.equal(await importLocalKeyFile(oldCopy, rotatedExport, PASSPHRASE), 'extended');
    const extended = await openLocalKeyFile(oldCopy);
    assert.equal(extended.currentVersion(), 'local:2');
    assert.deepEqual(await extended.unwrap(wrapped, {}), Buffer.alloc(32, 3));

    assert.equal(await importLocalKeyFile(oldCopy, rotatedExport, PASSPHRASE), 'unchanged');
  });

  test('export rejects a key file readable by others', async () => {
    const source = await openLocalKeyFile(nextPath());
    await chmod(source.path, 0o644);
    await assert.rejects(exportLocalKeyFile(source.path, PASSPHRASE, FAST), hasCode('internal', /mode 0644.*chmod 600/));
  });
});

describe('key file mode check', () => {
  test('open rejects a key file readable by others', async () => {
    const path = nextPath();
    await openLocalKeyFile(path);
    await chmod(path, 0o640);
    await assert.rejects(openLocalKeyFile(path), hasCode('internal', /mode 0640/));
    await chmod(path, 0o600);
    assert.equal((await openLocalKeyFile(path)).created, false);
  });

  test('open rejects a folder in place of the key file', async () => {
    await assert.rejects(openLocalKeyFile(folder), hasCode('internal', /not a regular file/));
  });
});
