import { DomicileError } from '../policy/errors.ts';
import { isAtLeastAsStrong } from '../policy/load.ts';
import type { Policy } from '../policy/schema.ts';
import type { RecordView } from '../store/types.ts';
import { applyForm, fieldNamespace } from '../tokenizer/form.ts';
import type { Keyring } from '../tokenizer/keyring.ts';

/**
 * What a destination stores of one record. Serialized as JSON into the object
 * `<prefix>/<recordType>/<subjectToken>.json`; receivers parse this shape, so
 * rename or remove no property.
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
}

/**
 * Projects a record for one destination: every field that the destination's
 * projection names is turned into its form with `applyForm`, and every other
 * field is left out. Throws DomicileError `internal` when the policy does not
 * let the destination receive the record type, or when a form is weaker than
 * the field's egress rule. Policy validation already rejects such a form, and
 * this second check guards the path where values leave the country.
 */
export function projectRecord(policy: Policy, destinationName: string, view: RecordView, keyring: Keyring): PartialCopy {
  const at = `$.destinations.${destinationName}.records.${view.recordType}`;
  const destination = policy.destinations[destinationName];
  if (destination === undefined) {
    throw new DomicileError('internal', `$.destinations.${destinationName} is not declared in the data policy`);
  }
  const projection = destination.records[view.recordType];
  const recordType = policy.recordTypes[view.recordType];
  if (projection === undefined || recordType === undefined) {
    throw new DomicileError('internal', `${at} is not declared in the data policy, so the destination receives no such record`);
  }

  const fields: Record<string, string | number | boolean> = {};
  for (const [fieldName, form] of Object.entries(projection)) {
    const field = recordType.fields[fieldName];
    if (field === undefined) {
      throw new DomicileError('internal', `${at}.${fieldName} names a field that the record type does not declare`);
    }
    if (form === 'never' || !isAtLeastAsStrong(form, field.egress)) {
      throw new DomicileError('internal', `${at}.${fieldName} asks for form ${form}, weaker than the field's egress rule ${field.egress}`);
    }

    const value = view.values[fieldName];
    if (value === undefined) {
      continue;
    }
    const projected = applyForm(field, form, value, { keyring, namespace: fieldNamespace(view.recordType, fieldName, field) });
    if (projected !== undefined) {
      fields[fieldName] = projected;
    }
  }

  return {
    subjectToken: view.subjectToken,
    recordType: view.recordType,
    version: view.version,
    policyVersion: view.policyVersion,
    updatedAt: view.updatedAt,
    fields,
  };
}

/** Serializes a partial copy as UTF-8 JSON with a final newline. */
export function serializePartialCopy(copy: PartialCopy): Buffer {
  return Buffer.from(`${JSON.stringify(copy)}\n`, 'utf8');
}
