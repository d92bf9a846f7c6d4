import { DomicileError, type EgressForm, type FieldPolicy, type TokenKind } from '../policy/index.ts';
import { deterministicToken } from './deterministic.ts';
import { formatPreservingToken, isBelowDomainFloor, type FormatPreservingOptions } from './format-preserving.ts';
import { generalizeValue } from './generalize.ts';
import type { Keyring } from './keyring.ts';
import { maskValue } from './mask.ts';
import type { NormalizedValue } from './normalize.ts';

export interface FormContext {
  keyring: Keyring;
  /** Token namespace of the field, from `fieldNamespace`. */
  namespace: string;
  /**
   * Returns the random token of a value. Random tokens need the store's mapping
   * table, so the store passes this; without it a random-token field throws.
   */
  randomToken?: (namespace: string, normalized: string) => string;
  /** Reference time of age bands; defaults to the current time. */
  now?: Date;
}

/** Token namespace of a field: `field.token.namespace` if set, else `<recordType>.<field>`. */
export function fieldNamespace(recordType: string, fieldName: string, field: FieldPolicy): string {
  return field.token?.namespace ?? `${recordType}.${fieldName}`;
}

/**
 * Token namespace of a destination whose policy sets `tokenNamespace: own`.
 * Field namespaces contain no `:`, so a prefixed namespace never equals a
 * shared one. Tokens stored abroad depend on this form: never change it.
 */
export function destinationNamespace(destinationName: string, namespace: string): string {
  return `destination:${destinationName}:${namespace}`;
}

/** Text that tokens and masks are computed over; numbers use their shortest JavaScript form. */
function asText(normalized: NormalizedValue): string {
  return typeof normalized === 'string' ? normalized : String(normalized);
}

/** Format-preserving options of a field's token policy. */
export function formatPreservingOptions(field: FieldPolicy): FormatPreservingOptions {
  return { checkDigit: field.token?.checkDigit, emailDomain: field.token?.emailDomain };
}

/**
 * Returns the token kind that a value of the field gets: the policy's kind,
 * except that a format-preserving field with `fallback: random` gives a
 * random token to a value below the FF1 domain floor. Egress paths call it to
 * know which values need a random token from the store.
 */
export function tokenKindOf(field: FieldPolicy, normalized: NormalizedValue): TokenKind {
  const kind = field.token?.kind ?? 'deterministic';
  if (kind === 'format-preserving' && field.token?.fallback === 'random' && isBelowDomainFloor(field.type, asText(normalized), formatPreservingOptions(field))) {
    return 'random';
  }
  return kind;
}

function tokenize(field: FieldPolicy, normalized: NormalizedValue, context: FormContext): string {
  const text = asText(normalized);
  switch (tokenKindOf(field, normalized)) {
    case 'deterministic':
      return deterministicToken(context.keyring, context.namespace, text);
    case 'format-preserving':
      return formatPreservingToken(context.keyring, context.namespace, field.type, text, undefined, formatPreservingOptions(field));
    case 'random':
      if (context.randomToken === undefined) {
        throw new DomicileError('internal', 'random tokens need the store: no randomToken callback was given');
      }
      return context.randomToken(context.namespace, text);
  }
}

/**
 * Turns an in-country normalized value into `form`, the form it may take
 * abroad: `never` gives undefined (the field is left out), `clear` the value,
 * `token` a token of `field.token.kind`, `mask` and `generalize` apply the
 * field's rule. The caller chooses the form and must check it against the
 * field's egress rule (`isAtLeastAsStrong` of policy/); this function does not.
 */
export function applyForm(
  field: FieldPolicy,
  form: EgressForm,
  normalized: NormalizedValue,
  context: FormContext,
): NormalizedValue | undefined {
  switch (form) {
    case 'never':
      return undefined;
    case 'clear':
      return normalized;
    case 'token':
      return tokenize(field, normalized, context);
    case 'mask':
      if (field.mask === undefined) {
        throw new DomicileError('invalid_policy', 'field has no mask rule');
      }
      return maskValue(asText(normalized), field.mask);
    case 'generalize':
      if (field.generalize === undefined) {
        throw new DomicileError('invalid_policy', 'field has no generalize rule');
      }
      return generalizeValue(field.type, normalized, field.generalize, context.now);
  }
}
