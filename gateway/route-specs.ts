import { z } from 'zod';
import { createValuesDocument } from './api/schemas.ts';
import type { RouteSpec } from './openapi.ts';

/**
 * Specs of the gateway listener's routes that are not JSON API operations:
 * health, the OpenAPI document itself, the embed script and the widget
 * pages. They appear in the document so it lists every served route.
 */
const healthResponse = z.object({ status: z.enum(['ok', 'unavailable']), checks: z.record(z.string(), z.string()).optional() });

export const STATIC_ROUTE_SPECS: readonly RouteSpec[] = [
  {
    method: 'get',
    path: '/healthz',
    operationId: 'health',
    summary: 'The process runs',
    tags: ['operations'],
    auth: 'none',
    responses: { 200: { description: 'running', schema: healthResponse } },
  },
  {
    method: 'get',
    path: '/readyz',
    operationId: 'readiness',
    summary: 'The database is reachable',
    tags: ['operations'],
    auth: 'none',
    responses: { 200: { description: 'ready', schema: healthResponse }, 503: { description: 'database unreachable', schema: healthResponse } },
  },
  {
    method: 'get',
    path: '/api/v1/openapi.json',
    operationId: 'openApiDocument',
    summary: 'This OpenAPI 3.1 document',
    tags: ['operations'],
    auth: 'none',
    responses: { 200: { description: 'the document' } },
  },
  {
    method: 'get',
    path: '/embed.js',
    operationId: 'embedScript',
    summary: 'Script that host pages load to embed the widgets',
    tags: ['widgets'],
    auth: 'none',
    responses: { 200: { description: 'JavaScript', contentType: 'text/javascript' } },
  },
  {
    method: 'get',
    path: '/widgets/static/:asset',
    operationId: 'widgetAsset',
    summary: 'Script or style sheet of the widget pages',
    tags: ['widgets'],
    auth: 'none',
    params: z.object({ asset: z.enum(['collect.js', 'collect.css']) }),
    responses: { 200: { description: 'the asset', contentType: 'text/plain' }, 404: { description: 'no such asset' } },
  },
  {
    method: 'get',
    path: '/widgets/collect',
    operationId: 'collectWidget',
    summary: 'Collect form page, framed by the app origin that the widget session names',
    tags: ['widgets'],
    auth: 'session',
    query: z.object({ session: z.string().describe('widget session from POST /api/v1/widget-sessions'), locale: z.string().optional() }),
    responses: { 200: { description: 'HTML page', contentType: 'text/html' }, 401: { description: 'missing or expired session (HTML page)', contentType: 'text/html' } },
  },
  {
    method: 'post',
    path: '/widgets/v1/records',
    operationId: 'submitWidgetRecord',
    summary: 'Submission of the collect form; only the widget page on the gateway origin calls it',
    tags: ['widgets'],
    auth: 'session',
    body: z.strictObject({ values: createValuesDocument }),
    responses: { 201: { description: 'created; returns the subject token' }, 400: { description: 'invalid values' }, 401: { description: 'missing or expired session' } },
  },
];
