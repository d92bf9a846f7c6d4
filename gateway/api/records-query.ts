import { Router, type Request } from 'express';
import { DomicileError, type Policy } from '../../policy/index.ts';
import { actorOf, authenticate, credentialOf, requireInCountry } from '../auth.ts';
import type { GatewayDeps } from '../deps.ts';
import { effectiveForm, type Viewer } from '../egress.ts';
import { addRoute, type RouteSpec } from '../openapi.ts';
import { parseScopedInput, requirePurpose } from '../validation.ts';
import { auditRefusals, bodyString, type RefusalContext } from '../refusal-audit.ts';
import { headerPurpose, readRefusal } from './records.ts';
import { lookupBody, lookupResponse, purposeHeaders, subjectTokenParams, versionsQuery, versionsResponse } from './schemas.ts';

const TAGS = ['records'];

/**
 * Throws `invalid_request` unless `fieldName` is a searchable field of the
 * record type, or `forbidden` when the viewer may not see the field in any
 * form: a lookup by a hidden field would still tell whether a value exists.
 */
function requireSearchable(policy: Policy, recordType: string, fieldName: string, viewer: Viewer): void {
  const fields = policy.recordTypes[recordType]?.fields ?? {};
  const field = Object.hasOwn(fields, fieldName) ? fields[fieldName] : undefined;
  const searchable = Object.entries(fields).filter(([, definition]) => definition.searchable).map(([name]) => name);
  const hint = searchable.length > 0 ? `searchable fields: ${searchable.join(', ')}` : 'the record type has no searchable field';
  if (field === undefined) {
    // The unknown name is not repeated: a caller may have sent a value in its place.
    throw new DomicileError('invalid_request', `$.field is not a field of record type ${recordType}; ${hint}`, {
      issues: [{ path: '$.field', message: `is not a field of record type ${recordType}` }],
    });
  }
  if (!field.searchable) {
    throw new DomicileError('invalid_request', `$.field ${fieldName} is not searchable; ${hint}`, {
      issues: [{ path: '$.field', message: `${fieldName} is not searchable` }],
    });
  }
  if (effectiveForm(viewer, recordType, fieldName, field) === 'never') {
    throw new DomicileError('forbidden', `credential may not see field ${recordType}.${fieldName}, so it may not look records up by it`);
  }
}

/** Context of a refused lookup: the record type and the field when the policy declares them, never the value. */
function lookupRefusal(policy: Policy, req: Request): RefusalContext {
  const recordType = bodyString(req, 'recordType');
  const field = bodyString(req, 'field');
  const fields = recordType === undefined ? undefined : policy.recordTypes[recordType]?.fields;
  const known = field !== undefined && fields !== undefined && Object.hasOwn(fields, field);
  return {
    action: 'record.lookup',
    purpose: bodyString(req, 'purpose'),
    ...(recordType === undefined ? {} : { recordType }),
    ...(known ? { fields: [field] } : {}),
  };
}

/** `POST /api/v1/records/lookup` (find by value) and `GET /api/v1/records/:subjectToken/versions` (history). */
export function recordQueriesRouter(deps: GatewayDeps, specs: RouteSpec[]): Router {
  const { policy, vault } = deps;
  const router = Router();
  const auth = authenticate(deps.db);

  addRoute(
    router,
    specs,
    {
      method: 'post',
      path: '/api/v1/records/lookup',
      operationId: 'lookupRecords',
      summary: 'Find subjects by the exact value of a searchable field',
      description: 'Matches blind indexes (keyed hashes), so nothing is decrypted. The value travels in the body because URLs end up in access logs.',
      tags: TAGS,
      auth: 'credential',
      body: lookupBody,
      responses: {
        200: { description: 'subject tokens of the matching live records, possibly none', schema: lookupResponse },
        400: { description: 'invalid request, a field that is not searchable, or a malformed value' },
        401: { description: 'missing or invalid API credential' },
        403: { description: 'the credential lacks records:lookup, the record type or the field' },
      },
    },
    auth,
    auditRefusals(deps, (req) => lookupRefusal(policy, req), async (req, res) => {
      const credential = credentialOf(res);
      if (Object.keys(req.query).length > 0) {
        throw new DomicileError('invalid_request', 'lookup takes no query parameters: send every parameter in the JSON body', {
          issues: [{ path: 'query', message: 'must be empty' }],
        });
      }
      const body = parseScopedInput(lookupBody, req.body, '$', policy, credential, 'records:lookup');
      const purpose = requirePurpose(policy, body.purpose, '$.purpose');
      requireSearchable(policy, body.recordType, body.field, credential);

      const subjectTokens = await vault.lookup({ recordType: body.recordType, field: body.field, value: body.value, actor: actorOf(credential), purpose });
      res.setHeader('Cache-Control', 'no-store');
      res.json({ subjectTokens });
    }),
  );

  addRoute(
    router,
    specs,
    {
      method: 'get',
      path: '/api/v1/records/:subjectToken/versions',
      operationId: 'listRecordVersions',
      summary: 'History of a record: who changed which fields, when, why and under which policy version',
      description: 'In-country callers with records:read only. No values, old or new, are returned.',
      tags: TAGS,
      auth: 'credential',
      params: subjectTokenParams,
      query: versionsQuery,
      headers: purposeHeaders,
      responses: {
        200: { description: 'versions, oldest first', schema: versionsResponse },
        400: { description: 'invalid request' },
        401: { description: 'missing or invalid API credential' },
        403: { description: 'the credential lacks records:read or the record type, or the caller is abroad' },
        404: { description: 'no such subject or record' },
        410: { description: 'subject was erased' },
      },
    },
    auth,
    auditRefusals(deps, readRefusal('record.history'), async (req, res) => {
      const credential = credentialOf(res);
      const query = parseScopedInput(versionsQuery, req.query, 'query', policy, credential, 'records:read');
      requireInCountry(credential, 'record history');
      const purpose = headerPurpose(req, policy);
      const subjectToken = String(req.params['subjectToken']);

      const versions = await vault.versions({
        subjectToken,
        recordType: query.recordType,
        actor: actorOf(credential),
        purpose,
        limit: query.limit,
        ...(query.afterVersion === undefined ? {} : { afterVersion: query.afterVersion }),
      });
      res.setHeader('Cache-Control', 'no-store');
      res.json({ subjectToken, recordType: query.recordType, versions });
    }),
  );

  return router;
}
