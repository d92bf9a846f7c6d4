import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DomicileError } from '../policy/errors.ts';
import { createDestination, createFolderDestination, partialCopyKey, validateObjectKey } from './destinations/index.ts';
import { normalizePrefix } from './destinations/s3.ts';
import { S3RVER_CREDENTIALS, startTestS3Server, type TestS3Server } from './testing/s3-server.ts';

// The S3 destination takes credentials from the default AWS chain; the environment comes first in it.
process.env.AWS_ACCESS_KEY_ID = S3RVER_CREDENTIALS.accessKeyId;
process.env.AWS_SECRET_ACCESS_KEY = S3RVER_CREDENTIALS.secretAccessKey;

async function temporaryFolder(): Promise<string> {
  return mkdtemp(path.join(tmpdir(), 'domicile-destination-'));
}

describe('validateObjectKey', () => {
  test('accepts partial copy keys', () => {
    validateObjectKey('customer/sub_abcdefghijklmnopqrstuvwxyz.json');
    validateObjectKey('a');
    validateObjectKey('x/y-z/w_1.v2.json');
  });

  const invalid = [
    '',
    '/customer/a.json',
    'customer//a.json',
    'customer/',
    '../a.json',
    'customer/../../a.json',
    './a.json',
    'customer/.hidden.json',
    'customer\\..\\a.json',
    'customer/a b.json',
    'customer/a\u0000.json',
    'customer/é.json',
    'x'.repeat(1025),
  ];
  for (const key of invalid) {
    test(`rejects ${JSON.stringify(key.slice(0, 40))}`, () => {
      assert.throws(() => validateObjectKey(key), DomicileError);
    });
  }

  test('partialCopyKey joins type and token', () => {
    assert.equal(partialCopyKey('customer', 'sub_abc'), 'customer/sub_abc.json');
    assert.throws(() => partialCopyKey('..', 'sub_abc'), DomicileError);
  });
});

describe('folder destination', () => {
  test('put writes the body and replaces it', async () => {
    const root = await temporaryFolder();
    const destination = createFolderDestination(path.join(root, 'copies'));

    await destination.put('customer/sub_1.json', Buffer.from('{"v":1}'));
    assert.equal(await readFile(path.join(root, 'copies', 'customer', 'sub_1.json'), 'utf8'), '{"v":1}');

    await destination.put('customer/sub_1.json', Buffer.from('{"v":2}'));
    assert.equal(await readFile(path.join(root, 'copies', 'customer', 'sub_1.json'), 'utf8'), '{"v":2}');
    assert.deepEqual(await readdir(path.join(root, 'copies', 'customer')), ['sub_1.json']);

    await rm(root, { recursive: true, force: true });
  });

  test('concurrent puts leave one whole body', async () => {
    const root = await temporaryFolder();
    const destination = createFolderDestination(root);
    const bodies = Array.from({ length: 20 }, (_, index) => Buffer.from(JSON.stringify({ index, padding: 'x'.repeat(64 * 1024) })));

    await Promise.all(bodies.map((body) => destination.put('customer/sub_1.json', body)));

    const written = await readFile(path.join(root, 'customer', 'sub_1.json'));
    assert.ok(bodies.some((body) => body.equals(written)), 'the file must equal one of the bodies, not a mix');
    assert.deepEqual(await readdir(path.join(root, 'customer')), ['sub_1.json'], 'no temporary file may remain');

    await rm(root, { recursive: true, force: true });
  });

  test('failed put keeps the old file and no temporary file', async () => {
    const root = await temporaryFolder();
    const destination = createFolderDestination(root);
    await destination.put('customer/sub_1.json', Buffer.from('old'));

    // A folder in place of the target makes the rename fail after the temporary file was written.
    await mkdir(path.join(root, 'customer', 'sub_2.json', 'inner'), { recursive: true });
    await assert.rejects(destination.put('customer/sub_2.json', Buffer.from('new')));

    assert.equal(await readFile(path.join(root, 'customer', 'sub_1.json'), 'utf8'), 'old');
    assert.deepEqual((await readdir(path.join(root, 'customer'))).sort(), ['sub_1.json', 'sub_2.json']);

    await rm(root, { recursive: true, force: true });
  });

  test('remove deletes and is idempotent', async () => {
    const root = await temporaryFolder();
    const destination = createFolderDestination(root);
    await destination.put('customer/sub_1.json', Buffer.from('{}'));

    await destination.remove('customer/sub_1.json');
    assert.deepEqual(await readdir(path.join(root, 'customer')), []);

    await destination.remove('customer/sub_1.json');
    await destination.remove('other/sub_9.json');

    await rm(root, { recursive: true, force: true });
  });

  test('rejects keys that escape the root', async () => {
    const root = await temporaryFolder();
    const destination = createFolderDestination(path.join(root, 'copies'));

    await assert.rejects(destination.put('../escaped.json', Buffer.from('{}')), DomicileError);
    await assert.rejects(destination.put('customer/../../escaped.json', Buffer.from('{}')), DomicileError);
    await assert.rejects(destination.remove('../escaped.json'), DomicileError);
    assert.deepEqual((await readdir(root)).sort(), ['copies']);

    await rm(root, { recursive: true, force: true });
  });

  test('rejects a symbolic link out of the root', async () => {
    const root = await temporaryFolder();
    const outside = path.join(root, 'outside');
    await mkdir(outside);
    await mkdir(path.join(root, 'copies'));
    await symlink(outside, path.join(root, 'copies', 'customer'));
    await writeFile(path.join(outside, 'sub_1.json'), 'keep');
    const destination = createFolderDestination(path.join(root, 'copies'));

    await assert.rejects(destination.put('customer/sub_2.json', Buffer.from('{}')), DomicileError);
    await assert.rejects(destination.remove('customer/sub_1.json'), DomicileError);
    assert.deepEqual(await readdir(outside), ['sub_1.json']);

    await rm(root, { recursive: true, force: true });
  });

  test('createDestination resolves a relative path against the data folder', async () => {
    const root = await temporaryFolder();
    const destination = createDestination({ kind: 'folder', path: 'outbound' }, root);

    await destination.put('customer/sub_1.json', Buffer.from('{}'));
    assert.equal(await readFile(path.join(root, 'outbound', 'customer', 'sub_1.json'), 'utf8'), '{}');

    await destination.close();
    await rm(root, { recursive: true, force: true });
  });
});

describe('S3 destination', () => {
  let server: TestS3Server;

  before(async () => {
    server = await startTestS3Server();
  });
  after(async () => {
    await server.dispose();
  });

  const target = (prefix: string) =>
    ({ kind: 's3', bucket: server.bucket, prefix, region: 'eu-central-1', endpoint: server.endpoint, forcePathStyle: true }) as const;

  test('put stores the exact body under the prefix', async () => {
    const destination = createDestination(target('copies/eu'), '/nonexistent');
    const body = Buffer.from(JSON.stringify({ subjectToken: 'sub_1', fields: { note: 'ünïcödé ✓', padding: 'y'.repeat(200_000) } }));

    await destination.put('customer/sub_1.json', body);

    assert.equal(await server.getText('copies/eu/customer/sub_1.json'), body.toString('utf8'));
    await destination.close();
  });

  test('put replaces and remove deletes idempotently', async () => {
    const destination = createDestination(target('/replace/'), '/nonexistent');

    await destination.put('customer/sub_2.json', Buffer.from('{"v":1}'));
    await destination.put('customer/sub_2.json', Buffer.from('{"v":2}'));
    assert.equal(await server.getText('replace/customer/sub_2.json'), '{"v":2}');

    await destination.remove('customer/sub_2.json');
    assert.equal(await server.getText('replace/customer/sub_2.json'), undefined);
    await destination.remove('customer/sub_2.json');

    await destination.close();
  });

  test('rejects an invalid key before sending', async () => {
    const destination = createDestination(target(''), '/nonexistent');
    await assert.rejects(destination.put('../x.json', Buffer.from('{}')), DomicileError);
    await assert.rejects(destination.remove('a//b.json'), DomicileError);
    await destination.close();
  });

  test('fails while the server is down', async () => {
    const destination = createDestination(target('down'), '/nonexistent');
    await server.stop();
    try {
      await assert.rejects(destination.put('customer/sub_3.json', Buffer.from('{}')));
    } finally {
      await server.start();
    }
    await destination.put('customer/sub_3.json', Buffer.from('{}'));
    assert.equal(await server.getText('down/customer/sub_3.json'), '{}');
    await destination.close();
  });

  test('normalizePrefix trims slashes', () => {
    assert.equal(normalizePrefix(''), '');
    assert.equal(normalizePrefix('/'), '');
    assert.equal(normalizePrefix('a'), 'a/');
    assert.equal(normalizePrefix('/a/b//'), 'a/b/');
  });
});
