import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Express } from 'express';
import request from 'supertest';
import { loadPolicyFile } from '../policy/load.ts';
import { closeTestVault, openTestVault, testDatabases, type OpenedTestDatabase, type TestVault } from '../store/testing.ts';
import { openApiPath } from './openapi.ts';
import { createTestGateway } from './testing.ts';

const policy = loadPolicyFile(fileURLToPath(new URL('../examples/policy.yaml', import.meta.url)));

interface Layer {
  route?: { path: string; methods: Record<string, boolean> };
  handle?: { stack?: Layer[] };
}

/** Lists `METHOD path` of every route in an Express 5 app, nested routers included. */
function servedRoutes(app: Express): string[] {
  const found: string[] = [];
  const walk = (stack: readonly Layer[]): void => {
    for (const layer of stack) {
      if (layer.route !== undefined) {
        for (const [method, enabled] of Object.entries(layer.route.methods)) {
          if (enabled && method !== '_all') found.push(`${method} ${openApiPath(layer.route.path)}`);
        }
      } else if (layer.handle?.stack !== undefined) {
        walk(layer.handle.stack);
      }
    }
  };
  walk((app as unknown as { router: { stack: Layer[] } }).router.stack);
  return found.sort();
}

const database = testDatabases()[0];

describe('OpenAPI document', () => {
  let db: OpenedTestDatabase;
  let store: TestVault;
  let app: Express;

  before(async () => {
    if (database === undefined) throw new Error('no test database');
    ({ db, store } = await openTestVault(database, policy));
    app = createTestGateway(db, policy, store);
  });

  after(() => closeTestVault(db, store));

  test('document lists every served route', async () => {
    const response = await request(app).get('/api/v1/openapi.json');
    assert.equal(response.status, 200);
    const documented = Object.entries(response.body.paths as Record<string, Record<string, unknown>>).flatMap(([path, operations]) =>
      Object.keys(operations).map((method) => `${method} ${path}`),
    );
    const served = servedRoutes(app);
    assert.ok(served.length >= 12, served.join('\n'));
    assert.deepEqual(served.filter((route) => !documented.includes(route)), []);
    assert.deepEqual(documented.filter((route) => !served.includes(route)), []);
  });

  test('document is OpenAPI 3.1 from the request schemas', async () => {
    const { body } = await request(app).get('/api/v1/openapi.json');
    assert.equal(body.openapi, '3.1.0');
    const create = body.paths['/api/v1/records'].post;
    const schema = create.requestBody.content['application/json'].schema;
    assert.equal(schema.additionalProperties, false);
    assert.deepEqual([...schema.required].sort(), ['purpose', 'recordType', 'values']);
    assert.deepEqual(create.security, [{ credential: [] }]);

    const read = body.paths['/api/v1/records/{subjectToken}'].get;
    const names = read.parameters.map((parameter: { in: string; name: string }) => `${parameter.in}:${parameter.name}`).sort();
    assert.deepEqual(names, ['header:x-access-purpose', 'path:subjectToken', 'query:recordType']);
    assert.ok(body.paths['/api/v1/records:batch'].post);
    assert.match(body.info.description, /limited to 64kb/);
    assert.deepEqual(body.paths['/healthz'].get.security, []);
  });
});
