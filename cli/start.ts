import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { startExampleApp, type ExampleApp } from '../examples/aws-app/server.ts';
import { createAppListener } from '../gateway/app-listener.ts';
import { createGatewayApp, type GatewayDeps } from '../gateway/gateway-listener.ts';
import { DomicileError, loadPolicyFile, type Policy } from '../policy/index.ts';
import { startReplicationWorker } from '../replication/worker.ts';
import { openDatabase, type Database } from '../store/database.ts';
import { loadKeyring } from '../store/keyring-store.ts';
import { migrate } from '../store/migrate.ts';
import { createTokenStore } from '../store/token-store.ts';
import { exportSubject } from '../store/subject-export.ts';
import { createVault } from '../store/vault.ts';
import type { Keyring } from '../tokenizer/keyring.ts';
import { productionWarnings, type Config } from './config.ts';
import { checkStoredKekVersions, openKeyProvider } from './key-provider.ts';
import { ensureExampleCredential } from './example-credential.ts';
import { prepareLifecycle, startMaintenance } from './lifecycle.ts';

export type Role = 'all' | 'gateway' | 'worker';

export interface Running {
  policy: Policy;
  db: Database;
  keyring: Keyring;
  /** Origins the listeners serve, with the ports they really got. */
  appOrigin: string | undefined;
  gatewayOrigin: string | undefined;
  upstream: string | undefined;
  /** The built-in example upstream, when no upstream is configured. */
  example: ExampleApp | undefined;
  close(): Promise<void>;
}

/**
 * Starts the gateway listeners, the replication worker, or both, and the
 * example upstream app when no upstream is configured. Resources opened before
 * a failure are closed again before the error propagates.
 */
export async function startDomicile(config: Config, role: Role, logger: Logger): Promise<Running> {
  const closers: Array<() => Promise<void>> = [];
  // Set before the first closer runs, so /readyz returns 503 while requests in flight finish.
  const shutdown = { started: false };
  const close = async (): Promise<void> => {
    shutdown.started = true;
    for (const closer of closers.reverse()) {
      await closer().catch((error: unknown) => logger.error({ err: error, event: 'shutdown.failed' }, 'shutdown step failed'));
    }
  };

  try {
    const policy = loadPolicyFile(config.policyFile);
    logger.info({ event: 'policy.loaded', policyVersion: policy.version, recordTypes: Object.keys(policy.recordTypes) }, 'data policy loaded');

    const keys = await openKeyProvider(config);
    closers.push(() => keys.close());
    if (keys.created) {
      logger.warn({ event: 'kek.created', file: config.keyFile }, 'generated a new local key encryption key');
    }

    const db = await openDatabase({ ...(config.databaseUrl === undefined ? {} : { databaseUrl: config.databaseUrl }), dataDir: config.dataDir, logger });
    closers.push(() => db.close());
    await migrate(db, logger);
    await checkStoredKekVersions(db, keys, config);
    if (config.secondaryKeyProvider !== undefined && keys.member(config.secondaryKeyProvider) === undefined) {
      logger.warn({ event: 'kek.secondary_missing', provider: config.secondaryKeyProvider, file: config.keyFile }, 'the secondary local key file does not exist; domicile keys migrate --to local creates it');
    }
    const keyring = await loadKeyring(db, keys);
    const lifecycle = await prepareLifecycle(config, db, keys, keyring, logger);
    closers.push(() => lifecycle.close());
    const vaultDeps = { db, policy, keys: lifecycle.keys, keyring, logger, erasureLog: lifecycle.erasureLog };
    const vault = createVault(vaultDeps);

    const running: Running = { policy, db, keyring, appOrigin: undefined, gatewayOrigin: undefined, upstream: undefined, example: undefined, close };

    if (role !== 'worker') {
      await startListeners(config, { policy, db, keyring, vault, logger, subjectExport: (input) => exportSubject(vaultDeps, input) }, running, closers, shutdown);
    }
    if (role !== 'gateway') {
      const worker = startReplicationWorker({
        db,
        vault,
        policy,
        keyring,
        logger,
        dataDir: config.dataDir,
        pollMs: config.replicationPollMs,
        tokens: createTokenStore({ db, policy, keys: lifecycle.keys, keyring, logger }),
      });
      closers.push(() => worker.stop());
      const maintenance = startMaintenance(config, vaultDeps, logger);
      closers.push(() => maintenance.stop());
      logger.info({ event: 'worker.started', destinations: Object.keys(policy.destinations) }, 'replication worker started');
    }

    for (const warning of productionWarnings(config)) {
      logger.warn({ event: 'config.unsafe_default' }, warning);
    }
    return running;
  } catch (error) {
    await close();
    throw error;
  }
}

/** Responds 503 to a request that arrives while the gateway starts. */
function respondStarting(_req: http.IncomingMessage, res: http.ServerResponse): void {
  res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '1', 'cache-control': 'no-store' });
  res.end(JSON.stringify({ error: { code: 'unavailable', message: 'the gateway is starting; retry shortly', issues: [] } }));
}

interface Parts {
  policy: Policy;
  db: Database;
  keyring: Keyring;
  vault: ReturnType<typeof createVault>;
  logger: Logger;
  subjectExport: GatewayDeps['subjectExport'];
}

async function startListeners(config: Config, parts: Parts, running: Running, closers: Array<() => Promise<void>>, shutdown: { started: boolean }): Promise<void> {
  const { policy, db, keyring, vault, logger, subjectExport } = parts;

  // Bodies of the gateway listener are small JSON documents, so slow clients
  // are cut off sooner than Node's defaults (60 s for headers, 300 s in all).
  const gatewayServer = http.createServer({ headersTimeout: 20_000, requestTimeout: 30_000 });
  // The listener opens first, to learn its port. Until the app is attached, requests get 503 instead of no response.
  gatewayServer.on('request', respondStarting);
  const gatewayPort = await listen(gatewayServer, config.host, config.gatewayPort);
  closers.push(() => closeServer(gatewayServer));
  const gatewayOrigin = config.gatewayPort === 0 ? `http://localhost:${gatewayPort}` : config.gatewayOrigin;
  const appOrigin = config.appOrigin;
  if (config.appPort === 0) {
    throw new DomicileError('invalid_request', 'DOMICILE_APP_PORT must not be 0: the app origin must be known before the widgets start');
  }

  let upstream = config.upstream;
  if (upstream === undefined) {
    const apiCredential = await ensureExampleCredential(db, config.dataDir, Object.keys(policy.recordTypes), logger);
    const example = await startExampleApp({
      host: '127.0.0.1',
      port: config.examplePort,
      gatewayOrigin,
      appOrigin,
      apiCredential,
      logger: logger.child({ component: 'example-app' }),
    });
    closers.push(() => example.close());
    upstream = example.url;
    running.example = example;
    logger.info({ event: 'example_app.started', url: example.url }, 'example upstream app started');
  }

  const gatewayApp = createGatewayApp({
    vault,
    db,
    policy,
    keyring,
    logger: logger.child({ listener: 'gateway' }),
    appOrigins: [appOrigin],
    gatewayOrigin,
    ready: () => db.pool.query('SELECT 1').then(() => true, () => false),
    stopping: () => shutdown.started,
    requireIfMatch: config.requireIfMatch,
    ...(subjectExport === undefined ? {} : { subjectExport }),
  });
  gatewayServer.off('request', respondStarting);
  gatewayServer.on('request', gatewayApp);


  const appServer = createAppListener({ upstream, logger: logger.child({ listener: 'app' }) });
  // Proxied uploads may be large, so only the headers get a shorter limit than Node's default.
  appServer.headersTimeout = 20_000;
  const appPort = await listen(appServer, config.host, config.appPort);
  closers.push(() => closeServer(appServer));

  running.gatewayOrigin = gatewayOrigin;
  running.appOrigin = appOrigin;
  running.upstream = upstream;
  logger.info(
    { event: 'listeners.started', appListener: `http://${config.host}:${appPort}`, gatewayListener: `http://${config.host}:${gatewayPort}`, upstream },
    `app listener on ${running.appOrigin}, gateway listener on ${gatewayOrigin}, upstream ${upstream}`,
  );
}

async function listen(server: http.Server, host: string, port: number): Promise<number> {
  server.listen(port, host);
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

/** Milliseconds that requests in flight get to finish at shutdown before their connections are cut. */
const SHUTDOWN_GRACE_MS = 10_000;

async function closeServer(server: http.Server): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  const grace = setTimeout(() => server.closeAllConnections(), SHUTDOWN_GRACE_MS);
  await closed;
  clearTimeout(grace);
}
