import { Router } from 'express';
import { z } from 'zod';
import { DomicileError } from '../../policy/index.ts';
import { actorOf, authenticate, credentialOf, requireInCountry } from '../auth.ts';
import type { GatewayDeps } from '../deps.ts';
import { addRoute, type RouteSpec } from '../openapi.ts';
import { auditRefusals, queryString } from '../refusal-audit.ts';
import { parseInput, requirePurpose } from '../validation.ts';
import { purposeName, subjectTokenParams } from './schemas.ts';

const exportQuery = z.strictObject({ purpose: purposeName });

const actor = z.object({ id: z.string(), location: z.enum(['in-country', 'abroad']) });
const values = z.record(z.string(), z.union([z.string(), z.number(), z.boolean()]));
const exportResponse = z.object({
  subjectToken: z.string(),
  createdAt: z.string(),
  exportedAt: z.string(),
  records: z.array(z.object({ recordType: z.string(), version: z.number(), policyVersion: z.number(), createdAt: z.string(), updatedAt: z.string(), values })),
  history: z.array(
    z.object({
      recordType: z.string(),
      version: z.number(),
      changedFields: z.array(z.string()),
      values,
      actor,
      purpose: z.string(),
      policyVersion: z.number(),
      at: z.string(),
    }),
  ),
  audit: z.array(
    z.object({
      seq: z.number(),
      at: z.string(),
      actor,
      action: z.string(),
      purpose: z.string().nullable(),
      recordType: z.string().nullable(),
      fields: z.array(z.string()),
      outcome: z.string(),
    }),
  ),
});

/** `GET /api/v1/subjects/:subjectToken/export`: the subject access export. */
export function subjectExportRouter(deps: GatewayDeps, specs: RouteSpec[]): Router {
  const router = Router();
  const auth = authenticate(deps.db);

  addRoute(
    router,
    specs,
    {
      method: 'get',
      path: '/api/v1/subjects/:subjectToken/export',
      operationId: 'exportSubject',
      summary: 'Everything held about one subject, for a subject access request',
      description:
        'In-country callers with records:read for every record type the subject has. Returns the records in clear, their history with the values each version set, and the audit entries that name the subject. The export is audited.',
      tags: ['subjects'],
      auth: 'credential',
      params: subjectTokenParams,
      query: exportQuery,
      responses: {
        200: { description: 'the export document', schema: exportResponse },
        400: { description: 'invalid request or unknown access purpose' },
        401: { description: 'missing or invalid API credential' },
        403: { description: 'the caller is abroad, or the credential lacks records:read or a record type of the subject' },
        404: { description: 'no such subject' },
        410: { description: 'subject was erased' },
      },
    },
    auth,
    auditRefusals(deps, (req) => ({ action: 'subject.export', subjectToken: String(req.params['subjectToken']), purpose: queryString(req, 'purpose') }), async (req, res) => {
      const credential = credentialOf(res);
      requireInCountry(credential, 'subject access export');
      if (!credential.scopes.operations.includes('records:read')) {
        throw new DomicileError('forbidden', 'credential lacks the scope records:read');
      }
      const query = parseInput(exportQuery, req.query, 'query');
      const purpose = requirePurpose(deps.policy, query.purpose, 'query.purpose');
      if (deps.subjectExport === undefined) {
        throw new DomicileError('unavailable', 'subject access export is not configured on this gateway');
      }

      const document = await deps.subjectExport({
        subjectToken: String(req.params['subjectToken']),
        actor: actorOf(credential),
        purpose,
        recordTypes: credential.scopes.recordTypes,
      });
      res.setHeader('Cache-Control', 'no-store');
      res.json(document);
    }),
  );

  return router;
}
