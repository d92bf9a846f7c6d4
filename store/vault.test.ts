import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { DomicileError } from '../policy/errors.ts';
import { loadPolicyFile } from '../policy/load.ts';
import { decryptValue } from '../tokenizer/envelope.ts';
import type { Database } from './database.ts';
import { checkOutIdleClients, closeTestVault, openTestVault, testDatabases, type OpenedTestDatabase, type TestVault } from './testing.ts';
import type { Actor } from './types.ts';

const policy = loadPolicyFile(fileURLToPath(new URL('../examples/policy.yaml', import.meta.url)));
const actor: Actor = { id: 'test-backend', location: 'in-country' };

/** Synthetic person; each value is distinctive enough that finding it in a column cannot be chance. */
const person = {
  name: 'Zyxwina Quorpelt',
  email: 'Zyxwina.Quorpelt@Example.ORG',
  phone: '+49 151 23456789',
  birthDate: '1987-06-05',
  postalCode: '10115',
  country: 'de',
};
const normalizedEmail = 'zyxwina.quorpelt@example.org';
const secretTexts = ['Zyxwina', 'Quorpelt', '+4915123456789', '23456789', '1987-06-05'];

/** Dumps every table's rows as JSON text (bytea as hex), to scan for plaintext. */
async function dumpAllTables(db: Database): Promise<string> {
  const tables = await db.pool.query<{ table_name: string }>(
    `SELECT table_name FROM information_schema.tables
     WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name`,
  );
  let text = '';
  for (const { table_name: table } of tables.rows) {
    const rows = await db.pool.query<{ row: string }>(`SELECT row_to_json(t)::text AS row FROM ${table} t`);
    text += rows.rows.map((row) => row.row).join('\n');
  }
  return text;
}

function containsPlaintext(haystack: string, needle: string): boolean {
  const lower = haystack.toLowerCase();
  return lower.includes(needle.toLowerCase()) || lower.includes(Buffer.from(needle, 'utf8').toString('hex'));
}

async function expectDomicileError(promise: Promise<unknown>, code: string): Promise<DomicileError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof DomicileError, `expected DomicileError, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    return error;
  }
  assert.fail(`expected DomicileError ${code}`);
}

for (const database of testDatabases()) {
  describe(`vault on ${database.name}`, () => {
    let db: OpenedTestDatabase;
    let store: TestVault;

    before(async () => {
      ({ db, store } = await openTestVault(database, policy));
    });
    after(() => closeTestVault(db, store));

    test('create then read returns normalized values', async () => {
      const created = await store.vault.create({ recordType: 'customer', values: person, actor, purpose: 'signup' });
      assert.match(created.subjectToken, /^sub_[a-z2-7]{26}$/);
      assert.equal(created.version, 1);

      const view = await store.vault.read({ subjectToken: created.subjectToken, recordType: 'customer', actor, purpose: 'support' });
      assert.equal(view.version, 1);
      assert.equal(view.policyVersion, policy.version);
      assert.equal(view.values['email'], normalizedEmail);
      assert.equal(view.values['phone'], '+4915123456789');
      assert.equal(view.values['country'], 'DE');
      assert.equal(view.values['name'], person.name);
    });

    test('creates and seals keep working on a new connection', async () => {
      await store.vault.create({ recordType: 'customer', values: person, actor, purpose: 'signup' });
      // Destroys every idle connection; the next ones prepare the named statements again.
      for (const client of await checkOutIdleClients(db)) client.release(new Error('connection dropped by the test'));
      const created = await store.vault.create({ recordType: 'customer', values: person, actor, purpose: 'signup' });
      const read = await store.vault.read({ subjectToken: created.subjectToken, recordType: 'customer', actor, purpose: 'support' });
      assert.equal(read.values['email'], normalizedEmail);
    });

    test('create leaves no plaintext in any column', async () => {
      await store.vault.create({ recordType: 'customer', values: person, actor, purpose: 'signup' });
      const dump = await dumpAllTables(db);
      for (const text of [...secretTexts, normalizedEmail, person.email]) {
        assert.equal(containsPlaintext(dump, text), false, `a column contains a plaintext value (${secretTexts.indexOf(text)})`);
      }
    });

    test('validation collects every issue without values', async () => {
      const error = await expectDomicileError(
        store.vault.create({
          recordType: 'customer',
          values: { email: 'not-an-email-Quorpelt', birthDate: '1987-13-45', nickname: 'Zyx', 'Quorpelt@x.org': 'a' },
          actor,
          purpose: 'signup',
        }),
        'invalid_request',
      );
      const paths = error.issues.map((issue) => issue.path).sort();
      assert.deepEqual(paths, ['$.values', '$.values', '$.values.birthDate', '$.values.email', '$.values.name']);
      const unknownKeys = error.issues.filter((issue) => issue.path === '$.values').map((issue) => issue.message);
      assert.match(unknownKeys[0] ?? '', /at key position 3;/);
      assert.match(unknownKeys[1] ?? '', /at key position 4;/);
      assert.equal(error.message.includes('Quorpelt'), false);
      assert.equal(error.message.includes('nickname'), false);
      assert.equal(JSON.stringify(error.issues).includes('Quorpelt'), false);
    });

    test('invalid values alone give invalid_value', async () => {
      const error = await expectDomicileError(
        store.vault.create({ recordType: 'customer', values: { ...person, country: 'XX' }, actor, purpose: 'signup' }),
        'invalid_value',
      );
      assert.deepEqual(error.issues.map((issue) => issue.path), ['$.values.country']);
    });

    test('unknown purpose and record type are rejected', async () => {
      const error = await expectDomicileError(
        store.vault.create({ recordType: 'invoice', values: {}, actor, purpose: 'marketing' }),
        'invalid_request',
      );
      assert.deepEqual(error.issues.map((issue) => issue.path).sort(), ['$.purpose', '$.recordType']);
    });

    test('update bumps version, reindexes and queues events', async () => {
      const { subjectToken } = await store.vault.create({ recordType: 'customer', values: person, actor, purpose: 'signup' });
      const updated = await store.vault.update({
        subjectToken,
        recordType: 'customer',
        values: { email: 'new.address.zq@example.org', phone: null },
        actor,
        purpose: 'support',
        expectedVersion: 1,
      });
      assert.equal(updated.version, 2);

      const view = await store.vault.read({ subjectToken, recordType: 'customer', actor, purpose: 'support' });
      assert.equal(view.values['email'], 'new.address.zq@example.org');
      assert.equal('phone' in view.values, false);
      assert.equal(view.values['name'], person.name);

      const byNew = await store.vault.lookup({ recordType: 'customer', field: 'email', value: 'NEW.address.zq@EXAMPLE.org', actor, purpose: 'support' });
      assert.deepEqual(byNew, [subjectToken]);
      const byOld = await store.vault.lookup({ recordType: 'customer', field: 'email', value: person.email, actor, purpose: 'support' });
      assert.equal(byOld.includes(subjectToken), false);

      const events = await db.pool.query<{ op: string; record_version: number }>(
        'SELECT op, record_version FROM outbox WHERE subject_token = $1 ORDER BY id',
        [subjectToken],
      );
      assert.deepEqual(events.rows.map((row) => [row.op, row.record_version]), [['upsert', 1], ['upsert', 2]]);
    });

    test('update with a stale expected version fails', async () => {
      const { subjectToken } = await store.vault.create({ recordType: 'customer', values: person, actor, purpose: 'signup' });
      await store.vault.update({ subjectToken, recordType: 'customer', values: { country: 'FR' }, actor, purpose: 'support' });
      await expectDomicileError(
        store.vault.update({ subjectToken, recordType: 'customer', values: { country: 'AT' }, actor, purpose: 'support', expectedVersion: 1 }),
        'precondition_failed',
      );
    });

    test('update without changes keeps the version', async () => {
      const { subjectToken } = await store.vault.create({ recordType: 'customer', values: person, actor, purpose: 'signup' });
      const same = await store.vault.update({ subjectToken, recordType: 'customer', values: { country: 'DE' }, actor, purpose: 'support' });
      assert.equal(same.version, 1);
    });

    test('update cannot remove a required field', async () => {
      const { subjectToken } = await store.vault.create({ recordType: 'customer', values: person, actor, purpose: 'signup' });
      const error = await expectDomicileError(
        store.vault.update({ subjectToken, recordType: 'customer', values: { name: null }, actor, purpose: 'support' }),
        'invalid_request',
      );
      assert.deepEqual(error.issues.map((issue) => issue.path), ['$.values.name']);
    });

    test('read of an unknown subject is not_found', async () => {
      await expectDomicileError(
        store.vault.read({ subjectToken: 'sub_aaaaaaaaaaaaaaaaaaaaaaaaaa', recordType: 'customer', actor, purpose: 'support' }),
        'not_found',
      );
      await expectDomicileError(store.vault.read({ subjectToken: 'garbage', recordType: 'customer', actor, purpose: 'support' }), 'not_found');
    });

    test('erase leaves nothing decryptable', async () => {
      const { subjectToken } = await store.vault.create({ recordType: 'customer', values: person, actor, purpose: 'signup' });
      await store.vault.update({ subjectToken, recordType: 'customer', values: { postalCode: '80331' }, actor, purpose: 'support' });
      const subject = await db.pool.query<{ id: string }>('SELECT id FROM subjects WHERE token = $1', [subjectToken]);
      const subjectId = subject.rows[0]?.id ?? '';
      const before = await db.pool.query<{ fields: Record<string, string> }>('SELECT fields FROM records WHERE subject_id = $1', [subjectId]);
      const blobs = Object.values(before.rows[0]?.fields ?? {});
      assert.ok(blobs.length > 0);

      const erased = await store.vault.erase({ subjectToken, actor, purpose: 'support' });
      assert.ok(!Number.isNaN(Date.parse(erased.erasedAt)));

      await expectDomicileError(store.vault.read({ subjectToken, recordType: 'customer', actor, purpose: 'support' }), 'gone');
      assert.deepEqual(await store.vault.loadForReplication(subjectId, 'customer'), { erased: true });

      const keys = await db.pool.query('SELECT 1 FROM data_keys WHERE subject_id = $1', [subjectId]);
      assert.equal(keys.rowCount, 0);
      const indexes = await db.pool.query('SELECT 1 FROM blind_index WHERE subject_id = $1', [subjectId]);
      assert.equal(indexes.rowCount, 0);

      const dump = await dumpAllTables(db);
      for (const blob of blobs) {
        assert.equal(dump.includes(blob), false, 'a ciphertext of the erased subject is still stored');
      }
      // Every remaining data key belongs to another subject, so none opens the old blobs.
      const remaining = await db.pool.query<{ subject_id: string; kek_version: string; wrapped: Buffer }>(
        'SELECT d.subject_id, d.kek_version, d.wrapped FROM data_keys d',
      );
      for (const row of remaining.rows) {
        assert.notEqual(row.subject_id, subjectId);
      }
      const stray = blobs[0] ?? '';
      assert.throws(() => decryptValue(Buffer.alloc(32), Buffer.from(stray, 'base64'), `customer.name.${subjectToken}`));

      const events = await db.pool.query<{ op: string }>('SELECT op FROM outbox WHERE subject_id = $1 ORDER BY id', [subjectId]);
      assert.deepEqual(events.rows.map((row) => row.op), ['upsert', 'upsert', 'erase']);

      const again = await store.vault.erase({ subjectToken, actor, purpose: 'support' });
      assert.equal(again.erasedAt, erased.erasedAt);
      const eventsAfter = await db.pool.query('SELECT 1 FROM outbox WHERE subject_id = $1', [subjectId]);
      assert.equal(eventsAfter.rowCount, 3);
    });

    test('update of an erased subject is gone', async () => {
      const { subjectToken } = await store.vault.create({ recordType: 'customer', values: person, actor, purpose: 'signup' });
      await store.vault.erase({ subjectToken, actor, purpose: 'support' });
      await expectDomicileError(
        store.vault.update({ subjectToken, recordType: 'customer', values: { country: 'FR' }, actor, purpose: 'support' }),
        'gone',
      );
    });

    test('idempotency key returns the same subject', async () => {
      const request = { recordType: 'customer', values: person, actor, purpose: 'signup', idempotencyKey: 'signup-form-1' };
      const [first, second] = await Promise.all([store.vault.create(request), store.vault.create(request)]);
      assert.equal(first.subjectToken, second.subjectToken);
      const third = await store.vault.create(request);
      assert.equal(third.subjectToken, first.subjectToken);

      const subjects = await db.pool.query(
        'SELECT 1 FROM idempotency_keys WHERE actor_id = $1 AND key = $2',
        [actor.id, 'signup-form-1'],
      );
      assert.equal(subjects.rowCount, 1);

      await expectDomicileError(store.vault.create({ ...request, values: { ...person, country: 'FR' } }), 'conflict');
      const otherActor = await store.vault.create({ ...request, actor: { id: 'other-backend', location: 'in-country' } });
      assert.notEqual(otherActor.subjectToken, first.subjectToken);
    });

    test('idempotent retry after erasure returns the erased subject', async () => {
      const request = { recordType: 'customer', values: person, actor, purpose: 'signup', idempotencyKey: 'signup-form-2' };
      const first = await store.vault.create(request);
      await store.vault.erase({ subjectToken: first.subjectToken, actor, purpose: 'support' });
      const retry = await store.vault.create(request);
      assert.equal(retry.subjectToken, first.subjectToken);
    });

    test('loadForReplication returns the view', async () => {
      const { subjectToken } = await store.vault.create({ recordType: 'customer', values: person, actor, purpose: 'signup' });
      const subject = await db.pool.query<{ id: string }>('SELECT id FROM subjects WHERE token = $1', [subjectToken]);
      const view = await store.vault.loadForReplication(subject.rows[0]?.id ?? '', 'customer');
      assert.ok(view !== undefined);
      assert.ok(!('erased' in view));
      assert.equal(view.subjectToken, subjectToken);
      assert.equal(view.values['email'], normalizedEmail);
      assert.equal(await store.vault.loadForReplication(subject.rows[0]?.id ?? '', 'invoice'), undefined);
    });
  });
}
