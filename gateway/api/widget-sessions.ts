import { Router } from 'express';
import { z } from 'zod';
import { DomicileError } from '../../policy/index.ts';
import { authenticate, credentialOf } from '../auth.ts';
import type { GatewayDeps } from '../deps.ts';
import { addRoute, type RouteSpec } from '../openapi.ts';
import { parseScopedInput, requirePurpose } from '../validation.ts';
import type { SessionSigner } from '../widgets/session.ts';

const sessionBody = z.strictObject({
  recordType: z.string().min(1).max(64),
  purpose: z.string().min(1).max(64),
  parentOrigin: z.string().min(1).max(2048),
});

/** `POST /api/v1/widget-sessions`: a short-lived session for one collect widget. */
const sessionResponse = z.object({ session: z.string(), expiresAt: z.iso.datetime(), widgetUrl: z.url() });

export function widgetSessionsRouter(deps: GatewayDeps, signer: SessionSigner, specs: RouteSpec[]): Router {
  const router = Router();
  const spec: RouteSpec = {
    method: 'post',
    path: '/api/v1/widget-sessions',
    operationId: 'createWidgetSession',
    summary: 'Create a short-lived session for one collect widget: one record type, one access purpose, one parent origin',
    tags: ['widgets'],
    auth: 'credential',
    body: sessionBody,
    responses: {
      201: { description: 'the session and the widget URL', schema: sessionResponse },
      400: { description: 'invalid request' },
      401: { description: 'missing or invalid API credential' },
      403: { description: 'the credential lacks widget-sessions:create or the record type' },
    },
  };

  addRoute(router, specs, spec, authenticate(deps.db), async (req, res) => {
    const credential = credentialOf(res);
    const body = parseScopedInput(sessionBody, req.body, '$', deps.policy, credential, 'widget-sessions:create');
    const purpose = requirePurpose(deps.policy, body.purpose, '$.purpose');
    if (!deps.appOrigins.includes(body.parentOrigin)) {
      throw new DomicileError('invalid_request', '$.parentOrigin is not an app origin that the gateway allows', {
        issues: [{ path: '$.parentOrigin', message: 'must be one of the configured app origins' }],
      });
    }

    const { session, claims } = await signer.sign({
      credentialId: credential.id,
      recordType: body.recordType,
      purpose,
      parentOrigin: body.parentOrigin,
    });
    res.setHeader('Cache-Control', 'no-store');
    res.status(201).json({
      session,
      expiresAt: new Date(claims.exp * 1000).toISOString(),
      widgetUrl: `${deps.gatewayOrigin}/widgets/collect?session=${encodeURIComponent(session)}`,
    });
  });

  return router;
}
