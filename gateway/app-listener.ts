import http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { createProxyMiddleware, type Plugin } from 'http-proxy-middleware';
import type { Logger } from 'pino';

export interface AppListenerOptions {
  /** Origin of the upstream web app, such as `http://127.0.0.1:3000`. */
  upstream: string;
  logger: Logger;
  /**
   * Keep the X-Forwarded-* headers that clients send and append to them. This
   * is only safe behind a load balancer that sets them. By default the app
   * listener is the edge, so it replaces them and the upstream can trust them.
   */
  trustForwardedHeaders?: boolean;
  /** Maximum idle keep-alive sockets to the upstream. */
  maxFreeSockets?: number;
  /**
   * Milliseconds the upstream connection may stay idle, waiting for response
   * headers or for the next part of a body, before the request fails with 504
   * (default 60 000).
   */
  upstreamTimeoutMs?: number;
}

/** Code given to an upstream request that the idle timeout ended. */
const UPSTREAM_TIMEOUT = 'DOMICILE_UPSTREAM_TIMEOUT';

const FORWARDED_HEADERS = ['x-forwarded-for', 'x-forwarded-host', 'x-forwarded-port', 'x-forwarded-proto', 'forwarded'];

/** Bodies of the 502 and 504 responses; they name neither the upstream nor the request. */
const UPSTREAM_DOWN_BODY = JSON.stringify({
  error: { code: 'upstream_unavailable', message: 'the upstream web app is unavailable', issues: [] },
});
const UPSTREAM_TIMEOUT_BODY = JSON.stringify({
  error: { code: 'upstream_timeout', message: 'the upstream web app did not respond in time', issues: [] },
});

/**
 * Creates the app listener: a plain `node:http` server that streams every
 * request, WebSocket upgrades included, to the upstream web app. It is not an
 * Express app because proxied traffic is most of what the gateway carries.
 * The caller calls `listen()`.
 */
export function createAppListener(options: AppListenerOptions): http.Server {
  const upstream = new URL(options.upstream);
  const logger = options.logger;
  const agentOptions = { keepAlive: true, maxFreeSockets: options.maxFreeSockets ?? 256 };
  const agent = upstream.protocol === 'https:' ? new https.Agent(agentOptions) : new http.Agent(agentOptions);

  const proxy = createProxyMiddleware<http.IncomingMessage, http.ServerResponse>({
    target: upstream.origin,
    agent,
    changeOrigin: true,
    xfwd: true,
    ws: true,
    // The default plugins write the request URL into error bodies and logs, so
    // this listener brings its own error handling instead.
    ejectPlugins: true,
    plugins: [upstreamErrorPlugin(logger, options.upstreamTimeoutMs ?? 60_000)],
  });

  // Upgraded sockets leave the server's connection tracking, so without this
  // set `closeAllConnections()` would leave open WebSockets holding `close()` back.
  const upgradedSockets = new Set<Duplex>();

  const server = http.createServer((req, res) => {
    const started = process.hrtime.bigint();
    res.once('close', () => logRequest(logger, req, res, started));
    if (options.trustForwardedHeaders !== true) {
      dropForwardedHeaders(req);
    }
    void proxy(req, res, (error: unknown) => {
      logger.error({ errorName: errorName(error) }, 'proxy middleware failed before forwarding');
      respondUpstreamFailed(res, 502);
    });
  });

  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    if (options.trustForwardedHeaders !== true) {
      dropForwardedHeaders(req);
    }
    logger.info({ method: req.method, route: routeGroup(req.url) }, 'websocket upgrade requested');
    upgradedSockets.add(socket);
    socket.once('close', () => upgradedSockets.delete(socket));
    proxy.upgrade(req, socket as Socket, head);
  });

  const closeHttpConnections = server.closeAllConnections.bind(server);
  server.closeAllConnections = () => {
    closeHttpConnections();
    for (const socket of upgradedSockets) {
      socket.destroy();
    }
  };
  server.on('close', () => agent.destroy());
  return server;
}

/**
 * Handles the events of the underlying http-proxy server: upstream failures
 * become a 502 (or a closed socket for WebSockets), and socket errors on
 * either side are caught so they cannot crash the process.
 */
function upstreamErrorPlugin(logger: Logger, upstreamTimeoutMs: number): Plugin<http.IncomingMessage, http.ServerResponse> {
  return (proxyServer) => {
    proxyServer.on('error', (error, req, resOrSocket) => {
      const code = errorCode(error);
      logger.warn({ method: req.method, route: routeGroup(req.url), errorCode: code }, 'upstream request failed');
      if (resOrSocket instanceof http.ServerResponse) {
        respondUpstreamFailed(resOrSocket, code === UPSTREAM_TIMEOUT ? 504 : 502);
      } else {
        resOrSocket.destroy();
      }
    });
    proxyServer.on('econnreset', (error, req) => {
      logger.info({ method: req.method, route: routeGroup(req.url), errorCode: errorCode(error) }, 'client closed the connection');
    });
    proxyServer.on('proxyReq', (proxyReq, _req, res) => {
      res.on('error', () => undefined);
      proxyReq.setTimeout(upstreamTimeoutMs, () => {
        proxyReq.destroy(Object.assign(new Error('upstream idle timeout'), { code: UPSTREAM_TIMEOUT }));
      });
    });
    proxyServer.on('proxyReqWs', (_proxyReq, _req, socket) => {
      socket.on('error', () => undefined);
    });
    proxyServer.on('open', (proxySocket) => {
      proxySocket.on('error', () => undefined);
    });
    // When the client goes away mid-response (a server-sent event stream, a
    // large download), stop reading from the upstream as well.
    proxyServer.on('proxyRes', (proxyRes, _req, res) => {
      res.on('close', () => {
        if (!res.writableEnded) {
          proxyRes.destroy();
        }
      });
      // An upstream that breaks off a response must not leave the client
      // waiting for the rest of a body that will never come.
      proxyRes.on('close', () => {
        if (!proxyRes.complete) {
          res.destroy();
        }
      });
    });
  };
}

function respondUpstreamFailed(res: http.ServerResponse, status: 502 | 504): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = status === 504 ? UPSTREAM_TIMEOUT_BODY : UPSTREAM_DOWN_BODY;
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
  });
  res.end(body);
}

function dropForwardedHeaders(req: http.IncomingMessage): void {
  for (const name of FORWARDED_HEADERS) {
    delete req.headers[name];
  }
}

function logRequest(logger: Logger, req: http.IncomingMessage, res: http.ServerResponse, started: bigint): void {
  const latencyMs = Number(process.hrtime.bigint() - started) / 1e6;
  const entry = {
    method: req.method,
    route: routeGroup(req.url),
    status: res.statusCode,
    latencyMs: Math.round(latencyMs * 1000) / 1000,
    aborted: !res.writableFinished,
  };
  if (res.statusCode >= 500) {
    logger.error(entry, 'proxied request');
  } else {
    logger.info(entry, 'proxied request');
  }
}

/**
 * Reduces a URL to its first path segment (`/api/users/42?q=x` → `/api/*`).
 * The proxy has no route templates, and the rest of a path or its query may
 * carry personal data, so only a short plain first segment is logged.
 */
export function routeGroup(url: string | undefined): string {
  const path = (url ?? '/').split('?', 1)[0] ?? '/';
  const segments = path.split('/');
  const first = segments[1] ?? '';
  if (first === '' && segments.length <= 2) {
    return '/';
  }
  if (!/^[A-Za-z][A-Za-z0-9._-]{0,31}$/.test(first)) {
    return '/*';
  }
  return segments.length > 2 ? `/${first}/*` : `/${first}`;
}

function errorCode(error: unknown): string {
  if (typeof error === 'object' && error !== null && 'code' in error && typeof error.code === 'string') {
    return error.code;
  }
  return errorName(error);
}

function errorName(error: unknown): string {
  return error instanceof Error ? error.name : 'unknown';
}
