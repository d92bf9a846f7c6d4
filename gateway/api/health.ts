import { Router } from 'express';
import type { GatewayDeps } from '../deps.ts';

/** Anonymous health routes: `/healthz` (the process runs) and `/readyz` (the database is reachable). */
export function healthRouter(deps: GatewayDeps): Router {
  const router = Router();

  router.get('/healthz', (_req, res) => {
    res.setHeader('Cache-Control', 'no-store');
    res.json({ status: 'ok' });
  });

  router.get('/readyz', async (_req, res) => {
    res.setHeader('Cache-Control', 'no-store');
    // A load balancer stops sending new requests while those in flight finish.
    if (deps.stopping?.() === true) {
      res.status(503).json({ status: 'stopping' });
      return;
    }
    const ready = await deps.ready().catch(() => false);
    if (!ready) {
      res.status(503).json({ status: 'unavailable', checks: { database: 'unreachable' } });
      return;
    }
    res.json({ status: 'ok', checks: { database: 'ok' } });
  });

  return router;
}
