import { Router, type Request } from 'express';
import { DomicileError, type Policy } from '../../policy/index.ts';
import { actorOf, authenticate, credentialOf } from '../auth.ts';
import type { GatewayDeps } from '../deps.ts';
import { effectiveForm, type Viewer } from '../egress.ts';
import { recordWithRandomTokens } from '../random-egress.ts';
import { addRoute, type RouteSpec } from '../openapi.ts';
import { auditRefusals, queryString, type RefusalContext } from '../refusal-audit.ts';
import { parseInput, parseScopedInput, requirePurpose } from '../validation.ts';
import {
  createBody,
  createBodyDocument,
  idempotencyHeaders,
  idempotencyKey,
  ifMatchHeaders,
  purposeHeaders,
  recordResponse,
  recordTypeQuery,
  subjectTokenParams,
  updateBody,
  updateBodyDocument,
  writeResponse,
} from './schemas.ts';

export const PURPOSE_HEADER = 'x-access-purpose';

const TAGS = ['records'];
const COMMON_ERRORS = {
  400: { description: 'invalid request; the issues name each JSON path, header or query parameter' },
  401: { description: 'missing or invalid API credential' },
  403: { description: 'the credential lacks the operation or record type' },
} as const;

/**
 * Fields of a record type that the viewer receives in some form, random tokens
 * included; only these are decrypted and audited as read.
 */
export function visibleFields(policy: Policy, recordType: string, viewer: Viewer): string[] {
  const fields = policy.recordTypes[recordType]?.fields ?? {};
  return Object.entries(fields)
    .filter(([name, field]) => effectiveForm(viewer, recordType, name, field, true) !== 'never')
    .map(([name]) => name);
}

/** Formats a record version as a strong entity tag. */
export function versionTag(version: number): string {
  return `"${version}"`;
}

/** Reads `If-Match`: undefined when absent or `*`, else the version it names; a weak or malformed tag is a 400. */
export function expectedVersion(header: string | undefined): number | undefined {
  if (header === undefined || header.trim() === '*') {
    return undefined;
  }
  // A version has no leading zero, so each version has exactly one entity tag.
  const match = /^\s*"([1-9]\d{0,8})"\s*$/.exec(header);
  if (match?.[1] === undefined) {
    throw new DomicileError('invalid_request', 'header.if-match must be the strong entity tag "<version>" of a read, or *', {
      issues: [{ path: 'header.if-match', message: 'must be "<version>" or *' }],
    });
  }
  return Number(match[1]);
}

/** Context of a refused read of `/records/:subjectToken` or its versions, for the `denied` audit entry. */
export function readRefusal(action: string): (req: Request) => RefusalContext {
  return (req) => {
    const context: RefusalContext = { action, subjectToken: String(req.params['subjectToken']), purpose: req.get(PURPOSE_HEADER) };
    const recordType = queryString(req, 'recordType');
    return recordType === undefined ? context : { ...context, recordType };
  };
}

/** Reads the access purpose of a request without a body from its `x-access-purpose` header. */
export function headerPurpose(req: Request, policy: Policy): string {
  return requirePurpose(policy, req.get(PURPOSE_HEADER), `header.${PURPOSE_HEADER}`);
}

/** Routes of `/api/v1/records`: create, read, update and erase by subject token. */
export function recordsRouter(deps: GatewayDeps, specs: RouteSpec[]): Router {
  const { policy, vault } = deps;
  const router = Router();
  const auth = authenticate(deps.db);

  addRoute(
    router,
    specs,
    {
      method: 'post',
      path: '/api/v1/records',
      operationId: 'createRecord',
      summary: 'Create a record of a new subject',
      description: 'Retries with the same Idempotency-Key and the same values return the first subject instead of creating a second one.',
      tags: TAGS,
      auth: 'credential',
      body: createBodyDocument,
      headers: idempotencyHeaders,
      responses: { 201: { description: 'created', schema: writeResponse }, ...COMMON_ERRORS, 409: { description: 'idempotency key used for other values' }, 413: { description: 'body too large' } },
    },
    auth,
    async (req, res) => {
      const credential = credentialOf(res);
      const body = parseScopedInput(createBody, req.body, '$', policy, credential, 'records:create');
      const purpose = requirePurpose(policy, body.purpose, '$.purpose');
      const key = req.headers['idempotency-key'];
      const created = await vault.create({
        recordType: body.recordType,
        values: body.values,
        actor: actorOf(credential),
        purpose,
        ...(key === undefined ? {} : { idempotencyKey: parseInput(idempotencyKey, key, 'header.idempotency-key') }),
      });
      res.setHeader('ETag', versionTag(created.version));
      res.status(201).json({ subjectToken: created.subjectToken, version: created.version });
    },
  );

  addRoute(
    router,
    specs,
    {
      method: 'get',
      path: '/api/v1/records/:subjectToken',
      operationId: 'readRecord',
      summary: 'Read a record with the fields and forms the credential may see',
      description: 'Callers abroad never receive a field in a form weaker than its egress rule. The ETag is the record version, for If-Match on update.',
      tags: TAGS,
      auth: 'credential',
      params: subjectTokenParams,
      query: recordTypeQuery,
      headers: purposeHeaders,
      responses: { 200: { description: 'the record', schema: recordResponse }, ...COMMON_ERRORS, 404: { description: 'no such subject or record' }, 410: { description: 'subject was erased' } },
    },
    auth,
    auditRefusals(deps, readRefusal('record.read'), async (req, res) => {
      const credential = credentialOf(res);
      const { recordType } = parseScopedInput(recordTypeQuery, req.query, 'query', policy, credential, 'records:read');
      const purpose = headerPurpose(req, policy);

      const fields = visibleFields(policy, recordType, credential);
      const view = await vault.read({ subjectToken: String(req.params['subjectToken']), recordType, actor: actorOf(credential), purpose, fields });
      res.setHeader('Cache-Control', 'no-store');
      res.setHeader('ETag', versionTag(view.version));
      res.json(await recordWithRandomTokens(deps, view, credential));
    }),
  );

  addRoute(
    router,
    specs,
    {
      method: 'patch',
      path: '/api/v1/records/:subjectToken',
      operationId: 'updateRecord',
      summary: 'Change some fields of a record',
      description: 'With If-Match "<version>", the update fails with 412 unless the record is still at that version.',
      tags: TAGS,
      auth: 'credential',
      params: subjectTokenParams,
      body: updateBodyDocument,
      headers: ifMatchHeaders,
      responses: {
        200: { description: 'updated; the version is unchanged when no value changed', schema: writeResponse },
        ...COMMON_ERRORS,
        404: { description: 'no such subject or record' },
        410: { description: 'subject was erased' },
        412: { description: 'the current version of the record does not match If-Match' },
        428: { description: 'If-Match is missing or `*` while the gateway requires it (DOMICILE_REQUIRE_IF_MATCH=true)' },
      },
    },
    auth,
    async (req, res) => {
      const credential = credentialOf(res);
      const body = parseScopedInput(updateBody, req.body, '$', policy, credential, 'records:update');
      const purpose = requirePurpose(policy, body.purpose, '$.purpose');
      const expected = expectedVersion(req.get('if-match'));
      if (expected === undefined && deps.requireIfMatch === true) {
        throw new DomicileError('precondition_required', 'header.if-match is required: send the ETag "<version>" of your last read of the record', {
          issues: [{ path: 'header.if-match', message: 'is required and must be "<version>"' }],
        });
      }

      const updated = await vault.update({
        subjectToken: String(req.params['subjectToken']),
        recordType: body.recordType,
        values: body.values,
        actor: actorOf(credential),
        purpose,
        ...(expected === undefined ? {} : { expectedVersion: expected }),
      });
      res.setHeader('ETag', versionTag(updated.version));
      res.json({ subjectToken: updated.subjectToken, version: updated.version });
    },
  );

  addRoute(
    router,
    specs,
    {
      method: 'delete',
      path: '/api/v1/records/:subjectToken',
      operationId: 'eraseSubject',
      summary: 'Erase a subject and every record it has',
      tags: TAGS,
      auth: 'credential',
      params: subjectTokenParams,
      query: recordTypeQuery,
      headers: purposeHeaders,
      responses: { 204: { description: 'erased (also when it was erased before)' }, ...COMMON_ERRORS, 404: { description: 'no such subject' } },
    },
    auth,
    async (req, res) => {
      const credential = credentialOf(res);
      parseScopedInput(recordTypeQuery, req.query, 'query', policy, credential, 'records:erase');
      const purpose = headerPurpose(req, policy);

      // Erasing a subject removes every record type it has, so the credential
      // needs the erase scope for the named type; the vault erases the subject.
      await vault.erase({ subjectToken: String(req.params['subjectToken']), actor: actorOf(credential), purpose });
      res.status(204).end();
    },
  );

  return router;
}
