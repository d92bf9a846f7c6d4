// Proxy overhead: Domicile's app listener against a bare node:http proxy that
// only pipes requests, both in front of the same tiny upstream on 127.0.0.1.
//
// The servers (upstream and both proxies) run in a child process and the
// load generator in this one, so the proxy under test does not share its
// event loop with the client. Only one proxy carries load at a time.
//
// Each round measures the three targets in a rotated order, and the report
// shows the round with the median throughput of each target.
//
// Settings (environment): BENCH_DURATION_MS (measured time per case and
// round, default 3000), BENCH_WARMUP_MS (default 500), BENCH_CONCURRENCY
// (default 16), BENCH_MAX_REQUESTS (upper bound per case and round, default
// 200000), BENCH_ROUNDS (default 3).

import { fork, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { devNull } from 'node:os';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { createAppListener } from '../gateway/app-listener.ts';
import { measure, medianRound, readSetting, report, type Figures } from './harness.ts';

interface ServerPorts {
  upstream: number;
  bareProxy: number;
  appListener: number;
}

const SERVE_FLAG = '--serve';
const RESPONSE_BODY = JSON.stringify({ id: 'sub_example', items: Array.from({ length: 8 }, (_, i) => ({ sku: `item-${i}`, quantity: i })) });
const REQUEST_BODY = JSON.stringify({ note: 'x'.repeat(1000) });

function listen(server: http.Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port));
  });
}

function startUpstream(): http.Server {
  return http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(RESPONSE_BODY) });
      res.end(RESPONSE_BODY);
    });
  });
}

/** Creates the baseline proxy, which pipes each request and response and does nothing else. */
function startBareProxy(upstreamPort: number): http.Server {
  const agent = new http.Agent({ keepAlive: true, maxFreeSockets: 256 });
  const server = http.createServer((req, res) => {
    const upstreamRequest = http.request(
      { host: '127.0.0.1', port: upstreamPort, method: req.method, path: req.url, headers: req.headers, agent },
      (upstreamResponse) => {
        res.writeHead(upstreamResponse.statusCode ?? 502, upstreamResponse.headers);
        upstreamResponse.pipe(res);
      },
    );
    upstreamRequest.on('error', () => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    req.pipe(upstreamRequest);
  });
  server.on('close', () => agent.destroy());
  return server;
}

async function serve(): Promise<void> {
  const upstreamPort = await listen(startUpstream());
  const bareProxyPort = await listen(startBareProxy(upstreamPort));
  // The app listener logs every request; writing the lines to the null
  // device keeps the cost of building them in the figures.
  const logger = pino({ level: 'info' }, pino.destination({ dest: devNull, sync: false }));
  const appListener = createAppListener({ upstream: `http://127.0.0.1:${upstreamPort}`, logger });
  const appListenerPort = await listen(appListener);
  const ports: ServerPorts = { upstream: upstreamPort, bareProxy: bareProxyPort, appListener: appListenerPort };
  process.send?.(ports);
  process.on('disconnect', () => process.exit(0));
}

function startServers(): Promise<{ child: ChildProcess; ports: ServerPorts }> {
  const child = fork(fileURLToPath(import.meta.url), [SERVE_FLAG], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  return new Promise((resolve, reject) => {
    child.once('message', (ports) => resolve({ child, ports: ports as ServerPorts }));
    child.once('exit', (code) => reject(new Error(`benchmark server process exited with code ${code} before listening`)));
  });
}

function requestOnce(agent: http.Agent, port: number, method: 'GET' | 'POST'): Promise<void> {
  return new Promise((resolve, reject) => {
    const headers: http.OutgoingHttpHeaders = method === 'POST'
      ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(REQUEST_BODY) }
      : {};
    const request = http.request({ host: '127.0.0.1', port, method, path: '/orders/42?page=1', headers, agent }, (response) => {
      response.resume();
      response.on('end', () => {
        if (response.statusCode === 200) resolve();
        else reject(new Error(`unexpected status ${response.statusCode}`));
      });
      response.on('error', reject);
    });
    request.on('error', reject);
    request.end(method === 'POST' ? REQUEST_BODY : undefined);
  });
}

type Target = 'upstream' | 'bareProxy' | 'appListener';

const TARGET_NAMES: Record<Target, string> = {
  upstream: 'upstream direct',
  bareProxy: 'bare node:http proxy',
  appListener: 'Domicile app listener',
};

async function measureRounds(
  agent: http.Agent,
  ports: ServerPorts,
  method: 'GET' | 'POST',
  rounds: number,
  options: { durationMs: number; warmupMs: number; concurrency: number; maxOperations: number },
): Promise<Record<Target, Figures>> {
  const label = method === 'GET' ? 'GET, 0 B in' : `POST, ${Buffer.byteLength(REQUEST_BODY)} B in`;
  const targets: Target[] = ['upstream', 'bareProxy', 'appListener'];
  const figures: Record<Target, Figures[]> = { upstream: [], bareProxy: [], appListener: [] };

  for (let round = 0; round < rounds; round += 1) {
    const order = [...targets.slice(round % targets.length), ...targets.slice(0, round % targets.length)];
    for (const target of order) {
      const name = `${TARGET_NAMES[target]} (${label})`;
      figures[target].push(await measure(name, () => requestOnce(agent, ports[target], method), options));
    }
  }
  return {
    upstream: medianRound(figures.upstream),
    bareProxy: medianRound(figures.bareProxy),
    appListener: medianRound(figures.appListener),
  };
}

async function drive(): Promise<void> {
  const durationMs = readSetting('BENCH_DURATION_MS', 3000);
  const warmupMs = readSetting('BENCH_WARMUP_MS', 500);
  const concurrency = readSetting('BENCH_CONCURRENCY', 16);
  const maxOperations = readSetting('BENCH_MAX_REQUESTS', 200_000);
  const rounds = readSetting('BENCH_ROUNDS', 3);
  const options = { durationMs, warmupMs, concurrency, maxOperations };

  console.log(`proxy bench: Node ${process.version}, ${concurrency} concurrent keep-alive clients, ` +
    `${rounds} rounds of ${durationMs} ms per case after ${warmupMs} ms warm-up, ` +
    `at most ${maxOperations} requests per case and round; median round shown`);
  const { child, ports } = await startServers();
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  let failed = false;
  try {
    for (const method of ['GET', 'POST'] as const) {
      const result = await measureRounds(agent, ports, method, rounds, options);
      report(result.upstream.name, result.upstream);
      report(result.bareProxy.name, result.bareProxy, result.upstream);
      report(result.appListener.name, result.appListener, result.bareProxy);
      failed ||= Object.values(result).some((figures) => figures.errors > 0 || figures.operations === 0);
    }
  } finally {
    agent.destroy();
    child.disconnect();
  }
  if (failed) {
    console.error('proxy bench: some requests failed, so the figures above are not comparable');
    process.exitCode = 1;
  }
}

if (process.argv.includes(SERVE_FLAG)) {
  await serve();
} else {
  await drive();
}
