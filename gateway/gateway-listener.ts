import express from 'express';
import helmet from 'helmet';
import { healthRouter } from './api/health.ts';
import { recordsRouter } from './api/records.ts';
import { widgetSessionsRouter } from './api/widget-sessions.ts';
import type { GatewayDeps } from './deps.ts';
import { createErrorHandler, notFoundHandler } from './errors.ts';
import { requestLogger } from './request-log.ts';
import { BODY_LIMIT, requireJsonBody } from './validation.ts';
import { widgetsRouter } from './widgets/routes.ts';
import { createSessionSigner } from './widgets/session.ts';

export type { GatewayDeps, GatewayVault } from './deps.ts';

/**
 * Creates the gateway listener's Express app: backend API under `/api/v1`,
 * widgets and embed script, and health routes. The caller serves it with
 * `http.createServer(app)`.
 */
export function createGatewayApp(deps: GatewayDeps): express.Express {
  const logger = deps.logger;
  const signer = createSessionSigner(deps.sessionKey === undefined ? { keyring: deps.keyring } : { key: deps.sessionKey }, deps.gatewayOrigin);

  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('query parser', 'simple');

  app.use(requestLogger(logger));
  // API responses are JSON and never framed; the widget routes replace this
  // policy with their own.
  app.use(
    helmet({
      contentSecurityPolicy: {
        useDefaults: false,
        directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"], baseUri: ["'none'"], formAction: ["'none'"] },
      },
      referrerPolicy: { policy: 'no-referrer' },
    }),
  );
  app.use(requireJsonBody);
  app.use(express.json({ limit: BODY_LIMIT, strict: true }));

  app.use(healthRouter(deps));
  app.use(widgetsRouter(deps, signer));
  app.use(widgetSessionsRouter(deps, signer));
  app.use(recordsRouter(deps));

  app.use(notFoundHandler);
  app.use(createErrorHandler(logger));
  return app;
}
