import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Express } from 'express';
import request from 'supertest';
import { loadPolicyFile } from '../../policy/load.ts';
import { createCredential, type CredentialScopes } from '../../store/credentials.ts';
import { exportSubject } from '../../store/subject-export.ts';
import { closeTestVault, openTestVault, silentLogger, testDatabases, type OpenedTestDatabase, type TestVault } from '../../store/testing.ts';
import { createTestGateway } from '../testing.ts';

const policy = loadPolicyFile(fileURLToPath(new URL('../../examples/policy.yaml', import.meta.url)));
const READ: CredentialScopes = { operations: ['records:read'], recordTypes: ['customer'] };
const inCountryActor = { id: 'export-test', location: 'in-country' } as const;

for (const database of testDatabases()) {
  describe(`subject access export on ${database.name}`, () => {
    let db: OpenedTestDatabase;
    let store: TestVault;
    let app: Express;
    const secrets = { inCountry: '', abroad: '', createOnly: '', otherType: '' };

    before(async () => {
      ({ db, store } = await openTestVault(database, policy));
      const make = async (name: string, location: 'in-country' | 'abroad', scopes: CredentialScopes) => (await createCredential(db, { name, location, scopes })).secret;
      secrets.inCountry = await make('dpo', 'in-country', READ);
      secrets.abroad = await make('aws', 'abroad', READ);
      secrets.createOnly = await make('signup', 'in-country', { operations: ['records:create'], recordTypes: ['customer'] });
      secrets.otherType = await make('other', 'in-country', { operations: ['records:read'], recordTypes: ['invoice'] });
      const deps = { db, policy, keys: store.keys, keyring: store.keyring, logger: silentLogger() };
      app = createTestGateway(db, policy, store, {
        subjectExport: (input) => exportSubject(deps, input),
      });
    });
    after(() => closeTestVault(db, store));

    const auth = (secret: string) => ({ Authorization: `Bearer ${secret}` });

    test('export holds records, history and audit', async () => {
      const subject = await store.vault.create({ recordType: 'customer', values: { name: 'Ildrevo Passkin', email: 'ildrevo.passkin@example.org' }, actor: inCountryActor, purpose: 'signup' });
      const other = await store.vault.create({ recordType: 'customer', values: { name: 'Other Person', email: 'other.person@example.org' }, actor: inCountryActor, purpose: 'signup' });
      await store.vault.update({ subjectToken: subject.subjectToken, recordType: 'customer', values: { postalCode: '10115' }, actor: inCountryActor, purpose: 'support' });
      await store.vault.read({ subjectToken: other.subjectToken, recordType: 'customer', actor: inCountryActor, purpose: 'support' });

      const response = await request(app).get(`/api/v1/subjects/${subject.subjectToken}/export?purpose=support`).set(auth(secrets.inCountry));
      assert.equal(response.status, 200, response.text);
      assert.equal(response.headers['cache-control'], 'no-store');
      const document = response.body as { subjectToken: string; records: Array<{ values: Record<string, unknown> }>; history: Array<{ version: number; changedFields: string[]; actor: { id: string } }>; audit: Array<{ action: string }> };
      assert.equal(document.subjectToken, subject.subjectToken);
      assert.equal(document.records.length, 1);
      assert.equal(document.records[0]?.values['name'], 'Ildrevo Passkin');
      assert.equal(document.records[0]?.values['postalCode'], '10115');
      assert.deepEqual(document.history.map((entry) => entry.version), [1, 2]);
      assert.deepEqual(document.history[1]?.changedFields, ['postalCode']);
      assert.equal(document.history[1]?.actor.id, 'export-test');
      assert.deepEqual(document.audit.map((entry) => entry.action), ['record.create', 'record.update']);
      assert.ok(!response.text.includes('Other Person'), 'the export holds a value of another subject');
      assert.ok(!response.text.includes(other.subjectToken), 'the export names another subject');

      const audited = await db.pool.query<{ actor_id: string; purpose: string }>("SELECT actor_id, purpose FROM audit_log WHERE action = 'subject.export' AND subject_token = $1", [subject.subjectToken]);
      assert.equal(audited.rows.length, 1);
      assert.equal(audited.rows[0]?.purpose, 'support');
    });

    test('export rejects callers abroad', async () => {
      const subject = await store.vault.create({ recordType: 'customer', values: { name: 'Abroad Probe', email: 'abroad.probe@example.org' }, actor: inCountryActor, purpose: 'signup' });
      const response = await request(app).get(`/api/v1/subjects/${subject.subjectToken}/export?purpose=support`).set(auth(secrets.abroad));
      assert.equal(response.status, 403);
      assert.match(String(response.body.error?.message), /in-country callers only/);
    });

    test('export requires scope and purpose', async () => {
      const subject = await store.vault.create({ recordType: 'customer', values: { name: 'Scope Probe', email: 'scope.probe@example.org' }, actor: inCountryActor, purpose: 'signup' });
      const path = `/api/v1/subjects/${subject.subjectToken}/export`;
      assert.equal((await request(app).get(`${path}?purpose=support`).set(auth(secrets.createOnly))).status, 403);
      assert.equal((await request(app).get(`${path}?purpose=support`).set(auth(secrets.otherType))).status, 403);
      assert.equal((await request(app).get(`${path}?purpose=gossip`).set(auth(secrets.inCountry))).status, 400);
      assert.equal((await request(app).get(path).set(auth(secrets.inCountry))).status, 400);
      assert.equal((await request(app).get(`${path}?purpose=support`)).status, 401);
    });

    test('export of an erased subject is gone', async () => {
      const subject = await store.vault.create({ recordType: 'customer', values: { name: 'Erased Probe', email: 'erased.probe@example.org' }, actor: inCountryActor, purpose: 'signup' });
      await store.vault.erase({ subjectToken: subject.subjectToken, actor: inCountryActor, purpose: 'support' });
      const response = await request(app).get(`/api/v1/subjects/${subject.subjectToken}/export?purpose=support`).set(auth(secrets.inCountry));
      assert.equal(response.status, 410);
    });

    test('export lists lookups that found the subject', async () => {
      const shared = 'lookup.shared.q7@example.org';
      const first = await store.vault.create({ recordType: 'customer', values: { name: 'Lookup One', email: shared }, actor: inCountryActor, purpose: 'signup' });
      const bystander = await store.vault.create({ recordType: 'customer', values: { name: 'Lookup Two', email: 'lookup.other.q7@example.org' }, actor: inCountryActor, purpose: 'signup' });
      const found = await store.vault.lookup({ recordType: 'customer', field: 'email', value: shared, actor: { id: 'lookup-caller', location: 'in-country' }, purpose: 'support' });
      assert.deepEqual(found, [first.subjectToken]);

      const response = await request(app).get(`/api/v1/subjects/${first.subjectToken}/export?purpose=support`).set(auth(secrets.inCountry));
      assert.equal(response.status, 200, response.text);
      const lookups = (response.body.audit as Array<{ action: string; actor: { id: string }; purpose: string; recordType: string; fields: string[] }>).filter((entry) => entry.action === 'record.lookup');
      assert.equal(lookups.length, 1);
      assert.equal(lookups[0]?.actor.id, 'lookup-caller');
      assert.equal(lookups[0]?.purpose, 'support');
      assert.equal(lookups[0]?.recordType, 'customer');
      assert.deepEqual(lookups[0]?.fields, ['email']);
      assert.equal(JSON.stringify(lookups).includes(shared), false);

      const other = await request(app).get(`/api/v1/subjects/${bystander.subjectToken}/export?purpose=support`).set(auth(secrets.inCountry));
      assert.equal(other.status, 200, other.text);
      const otherActions = (other.body.audit as Array<{ action: string }>).map((entry) => entry.action);
      assert.deepEqual(otherActions, ['record.create']);
    });

    test('lookup without match leaves one entry', async () => {
      const before = await db.pool.query<{ count: string }>("SELECT count(*) FROM audit_log WHERE action = 'record.lookup'");
      const found = await store.vault.lookup({ recordType: 'customer', field: 'email', value: 'nobody.q7@example.org', actor: inCountryActor, purpose: 'support' });
      assert.deepEqual(found, []);
      const rows = await db.pool.query<{ subject_token: string | null }>("SELECT subject_token FROM audit_log WHERE action = 'record.lookup' ORDER BY seq OFFSET $1", [Number(before.rows[0]?.count ?? 0)]);
      assert.deepEqual(rows.rows, [{ subject_token: null }]);
    });
  });
}
