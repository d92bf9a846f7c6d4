import type { RequestHandler } from 'express';
import type { z } from 'zod';
import { DomicileError, jsonPath, unknownKeyIssue, type Issue, type Policy } from '../policy/index.ts';
import type { Credential, CredentialOperation } from '../store/credentials.ts';
import { requireScope } from './auth.ts';

/** Maximum size of a JSON request body. Larger bodies are rejected with 413. */
export const BODY_LIMIT = '64kb';

/** Returns the part of `input` at a zod issue path, or undefined when the path leaves the input. */
function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let current = input;
  for (const key of path) {
    if (typeof current !== 'object' || current === null || typeof key === 'symbol' || !Object.hasOwn(current, key)) {
      return undefined;
    }
    current = (current as Record<string | number, unknown>)[key];
  }
  return current;
}

/**
 * Turns zod issues into issues whose paths start at `root` (`$` for the body,
 * `query`, `header.<name>`). Zod's messages name the expected type or length,
 * not the received value. Unknown keys are the exception: zod lists them, and
 * a key may be personal data sent as a name, so each one is reported by its
 * position in its object instead (see unknownKeyIssue).
 */
function toIssues(error: z.ZodError, input: unknown, root: string): Issue[] {
  const at = (path: readonly PropertyKey[]): string => (root === '$' ? jsonPath(path) : `${root}${jsonPath(path).slice(1)}`);
  return error.issues.flatMap((issue): Issue[] => {
    if (issue.code !== 'unrecognized_keys') {
      return [{ path: at(issue.path), message: issue.message }];
    }
    const container = valueAt(input, issue.path);
    const object = typeof container === 'object' && container !== null ? container : {};
    const what = root.startsWith('$') ? 'an unknown field' : 'an unknown parameter';
    return issue.keys.map((key) => unknownKeyIssue(at(issue.path), object, key, what));
  });
}

/** Parses `input` with a zod schema or throws `invalid_request` with one issue per problem. */
export function parseInput<T extends z.ZodType>(schema: T, input: unknown, root: string): z.output<T> {
  const result = schema.safeParse(input);
  if (result.success) {
    return result.data;
  }
  const issues = toIssues(result.error, input, root);
  const summary = issues.map((issue) => `${issue.path} ${issue.message}`).join('; ');
  throw new DomicileError('invalid_request', `invalid request: ${summary}`, { issues });
}

/** Rejects a request body that is not JSON with 415, before any parser reads it. */
/**
 * Reports whether a Content-Type names no charset or UTF-8 only. The JSON
 * parser would decode other UTF charsets such as UTF-16 and then fail on the
 * text, and parsers disagree on which of two charset parameters counts and
 * on spaces around `=`. So every `;`-separated part whose name, trimmed, is
 * `charset` counts, also one inside a quoted value, and anything but exactly
 * one `utf-8` or none is rejected rather than guessed.
 */
function isUtf8ContentType(header: string): boolean {
  const charsets = header
    .split(';')
    .slice(1)
    .map((part) => {
      const equals = part.indexOf('=');
      return equals < 0 ? undefined : { name: part.slice(0, equals).trim().toLowerCase(), value: part.slice(equals + 1).trim() };
    })
    .filter((parameter) => parameter !== undefined && parameter.name === 'charset');
  if (charsets.length === 0) {
    return true;
  }
  const value = charsets[0]?.value.replace(/^"(.*)"$/, '$1').toLowerCase();
  return charsets.length === 1 && value === 'utf-8';
}

export const requireJsonBody: RequestHandler = (req, _res, next) => {
  const hasBody = req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0');
  if (hasBody && req.is('application/json') === false) {
    next(new DomicileError('unsupported_media_type', 'request body must be application/json'));
    return;
  }
  if (hasBody && !isUtf8ContentType(req.headers['content-type'] ?? '')) {
    next(new DomicileError('unsupported_media_type', 'request body must be JSON in UTF-8'));
    return;
  }
  next();
};

/** Throws `invalid_request` naming `path` unless the policy declares the record type. */
export function requireRecordType(policy: Policy, recordType: string, path: string): void {
  if (!Object.hasOwn(policy.recordTypes, recordType)) {
    throw new DomicileError('invalid_request', `${path} names a record type that the data policy does not declare`, {
      issues: [{ path, message: 'names a record type that the data policy does not declare' }],
    });
  }
}

/** Throws `invalid_request` naming `path` unless the policy lists the access purpose. */
export function requirePurpose(policy: Policy, purpose: string | undefined, path: string): string {
  if (purpose === undefined || purpose === '') {
    throw new DomicileError('invalid_request', `${path} is missing: name the access purpose`, {
      issues: [{ path, message: 'is required' }],
    });
  }
  if (!policy.purposes.includes(purpose)) {
    throw new DomicileError('invalid_request', `${path} is not an access purpose of the data policy`, {
      issues: [{ path, message: `must be one of ${policy.purposes.join(', ')}` }],
    });
  }
  return purpose;
}

/**
 * Parses a request part that names a record type, then checks that the policy
 * declares the type and that the credential holds `operation` for it. The
 * checks run in this order, so an unknown type is a 400 before any 403.
 */
export function parseScopedInput<T extends z.ZodType<{ recordType: string }>>(
  schema: T,
  input: unknown,
  root: string,
  policy: Policy,
  credential: Credential,
  operation: CredentialOperation,
): z.output<T> {
  const parsed = parseInput(schema, input, root);
  requireRecordType(policy, parsed.recordType, `${root}.recordType`);
  requireScope(credential, operation, parsed.recordType);
  return parsed;
}
