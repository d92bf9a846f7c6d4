import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { canonicalContext, openLocalKeyFile } from './local-file.ts';

let folder: string;

before(async () => {
  folder = await mkdtemp(join(tmpdir(), 'domicile-kek-'));
});

after(async () => {
  await rm(folder, { recursive: true, force: true });
});

describe('openLocalKeyFile', () => {
  test('creates the file with mode 0600 and parent folders', async () => {
    const path = join(folder, 'a', 'b', 'kek.json');
    const provider = await openLocalKeyFile(path);
    assert.equal(provider.created, true);
    assert.equal(provider.currentVersion(), 'local:1');
    assert.equal((await stat(path)).mode & 0o777, 0o600);

    const reopened = await openLocalKeyFile(path);
    assert.equal(reopened.created, false);
    const wrapped = await provider.wrap(Buffer.alloc(32, 5), { subject: 'sub_x' });
    assert.deepEqual(await reopened.unwrap(wrapped, { subject: 'sub_x' }), Buffer.alloc(32, 5));
  });

  test('two concurrent opens agree on one KEK', async () => {
    const path = join(folder, 'race', 'kek.json');
    const [first, second] = await Promise.all([openLocalKeyFile(path), openLocalKeyFile(path)]);
    assert.equal([first.created, second.created].filter(Boolean).length, 1);
    const wrapped = await first.wrap(Buffer.alloc(32, 1), {});
    assert.deepEqual(await second.unwrap(wrapped, {}), Buffer.alloc(32, 1));
  });

  test('rejects a corrupt file without printing it', async () => {
    const path = join(folder, 'corrupt.json');
    await writeFile(path, '{"format":"domicile-local-kek","currentVersion":1,"keys":{"1":"c2hvcnQ="}}', { mode: 0o600 });
    await assert.rejects(openLocalKeyFile(path), (error: Error & { code?: string }) => {
      assert.equal(error.code, 'internal');
      assert.doesNotMatch(error.message, /c2hvcnQ/);
      return true;
    });
  });

  test('KEK is not enumerable', async () => {
    const provider = await openLocalKeyFile(join(folder, 'enum.json'));
    assert.deepEqual(Object.keys(provider).sort(), ['created', 'kind', 'path']);
  });
});

describe('LocalKeyProvider', () => {
  test('wrap binds the context, in any key order', async () => {
    const provider = await openLocalKeyFile(join(folder, 'context.json'));
    const { plaintext, wrapped } = await provider.generateDataKey({ subject: 'sub_a', purpose: 'dek' });
    assert.equal(plaintext.length, 32);
    assert.deepEqual(await provider.unwrap(wrapped, { purpose: 'dek', subject: 'sub_a' }), plaintext);
    await assert.rejects(provider.unwrap(wrapped, { subject: 'sub_b', purpose: 'dek' }), { code: 'internal' });
  });

  test('tampered or unknown-version material fails', async () => {
    const provider = await openLocalKeyFile(join(folder, 'tamper.json'));
    const wrapped = await provider.wrap(randomBytes(32), {});
    const tampered = Buffer.from(wrapped.ciphertext);
    tampered[20] = (tampered[20] ?? 0) ^ 1;
    await assert.rejects(provider.unwrap({ ...wrapped, ciphertext: tampered }, {}), { code: 'internal' });
    await assert.rejects(provider.unwrap({ ...wrapped, kekVersion: 'local:7' }, {}), { code: 'internal' });
    await assert.rejects(provider.unwrap({ ...wrapped, kekVersion: 'kms:x' }, {}), { code: 'internal' });
  });

  test('rotate adds a version and keeps old wraps readable', async () => {
    const path = join(folder, 'rotate.json');
    const provider = await openLocalKeyFile(path);
    const old = await provider.wrap(Buffer.alloc(32, 9), {});
    assert.equal(await provider.rotate(), 'local:2');
    const fresh = await provider.wrap(Buffer.alloc(32, 8), {});
    assert.equal(fresh.kekVersion, 'local:2');

    const reopened = await openLocalKeyFile(path);
    assert.equal(reopened.currentVersion(), 'local:2');
    assert.deepEqual(await reopened.unwrap(old, {}), Buffer.alloc(32, 9));
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    assert.equal(JSON.parse(await readFile(path, 'utf8')).currentVersion, 2);
  });
});

describe('canonicalContext', () => {
  test('sorts keys', () => {
    assert.equal(canonicalContext({ b: '1', a: '2' }).toString(), '{"a":"2","b":"1"}');
  });
});
