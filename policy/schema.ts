import { z } from 'zod';
import { isTimeZone } from './calendar.ts';

/** Field value types that the widgets, normalization and validation know. */
export const FIELD_TYPES = [
  'string',
  'email',
  'phone',
  'date',
  'postalCode',
  'country',
  'nationalId',
  'number',
  'boolean',
] as const;
export type FieldType = (typeof FIELD_TYPES)[number];

export const FIELD_CLASSES = ['direct', 'quasi', 'sensitive', 'public'] as const;
export type FieldClass = (typeof FIELD_CLASSES)[number];

/**
 * Egress forms, from the strongest protection to the weakest. A form may
 * replace the field's rule only if it comes at or before the rule here.
 * Stored policies depend on this order: never reorder it.
 */
export const EGRESS_FORMS = ['never', 'token', 'mask', 'generalize', 'clear'] as const;
export type EgressForm = (typeof EGRESS_FORMS)[number];

export const TOKEN_KINDS = ['deterministic', 'random', 'format-preserving'] as const;
export type TokenKind = (typeof TOKEN_KINDS)[number];

const identifier = z
  .string()
  .regex(/^[a-z][a-zA-Z0-9_]{0,62}$/, 'must start with a lowercase letter and contain only letters, digits and _');

const maskSchema = z.strictObject({
  keep: z.enum(['first', 'last']),
  count: z.number().int().min(0).max(64),
  maskChar: z.string().length(1).default('•'),
});

const generalizeSchema = z.union([
  z.strictObject({ date: z.enum(['year', 'yearMonth']) }),
  z.strictObject({ ageBand: z.number().int().min(1).max(100) }),
  z.strictObject({ prefix: z.number().int().min(0).max(32) }),
  z.strictObject({ bucket: z.number().positive() }),
]);
export type Generalization = z.infer<typeof generalizeSchema>;

/** Check digit schemes that a format-preserving token can keep valid. Stored policies name them: never rename one. */
export const CHECK_DIGITS = ['luhn', 'iban-mod97'] as const;
export type CheckDigit = (typeof CHECK_DIGITS)[number];

/** Domain handling of format-preserving email tokens: `tokenize` (the default) encrypts it into labels under `.invalid`, `keep` sends it in clear. */
export const EMAIL_DOMAIN_MODES = ['tokenize', 'keep'] as const;
export type EmailDomainMode = (typeof EMAIL_DOMAIN_MODES)[number];

/** Token kinds that a format-preserving field may fall back to when a value is too short for FF1. */
export const TOKEN_FALLBACKS = ['random'] as const;

const formatPreservingOnly = (option: 'checkDigit' | 'emailDomain' | 'fallback') => ({
  message: 'applies only to tokens of kind format-preserving',
  path: [option],
});

const tokenSchema = z
  .strictObject({
    kind: z.enum(TOKEN_KINDS).default('deterministic'),
    /** Fields that share a namespace give equal tokens for equal values, so they can be joined. */
    namespace: identifier.optional(),
    /**
     * Random tokens only: one token per value and namespace (found through a
     * keyed hash of the value), instead of a new unlinkable token per subject.
     */
    stable: z.boolean().optional(),
    /** Format-preserving only: the value carries this check digit, and the token carries a valid one too. */
    checkDigit: z.enum(CHECK_DIGITS).optional(),
    /** Format-preserving email fields only; `tokenize` when absent. */
    emailDomain: z.enum(EMAIL_DOMAIN_MODES).optional(),
    /**
     * Format-preserving only: the token kind of values whose FF1 domain is
     * below 1,000,000 (such as a 3-digit code). Without it such values are rejected.
     */
    fallback: z.enum(TOKEN_FALLBACKS).optional(),
  })
  .refine((token) => token.stable !== true || token.kind === 'random', {
    message: 'applies only to tokens of kind random',
    path: ['stable'],
  })
  .refine((token) => token.checkDigit === undefined || token.kind === 'format-preserving', formatPreservingOnly('checkDigit'))
  .refine((token) => token.emailDomain === undefined || token.kind === 'format-preserving', formatPreservingOnly('emailDomain'))
  .refine((token) => token.fallback === undefined || token.kind === 'format-preserving', formatPreservingOnly('fallback'));

const fieldSchema = z.strictObject({
  type: z.enum(FIELD_TYPES),
  class: z.enum(FIELD_CLASSES),
  egress: z.enum(EGRESS_FORMS),
  required: z.boolean().default(false),
  /** Maximum length in characters, after normalization. */
  maxLength: z.number().int().min(1).max(10_000).default(256),
  searchable: z.boolean().default(false),
  /**
   * Date fields only: `today` rejects dates after the current date in the
   * policy's time zone, for dates that cannot lie ahead, such as birth dates.
   */
  notAfter: z.literal('today').optional(),
  token: tokenSchema.optional(),
  mask: maskSchema.optional(),
  generalize: generalizeSchema.optional(),
  /** Labels for the widgets, keyed by locale (`en`, `de`, ...). */
  label: z.record(z.string(), z.string().max(200)).optional(),
});
export type FieldPolicy = z.infer<typeof fieldSchema>;

/** Field types whose values a check digit scheme can apply to. */
const CHECK_DIGIT_TYPES: readonly FieldType[] = ['nationalId', 'string'];

/** Cross-member rules of a field's token options, which the token schema alone cannot see. */
const checkedFieldSchema = fieldSchema
  .refine((field) => field.token?.checkDigit === undefined || CHECK_DIGIT_TYPES.includes(field.type), {
    message: 'applies only to fields of type nationalId or string',
    path: ['token', 'checkDigit'],
  })
  .refine((field) => field.token?.emailDomain === undefined || field.type === 'email', {
    message: 'applies only to fields of type email',
    path: ['token', 'emailDomain'],
  })
  .refine((field) => field.notAfter === undefined || field.type === 'date', {
    message: 'applies only to fields of type date',
    path: ['notAfter'],
  });

/** How long a record is kept after its last change; the worker role then erases its subject. */
const retentionSchema = z.strictObject({
  days: z.number().int().min(1).max(36_500),
});

const recordTypeSchema = z.strictObject({
  fields: z.record(identifier, checkedFieldSchema).refine((fields) => Object.keys(fields).length > 0, 'must declare at least one field'),
  retention: retentionSchema.optional(),
});
export type RecordTypePolicy = z.infer<typeof recordTypeSchema>;

const folderTarget = z.strictObject({
  kind: z.literal('folder'),
  /** Relative paths resolve against the data folder. */
  path: z.string().min(1),
});
const s3Target = z.strictObject({
  kind: z.literal('s3'),
  bucket: z.string().min(3).max(63),
  prefix: z.string().default(''),
  region: z.string().default('eu-central-1'),
  /** Endpoint of an S3-compatible service; the AWS default when absent. */
  endpoint: z.url().optional(),
  forcePathStyle: z.boolean().default(false),
});
const targetSchema = z.discriminatedUnion('kind', [folderTarget, s3Target]);
export type DestinationTarget = z.infer<typeof targetSchema>;

/**
 * Token namespaces of a destination: `shared` uses the fields' namespaces, the
 * same as the API and other shared destinations; `own` prefixes them with the
 * destination name, so its tokens cannot be joined with anyone else's.
 */
export const TOKEN_NAMESPACE_MODES = ['shared', 'own'] as const;
export type TokenNamespaceMode = (typeof TOKEN_NAMESPACE_MODES)[number];

const destinationSchema = z.strictObject({
  target: targetSchema,
  /** Absent means `shared`. */
  tokenNamespace: z.enum(TOKEN_NAMESPACE_MODES).optional(),
  /** Projection: record type, then field, then the form the destination receives. Fields left out are not sent. */
  records: z.record(identifier, z.record(identifier, z.enum(EGRESS_FORMS))),
});
export type DestinationPolicy = z.infer<typeof destinationSchema>;

export const policySchema = z.strictObject({
  version: z.number().int().min(1),
  /** Region used to read national phone numbers, as ISO 3166-1 alpha-2. */
  defaultRegion: z.string().regex(/^[A-Z]{2}$/, 'must be an ISO 3166-1 alpha-2 code such as DE'),
  /** IANA time zone in which date rules such as `notAfter: today` count days; UTC when absent. */
  timeZone: z.string().refine(isTimeZone, 'must be an IANA time zone such as Europe/Berlin').optional(),
  purposes: z.array(identifier).min(1),
  recordTypes: z.record(identifier, recordTypeSchema),
  destinations: z.record(identifier, destinationSchema).default({}),
});
export type Policy = z.infer<typeof policySchema>;
