import type { EgressForm, Policy } from '../policy/index.ts';
import type { RecordView } from '../store/types.ts';
import { applyForm, fieldNamespace } from '../tokenizer/form.ts';
import type { Keyring } from '../tokenizer/keyring.ts';

export interface RecordResponse {
  subjectToken: string;
  recordType: string;
  version: number;
  policyVersion: number;
  updatedAt: string;
  values: Record<string, string | number | boolean>;
  /** Form of each returned value: `clear` in the country, the field's egress rule abroad. */
  forms: Record<string, EgressForm>;
}

/**
 * Shapes a record for a caller. In-country callers get clear values. Callers
 * abroad get each field in the form of its egress rule, so `never` fields are
 * left out and no field is weaker than its rule, whatever the caller's scopes.
 */
export function recordForCaller(
  policy: Policy,
  keyring: Keyring,
  view: RecordView,
  location: 'in-country' | 'abroad',
): RecordResponse {
  const recordType = policy.recordTypes[view.recordType];
  const values: Record<string, string | number | boolean> = {};
  const forms: Record<string, EgressForm> = {};

  for (const [fieldName, value] of Object.entries(view.values)) {
    const field = recordType?.fields[fieldName];
    // A field that the current policy no longer declares has no egress rule,
    // so it is treated as `never`.
    if (field === undefined) {
      continue;
    }
    // NOTE: the store keeps no mapping table for random tokens yet, so a
    // random-token field cannot be shown abroad and is left out, which is
    // stronger than its rule.
    if (location === 'abroad' && field.egress === 'token' && field.token?.kind === 'random') {
      continue;
    }
    const form: EgressForm = location === 'in-country' ? 'clear' : field.egress;
    const shaped = applyForm(field, form, value, { keyring, namespace: fieldNamespace(view.recordType, fieldName, field) });
    if (shaped !== undefined) {
      values[fieldName] = shaped;
      forms[fieldName] = form;
    }
  }

  return {
    subjectToken: view.subjectToken,
    recordType: view.recordType,
    version: view.version,
    policyVersion: view.policyVersion,
    updatedAt: view.updatedAt,
    values,
    forms,
  };
}
