import type { Request, RequestHandler, Router } from 'express';
import type { Logger } from 'pino';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { pendingAuditStats } from '../store/audit-seal.ts';
import type { Database } from '../store/database.ts';
import { outboxStats, type OutboxStats } from '../store/outbox.ts';
import { authenticate, credentialOf, requireOperation } from './auth.ts';
import { addRoute, type RouteSpec } from './openapi.ts';

/**
 * Prometheus metrics of the gateway listener. Labels are the method, the
 * route template and the status code, never the path: a path can carry a
 * subject token or a widget session. Each app gets its own registry, so
 * several apps in one process (tests, benchmarks) do not collide.
 */
export interface GatewayMetrics {
  registry: Registry;
  /** Counts and times every request by route template; install before the routes. */
  middleware: RequestHandler;
}

/** Route template of the matched route, with path escapes removed, or `unmatched`. */
export function routeLabel(req: Request): string {
  const route: unknown = req.route;
  if (typeof route === 'object' && route !== null && 'path' in route && typeof route.path === 'string') {
    return route.path.replace(/\\/g, '');
  }
  return 'unmatched';
}

export function createGatewayMetrics(options: { db?: Database; logger: Logger; destinations?: readonly string[] }): GatewayMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'domicile_' });

  const requests = new Counter({
    name: 'domicile_http_requests_total',
    help: 'Requests to the gateway listener by method, route template and status code',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'domicile_http_request_duration_seconds',
    help: 'Time from request to the end of the response, in seconds, by method, route template and status code',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });

  if (options.db !== undefined) {
    registerOutboxGauges(registry, options.db, options.logger, options.destinations ?? []);
    registerAuditGauges(registry, options.db, options.logger);
  }

  const middleware: RequestHandler = (req, res, next) => {
    const started = process.hrtime.bigint();
    res.once('finish', () => {
      const labels = { method: req.method, route: routeLabel(req), status: String(res.statusCode) };
      requests.inc(labels);
      duration.observe(labels, Number(process.hrtime.bigint() - started) / 1e9);
    });
    next();
  };
  return { registry, middleware };
}

/**
 * Outbox lag, read from the database at each scrape. The three gauges share
 * one query per scrape, because the registry collects them concurrently. A
 * failed query leaves the two lag gauges empty and sets
 * `domicile_outbox_scrape_failed` to 1, so a scrape still succeeds while the
 * database is down. Destinations of the policy with nothing pending report 0,
 * so alerts see a value instead of no data.
 */
function registerOutboxGauges(registry: Registry, db: Database, logger: Logger, destinations: readonly string[]): void {
  let reading: Promise<OutboxStats[] | undefined> | undefined;
  const readStats = (): Promise<OutboxStats[] | undefined> => {
    reading ??= outboxStats(db)
      .catch((error: unknown) => {
        logger.warn({ event: 'metrics.outbox_failed', errorName: error instanceof Error ? error.name : typeof error }, 'could not read the outbox for metrics');
        return undefined;
      })
      .finally(() => {
        setImmediate(() => {
          reading = undefined;
        });
      });
    return reading;
  };

  const lagGauge = (name: string, help: string, valueOf: (stats: OutboxStats) => number): void => {
    new Gauge({
      name,
      help,
      labelNames: ['destination'] as const,
      registers: [registry],
      async collect() {
        const rows = await readStats();
        this.reset();
        if (rows === undefined) {
          return;
        }
        for (const destination of destinations) {
          this.set({ destination }, 0);
        }
        for (const stats of rows) {
          this.set({ destination: stats.destination }, valueOf(stats));
        }
      },
    });
  };
  lagGauge('domicile_outbox_pending', 'Undelivered outbox events by destination', (stats) => stats.open);
  lagGauge('domicile_outbox_oldest_pending_seconds', 'Age of the oldest undelivered outbox event by destination, in seconds', (stats) => stats.oldestAgeSeconds);

  new Gauge({
    name: 'domicile_outbox_scrape_failed',
    help: '1 when the last scrape could not read the outbox, else 0',
    registers: [registry],
    async collect() {
      this.set((await readStats()) === undefined ? 1 : 0);
    },
  });
}

/**
 * Registers gauges of the audit entries written but not yet chained. A count
 * that stays up, or an age beyond a few seconds, means that seals fail (see
 * the log event `audit.seal_failed`), or that entries wait for a process
 * whose keyring has their key version.
 */
function registerAuditGauges(registry: Registry, db: Database, logger: Logger): void {
  let pending: Promise<{ count: number; oldestAgeSeconds: number } | undefined> | undefined;
  // Both gauges share one query per scrape.
  const readStats = (): Promise<{ count: number; oldestAgeSeconds: number } | undefined> => {
    pending ??= pendingAuditStats(db)
      .catch((error: unknown) => {
        logger.warn({ event: 'metrics.audit_pending_failed', errorCode: (error as { code?: unknown }).code ?? 'error' }, 'reading the pending audit entries for metrics failed');
        return undefined;
      })
      .finally(() => {
        setImmediate(() => {
          pending = undefined;
        });
      });
    return pending;
  };
  new Gauge({
    name: 'domicile_audit_pending_entries',
    help: 'Audit entries written but not yet chained into the audit log',
    registers: [registry],
    async collect() {
      const stats = await readStats();
      if (stats !== undefined) this.set(stats.count);
    },
  });
  new Gauge({
    name: 'domicile_audit_oldest_pending_seconds',
    help: 'Age of the oldest audit entry not yet chained, in seconds (0 when none)',
    registers: [registry],
    async collect() {
      const stats = await readStats();
      if (stats !== undefined) this.set(stats.oldestAgeSeconds);
    },
  });
}

/** Serves `GET /metrics`: anonymous when `metricsPublic`, else for credentials with `metrics:read`. */
export function addMetricsRoute(router: Router, specs: RouteSpec[], metrics: GatewayMetrics, options: { db: Database; metricsPublic: boolean }): void {
  const handlers: RequestHandler[] = options.metricsPublic
    ? []
    : [
        authenticate(options.db),
        (_req, res, next) => {
          requireOperation(credentialOf(res), 'metrics:read');
          next();
        },
      ];
  addRoute(
    router,
    specs,
    {
      method: 'get',
      path: '/metrics',
      operationId: 'metrics',
      summary: 'Prometheus metrics',
      description: 'Needs a credential with metrics:read unless the gateway runs with DOMICILE_METRICS_PUBLIC=true.',
      tags: ['operations'],
      auth: 'metrics',
      responses: {
        200: { description: 'metrics in the Prometheus text format', contentType: 'text/plain' },
        401: { description: 'missing or invalid API credential' },
        403: { description: 'the credential lacks metrics:read' },
      },
    },
    ...handlers,
    async (_req, res) => {
      const text = await metrics.registry.metrics();
      res.setHeader('Cache-Control', 'no-store');
      res.type(metrics.registry.contentType).send(text);
    },
  );
}
