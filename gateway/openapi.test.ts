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

/** Keywords whose value is one schema, a list of schemas, or a map of names to schemas (JSON Schema 2020-12). */
const SCHEMA_KEYWORDS = new Set(['items', 'additionalProperties', 'not', 'contains', 'propertyNames', 'unevaluatedProperties', 'unevaluatedItems', 'if', 'then', 'else']);
const SCHEMA_LIST_KEYWORDS = new Set(['anyOf', 'oneOf', 'allOf', 'prefixItems']);
const SCHEMA_MAP_KEYWORDS = new Set(['properties', 'patternProperties', '$defs', 'dependentSchemas']);

/** Lists the JSON pointers of empty schemas (`{}`, which accepts anything) inside `schema`. */
function emptySchemas(schema: unknown, pointer: string): string[] {
  if (typeof schema !== 'object' || schema === null || Array.isArray(schema)) return [];
  const entries = Object.entries(schema);
  const found = entries.length === 0 ? [pointer] : [];
  for (const [keyword, value] of entries) {
    if (SCHEMA_KEYWORDS.has(keyword)) {
      found.push(...emptySchemas(value, `${pointer}/${keyword}`));
    } else if (SCHEMA_LIST_KEYWORDS.has(keyword) && Array.isArray(value)) {
      value.forEach((member, index) => found.push(...emptySchemas(member, `${pointer}/${keyword}/${index}`)));
    } else if (SCHEMA_MAP_KEYWORDS.has(keyword) && typeof value === 'object' && value !== null) {
      for (const [name, member] of Object.entries(value)) found.push(...emptySchemas(member, `${pointer}/${keyword}/${name}`));
    }
  }
  return found;
}

/** JSON types that a schema allows, from `type` and from the members of `anyOf`, sorted. */
function typesOf(schema: { type?: string | string[]; anyOf?: unknown[] }): string[] {
  const own = schema.type === undefined ? [] : [schema.type].flat();
  const members = (schema.anyOf ?? []).flatMap((member) => typesOf(member as { type?: string | string[] }));
  return [...new Set([...own, ...members])].sort();
}

interface Operation {
  parameters?: Array<{ name: string; in: string; schema?: unknown }>;
  requestBody?: { content: Record<string, { schema?: unknown }> };
  responses: Record<string, { content?: Record<string, { schema?: unknown }> }>;
}

/** Pairs of a JSON pointer and a schema for every parameter, request body and response of the document. */
function documentSchemas(paths: Record<string, Record<string, Operation>>): Array<[string, unknown]> {
  const schemas: Array<[string, unknown]> = [];
  for (const [path, operations] of Object.entries(paths)) {
    for (const [method, operation] of Object.entries(operations)) {
      const at = `${method} ${path}`;
      for (const parameter of operation.parameters ?? []) schemas.push([`${at} ${parameter.in}.${parameter.name}`, parameter.schema]);
      for (const [type, media] of Object.entries(operation.requestBody?.content ?? {})) schemas.push([`${at} request ${type}`, media.schema]);
      for (const [status, response] of Object.entries(operation.responses)) {
        for (const [type, media] of Object.entries(response.content ?? {})) schemas.push([`${at} ${status} ${type}`, media.schema]);
      }
    }
  }
  return schemas;
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

  test('document has no empty schema', async () => {
    const { body } = await request(app).get('/api/v1/openapi.json');
    const schemas = documentSchemas(body.paths);
    assert.ok(schemas.length >= 30, `only ${schemas.length} schemas found`);
    const empty = schemas.flatMap(([at, schema]) => emptySchemas(schema, at));
    assert.deepEqual(empty, []);
  });

  test('batch and token items have their item schemas', async () => {
    const { body } = await request(app).get('/api/v1/openapi.json');
    const requestSchema = (path: string) => body.paths[path].post.requestBody.content['application/json'].schema;

    const batchItem = requestSchema('/api/v1/records:batch').properties.records.items;
    assert.deepEqual([...batchItem.required].sort(), ['purpose', 'recordType', 'values']);
    assert.ok(batchItem.properties.idempotencyKey);
    assert.equal(batchItem.additionalProperties, false);
    assert.deepEqual(typesOf(batchItem.properties.values.additionalProperties), ['boolean', 'number', 'string']);

    const tokenizeItem = requestSchema('/api/v1/tokenize').properties.items.items;
    assert.deepEqual([...tokenizeItem.required].sort(), ['field', 'recordType', 'value']);
    const detokenizeItem = requestSchema('/api/v1/detokenize').properties.items.items;
    assert.deepEqual([...detokenizeItem.required].sort(), ['field', 'recordType', 'token']);

    const update = body.paths['/api/v1/records/{subjectToken}'].patch.requestBody.content['application/json'].schema;
    assert.deepEqual(typesOf(update.properties.values.additionalProperties), ['boolean', 'null', 'number', 'string']);
  });
});
