import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Express } from 'express';
import { pino } from 'pino';
import request from 'supertest';
import { loadPolicyFile } from '../policy/load.ts';
import { verifyAudit } from '../store/audit.ts';
import { createCredential, type CredentialScopes } from '../store/credentials.ts';
import { exportSubject } from '../store/subject-export.ts';
import { closeTestVault, openTestVault, silentLogger, testDatabases, type OpenedTestDatabase, type TestVault } from '../store/testing.ts';
import { createTestGateway } from './testing.ts';

const policy = loadPolicyFile(fileURLToPath(new URL('../examples/policy.yaml', import.meta.url)));
const actor = { id: 'refusal-test', location: 'in-country' } as const;
const READ_ALL: CredentialScopes = { operations: ['records:read', 'records:lookup', 'detokenize'], recordTypes: ['customer'] };
/** An unknown access purpose that stands for caller text which must not reach the audit log in clear. */
const PURPOSE_CANARY = 'zqpurpose4vd';

interface AuditRow {
  action: string;
  outcome: string;
  actor_id: string;
  purpose: string | null;
  subject_token: string | null;
  record_type: string | null;
  fields: string[];
  value_hmacs: Record<string, string>;
  item_counts: Record<string, number> | null;
}

for (const database of testDatabases()) {
  describe(`refused reads audited on ${database.name}`, () => {
    let db: OpenedTestDatabase;
    let store: TestVault;
    let app: Express;
    const secrets = { createOnly: '', abroad: '', inCountry: '', emailOnly: '' };
    const credentialIds = { createOnly: '', abroad: '', inCountry: '', emailOnly: '' };

    before(async () => {
      ({ db, store } = await openTestVault(database, policy));
      const make = async (key: keyof typeof secrets, location: 'in-country' | 'abroad', scopes: CredentialScopes) => {
        const created = await createCredential(db, { name: key, location, scopes });
        secrets[key] = created.secret;
        credentialIds[key] = created.id;
      };
      await make('createOnly', 'in-country', { operations: ['records:create'], recordTypes: ['customer'] });
      await make('abroad', 'abroad', READ_ALL);
      await make('inCountry', 'in-country', READ_ALL);
      await make('emailOnly', 'in-country', { ...READ_ALL, fields: { customer: { email: 'clear' } } });
      const deps = { db, policy, keys: store.keys, keyring: store.keyring, logger: silentLogger() };
      app = createTestGateway(db, policy, store, { subjectExport: (input) => exportSubject(deps, input) });
    });

    after(() => closeTestVault(db, store));

    const auth = (secret: string) => ({ Authorization: `Bearer ${secret}` });

    async function newSubject(): Promise<string> {
      const created = await store.vault.create({ recordType: 'customer', values: { name: 'Tarvel Osmund', email: 'tarvel.o@example.test' }, actor, purpose: 'signup' });
      return created.subjectToken;
    }

    async function deniedRows(): Promise<AuditRow[]> {
      const result = await db.pool.query<AuditRow>(
        `SELECT action, outcome, actor_id, purpose, subject_token, record_type, fields, value_hmacs, item_counts
         FROM audit_log WHERE outcome = 'denied' ORDER BY seq`,
      );
      return result.rows;
    }

    async function lastDenied(): Promise<AuditRow> {
      const rows = await deniedRows();
      const last = rows.at(-1);
      assert.ok(last, 'no denied audit entry');
      return last;
    }

    test('read without scope is audited denied', async () => {
      const subjectToken = await newSubject();
      const response = await request(app).get(`/api/v1/records/${subjectToken}?recordType=customer`).set(auth(secrets.createOnly)).set('X-Access-Purpose', 'support');
      assert.equal(response.status, 403);

      const row = await lastDenied();
      assert.equal(row.action, 'record.read');
      assert.equal(row.actor_id, `credential:${credentialIds.createOnly}`);
      assert.equal(row.subject_token, subjectToken);
      assert.equal(row.record_type, 'customer');
      assert.equal(row.purpose, 'support');
    });

    test('read with unknown purpose keeps only its HMAC', async () => {
      const subjectToken = await newSubject();
      const response = await request(app).get(`/api/v1/records/${subjectToken}?recordType=customer`).set(auth(secrets.inCountry)).set('X-Access-Purpose', PURPOSE_CANARY);
      assert.equal(response.status, 400);

      const row = await lastDenied();
      assert.equal(row.action, 'record.read');
      assert.equal(row.purpose, null);
      assert.match(row.value_hmacs['purpose'] ?? '', /^hmac-sha256:v\d+:[0-9a-f]{64}$/);
      const stored = await db.pool.query<{ text: string }>('SELECT string_agg(audit_log::text, \'\') AS text FROM audit_log');
      assert.equal(stored.rows[0]?.text.includes(PURPOSE_CANARY), false);
    });

    test('history abroad is audited denied', async () => {
      const subjectToken = await newSubject();
      const response = await request(app).get(`/api/v1/records/${subjectToken}/versions?recordType=customer`).set(auth(secrets.abroad)).set('X-Access-Purpose', 'support');
      assert.equal(response.status, 403);

      const row = await lastDenied();
      assert.equal(row.action, 'record.history');
      assert.equal(row.subject_token, subjectToken);
    });

    test('lookup without scope is audited without value', async () => {
      const response = await request(app)
        .post('/api/v1/records/lookup')
        .set(auth(secrets.createOnly))
        .send({ recordType: 'customer', field: 'email', value: 'tarvel.o@example.test', purpose: 'support' });
      assert.equal(response.status, 403);

      const row = await lastDenied();
      assert.equal(row.action, 'record.lookup');
      assert.deepEqual(row.fields, ['email']);
      assert.deepEqual(row.value_hmacs, {});
    });

    test('detokenize abroad is audited denied', async () => {
      const response = await request(app)
        .post('/api/v1/detokenize')
        .set(auth(secrets.abroad))
        .send({ purpose: 'support', items: [{ recordType: 'customer', field: 'email', token: 'rnd_v1_x' }] });
      assert.equal(response.status, 403);

      const row = await lastDenied();
      assert.equal(row.action, 'tokens.detokenize');
      assert.equal(row.actor_id, `credential:${credentialIds.abroad}`);
      assert.equal(row.purpose, 'support');
    });

    test('detokenize items without grant are audited denied', async () => {
      const response = await request(app)
        .post('/api/v1/detokenize')
        .set(auth(secrets.emailOnly))
        .send({ purpose: 'support', items: [{ recordType: 'customer', field: 'name', token: 'a' }, { recordType: 'customer', field: 'name', token: 'b' }] });
      assert.equal(response.status, 200);
      assert.equal(response.body.results[0].error.code, 'forbidden');

      const row = await lastDenied();
      assert.equal(row.action, 'tokens.detokenize');
      assert.equal(row.record_type, 'customer');
      assert.deepEqual(row.fields, ['name']);
      assert.deepEqual(row.item_counts, { name: 2 });
    });

    test('export lists refused reads of the subject', async () => {
      const subjectToken = await newSubject();
      const refused = await request(app).get(`/api/v1/records/${subjectToken}?recordType=customer`).set(auth(secrets.createOnly)).set('X-Access-Purpose', 'support');
      assert.equal(refused.status, 403);

      const response = await request(app).get(`/api/v1/subjects/${subjectToken}/export?purpose=support`).set(auth(secrets.inCountry));
      assert.equal(response.status, 200, response.text);
      const denied = (response.body.audit as Array<{ action: string; outcome: string; actor: { id: string } }>).filter((entry) => entry.outcome === 'denied');
      assert.deepEqual(
        denied.map((entry) => [entry.action, entry.actor.id]),
        [['record.read', `credential:${credentialIds.createOnly}`]],
      );
    });

    test('failed audit write still refuses', async () => {
      const logLines: string[] = [];
      const sink = new Writable({
        write(chunk: Buffer, _encoding, done) {
          logLines.push(chunk.toString('utf8'));
          done();
        },
      });
      const brokenApp = createTestGateway(db, policy, store, { logger: pino({ level: 'info' }, sink) });
      const subjectToken = await newSubject();
      const before = (await deniedRows()).length;

      // The database refuses the audit entry of a refusal.
      await db.pool.query("ALTER TABLE audit_pending ADD CONSTRAINT reject_denied CHECK (outcome <> 'denied') NOT VALID");
      try {
        const response = await request(brokenApp).get(`/api/v1/records/${subjectToken}?recordType=customer`).set(auth(secrets.createOnly)).set('X-Access-Purpose', 'support');
        assert.equal(response.status, 403);
        assert.equal(response.body.error.code, 'forbidden');
      } finally {
        await db.pool.query('ALTER TABLE audit_pending DROP CONSTRAINT reject_denied');
      }
      assert.equal((await deniedRows()).length, before);
      assert.ok(logLines.some((line) => line.includes('audit.denied_failed')), logLines.join(''));
    });

    test('flood of refusals is refused and audited whole', async () => {
      const subjectToken = await newSubject();
      const before = (await deniedRows()).length;
      const responses = await Promise.all(
        Array.from({ length: 60 }, () =>
          request(app).get(`/api/v1/records/${subjectToken}?recordType=customer`).set(auth(secrets.createOnly)).set('X-Access-Purpose', 'support'),
        ),
      );
      const statuses = [...new Set(responses.map((response) => response.status))];
      assert.deepEqual(statuses, [403]);

      // Refusals that arrive together share one statement, so a flood far below the cap is audited whole.
      const written = (await deniedRows()).length - before;
      assert.equal(written, 60);
      const verification = await verifyAudit(db, store.keyring);
      assert.equal(verification.ok, true, JSON.stringify(verification));
    });
  });
}
