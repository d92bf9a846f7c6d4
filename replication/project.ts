import { DomicileError } from '../policy/errors.ts';
import { isAtLeastAsStrong } from '../policy/load.ts';
import type { EgressForm, FieldPolicy, Policy } from '../policy/schema.ts';
import type { RandomTokenRequest } from '../store/token-store.ts';
import type { RecordView } from '../store/types.ts';
import { parseToken } from '../tokenizer/deterministic.ts';
import { applyForm, destinationNamespace, fieldNamespace, tokenKindOf, type FormContext } from '../tokenizer/form.ts';
import type { Keyring } from '../tokenizer/keyring.ts';

/**
 * The part of one record that a destination stores, serialized as JSON into
 * the object `<prefix>/<recordType>/<subjectToken>.json`. Receivers parse this
 * shape, so never rename or remove a property.
 */
export interface PartialCopy {
  subjectToken: string;
  recordType: string;
  /** Record version in the country; a receiver keeps the copy with the highest version. */
  version: number;
  /** Version of the data policy that produced the projection. */
  policyVersion: number;
  /** ISO 8601 time of the record's last change in the country. */
  updatedAt: string;
  /** The fields that the destination's projection names, each in its projected form. Fields without a value are absent. */
  fields: Record<string, string | number | boolean>;
  /**
   * Tokenization key version of each field sent as a token. Format-preserving
   * tokens cannot carry their version, and detokenizing them needs it. Absent
   * when the copy holds no token.
   */
  tokenVersions?: Record<string, number>;
}

/** One field of a destination's projection, checked against the policy. */
export interface ProjectedField {
  name: string;
  field: FieldPolicy;
  form: Exclude<EgressForm, 'never'>;
  /** Token namespace in this destination's copies. */
  namespace: string;
}

/**
 * Returns the fields that `destinationName` receives of `recordType`, in
 * projection order. Throws DomicileError `internal` when the policy does not
 * let the destination receive the record type, or when a form is weaker than
 * the field's egress rule. Policy validation already rejects such a form, and
 * this second check guards the path where values leave the country.
 */
export function projectedFields(policy: Policy, destinationName: string, recordTypeName: string): ProjectedField[] {
  const at = `$.destinations.${destinationName}.records.${recordTypeName}`;
  const destination = Object.hasOwn(policy.destinations, destinationName) ? policy.destinations[destinationName] : undefined;
  if (destination === undefined) {
    throw new DomicileError('internal', `$.destinations.${destinationName} is not declared in the data policy`);
  }
  const projection = Object.hasOwn(destination.records, recordTypeName) ? destination.records[recordTypeName] : undefined;
  const recordType = Object.hasOwn(policy.recordTypes, recordTypeName) ? policy.recordTypes[recordTypeName] : undefined;
  if (projection === undefined || recordType === undefined) {
    throw new DomicileError('internal', `${at} is not declared in the data policy, so the destination receives no such record`);
  }

  const fields: ProjectedField[] = [];
  for (const [name, form] of Object.entries(projection)) {
    const field = Object.hasOwn(recordType.fields, name) ? recordType.fields[name] : undefined;
    if (field === undefined) {
      throw new DomicileError('internal', `${at}.${name} names a field that the record type does not declare`);
    }
    if (form === 'never' || !isAtLeastAsStrong(form, field.egress)) {
      throw new DomicileError('internal', `${at}.${name} asks for form ${form}, weaker than the field's egress rule ${field.egress}`);
    }
    let namespace = fieldNamespace(recordTypeName, name, field);
    if (destination.tokenNamespace === 'own') {
      namespace = destinationNamespace(destinationName, namespace);
    }
    fields.push({ name, field, form, namespace });
  }
  return fields;
}

/**
 * Lists the random tokens that projecting `view` for the destination needs,
 * for the token store to prepare before `projectRecord` runs.
 */
export function randomTokenRequests(policy: Policy, destinationName: string, view: RecordView): RandomTokenRequest[] {
  const requests: RandomTokenRequest[] = [];
  for (const { name, field, form, namespace } of projectedFields(policy, destinationName, view.recordType)) {
    const value = view.values[name];
    if (form === 'token' && value !== undefined && tokenKindOf(field, value) === 'random') {
      // Text as applyForm passes it to the randomToken callback: numbers and booleans in their JavaScript form.
      // Fallback tokens of format-preserving fields are stable, like the FF1 tokens they stand in for.
      requests.push({ namespace, value: typeof value === 'string' ? value : String(value), stable: field.token?.stable === true || field.token?.kind === 'format-preserving' });
    }
  }
  return requests;
}

/**
 * Projects a record for one destination: every field that the destination's
 * projection names is turned into its form with `applyForm`, and every other
 * field is left out. Random tokens come from `options.randomToken`, which the
 * caller prepares with `randomTokenRequests`; without it a random-token field
 * throws. Throws as `projectedFields` does for a projection that the policy
 * does not allow.
 */
export function projectRecord(
  policy: Policy,
  destinationName: string,
  view: RecordView,
  keyring: Keyring,
  options: { randomToken?: FormContext['randomToken'] } = {},
): PartialCopy {
  const fields: Record<string, string | number | boolean> = {};
  const tokenVersions: Record<string, number> = {};
  for (const { name, field, form, namespace } of projectedFields(policy, destinationName, view.recordType)) {
    const value = view.values[name];
    if (value === undefined) {
      continue;
    }
    const context: FormContext = { keyring, namespace, ...(options.randomToken === undefined ? {} : { randomToken: options.randomToken }) };
    const projected = applyForm(field, form, value, context);
    if (projected !== undefined) {
      fields[name] = projected;
    }
    if (projected !== undefined && form === 'token') {
      // Deterministic and random tokens name their version; format-preserving tokens use the current one.
      tokenVersions[name] = (typeof projected === 'string' ? parseToken(projected)?.version : undefined) ?? keyring.currentVersion;
    }
  }

  return {
    subjectToken: view.subjectToken,
    recordType: view.recordType,
    version: view.version,
    policyVersion: view.policyVersion,
    updatedAt: view.updatedAt,
    fields,
    ...(Object.keys(tokenVersions).length === 0 ? {} : { tokenVersions }),
  };
}

/** Serializes a partial copy as UTF-8 JSON with a final newline. */
export function serializePartialCopy(copy: PartialCopy): Buffer {
  return Buffer.from(`${JSON.stringify(copy)}\n`, 'utf8');
}
