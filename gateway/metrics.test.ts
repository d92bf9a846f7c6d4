import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { pino } from 'pino';
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
      } finally {
        await closeTestVault(db, store);
      }
    });
  });
}
