import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import request from 'supertest';
import { createAppListener, routeGroup } from './app-listener.ts';

const WEBSOCKET_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC11B65';
const CANARY = 'canary-4711@example.test';

function captureLogger(): { logger: pino.Logger; lines: string[] } {
  const lines: string[] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => void lines.push(line) });
  return { logger, lines };
}

async function listen(server: http.Server): Promise<string> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return `http://127.0.0.1:${port}`;
}

async function close(server: http.Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/** Upstream that echoes request data as it arrives and accepts WebSocket upgrades by hand. */
function createUpstream(): { server: http.Server; seen: http.IncomingHttpHeaders[] } {
  const seen: http.IncomingHttpHeaders[] = [];
  const server = http.createServer((req, res) => {
    seen.push(req.headers);
    if (req.url === '/hang') {
      return;
    }
    if (req.url === '/broken') {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '1000' });
      res.write('partial');
      setTimeout(() => req.socket.destroy(), 50);
      return;
    }
    if (req.url === '/stream') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.flushHeaders();
      req.on('data', (chunk: Buffer) => res.write(`got:${chunk.toString()};`));
      req.on('end', () => res.end('done'));
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ path: req.url, method: req.method }));
  });
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex) => {
    const key = String(req.headers['sec-websocket-key']);
    const accept = createHash('sha1').update(key + WEBSOCKET_GUID).digest('base64');
    socket.write(
      'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        `Sec-WebSocket-Accept: ${accept}\r\n\r\n`,
    );
    // Echo raw bytes: enough to show that the tunnel carries data both ways.
    socket.on('data', (data: Buffer) => socket.write(Buffer.concat([Buffer.from('echo:'), data])));
    socket.on('end', () => socket.end());
  });
  return { server, seen };
}

describe('app listener', () => {
  const upstream = createUpstream();
  const { logger, lines } = captureLogger();
  const appListener = createAppListener({ upstream: 'http://127.0.0.1:1', logger });
  let proxied: http.Server | undefined;
  let upstreamUrl = '';
  let appUrl = '';

  before(async () => {
    upstreamUrl = await listen(upstream.server);
    proxied = createAppListener({ upstream: upstreamUrl, logger });
    appUrl = await listen(proxied);
  });
  after(async () => {
    if (proxied !== undefined) {
      await close(proxied);
    }
    await close(upstream.server);
  });

  test('proxy forwards method and path', async () => {
    const response = await request(appUrl).post('/orders/42?x=1').send({ a: 1 });
    assert.equal(response.status, 200);
    assert.deepEqual(response.body, { path: '/orders/42?x=1', method: 'POST' });
  });

  test('proxy replaces client X-Forwarded headers', async () => {
    await request(appUrl).get('/who').set('X-Forwarded-For', '203.0.113.9').set('Host', 'shop.example.test');
    const headers = upstream.seen.at(-1);
    assert.ok(headers !== undefined);
    assert.equal(headers['x-forwarded-for'], '127.0.0.1');
    assert.equal(headers['x-forwarded-proto'], 'http');
    assert.equal(headers['x-forwarded-host'], 'shop.example.test');
    assert.equal(headers.host, new URL(upstreamUrl).host);
  });

  test('proxy streams request and response bodies', async () => {
    const { port } = new URL(appUrl);
    const req = http.request({ host: '127.0.0.1', port, path: '/stream', method: 'POST', headers: { 'transfer-encoding': 'chunked' } });
    req.write('one');
    const [res] = (await once(req, 'response')) as [http.IncomingMessage];
    assert.equal(res.statusCode, 200);
    res.setEncoding('utf8');

    // The first chunk comes back while the request is still open, so neither
    // side of the proxy buffers the whole body.
    const [first] = (await once(res, 'data')) as [string];
    assert.equal(first, 'got:one;');

    let rest = '';
    res.on('data', (chunk: string) => (rest += chunk));
    req.end('two');
    await once(res, 'end');
    assert.equal(rest, 'got:two;done');
  });

  test('proxy tunnels a WebSocket upgrade', async () => {
    const { port } = new URL(appUrl);
    const req = http.request({
      host: '127.0.0.1',
      port,
      path: '/socket',
      headers: {
        connection: 'Upgrade',
        upgrade: 'websocket',
        'sec-websocket-version': '13',
        'sec-websocket-key': Buffer.from('0123456789abcdef').toString('base64'),
      },
    });
    req.end();
    const [res, socket] = (await once(req, 'upgrade')) as [http.IncomingMessage, Duplex];
    assert.equal(res.statusCode, 101);
    socket.write('ping');
    const [data] = (await once(socket, 'data')) as [Buffer];
    assert.equal(data.toString(), 'echo:ping');
    socket.destroy();
  });

  test('proxy returns 502 when upstream is down', async () => {
    const response = await request(appListener).get(`/profile/${CANARY}`);
    assert.equal(response.status, 502);
    assert.equal(response.body.error.code, 'upstream_unavailable');
    assert.ok(!response.text.includes(CANARY));
    assert.ok(!response.text.includes('profile'));
  });

  test('proxy returns 504 when upstream stalls', async () => {
    const impatient = createAppListener({ upstream: upstreamUrl, logger, upstreamTimeoutMs: 300 });
    const response = await request(impatient).get('/hang');
    assert.equal(response.status, 504);
    assert.equal(response.body.error.code, 'upstream_timeout');
    assert.ok(!response.text.includes('hang'));
  });

  test('proxy cuts the client off when upstream breaks a body', async () => {
    const outcome = await new Promise<string>((resolve) => {
      const req = http.get(`${appUrl}/broken`, (res) => {
        res.resume();
        res.on('end', () => resolve('ended'));
        res.on('error', () => resolve('cut off'));
        res.on('aborted', () => resolve('cut off'));
      });
      req.on('error', () => resolve('cut off'));
    });
    assert.equal(outcome, 'cut off');
  });

  test('proxy logs no path beyond its first segment', () => {
    assert.ok(lines.length > 0);
    for (const line of lines) {
      assert.ok(!line.includes(CANARY), 'a log line contains the canary');
      assert.ok(!line.includes('orders/42'), 'a log line contains a full path');
    }
    const entry = JSON.parse(lines.find((line) => line.includes('proxied request')) ?? '{}') as Record<string, unknown>;
    assert.deepEqual(Object.keys(entry).filter((key) => !['level', 'time', 'pid', 'hostname', 'msg'].includes(key)).sort(), [
      'aborted',
      'latencyMs',
      'method',
      'route',
      'status',
    ]);
  });
});

test('routeGroup keeps only a plain first segment', () => {
  assert.equal(routeGroup('/'), '/');
  assert.equal(routeGroup('/?q=1'), '/');
  assert.equal(routeGroup('/api'), '/api');
  assert.equal(routeGroup('/api/users/42'), '/api/*');
  assert.equal(routeGroup(`/${CANARY}`), '/*');
  assert.equal(routeGroup('/%41bc/x'), '/*');
  assert.equal(routeGroup(undefined), '/');
});
