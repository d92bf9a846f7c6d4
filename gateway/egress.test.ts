import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Express } from 'express';
import fc from 'fast-check';
import request from 'supertest';
import { EGRESS_FORMS, isAtLeastAsStrong, parsePolicy, type EgressForm } from '../policy/index.ts';
import { createCredential, type CredentialScopes } from '../store/credentials.ts';
import { closeTestVault, openTestVault, testDatabases, type OpenedTestDatabase, type TestVault } from '../store/testing.ts';
import type { RecordView } from '../store/types.ts';
import { applyForm, fieldNamespace } from '../tokenizer/form.ts';
import { Keyring } from '../tokenizer/keyring.ts';
import { normalizeValue } from '../tokenizer/normalize.ts';
import { recordForCaller, type RecordResponse, type Viewer } from './egress.ts';
import { createTestGateway } from './testing.ts';

/** A policy with every egress form, a field without mask rule and a random-token field. */
const policy = parsePolicy({
  version: 3,
  defaultRegion: 'DE',
  purposes: ['support'],
  recordTypes: {
    person: {
      fields: {
        fullName: { type: 'string', class: 'direct', egress: 'never', required: true, mask: { keep: 'first', count: 1 } },
        email: { type: 'email', class: 'direct', egress: 'token', mask: { keep: 'last', count: 4 } },
        phone: { type: 'phone', class: 'direct', egress: 'mask', mask: { keep: 'last', count: 2 } },
        birthDate: { type: 'date', class: 'quasi', egress: 'generalize', generalize: { date: 'year' } },
        postalCode: { type: 'postalCode', class: 'quasi', egress: 'token', token: { kind: 'random' } },
        country: { type: 'country', class: 'public', egress: 'clear' },
        score: { type: 'number', class: 'sensitive', egress: 'generalize', generalize: { bucket: 10 } },
        vip: { type: 'boolean', class: 'public', egress: 'clear' },
      },
    },
    other: { fields: { note: { type: 'string', class: 'public', egress: 'clear' } } },
  },
});
const person = policy.recordTypes['person'];
if (person === undefined) throw new Error('test policy lacks person');
const FIELD_NAMES = Object.keys(person.fields);
const keyring = new Keyring(new Map([[1, Buffer.alloc(32, 7)]]), 1);

const formArb = fc.constantFrom<EgressForm>(...EGRESS_FORMS);
const viewerArb: fc.Arbitrary<Viewer> = fc.record({
  location: fc.constantFrom('in-country' as const, 'abroad' as const),
  scopes: fc.oneof(
    fc.constant({}),
    fc.record({ fields: fc.dictionary(fc.constantFrom('person', 'other'), fc.dictionary(fc.constantFrom(...FIELD_NAMES, 'unknownField'), formArb)) }),
  ),
});
const rawRecordArb = fc.record(
  {
    fullName: fc.stringMatching(/^[A-Z][a-z]{1,12} [A-Z][a-z]{1,12}$/),
    email: fc.tuple(fc.stringMatching(/^[a-z][a-z0-9]{0,10}$/), fc.stringMatching(/^[a-z]{2,10}$/)).map(([local, domain]) => `${local}@${domain}.test`),
    phone: fc.integer({ min: 1_000_000, max: 9_999_999 }).map((digits) => `+49 30 ${digits}`),
    birthDate: fc.date({ min: new Date('1930-01-01'), max: new Date('2005-12-31'), noInvalidDate: true }).map((date) => date.toISOString().slice(0, 10)),
    postalCode: fc.integer({ min: 10000, max: 99999 }).map(String),
    country: fc.constantFrom('DE', 'FR', 'AT', 'NL'),
    score: fc.integer({ min: 0, max: 1000 }),
    vip: fc.boolean(),
  },
  { requiredKeys: ['fullName'] },
);

function normalized(raw: Record<string, unknown>): RecordView['values'] {
  const values: RecordView['values'] = {};
  for (const [name, value] of Object.entries(raw)) {
    const field = person?.fields[name];
    if (field !== undefined) values[name] = normalizeValue(field.type, value, { defaultRegion: 'DE', maxLength: field.maxLength });
  }
  return values;
}

/** Checks that a response has only allowed fields, each in an allowed form and really in that form. */
function assertAllowed(viewer: Viewer, stored: RecordView['values'], response: RecordResponse, ring: Keyring = keyring): void {
  assert.deepEqual(Object.keys(response.values).sort(), Object.keys(response.forms).sort());
  const grants = viewer.scopes.fields?.['person'];
  for (const [name, form] of Object.entries(response.forms)) {
    const field = person?.fields[name];
    assert.ok(field !== undefined, `${name} is not a policy field`);
    assert.notEqual(form, 'never');
    if (grants !== undefined) {
      const grant = grants[name];
      assert.ok(grant !== undefined, `${name} was returned without a grant`);
      assert.ok(isAtLeastAsStrong(form, grant), `${name} returned as ${form}, weaker than the grant ${grant}`);
    }
    if (viewer.location === 'abroad') {
      assert.ok(isAtLeastAsStrong(form, field.egress), `${name} returned abroad as ${form}, weaker than its egress rule ${field.egress}`);
    }
    const value = stored[name];
    assert.ok(value !== undefined);
    if (form === 'token' && field.token?.kind === 'random') {
      // Random tokens come from the store's mapping table, so only their format can be checked here.
      assert.match(String(response.values[name]), /^rnd_v\d+_[a-z2-7]{26}$/);
      continue;
    }
    const expected = applyForm(field, form, value, { keyring: ring, namespace: fieldNamespace('person', name, field) });
    assert.deepEqual(response.values[name], expected, `${name} is not in form ${form}`);
  }
}

function view(values: RecordView['values']): RecordView {
  return { subjectToken: `sub_${'a'.repeat(26)}`, recordType: 'person', version: 1, policyVersion: 3, updatedAt: new Date(0).toISOString(), values };
}

describe('recordForCaller', () => {
  test('random viewers get only allowed fields and forms', () => {
    fc.assert(
      fc.property(viewerArb, rawRecordArb, (viewer, raw) => {
        const stored = normalized(raw);
        assertAllowed(viewer, stored, recordForCaller(policy, keyring, view(stored), viewer));
      }),
      { numRuns: 500 },
    );
  });

  test('in-country viewer without field scopes gets all clear', () => {
    const stored = normalized({ fullName: 'Ada Quell', email: 'ada@example.test', postalCode: '10115', vip: true });
    const response = recordForCaller(policy, keyring, view(stored), { location: 'in-country', scopes: {} });
    assert.deepEqual(response.values, stored);
    assert.ok(Object.values(response.forms).every((form) => form === 'clear'));
  });

  test('abroad viewer without field scopes gets egress rules', () => {
    const stored = normalized({ fullName: 'Ada Quell', email: 'ada@example.test', phone: '+49 30 1234567', birthDate: '1990-05-06', postalCode: '10115', country: 'DE' });
    const response = recordForCaller(policy, keyring, view(stored), { location: 'abroad', scopes: {} });
    assert.deepEqual(response.forms, { email: 'token', phone: 'mask', birthDate: 'generalize', country: 'clear' });
    assert.equal(response.values['birthDate'], '1990');
  });

  test('abroad grant of clear is capped at egress rule', () => {
    const stored = normalized({ fullName: 'Ada Quell', email: 'ada@example.test' });
    const viewer: Viewer = { location: 'abroad', scopes: { fields: { person: { fullName: 'clear', email: 'clear' } } } };
    const response = recordForCaller(policy, keyring, view(stored), viewer);
    assert.deepEqual(response.forms, { email: 'token' });
    assert.equal(response.values['fullName'], undefined);
  });

  test('grant of mask without mask rule falls back to token', () => {
    const stored = normalized({ fullName: 'Ada Quell', birthDate: '1990-05-06' });
    const viewer: Viewer = { location: 'in-country', scopes: { fields: { person: { birthDate: 'mask' } } } };
    assert.deepEqual(recordForCaller(policy, keyring, view(stored), viewer).forms, { birthDate: 'token' });
  });

  test('listed record type hides unlisted fields', () => {
    const stored = normalized({ fullName: 'Ada Quell', country: 'DE' });
    const empty: Viewer = { location: 'in-country', scopes: { fields: { person: {} } } };
    assert.deepEqual(recordForCaller(policy, keyring, view(stored), empty).values, {});
    const never: Viewer = { location: 'in-country', scopes: { fields: { person: { country: 'never', fullName: 'token' } } } };
    assert.deepEqual(recordForCaller(policy, keyring, view(stored), never).forms, { fullName: 'token' });
  });

  test('grants of other record type leave defaults', () => {
    const stored = normalized({ fullName: 'Ada Quell' });
    const viewer: Viewer = { location: 'in-country', scopes: { fields: { other: { note: 'never' } } } };
    assert.deepEqual(recordForCaller(policy, keyring, view(stored), viewer).forms, { fullName: 'clear' });
  });

  test('random-token field without mappings is left out', () => {
    const stored = normalized({ fullName: 'Ada Quell', postalCode: '10115' });
    const viewer: Viewer = { location: 'abroad', scopes: { fields: { person: { postalCode: 'token' } } } };
    assert.deepEqual(recordForCaller(policy, keyring, view(stored), viewer).values, {});
  });
});

for (const database of testDatabases()) {
  describe(`field scopes through the API on ${database.name}`, () => {
    let db: OpenedTestDatabase;
    let store: TestVault;
    let app: Express;

    before(async () => {
      ({ db, store } = await openTestVault(database, policy));
      app = createTestGateway(db, policy, store);
    });

    after(() => closeTestVault(db, store));

    test('random credentials read only allowed forms', async () => {
      const writer = await createCredential(db, { name: 'writer', location: 'in-country', scopes: { operations: ['records:create'], recordTypes: ['person'] } });
      await fc.assert(
        fc.asyncProperty(viewerArb, rawRecordArb, async (viewer, raw) => {
          const created = await request(app).post('/api/v1/records').set('Authorization', `Bearer ${writer.secret}`).send({ recordType: 'person', values: raw, purpose: 'support' });
          assert.equal(created.status, 201, created.text);
          const scopes: CredentialScopes = { operations: ['records:read'], recordTypes: ['person'], ...viewer.scopes };
          const reader = await createCredential(db, { name: 'reader', location: viewer.location, scopes });
          const response = await request(app)
            .get(`/api/v1/records/${created.body.subjectToken}?recordType=person`)
            .set('Authorization', `Bearer ${reader.secret}`)
            .set('X-Access-Purpose', 'support');
          assert.equal(response.status, 200, response.text);
          assertAllowed(viewer, normalized(raw), response.body, store.keyring);
        }),
        { numRuns: 15 },
      );
    });
  });
}
