import { z } from 'zod';
import { EGRESS_FORMS } from '../../policy/index.ts';

/**
 * Zod schemas of the records API. The routes validate requests with them and
 * the OpenAPI document is generated from them, so both always agree.
 */

const name = z.string().min(1).max(64);
const scalar = z.union([z.string(), z.number(), z.boolean()]);

export const recordTypeName = name.describe('record type of the data policy');
export const purposeName = name.describe('access purpose of the data policy');
export const subjectToken = z.string().describe('subject token, `sub_` and 26 base32 characters');

/** Idempotency keys are client-chosen ids, not data: printable ASCII only, so a key is stored and compared without normalization. */
export const idempotencyKey = z.string().regex(/^[\x21-\x7e]{1,200}$/, 'must be 1 to 200 printable ASCII characters without spaces');

/**
 * Field values by field name. zod's record silently drops an own `__proto__`
 * key, which would turn an unknown field into a 201, so it is rejected first
 * like any other field that the record type does not declare.
 */
export const fieldValues = z.preprocess((raw, ctx) => {
  if (typeof raw === 'object' && raw !== null && Object.hasOwn(raw, '__proto__')) {
    ctx.addIssue({ code: 'custom', message: 'names a field that the record type does not declare', path: ['__proto__'] });
  }
  return raw;
}, z.record(z.string(), z.unknown()));

/**
 * Field values as the OpenAPI document describes them. Requests are validated
 * with `fieldValues`, because the vault checks each value against the data
 * policy and reports every problem with its path.
 */
export const createValuesDocument = z.record(z.string(), scalar).describe('field values by field name; the data policy decides which fields exist and how each is validated');
const updateValuesDocument = z.record(z.string(), scalar.nullable()).describe('fields to change; null removes an optional field, fields left out keep their value');

export const createBody = z.strictObject({
  recordType: recordTypeName,
  values: fieldValues.describe('field values by field name; the data policy decides which fields exist and how each is validated'),
  purpose: purposeName,
});

export const updateBody = z.strictObject({
  recordType: recordTypeName,
  values: fieldValues.describe('fields to change; null removes an optional field, fields left out keep their value'),
  purpose: purposeName,
});

/** Bodies as the OpenAPI document describes them, with the value types that `fieldValues` leaves to the vault. */
export const createBodyDocument = createBody.extend({ values: createValuesDocument });
export const updateBodyDocument = updateBody.extend({ values: updateValuesDocument });

export const lookupBody = z.strictObject({
  recordType: recordTypeName,
  field: name.describe('a field that the data policy marks searchable'),
  value: scalar.describe('the value to find; it is normalized like a stored value, and is sent in the body so it never appears in a URL'),
  purpose: purposeName,
});

/** Maximum number of records in one batch create. */
export const BATCH_MAX = 100;

export const batchItem = z.strictObject({
  recordType: recordTypeName,
  values: fieldValues,
  purpose: purposeName,
  idempotencyKey: idempotencyKey.optional(),
});

/** Items are validated one by one with `batchItem`, so a malformed item gives an item result instead of failing the batch. */
function batchBodyOf<T extends z.ZodType>(item: T) {
  return z.strictObject({
    records: z.array(item).min(1).max(BATCH_MAX).describe(`1 to ${BATCH_MAX} records, each validated on its own`),
  });
}

export const batchBody = batchBodyOf(z.unknown());
export const batchBodyDocument = batchBodyOf(batchItem.extend({ values: createValuesDocument }));

export const recordTypeQuery = z.strictObject({ recordType: recordTypeName });

export const versionsQuery = z.strictObject({
  recordType: recordTypeName,
  limit: z.coerce.number().int().min(1).max(1000).default(100).describe('maximum number of versions returned'),
  afterVersion: z.coerce.number().int().min(0).optional().describe('return only versions after this one, for paging'),
});

export const purposeHeaders = z.object({ 'x-access-purpose': purposeName });
export const ifMatchHeaders = z.object({ 'if-match': z.string().optional().describe('`"<version>"` of the record, as the ETag of a read') });
export const idempotencyHeaders = z.object({ 'idempotency-key': idempotencyKey.optional() });

export const subjectTokenParams = z.object({ subjectToken });

export const errorResponse = z.object({
  error: z.object({
    code: z.string(),
    message: z.string().describe('what failed and where; never a value'),
    issues: z.array(z.object({ path: z.string(), message: z.string() })),
  }),
});

export const writeResponse = z.object({ subjectToken, version: z.number().int() });

export const recordResponse = z.object({
  subjectToken,
  recordType: z.string(),
  version: z.number().int(),
  policyVersion: z.number().int(),
  updatedAt: z.iso.datetime(),
  values: z.record(z.string(), scalar),
  forms: z.record(z.string(), z.enum(EGRESS_FORMS)),
});

export const lookupResponse = z.object({ subjectTokens: z.array(subjectToken) });

export const versionsResponse = z.object({
  subjectToken,
  recordType: z.string(),
  versions: z.array(
    z.object({
      version: z.number().int(),
      createdAt: z.iso.datetime(),
      actor: z.string().describe('who wrote the version, such as `credential:<id>`'),
      actorLocation: z.enum(['in-country', 'abroad']),
      purpose: z.string(),
      changedFields: z.array(z.string()).describe('names of the fields that changed; never values'),
      policyVersion: z.number().int(),
    }),
  ),
});

export const batchResponse = z.object({
  results: z.array(
    z.union([
      z.object({ index: z.number().int(), status: z.literal(201), subjectToken, version: z.number().int() }),
      z.object({ index: z.number().int(), status: z.number().int(), error: errorResponse.shape.error }),
    ]),
  ),
});
