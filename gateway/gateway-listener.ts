import express, { Router } from 'express';
import helmet from 'helmet';
import { healthRouter } from './api/health.ts';
import { recordsBatchRouter } from './api/records-batch.ts';
import { recordQueriesRouter } from './api/records-query.ts';
import { recordsRouter } from './api/records.ts';
import { subjectExportRouter } from './api/subject-export.ts';
import { tokensRouter } from './api/tokens.ts';
import { widgetSessionsRouter } from './api/widget-sessions.ts';
import type { GatewayDeps } from './deps.ts';
import { createErrorHandler, notFoundHandler } from './errors.ts';
import { addMetricsRoute, createGatewayMetrics } from './metrics.ts';
import { openApiDocument, type RouteSpec } from './openapi.ts';
import { requestLogger } from './request-log.ts';
import { STATIC_ROUTE_SPECS } from './route-specs.ts';
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
  const metrics = createGatewayMetrics({ db: deps.db, logger, destinations: Object.keys(deps.policy.destinations) });
  app.use(metrics.middleware);
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
  const specs: RouteSpec[] = [...STATIC_ROUTE_SPECS];
  // The token routes parse their own bodies with a larger limit, so they come before the app's parser.
  app.use(tokensRouter(deps, specs));
  app.use(express.json({ limit: BODY_LIMIT, strict: true }));

  app.use(healthRouter(deps));
  app.use(widgetsRouter(deps, signer));
  app.use(widgetSessionsRouter(deps, signer, specs));
  app.use(recordQueriesRouter(deps, specs));
  app.use(recordsBatchRouter(deps, specs));
  app.use(recordsRouter(deps, specs));
  app.use(subjectExportRouter(deps, specs));

  const operations = Router();
  addMetricsRoute(operations, specs, metrics, { db: deps.db, metricsPublic: deps.metricsPublic ?? process.env['DOMICILE_METRICS_PUBLIC'] === 'true' });
  let document: object | undefined;
  operations.get('/api/v1/openapi.json', (_req, res) => {
    // Built on first use: every router has registered its specs by then.
    document ??= openApiDocument(deps.policy, specs, deps.gatewayOrigin);
    res.json(document);
  });
  app.use(operations);

  app.use(notFoundHandler);
  app.use(createErrorHandler(logger));
  return app;
}
