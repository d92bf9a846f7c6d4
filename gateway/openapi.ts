import type { RequestHandler, Router } from 'express';
import { z } from 'zod';
import type { Policy } from '../policy/index.ts';
import { errorResponse } from './api/schemas.ts';
import { BODY_LIMIT } from './validation.ts';

/**
 * Description of one route for the OpenAPI document. Routers list the specs
 * of the routes they serve, with the same zod schemas that validate the
 * requests, and a test checks that every served route has a spec.
 */
export interface RouteSpec {
  method: 'get' | 'post' | 'patch' | 'put' | 'delete';
  /** Express path, such as `/api/v1/records/:subjectToken`. */
  path: string;
  operationId: string;
  summary: string;
  description?: string;
  tags: string[];
  /** `credential`: API credential; `session`: a widget session; `none`: anonymous; `metrics`: credential unless metrics are public. */
  auth: 'credential' | 'session' | 'none' | 'metrics';
  body?: z.ZodType;
  query?: z.ZodObject;
  headers?: z.ZodObject;
  params?: z.ZodObject;
  responses: Record<number, { description: string; schema?: z.ZodType; contentType?: string }>;
}

type JsonObject = Record<string, unknown>;

/** Turns an Express path into an OpenAPI path template: `:name` becomes `{name}` and escapes are dropped. */
export function openApiPath(expressPath: string): string {
  return expressPath.replace(/:([A-Za-z_][A-Za-z0-9_]*)/g, (match, param: string, offset: number) =>
    expressPath[offset - 1] === '\\' ? match : `{${param}}`,
  ).replace(/\\/g, '');
}

function jsonSchema(schema: z.ZodType, io: 'input' | 'output'): JsonObject {
  const generated = z.toJSONSchema(schema, { io, unrepresentable: 'any' }) as JsonObject;
  delete generated['$schema'];
  return generated;
}

function parameters(spec: RouteSpec): JsonObject[] {
  const result: JsonObject[] = [];
  const add = (location: 'query' | 'header' | 'path', schema: z.ZodObject | undefined): void => {
    if (schema === undefined) return;
    const object = jsonSchema(schema, 'input');
    const properties = (object['properties'] ?? {}) as Record<string, JsonObject>;
    const required = new Set((object['required'] ?? []) as string[]);
    for (const [name, property] of Object.entries(properties)) {
      const { description, ...rest } = property;
      result.push({
        name,
        in: location,
        required: location === 'path' || required.has(name),
        schema: rest,
        ...(description === undefined ? {} : { description }),
      });
    }
  };
  add('path', spec.params);
  add('query', spec.query);
  add('header', spec.headers);
  return result;
}

function security(spec: RouteSpec): JsonObject[] | undefined {
  switch (spec.auth) {
    case 'credential':
      return [{ credential: [] }];
    case 'metrics':
      return [{ credential: [] }, {}];
    default:
      return [];
  }
}

function operation(spec: RouteSpec): JsonObject {
  const responses: JsonObject = {};
  for (const [status, response] of Object.entries(spec.responses)) {
    const contentType = response.contentType ?? 'application/json';
    const schema = response.schema ?? (Number(status) >= 400 ? errorResponse : undefined);
    responses[status] = {
      description: response.description,
      ...(schema === undefined ? {} : { content: { [contentType]: { schema: jsonSchema(schema, 'output') } } }),
    };
  }
  return {
    operationId: spec.operationId,
    summary: spec.summary,
    ...(spec.description === undefined ? {} : { description: spec.description }),
    tags: spec.tags,
    parameters: parameters(spec),
    ...(spec.body === undefined
      ? {}
      : { requestBody: { required: true, content: { 'application/json': { schema: jsonSchema(spec.body, 'input') } } } }),
    responses,
    security: security(spec),
  };
}

/** Builds the OpenAPI 3.1 document of the gateway listener from the route specs. */
export function openApiDocument(policy: Policy, specs: readonly RouteSpec[], serverUrl: string): JsonObject {
  const paths: Record<string, JsonObject> = {};
  for (const spec of specs) {
    const path = openApiPath(spec.path);
    paths[path] = { ...paths[path], [spec.method]: operation(spec) };
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'Domicile gateway API',
      version: `policy-${policy.version}`,
      description:
        `Backend API of the Domicile gateway listener. JSON request bodies are limited to ${BODY_LIMIT}; larger bodies get 413. ` +
        'Unknown fields, malformed values and unknown query parameters get 400 with one issue per problem, naming the JSON path, never the value. ' +
        `Record types: ${Object.keys(policy.recordTypes).join(', ')}. Access purposes: ${policy.purposes.join(', ')}.`,
    },
    servers: [{ url: serverUrl }],
    components: {
      securitySchemes: {
        credential: { type: 'http', scheme: 'bearer', description: 'API credential `dmc_<id>_<secret>` from `domicile credentials create`' },
      },
    },
    paths,
  };
}

/** Registers a route on the router and records its spec for the OpenAPI document. */
export function addRoute(router: Router, specs: RouteSpec[], spec: RouteSpec, ...handlers: RequestHandler[]): void {
  specs.push(spec);
  router[spec.method](spec.path, ...handlers);
}
