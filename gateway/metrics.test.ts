import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { pino } from 'pino';
import { appendAuditEntries } from '../store/audit.ts';
import { openTestVault, closeTestVault, testDatabases } from '../store/testing.ts';
import { loadPolicyFile } from '../policy/index.ts';
import { createGatewayMetrics } from './metrics.ts';

const policy = loadPolicyFile(new URL('../examples/policy.yaml', import.meta.url).pathname);

for (const database of testDatabases()) {
  describe(`gateway metrics on ${database.name}`, () => {
    test('idle destinations report zero', async () => {
      const { db, store } = await openTestVault(database, policy);
      try {
        const metrics = createGatewayMetrics({ db, logger: pino({ level: 'silent' }), destinations: ['aws'] });
        const text = await metrics.registry.metrics();
        assert.match(text, /domicile_outbox_pending\{destination="aws"\} 0/);
        assert.match(text, /domicile_outbox_oldest_pending_seconds\{destination="aws"\} 0/);
        assert.match(text, /domicile_audit_pending_entries 0/);
        assert.match(text, /domicile_audit_oldest_pending_seconds 0/);
      } finally {
        await closeTestVault(db, store);
      }
    });

    test('audit entries left unchained show in the gauges', async () => {
      const { db, store } = await openTestVault(database, policy);
      try {
        // Written with the pool, outside a transaction, so no seal follows.
        await appendAuditEntries(db.pool, store.keyring, [{ actor: { id: 'metrics-test', location: 'in-country' }, action: 'record.read', fields: [] }]);
        const metrics = createGatewayMetrics({ db, logger: pino({ level: 'silent' }), destinations: ['aws'] });
        const text = await metrics.registry.metrics();
        assert.match(text, /domicile_audit_pending_entries 1/);
        assert.match(text, /domicile_audit_oldest_pending_seconds \d/);
      } finally {
        await closeTestVault(db, store);
      }
    });
  });
}
