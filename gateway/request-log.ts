import { randomUUID } from 'node:crypto';
import type { Request, RequestHandler, Response } from 'express';
import type { Logger } from 'pino';

/**
 * Returns the id that `requestLogger` gave the request. Ids come from the
 * gateway, never from the client, so no client can make its log lines pass
 * for another request's.
 */
export function requestIdOf(res: Response): string {
  const id: unknown = res.locals['requestId'];
  return typeof id === 'string' ? id : 'unknown';
}

/**
 * Route template of the matched route (`/api/v1/records/:subjectToken`), never
 * the path itself, which may carry a subject token or a session. Routes are
 * registered with full paths, so `req.route.path` is the whole template.
 */
function routeTemplate(req: Request): string {
  const route: unknown = req.route;
  if (typeof route === 'object' && route !== null && 'path' in route && typeof route.path === 'string') {
    return route.path;
  }
  return 'unmatched';
}

/**
 * Assigns a request id (also sent back as `X-Request-Id`) and logs one line
 * per request with method, route template, status and latency only: 5xx as
 * error, everything else as info.
 */
export function requestLogger(logger: Logger): RequestHandler {
  return (req, res, next) => {
    const started = process.hrtime.bigint();
    const requestId = randomUUID();
    res.locals['requestId'] = requestId;
    res.setHeader('X-Request-Id', requestId);

    res.once('close', () => {
      const latencyMs = Number(process.hrtime.bigint() - started) / 1e6;
      const entry = {
        requestId,
        method: req.method,
        route: routeTemplate(req),
        status: res.statusCode,
        latencyMs: Math.round(latencyMs * 1000) / 1000,
      };
      if (res.statusCode >= 500) {
        logger.error(entry, 'request');
      } else {
        logger.info(entry, 'request');
      }
    });
    next();
  };
}
