import type { Issue } from '../policy/errors.ts';
import { DomicileError, unknownKeyIssue } from '../policy/errors.ts';
import { calendarDate } from '../policy/calendar.ts';
import type { FieldPolicy, Policy, RecordTypePolicy } from '../policy/schema.ts';
import { normalizeValue } from '../tokenizer/normalize.ts';
import type { NormalizedValue } from './record-crypto.ts';

export interface ValidatedValues {
  recordPolicy: RecordTypePolicy;
  /** Normalized values to store, by field name. */
  set: Map<string, NormalizedValue>;
  /** Fields to remove (update only: the request set them to null). */
  remove: string[];
}

/**
 * Checks the record type, the access purpose and every value, and normalizes
 * the values. Collects every problem before it throws, so a caller can fix a
 * request in one round. Issues name JSON paths, never values.
 */
export function validateValues(
  policy: Policy,
  input: { recordType: string; purpose: string; values: unknown; mode: 'create' | 'update' },
): ValidatedValues {
  const structural: Issue[] = [];
  const invalid: Issue[] = [];

  const recordPolicy = policy.recordTypes[input.recordType];
  if (recordPolicy === undefined) {
    structural.push({ path: '$.recordType', message: 'is not a record type of the data policy' });
  }
  checkPurpose(policy, input.purpose, structural);

  const result: ValidatedValues = { recordPolicy: recordPolicy ?? { fields: {} }, set: new Map(), remove: [] };
  if (!isPlainObject(input.values)) {
    structural.push({ path: '$.values', message: 'must be an object of field names and values' });
  } else if (recordPolicy !== undefined) {
    collectValues(policy, recordPolicy, input, input.values, result, structural, invalid);
  }

  const issues = [...structural, ...invalid];
  if (issues.length > 0) {
    const code = structural.length > 0 ? 'invalid_request' : 'invalid_value';
    const summary = issues.map((issue) => `${issue.path} ${issue.message}`).join('; ');
    throw new DomicileError(code, `invalid request: ${summary}`, { issues });
  }
  return result;
}

export function checkPurpose(policy: Policy, purpose: string, issues: Issue[]): void {
  if (!policy.purposes.includes(purpose)) {
    issues.push({ path: '$.purpose', message: 'is not an access purpose of the data policy' });
  }
}

/** Throws `invalid_request` when the purpose is not declared by the policy. */
export function requirePurpose(policy: Policy, purpose: string): void {
  const issues: Issue[] = [];
  checkPurpose(policy, purpose, issues);
  if (issues.length > 0) {
    throw new DomicileError('invalid_request', 'invalid request: $.purpose is not an access purpose of the data policy', { issues });
  }
}

function collectValues(
  policy: Policy,
  recordPolicy: RecordTypePolicy,
  input: { recordType: string; mode: 'create' | 'update' },
  values: Record<string, unknown>,
  result: ValidatedValues,
  structural: Issue[],
  invalid: Issue[],
): void {
  for (const name of Object.keys(values)) {
    if (!Object.hasOwn(recordPolicy.fields, name)) {
      structural.push(unknownKeyIssue('$.values', values, name, `a field that record type ${input.recordType} does not declare`));
    }
  }

  for (const [name, field] of Object.entries(recordPolicy.fields)) {
    const path = `$.values.${name}`;
    const raw = Object.hasOwn(values, name) ? values[name] : undefined;

    if (raw === undefined || raw === null) {
      if (input.mode === 'create' && field.required) {
        structural.push({ path, message: 'is required' });
      } else if (input.mode === 'update' && raw === null) {
        if (field.required) {
          structural.push({ path, message: 'is required and cannot be removed' });
        } else {
          result.remove.push(name);
        }
      }
      continue;
    }

    try {
      const normalized = normalizeValue(field.type, raw, { defaultRegion: policy.defaultRegion, maxLength: field.maxLength });
      const problem = dateRuleProblem(policy, field, normalized);
      if (problem !== undefined) {
        invalid.push({ path, message: problem });
        continue;
      }
      result.set.set(name, normalized);
    } catch (error) {
      if (!(error instanceof DomicileError)) {
        throw error;
      }
      invalid.push({ path, message: error.message });
    }
  }

  if (input.mode === 'update' && result.set.size === 0 && result.remove.length === 0 && structural.length === 0 && invalid.length === 0) {
    structural.push({ path: '$.values', message: 'must contain at least one field' });
  }
}

/** Checks a normalized date against the field's `notAfter` rule; returns the problem or undefined. */
function dateRuleProblem(policy: Policy, field: FieldPolicy, normalized: NormalizedValue): string | undefined {
  if (field.notAfter !== 'today' || typeof normalized !== 'string') {
    return undefined;
  }
  // `YYYY-MM-DD` strings of the same length sort like the dates they name.
  const today = calendarDate(new Date(), policy.timeZone);
  if (normalized > today) {
    return `must not be after today (${today} in ${policy.timeZone ?? 'UTC'})`;
  }
  return undefined;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return false;
  }
  const prototype: unknown = Object.getPrototypeOf(value);
  return prototype === Object.prototype || prototype === null;
}
