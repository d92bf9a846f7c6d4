/**
 * The example "web app in AWS": the upstream behind the app listener. It
 * receives no personal data, because its page embeds the gateway's collect
 * widget and stores only the subject token that the widget returns. It uses
 * Domicile only through its public HTTP API.
 */
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import express, { type Request, type Response } from 'express';
import type { Logger } from 'pino';

export interface ExampleAppOptions {
  port: number;
  host: string;
  /** Origin of the gateway listener, as the browser and this backend reach it. */
  gatewayOrigin: string;
  /** Origin that the browser uses for this app, i.e. the app listener's; widgets may only be framed by it. */
  appOrigin: string;
  /** API secret of a credential with the scope `widget-sessions:create` for `customer`. */
  apiCredential: string;
  logger?: Logger;
}

/** One request as the app received it, so tests can scan everything the AWS side saw. */
export interface ReceivedRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export interface Customer {
  subjectToken: string;
  createdAt: string;
}

export interface ExampleApp {
  server: http.Server;
  url: string;
  received: ReceivedRequest[];
  customers: Customer[];
  close(): Promise<void>;
}

const SUBJECT_TOKEN = /^sub_[a-z2-7]{26}$/;
const PUBLIC_DIR = new URL('./public/', import.meta.url);

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);
}

function renderPage(gatewayOrigin: string): string {
  return readFileSync(new URL('./page.html', import.meta.url), 'utf8').replaceAll('{{gatewayOrigin}}', escapeHtml(gatewayOrigin));
}

function parseJson(body: string): unknown {
  try {
    return JSON.parse(body);
  } catch {
    return undefined;
  }
}

/** Asks the gateway for a widget session, as any AWS backend would, with its API credential. */
async function requestWidgetSession(options: ExampleAppOptions): Promise<{ session: string; expiresAt: string }> {
  const response = await fetch(`${options.gatewayOrigin}/api/v1/widget-sessions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${options.apiCredential}` },
    body: JSON.stringify({ recordType: 'customer', purpose: 'signup', parentOrigin: options.appOrigin }),
  });
  const body = (await response.json().catch(() => undefined)) as { session?: unknown; expiresAt?: unknown } | undefined;
  if (response.status !== 201 || typeof body?.session !== 'string' || typeof body.expiresAt !== 'string') {
    throw new Error(`gateway returned status ${response.status} for the widget session request`);
  }
  return { session: body.session, expiresAt: body.expiresAt };
}

function createApp(options: ExampleAppOptions, received: ReceivedRequest[], customers: Customer[]): express.Express {
  const app = express();
  app.disable('x-powered-by');
  const page = renderPage(options.gatewayOrigin);
  const csp = [
    "default-src 'self'",
    `script-src 'self' ${options.gatewayOrigin}`,
    `frame-src ${options.gatewayOrigin}`,
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
  ].join('; ');

  // Every body is read as text first, so `received` contains exactly what arrived.
  app.use(express.text({ type: () => true, limit: '1mb', defaultCharset: 'utf-8' }));
  app.use((req: Request, res: Response, next) => {
    received.push({ method: req.method, url: req.originalUrl, headers: req.headers, body: typeof req.body === 'string' ? req.body : '' });
    res.once('finish', () => options.logger?.info({ method: req.method, route: req.route?.path ?? 'unmatched', status: res.statusCode }, 'example app request'));
    next();
  });

  app.get('/', (_req, res) => {
    res.setHeader('Content-Security-Policy', csp);
    res.type('html').send(page);
  });
  app.use(express.static(fileURLToPath(PUBLIC_DIR), { index: false }));

  app.post('/session', async (_req, res) => {
    try {
      res.json(await requestWidgetSession(options));
    } catch (error) {
      options.logger?.error({ errorMessage: error instanceof Error ? error.message : 'unknown' }, 'widget session request failed');
      res.status(502).json({ error: 'the gateway did not issue a widget session' });
    }
  });

  app.get('/api/customers', (_req, res) => {
    res.json({ customers });
  });

  app.post('/api/customers', (req, res) => {
    const body = parseJson(typeof req.body === 'string' ? req.body : '') as { subjectToken?: unknown } | undefined;
    const subjectToken = body?.subjectToken;
    if (typeof subjectToken !== 'string' || !SUBJECT_TOKEN.test(subjectToken)) {
      res.status(400).json({ error: 'subjectToken must be a subject token (sub_ and 26 base32 characters)' });
      return;
    }
    const customer = { subjectToken, createdAt: new Date().toISOString() };
    customers.push(customer);
    res.status(201).json(customer);
  });

  return app;
}

/** Starts the example app on `host:port` (port 0 picks a free one). */
export async function startExampleApp(options: ExampleAppOptions): Promise<ExampleApp> {
  const received: ReceivedRequest[] = [];
  const customers: Customer[] = [];
  const server = http.createServer(createApp(options, received, customers));
  server.listen(options.port, options.host);
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;

  return {
    server,
    url: `http://${options.host}:${port}`,
    received,
    customers,
    close: async () => {
      server.closeIdleConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
