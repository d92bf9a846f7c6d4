import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { calendarDate, DomicileError } from '../policy/index.ts';
import { loadPolicyFile } from '../policy/load.ts';
import { closeTestVault, openTestVault, testDatabases, type OpenedTestDatabase, type TestVault } from './testing.ts';
import type { Actor } from './types.ts';

const policy = loadPolicyFile(fileURLToPath(new URL('../examples/policy.yaml', import.meta.url)));
const actor: Actor = { id: 'date-rule-test', location: 'in-country' };
const DAY_MS = 24 * 60 * 60 * 1000;

/** Calendar date `days` days from now in the example policy's time zone. */
function dayFromToday(days: number): string {
  return calendarDate(new Date(Date.now() + days * DAY_MS), policy.timeZone);
}

async function rejection(run: Promise<unknown>): Promise<DomicileError> {
  try {
    await run;
  } catch (error) {
    assert.ok(error instanceof DomicileError);
    return error;
  }
  assert.fail('expected a rejection');
}

for (const database of testDatabases()) {
  describe(`birth date notAfter today on ${database.name}`, () => {
    let db: OpenedTestDatabase;
    let store: TestVault;

    before(async () => {
      ({ db, store } = await openTestVault(database, policy));
    });

    after(() => closeTestVault(db, store));

    let serial = 0;
    /** Values of a new synthetic customer with the given birth date; each call gets its own email address. */
    function customer(name: string, birthDate: string): Record<string, string> {
      serial += 1;
      return { name, email: `date.rule.${serial}@example.test`, birthDate };
    }

    const create = (birthDate: string) => store.vault.create({ recordType: 'customer', values: customer('Orrin Talvek', birthDate), actor, purpose: 'signup' });

    test('example policy bounds birthDate by today', () => {
      assert.equal(policy.recordTypes['customer']?.fields['birthDate']?.notAfter, 'today');
      assert.equal(policy.timeZone, 'Europe/Berlin');
    });

    test('create rejects a birth date after today', async () => {
      const future = dayFromToday(2);
      const error = await rejection(create(future));
      assert.equal(error.code, 'invalid_value');
      assert.deepEqual(error.issues.map((issue) => issue.path), ['$.values.birthDate']);
      assert.match(error.issues[0]?.message ?? '', /must not be after today \(\d{4}-\d{2}-\d{2} in Europe\/Berlin\)/);
      assert.equal(error.message.includes(future), false);
    });

    test('create rejects a far future timestamp', async () => {
      const error = await rejection(create('2999-01-01T08:00:00+01:00'));
      assert.equal(error.code, 'invalid_value');
    });

    test('create accepts past birth dates', async () => {
      const created = await create(dayFromToday(-2));
      assert.match(created.subjectToken, /^sub_/);
      const old = await create('1950-06-30');
      assert.match(old.subjectToken, /^sub_/);
    });

    test('update rejects a birth date after today', async () => {
      const created = await create('1990-01-01');
      const error = await rejection(
        store.vault.update({ subjectToken: created.subjectToken, recordType: 'customer', values: { birthDate: dayFromToday(3) }, actor, purpose: 'support' }),
      );
      assert.equal(error.code, 'invalid_value');
      assert.deepEqual(error.issues.map((issue) => issue.path), ['$.values.birthDate']);
    });

    test('batch item with future birth date fails alone', async () => {
      const results = await store.vault.createMany({
        actor,
        items: [
          { recordType: 'customer', values: customer('Ada Past', '1980-02-02'), purpose: 'signup' },
          { recordType: 'customer', values: customer('Bo Future', dayFromToday(5)), purpose: 'signup' },
        ],
      });
      assert.equal(results[0]?.ok, true);
      assert.equal(results[1]?.ok, false);
      const failed = results[1];
      assert.ok(failed !== undefined);
      assert.ok(!failed.ok);
      assert.equal(failed.error.code, 'invalid_value');
    });
  });
}
