import { readFileSync } from 'node:fs';
import { Router, type Response } from 'express';
import { z } from 'zod';
import { fieldValues } from '../api/schemas.ts';
import { DomicileError } from '../../policy/index.ts';
import { bearerToken } from '../auth.ts';
import type { GatewayDeps } from '../deps.ts';
import { parseInput } from '../validation.ts';
import { renderCollectPage, renderExpiredPage } from './collect-page.ts';
import { chooseLocale } from './i18n.ts';
import type { SessionSigner } from './session.ts';

const STATIC_DIR = new URL('./static/', import.meta.url);
const ORIGIN_PLACEHOLDER = "'__DOMICILE_GATEWAY_ORIGIN__'";

const submitBody = z.strictObject({ values: fieldValues });

function readStatic(name: string): string {
  return readFileSync(new URL(name, STATIC_DIR), 'utf8');
}

/** CSP of the widget page: scripts, styles and requests only from the gateway, framed only by `frameAncestors`. */
function widgetCsp(frameAncestors: readonly string[]): string {
  return [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self'",
    "connect-src 'self'",
    "form-action 'self'",
    "base-uri 'none'",
    `frame-ancestors ${frameAncestors.length > 0 ? frameAncestors.join(' ') : "'none'"}`,
  ].join('; ');
}

/** Lets the app origin frame the page: CSP frame-ancestors replaces helmet's X-Frame-Options. */
function allowFraming(res: Response, frameAncestors: readonly string[]): void {
  res.removeHeader('X-Frame-Options');
  res.setHeader('Content-Security-Policy', widgetCsp(frameAncestors));
  res.setHeader('Cache-Control', 'no-store');
}

/** Widget routes: the embed script, the collect page with its assets, and the page's submit endpoint. */
export function widgetsRouter(deps: GatewayDeps, signer: SessionSigner): Router {
  const router = Router();
  const embedSource = readStatic('embed.js');
  if (!embedSource.includes(ORIGIN_PLACEHOLDER)) {
    throw new DomicileError('internal', 'widgets/static/embed.js lacks the gateway origin placeholder');
  }
  const embedScript = embedSource.replace(ORIGIN_PLACEHOLDER, JSON.stringify(deps.gatewayOrigin));
  const assets = {
    'collect.js': { body: readStatic('collect.js'), type: 'text/javascript; charset=utf-8' },
    'collect.css': { body: readStatic('collect.css'), type: 'text/css; charset=utf-8' },
  };

  router.get('/embed.js', (_req, res) => {
    // Host pages on the app origin load this script cross-origin.
    res.setHeader('Cross-Origin-Resource-Policy', 'cross-origin');
    res.setHeader('Cache-Control', 'public, max-age=300');
    res.type('text/javascript; charset=utf-8').send(embedScript);
  });

  router.get('/widgets/static/:asset', (req, res) => {
    const asset = req.params.asset === 'collect.js' || req.params.asset === 'collect.css' ? assets[req.params.asset] : undefined;
    if (asset === undefined) {
      throw new DomicileError('not_found', 'no widget asset has this name');
    }
    res.setHeader('Cache-Control', 'public, max-age=300');
    res.type(asset.type).send(asset.body);
  });

  router.get('/widgets/collect', async (req, res) => {
    const locale = chooseLocale(req.query['locale'], (...locales) => req.acceptsLanguages(...locales));
    const session = typeof req.query['session'] === 'string' ? req.query['session'] : '';
    const claims = await signer.verify(session).catch(() => undefined);
    const recordType = claims === undefined ? undefined : deps.policy.recordTypes[claims.recordType];
    if (claims === undefined || recordType === undefined) {
      allowFraming(res, deps.appOrigins);
      res.status(401).type('html').send(renderExpiredPage(locale));
      return;
    }

    allowFraming(res, [claims.parentOrigin]);
    res.type('html').send(renderCollectPage({ recordType, locale, session, parentOrigin: claims.parentOrigin }));
  });

  router.post('/widgets/v1/records', async (req, res) => {
    // Only the widget page itself, served from the gateway origin, submits here.
    const origin = req.get('origin');
    if (origin !== undefined && origin !== deps.gatewayOrigin) {
      throw new DomicileError('forbidden', 'widget submissions must come from the gateway origin');
    }
    const claims = await signer.verify(bearerToken(req.headers.authorization) ?? '');
    const body = parseInput(submitBody, req.body, '$');

    const created = await deps.vault.create({
      recordType: claims.recordType,
      values: body.values,
      actor: { id: `widget:${claims.sub}:${claims.jti}`, location: 'in-country' },
      purpose: claims.purpose,
      // One session creates at most one subject: a retry with the same values
      // returns it again, and other values are rejected with 409.
      idempotencyKey: claims.jti,
    });
    res.setHeader('Cache-Control', 'no-store');
    res.status(201).json({ subjectToken: created.subjectToken });
  });

  return router;
}
