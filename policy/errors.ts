/**
 * The one error base class of Domicile. It lives in policy/ because policy/ is
 * the only module that every other module may import.
 *
 * Messages name the field or JSON path and the problem, never the value, so an
 * error can be logged or returned to a caller abroad.
 */
export const ERROR_STATUS = {
  invalid_request: 400,
  invalid_policy: 400,
  invalid_value: 400,
  unauthenticated: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  gone: 410,
  precondition_failed: 412,
  precondition_required: 428,
  payload_too_large: 413,
  unsupported_media_type: 415,
  rate_limited: 429,
  internal: 500,
  upstream_unavailable: 502,
  upstream_timeout: 504,
  unavailable: 503,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

/** One problem in a request or file: where (a JSON path) and what, never the value. */
export interface Issue {
  path: string;
  message: string;
}

export class DomicileError extends Error {
  readonly code: ErrorCode;
  readonly issues: readonly Issue[];

  constructor(code: ErrorCode, message: string, options: { issues?: readonly Issue[]; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'DomicileError';
    this.code = code;
    this.issues = options.issues ?? [];
  }

  get status(): number {
    return ERROR_STATUS[this.code];
  }
}

/** Formats a path of keys and indexes as a JSON path such as `$.fields.email`. */
export function jsonPath(path: readonly PropertyKey[]): string {
  let out = '$';
  for (const key of path) {
    out += typeof key === 'number' ? `[${key}]` : `.${String(key)}`;
  }
  return out;
}

/**
 * Builds the issue for a key that the schema does not declare, at the JSON
 * path of the object that contains it. The key is never echoed, because a
 * client may send personal data as a key name (`{"jane@example.com": 1}`).
 * Its 1-based position among the object's own keys identifies the key for
 * the caller; JavaScript lists integer-like keys first, in ascending order.
 */
export function unknownKeyIssue(objectPath: string, object: object, key: string, what: string): Issue {
  const position = Object.keys(object).indexOf(key) + 1;
  const where = position > 0 ? ` at key position ${position}` : '';
  return { path: objectPath, message: `contains ${what}${where}; unknown names are not repeated` };
}
