import { DomicileError, EGRESS_FORMS, isAtLeastAsStrong, type EgressForm, type FieldPolicy, type Policy } from '../policy/index.ts';
import type { CredentialScopes } from '../store/credentials.ts';
import type { RecordView } from '../store/types.ts';
import { applyForm, fieldNamespace, type FormContext } from '../tokenizer/form.ts';
import type { Keyring } from '../tokenizer/keyring.ts';

/** A record view as returned to one caller: only the fields it may see, each in its form. */
export interface RecordResponse extends RecordView {
  /** Form of each returned value, never weaker than the caller's grant nor, abroad, the field's egress rule. */
  forms: Record<string, EgressForm>;
}

/** Viewer of a record: the caller's location and the field-level part of its scopes. */
export interface Viewer {
  location: 'in-country' | 'abroad';
  scopes: Pick<CredentialScopes, 'fields'>;
}

/**
 * Returns the weakest form that a viewer may receive a field in, before any
 * check of what the field can produce. The grant of the credential comes
 * first: a record type listed in `scopes.fields` gives only its listed
 * fields, and a record type left out gives every field in the default form
 * (clear in the country, the egress rule abroad). Abroad, the result is then
 * raised to the field's egress rule when the grant is weaker.
 */
export function grantedForm(viewer: Viewer, recordType: string, fieldName: string, field: FieldPolicy): EgressForm {
  const typeGrants = viewer.scopes.fields?.[recordType];
  let form: EgressForm;
  if (typeGrants === undefined) {
    form = viewer.location === 'in-country' ? 'clear' : field.egress;
  } else {
    form = Object.hasOwn(typeGrants, fieldName) ? (typeGrants[fieldName] ?? 'never') : 'never';
  }
  if (viewer.location === 'abroad' && !isAtLeastAsStrong(form, field.egress)) {
    form = field.egress;
  }
  return form;
}

/**
 * Reports whether the field can produce `form`. A random token needs the
 * store's mapping table, so it counts only when `randomTokens` is true because the caller
 * prepared the mappings; mask and generalize need the field's rule.
 */
function canProduce(field: FieldPolicy, form: EgressForm, randomTokens: boolean): boolean {
  switch (form) {
    case 'token':
      return randomTokens || field.token?.kind !== 'random';
    case 'mask':
      return field.mask !== undefined;
    case 'generalize':
      return field.generalize !== undefined;
    default:
      return true;
  }
}

/**
 * Returns the form a field is sent in: the granted form, or the next stronger
 * one that the field can produce. Moving toward `never` only ever protects
 * more, so the fallback cannot weaken what the caller receives.
 */
export function effectiveForm(viewer: Viewer, recordType: string, fieldName: string, field: FieldPolicy, randomTokens = false): EgressForm {
  const granted = grantedForm(viewer, recordType, fieldName, field);
  for (let index = EGRESS_FORMS.indexOf(granted); index > 0; index -= 1) {
    const form = EGRESS_FORMS[index];
    if (form !== undefined && canProduce(field, form, randomTokens)) {
      return form;
    }
  }
  return 'never';
}

/**
 * Shapes a record for a caller: each field in its effective form, and fields
 * whose form is `never` left out. A field that the current policy no longer
 * declares has no egress rule, so it is treated as `never`. Random-token
 * fields need `randomToken`, which `recordWithRandomTokens` prepares; without
 * it they fall back to a stronger form.
 */
export function recordForCaller(
  policy: Policy,
  keyring: Keyring,
  view: RecordView,
  viewer: Viewer,
  randomToken?: (namespace: string, value: string) => string,
): RecordResponse {
  const recordType = policy.recordTypes[view.recordType];
  const values: Record<string, string | number | boolean> = {};
  const forms: Record<string, EgressForm> = {};

  for (const [fieldName, value] of Object.entries(view.values)) {
    const field = recordType?.fields[fieldName];
    if (field === undefined) {
      continue;
    }
    const form = effectiveForm(viewer, view.recordType, fieldName, field, randomToken !== undefined);
    if (form === 'never') {
      continue;
    }
    const context = { keyring, namespace: fieldNamespace(view.recordType, fieldName, field), ...(randomToken === undefined ? {} : { randomToken }) };
    const shaped = applyFormOrNever(field, form, value, context);
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

/**
 * Applies a form, leaving the field out when the field's rule does not fit
 * its type (a policy can declare a date generalization on a string field).
 * Leaving it out is stronger than any form, so no value leaks by the error.
 */
function applyFormOrNever(
  field: FieldPolicy,
  form: EgressForm,
  value: string | number | boolean,
  context: FormContext,
): string | number | boolean | undefined {
  try {
    return applyForm(field, form, value, context);
  } catch (error) {
    if (error instanceof DomicileError && error.status < 500) {
      return undefined;
    }
    throw error;
  }
}
