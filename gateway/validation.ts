import type { RequestHandler } from 'express';
import type { z } from 'zod';
import { DomicileError, jsonPath, type Issue, type Policy } from '../policy/index.ts';

/** Maximum size of a JSON request body. Records of the policy are far smaller; larger bodies are rejected with 413. */
export const BODY_LIMIT = '64kb';

/**
 * Parses `input` with a zod schema or throws `invalid_request` with one issue
 * per problem. Paths start at `root` (`$` for the body, `query`, `params`);
 * zod's messages name the expected type, never the received value.
 */
export function parseInput<T extends z.ZodType>(schema: T, input: unknown, root: string): z.output<T> {
  const result = schema.safeParse(input);
  if (result.success) {
    return result.data;
  }
  const issues: Issue[] = result.error.issues.map((issue) => ({
    path: root === '$' ? jsonPath(issue.path) : `${root}${jsonPath(issue.path).slice(1)}`,
    message: issue.message,
  }));
  const summary = issues.map((issue) => `${issue.path} ${issue.message}`).join('; ');
  throw new DomicileError('invalid_request', `invalid request: ${summary}`, { issues });
}

/** Rejects a request body that is not JSON with 415, before any parser reads it. */
export const requireJsonBody: RequestHandler = (req, _res, next) => {
  const hasBody = req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0');
  if (hasBody && req.is('application/json') === false) {
    next(new DomicileError('unsupported_media_type', 'request body must be application/json'));
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
