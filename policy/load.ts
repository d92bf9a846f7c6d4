import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { DomicileError, jsonPath, type Issue } from './errors.ts';
import { EGRESS_FORMS, policySchema, type EgressForm, type Policy } from './schema.ts';

/** True if `form` protects at least as much as `rule`, so it may replace it abroad. */
export function isAtLeastAsStrong(form: EgressForm, rule: EgressForm): boolean {
  return EGRESS_FORMS.indexOf(form) <= EGRESS_FORMS.indexOf(rule);
}

function zodIssues(error: z.ZodError): Issue[] {
  return error.issues.map((issue) => ({ path: jsonPath(issue.path), message: issue.message }));
}

/** Checks that need more than one part of the policy at once. */
function crossCheck(policy: Policy): Issue[] {
  const issues: Issue[] = [];

  for (const [typeName, recordType] of Object.entries(policy.recordTypes)) {
    for (const [fieldName, field] of Object.entries(recordType.fields)) {
      const at = `$.recordTypes.${typeName}.fields.${fieldName}`;
      if (field.egress === 'mask' && field.mask === undefined) {
        issues.push({ path: `${at}.mask`, message: 'is required when egress is mask' });
      }
      if (field.egress === 'generalize' && field.generalize === undefined) {
        issues.push({ path: `${at}.generalize`, message: 'is required when egress is generalize' });
      }
    }
  }

  for (const [destName, destination] of Object.entries(policy.destinations)) {
    for (const [typeName, projection] of Object.entries(destination.records)) {
      const recordType = policy.recordTypes[typeName];
      const at = `$.destinations.${destName}.records.${typeName}`;
      if (recordType === undefined) {
        issues.push({ path: at, message: 'names a record type that the policy does not declare' });
        continue;
      }
      for (const [fieldName, form] of Object.entries(projection)) {
        const field = recordType.fields[fieldName];
        if (field === undefined) {
          issues.push({ path: `${at}.${fieldName}`, message: 'names a field that the record type does not declare' });
        } else if (form === 'never') {
          issues.push({ path: `${at}.${fieldName}`, message: 'is never sent: leave the field out of the projection' });
        } else if (!isAtLeastAsStrong(form, field.egress)) {
          issues.push({
            path: `${at}.${fieldName}`,
            message: `asks for form ${form}, weaker than the field's egress rule ${field.egress}`,
          });
        } else if (form === 'mask' && field.mask === undefined) {
          issues.push({ path: `${at}.${fieldName}`, message: 'asks for form mask but the field declares no mask' });
        } else if (form === 'generalize' && field.generalize === undefined) {
          issues.push({ path: `${at}.${fieldName}`, message: 'asks for form generalize but the field declares no generalize' });
        }
      }
    }
  }
  return issues;
}

/** Validates a parsed policy document and returns it with defaults applied. */
export function parsePolicy(document: unknown): Policy {
  const result = policySchema.safeParse(document);
  if (!result.success) {
    const issues = zodIssues(result.error);
    throw new DomicileError('invalid_policy', `invalid data policy: ${describe(issues)}`, { issues });
  }
  const issues = crossCheck(result.data);
  if (issues.length > 0) {
    throw new DomicileError('invalid_policy', `invalid data policy: ${describe(issues)}`, { issues });
  }
  return result.data;
}

/** Reads a YAML or JSON policy file (JSON is valid YAML) and validates it. */
export function loadPolicyFile(file: string): Policy {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (cause) {
    throw new DomicileError('invalid_policy', `cannot read data policy file ${file}`, { cause });
  }
  let document: unknown;
  try {
    document = parseYaml(text);
  } catch (cause) {
    throw new DomicileError('invalid_policy', `data policy file ${file} is not valid YAML or JSON`, { cause });
  }
  return parsePolicy(document);
}

function describe(issues: readonly Issue[]): string {
  return issues.map((issue) => `${issue.path} ${issue.message}`).join('; ');
}
