import type { ErrorRequestHandler, RequestHandler, Response } from 'express';
import type { Logger } from 'pino';
import { DomicileError, type ErrorCode, type Issue } from '../policy/index.ts';
import { createCountedLog } from '../store/counted-log.ts';
import { requestIdOf } from './request-log.ts';

/** Fixed message of every unexpected failure; details go to the log under the request id. */
const INTERNAL_MESSAGE = 'internal error: the gateway logged it under the request id';
/** SQLSTATE that the database raises for a write under a retired tokenization key version (migration 007). */
const RETIRED_KEY_VERSION = 'DK001';

/** Sends the error body shape of every gateway error response. */
export function sendError(res: Response, code: ErrorCode, message: string, issues: readonly Issue[] = []): void {
  const status = new DomicileError(code, message).status;
  res.status(status).type('application/json').json({ error: { code, message, issues } });
}

interface BodyParserError {
  type: string;
  status: number;
}

/** Errors of Express' body parsers carry a `type` such as `entity.too.large`, and the raw body, which is never echoed. */
function isBodyParserError(error: unknown): error is BodyParserError {
  return (
    typeof error === 'object' &&
    error !== null &&
    'type' in error &&
    typeof error.type === 'string' &&
    'status' in error &&
    typeof error.status === 'number'
  );
}

/** Reports whether the parser rejected valid JSON that is not an object or array, such as `null` or `"text"`. */
function isBareJsonValue(error: BodyParserError): boolean {
  const body: unknown = (error as { body?: unknown }).body;
  if (typeof body !== 'string') {
    return false;
  }
  try {
    JSON.parse(body);
    return true;
  } catch {
    return false;
  }
}

function bodyParserResponse(error: BodyParserError): { code: ErrorCode; message: string } {
  switch (error.type) {
    case 'entity.parse.failed':
      return { code: 'invalid_request', message: isBareJsonValue(error) ? 'request body must be a JSON object' : 'request body is not valid JSON' };
    case 'entity.too.large':
      return { code: 'payload_too_large', message: 'request body is larger than the limit of the gateway' };
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return { code: 'unsupported_media_type', message: 'request body must be JSON in UTF-8' };
    default:
      return { code: 'invalid_request', message: 'request body could not be read' };
  }
}

/**
 * Turns every error into a JSON error body. DomicileError keeps its code,
 * message and issues, which name paths and never values; anything else
 * becomes a 500 with a fixed message.
 */
export function createErrorHandler(logger: Logger): ErrorRequestHandler {
  // One line per interval, counting the failed requests, because an outage fails every request.
  const noteOutage = createCountedLog(OUTAGE_LOG_INTERVAL_MS, (failedRequests, first: { requestId: string; errorCode: string }) => {
    logger.error({ ...first, failedRequests }, 'requests failed: the database is unavailable');
  });
  return (error: unknown, _req, res, next) => {
    if (res.headersSent) {
      next(error);
      return;
    }
    handleError(logger, error, res, noteOutage);
  };
}

/** Shortest time between two log lines about requests that failed because the database was unreachable. */
const OUTAGE_LOG_INTERVAL_MS = 10_000;

function handleError(logger: Logger, error: unknown, res: Response, noteOutage: (details: { requestId: string; errorCode: string }) => void): void {
  if (error instanceof DomicileError) {
    // Only the code and message: the cause may be a Postgres error whose
    // detail quotes a value.
    if (error.status >= 500) {
      logger.error({ requestId: requestIdOf(res), errorCode: error.code, errorMessage: error.message }, 'request failed');
    }
    sendError(res, error.code, error.message, error.issues);
    return;
  }
  if (isBodyParserError(error) && error.status < 500) {
    const { code, message } = bodyParserResponse(error);
    sendError(res, code, message);
    return;
  }
  // The router decodes path parameters and throws URIError on a malformed escape such as `%ZZ`.
  if (error instanceof URIError) {
    sendError(res, 'invalid_request', 'request path contains an invalid percent-encoding');
    return;
  }
  // zlib fails with codes such as Z_DATA_ERROR when a body does not match its Content-Encoding.
  if (codeOf(error)?.startsWith('Z_') === true) {
    sendError(res, 'invalid_request', 'request body does not match its Content-Encoding');
    return;
  }

  // A process loaded its keys before a tokenization key rotation, and the old version was retired since.
  if (codeOf(error) === RETIRED_KEY_VERSION) {
    logger.error(
      { requestId: requestIdOf(res), errorCode: RETIRED_KEY_VERSION },
      'write rejected: this process writes under a retired tokenization key version; restart it to load the current keys',
    );
    sendError(res, 'unavailable', 'the gateway must be restarted to load the current tokenization keys');
    return;
  }

  if (isDatabaseUnavailable(error)) {
    noteOutage({ requestId: requestIdOf(res), errorCode: codeOf(error) ?? 'connection' });
    sendError(res, 'unavailable', 'the database is unavailable; retry later');
    return;
  }

  // The error object is logged without its message, because a library error
  // (a Postgres error, a parser error) may quote a value.
  logger.error({ requestId: requestIdOf(res), errorName: error instanceof Error ? error.name : typeof error, errorCode: codeOf(error) }, 'request failed');
  sendError(res, 'internal', INTERNAL_MESSAGE);
}

/**
 * Whether `error` reports that the database cannot be reached or ended the
 * connection: SQLSTATE class 08 (connection exception) or 57P01 to 57P03
 * (shutdown, crash, cannot connect now), a refused or reset socket, or the
 * messages node-pg gives a connection that ended without a SQLSTATE.
 */
function isDatabaseUnavailable(error: unknown): boolean {
  const code = codeOf(error);
  if (code !== undefined && (code.startsWith('08') || ['57P01', '57P02', '57P03', 'ECONNREFUSED', 'ECONNRESET', 'EPIPE'].includes(code))) {
    return true;
  }
  const message = error instanceof Error ? error.message : '';
  return message === 'Connection terminated unexpectedly' || message.startsWith('Client has encountered a connection error');
}

function codeOf(error: unknown): string | undefined {
  if (typeof error === 'object' && error !== null && 'code' in error && typeof error.code === 'string') {
    return error.code;
  }
  return undefined;
}

export const notFoundHandler: RequestHandler = (_req, res) => {
  sendError(res, 'not_found', 'no route matches this method and path');
};
