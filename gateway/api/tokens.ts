import express, { Router } from 'express';
import { z } from 'zod';
import { DomicileError, isAtLeastAsStrong, type EgressForm, type Policy } from '../../policy/index.ts';
import type { Credential } from '../../store/credentials.ts';
import { actorOf, authenticate, credentialOf } from '../auth.ts';
import type { GatewayDeps } from '../deps.ts';
import { addRoute, type RouteSpec } from '../openapi.ts';
import { auditRefusal, auditRefusals, bodyString } from '../refusal-audit.ts';
import { parseInput, requirePurpose } from '../validation.ts';
import { purposeName, recordTypeName } from './schemas.ts';

/** Maximum number of items in one tokenize or detokenize request; more get 413. */
export const TOKEN_BATCH_MAX = 1000;

/**
 * Body limit of the two token routes: at 1000 items it allows about 2 KB per
 * item, above the 256 characters that most fields allow after normalization.
 */
export const TOKEN_BODY_LIMIT = '2mb';

const TAGS = ['tokens'];
const field = z.string().min(1).max(64).describe('field of the record type');
const scalar = z.union([z.string(), z.number(), z.boolean()]);

const tokenizeItem = z.strictObject({
  recordType: recordTypeName,
  field,
  value: scalar.describe('the value in any accepted input form; it is normalized like a stored value'),
});
const detokenizeItem = z.strictObject({
  recordType: recordTypeName,
  field,
  token: z.string().min(1).max(512),
  keyVersion: z.number().int().min(1).optional().describe('tokenization key version of a format-preserving token, as tokenize returned it; the current version when absent'),
  destination: z.string().min(1).max(64).optional().describe('destination whose own token namespace made the token'),
});

/**
 * Items are checked one by one, so a malformed item is an item error; the
 * request schema checks only the array. The OpenAPI document gives the item
 * schema instead.
 */
function itemsArray<T extends z.ZodType>(item: T) {
  return z.array(item).min(1).describe(`1 to ${TOKEN_BATCH_MAX} items; more give 413`);
}
const tokenizeBody = z.strictObject({ items: itemsArray(z.unknown()) });
const detokenizeBody = z.strictObject({ purpose: purposeName, items: itemsArray(z.unknown()) });
const tokenizeBodyDocument = tokenizeBody.extend({ items: itemsArray(tokenizeItem) });
const detokenizeBodyDocument = detokenizeBody.extend({ items: itemsArray(detokenizeItem) });

const itemError = z.object({ error: z.object({ code: z.string(), message: z.string(), path: z.string() }) });
const tokenizeResponse = z.object({
  results: z.array(z.union([z.object({ token: z.string(), keyVersion: z.number().int() }), itemError])),
});
const detokenizeResponse = z.object({ results: z.array(z.union([z.object({ value: scalar }), itemError])) });

const ERRORS = {
  400: { description: 'invalid request body; item problems are item errors instead' },
  401: { description: 'missing or invalid API credential' },
  403: { description: 'the credential lacks the scope, or (detokenize) the caller is abroad' },
  413: { description: `more than ${TOKEN_BATCH_MAX} items, or a body above ${TOKEN_BODY_LIMIT}` },
} as const;

type ParsedItem<T> = { ok: true; item: T } | { ok: false; error: { code: 'invalid_request' | 'forbidden'; message: string; path: string } };

/** Validates each item on its own, so one malformed item gives an item error and the others still run. */
function parseItems<T extends z.ZodType>(schema: T, items: readonly unknown[]): Array<ParsedItem<z.output<T>>> {
  if (items.length > TOKEN_BATCH_MAX) {
    throw new DomicileError('payload_too_large', `$.items has ${items.length} items; the maximum per request is ${TOKEN_BATCH_MAX}`, {
      issues: [{ path: '$.items', message: `must have at most ${TOKEN_BATCH_MAX} items` }],
    });
  }
  return items.map((raw, index) => {
    try {
      return { ok: true, item: parseInput(schema, raw, `$.items[${index}]`) };
    } catch (error) {
      if (!(error instanceof DomicileError)) throw error;
      const first = error.issues[0];
      return { ok: false, error: { code: 'invalid_request', message: first?.message ?? error.message, path: first?.path ?? `$.items[${index}]` } };
    }
  });
}

/**
 * Turns items into item errors where the credential's field grants do not let
 * it see the field in `revealed`, the form the operation returns: a token for
 * tokenize, the clear value for detokenize. Without grants for the record
 * type, the scope of the record type decides, as for reads.
 */
function checkFieldGrants<T extends { recordType: string; field: string }>(
  policy: Policy,
  parsed: Array<ParsedItem<T>>,
  credential: Credential,
  revealed: EgressForm,
): Array<ParsedItem<T>> {
  return parsed.map((entry, index) => {
    if (!entry.ok) return entry;
    const grants = credential.scopes.fields?.[entry.item.recordType];
    if (grants === undefined) return entry;
    const granted = Object.hasOwn(grants, entry.item.field) ? (grants[entry.item.field] ?? 'never') : 'never';
    if (granted !== 'never' && isAtLeastAsStrong(revealed, granted)) return entry;
    // Only a field that the policy declares is named: an unknown name may be a value sent in its place.
    const declared = Object.hasOwn(policy.recordTypes[entry.item.recordType]?.fields ?? {}, entry.item.field);
    const subject = declared ? `field ${entry.item.recordType}.${entry.item.field}` : `this field of record type ${entry.item.recordType}`;
    return {
      ok: false,
      error: { code: 'forbidden', message: `credential may not see ${subject} in form ${revealed}`, path: `$.items[${index}].field` },
    };
  });
}

/**
 * Groups the items refused with `forbidden` by record type, for one `denied`
 * audit entry per type. Only declared record types and fields are named; the
 * counts are items by field name.
 */
function refusedItems(policy: Policy, items: readonly unknown[], results: readonly unknown[]): Array<{ recordType: string; fields: string[]; itemCounts: Record<string, number> }> {
  const groups = new Map<string, Record<string, number>>();
  results.forEach((result, index) => {
    const code = typeof result === 'object' && result !== null && 'error' in result ? (result as { error: { code: string } }).error.code : undefined;
    const item = items[index];
    if (code !== 'forbidden' || typeof item !== 'object' || item === null) return;
    const { recordType, field } = item as { recordType?: unknown; field?: unknown };
    if (typeof recordType !== 'string' || !Object.hasOwn(policy.recordTypes, recordType)) return;
    const counts = groups.get(recordType) ?? {};
    const fields = policy.recordTypes[recordType]?.fields ?? {};
    if (typeof field === 'string' && Object.hasOwn(fields, field)) counts[field] = (counts[field] ?? 0) + 1;
    groups.set(recordType, counts);
  });
  return [...groups].map(([recordType, itemCounts]) => ({ recordType, fields: Object.keys(itemCounts).sort(), itemCounts }));
}

/** Fills the results of well-formed items into the slots of the request's items. */
function mergeResults<T, R>(parsed: ReadonlyArray<ParsedItem<T>>, results: readonly R[]): Array<R | { error: { code: string; message: string; path: string } }> {
  let next = 0;
  return parsed.map((entry) => {
    if (!entry.ok) return { error: entry.error };
    const result = results[next];
    next += 1;
    if (result === undefined) throw new DomicileError('internal', 'token batch returned fewer results than items');
    return result;
  });
}

/** Rewrites the store's item paths, which count only well-formed items, to the request's item indexes. */
function reindex<R>(results: R[], indexes: readonly number[]): R[] {
  return results.map((result) => {
    if (typeof result !== 'object' || result === null || !('error' in result)) return result;
    const error = (result as { error: { path: string } }).error;
    const path = error.path.replace(/^\$\.items\[(\d+)\]/, (_match, index: string) => `$.items[${indexes[Number(index)] ?? index}]`);
    return { ...result, error: { ...error, path } };
  });
}

/**
 * Routes of `/api/v1/tokenize` and `/api/v1/detokenize`. Tokenize only
 * returns tokens, so callers abroad may use it; detokenize reveals values and
 * is for in-country callers only. Both audit every call with the caller, the
 * fields and the item counts. The router parses its own bodies with a larger
 * limit, so it must be mounted before the app's JSON parser.
 */
export function tokensRouter(deps: GatewayDeps, specs: RouteSpec[]): Router {
  const { policy, vault } = deps;
  const router = Router();
  const auth = authenticate(deps.db);
  const json = express.json({ limit: TOKEN_BODY_LIMIT, strict: true });

  addRoute(
    router,
    specs,
    {
      method: 'post',
      path: '/api/v1/tokenize',
      operationId: 'tokenize',
      summary: 'Turn values into tokens of each field\'s token kind',
      description: `Needs the scope tokenize and the record type of each item. Up to ${TOKEN_BATCH_MAX} items; each result is a token or an item error. Deterministic and random tokens carry their key version; keep keyVersion of format-preserving tokens to detokenize them after a key rotation.`,
      tags: TAGS,
      auth: 'credential',
      body: tokenizeBodyDocument,
      responses: { 200: { description: 'one result per item, in order', schema: tokenizeResponse }, ...ERRORS },
    },
    auth,
    json,
    async (req, res) => {
      const credential = credentialOf(res);
      if (!credential.scopes.operations.includes('tokenize')) {
        throw new DomicileError('forbidden', 'credential lacks the scope tokenize');
      }
      const body = parseInput(tokenizeBody, req.body, '$');
      const parsed = checkFieldGrants(policy, parseItems(tokenizeItem, body.items), credential, 'token');
      const good = parsed.flatMap((entry, index) => (entry.ok ? [{ item: entry.item, index }] : []));
      const results = await vault.tokens.tokenize({
        actor: actorOf(credential),
        recordTypes: credential.scopes.recordTypes,
        items: good.map((entry) => entry.item),
      });
      res.setHeader('Cache-Control', 'no-store');
      res.json({ results: mergeResults(parsed, reindex(results, good.map((entry) => entry.index))) });
    },
  );

  addRoute(
    router,
    specs,
    {
      method: 'post',
      path: '/api/v1/detokenize',
      operationId: 'detokenize',
      summary: 'Turn random and format-preserving tokens back into values (in-country callers only)',
      description: `Needs an in-country credential with the scope detokenize, the record type of each item and an access purpose. Up to ${TOKEN_BATCH_MAX} items. Deterministic tokens are keyed hashes and give the item error not_reversible.`,
      tags: TAGS,
      auth: 'credential',
      body: detokenizeBodyDocument,
      responses: { 200: { description: 'one result per item, in order', schema: detokenizeResponse }, ...ERRORS },
    },
    auth,
    json,
    auditRefusals(deps, (req) => ({ action: 'tokens.detokenize', purpose: bodyString(req, 'purpose') }), async (req, res) => {
      const credential = credentialOf(res);
      if (credential.location !== 'in-country') {
        throw new DomicileError('forbidden', 'detokenize is for in-country callers only: this credential is registered as abroad, and values never leave the country');
      }
      if (!credential.scopes.operations.includes('detokenize')) {
        throw new DomicileError('forbidden', 'credential lacks the scope detokenize');
      }
      const body = parseInput(detokenizeBody, req.body, '$');
      const purpose = requirePurpose(policy, body.purpose, '$.purpose');
      const parsed = checkFieldGrants(policy, parseItems(detokenizeItem, body.items), credential, 'clear');
      const good = parsed.flatMap((entry, index) => (entry.ok ? [{ item: entry.item, index }] : []));
      const results = await vault.tokens.detokenize({
        actor: actorOf(credential),
        purpose,
        recordTypes: credential.scopes.recordTypes,
        items: good.map((entry) => {
          const { keyVersion, destination, ...item } = entry.item;
          return { ...item, ...(keyVersion === undefined ? {} : { keyVersion }), ...(destination === undefined ? {} : { destination }) };
        }),
      });
      const merged = mergeResults(parsed, reindex(results, good.map((entry) => entry.index)));
      for (const denied of refusedItems(policy, body.items, merged)) {
        await auditRefusal(deps, credential, { action: 'tokens.detokenize', purpose, ...denied });
      }
      res.setHeader('Cache-Control', 'no-store');
      res.json({ results: merged });
    }),
  );

  return router;
}
