import type { Logger } from 'pino';
import { DomicileError } from '../policy/index.ts';
import { auditAnchorPath, openAuditAnchorer, type AuditAnchorer } from '../store/audit-anchor.ts';
import type { Database } from '../store/database.ts';
import { erasureLogPath, openErasureLog, type ErasureLogWriter } from '../store/erasure-log.ts';
import { createKekRewrapRunner, latestRewrapJob } from '../store/kek-rotation.ts';
import { startMaintenanceWorker, type MaintenanceWorker } from '../store/maintenance.ts';
import { RETENTION_PURPOSE } from '../store/retention.ts';
import { createRetokenizeRunner } from '../store/retokenize.ts';
import type { VaultDeps } from '../store/vault-common.ts';
import type { Keyring } from '../tokenizer/keyring.ts';
import type { KeyProvider } from '../tokenizer/keys/provider.ts';
import type { Config } from './config.ts';
import { openKeyProvider } from './key-provider.ts';

/** Milliseconds between checks for a new KEK version and between idle maintenance passes; `DOMICILE_MAINTENANCE_INTERVAL_MS`. */
const DEFAULT_INTERVAL_MS = 10_000;

export interface Lifecycle {
  /** Key provider that switches to a new KEK version once `domicile keys rotate` or `keys migrate` has started. */
  keys: KeyProvider;
  erasureLog: ErasureLogWriter;
  close(): Promise<void>;
}

export function maintenanceIntervalMs(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env['DOMICILE_MAINTENANCE_INTERVAL_MS'];
  if (raw === undefined || raw === '') {
    return DEFAULT_INTERVAL_MS;
  }
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 100 || value > 3_600_000) {
    throw new DomicileError('invalid_request', 'invalid configuration: DOMICILE_MAINTENANCE_INTERVAL_MS must be an integer from 100 to 3600000 (milliseconds)');
  }
  return value;
}

/**
 * Opens the erasure log and wraps the key provider so that this process
 * wraps new keys with the KEK version of the newest rotation or migration. A
 * rotation started by the CLI writes a new version to the key file, which the
 * running process would otherwise never read. A migration moves new wraps to
 * the secondary provider.
 */
export async function prepareLifecycle(config: Config, db: Database, keys: KeyProvider, keyring: Keyring, logger: Logger): Promise<Lifecycle> {
  const erasureLog = await openErasureLog(erasureLogPath(config.dataDir), keyring);
  const providers: KeyProvider[] = [];
  let current = keys;

  const refresh = async (): Promise<void> => {
    const job = await latestRewrapJob(db);
    const target = typeof job?.params['targetKekVersion'] === 'string' ? job.params['targetKekVersion'] : undefined;
    if (target === undefined || target === current.currentVersion()) {
      return;
    }
    const reopened = await openKeyProvider(config);
    if (!reopened.useVersion(target)) {
      await reopened.close();
      logger.warn({ event: 'kek.refresh_mismatch', kekVersion: reopened.currentVersion(), targetKekVersion: target }, 'no configured key provider wraps with the KEK version of the newest rotation or migration');
      return;
    }
    // The previous provider stays open: requests in flight may still unwrap with it.
    providers.push(current);
    current = reopened;
    logger.info({ event: 'kek.refreshed', kekVersion: target }, 'new keys are wrapped with the rotated KEK version');
  };

  const interval = maintenanceIntervalMs();
  let refreshing = Promise.resolve();
  const timer = setInterval(() => {
    refreshing = refresh().catch((error: unknown) => {
      logger.error({ event: 'kek.refresh_failed', errorCode: error instanceof DomicileError ? error.code : 'unknown' }, 'checking for a rotated KEK failed');
    });
  }, interval);
  timer.unref();
  await refresh();

  const delegating: KeyProvider = {
    kind: keys.kind,
    currentVersion: () => current.currentVersion(),
    generateDataKey: (context) => current.generateDataKey(context),
    wrap: (plaintext, context) => current.wrap(plaintext, context),
    unwrap: (wrapped, context) => current.unwrap(wrapped, context),
    close: () => Promise.resolve(),
  };

  return {
    keys: delegating,
    erasureLog,
    close: async () => {
      clearInterval(timer);
      await refreshing;
      // The caller opened the original provider and closes it.
      for (const provider of [...providers, current]) {
        if (provider !== keys) {
          await provider.close();
        }
      }
    },
  };
}

/** Opens the configured providers wrapping with `target`; the rewrap runner rejects them when none wraps with it. */
async function openProviderFor(config: Config, target: string): Promise<KeyProvider> {
  const keys = await openKeyProvider(config);
  keys.useVersion(target);
  return keys;
}

/**
 * Opens the audit anchor file on first use, so that starting the worker does
 * not wait for reading it; a failed open is retried on the next pass.
 */
function lazyAnchorer(config: Config, deps: VaultDeps, logger: Logger): AuditAnchorer {
  let opening: Promise<AuditAnchorer> | undefined;
  return {
    anchorOnce: async () => {
      opening ??= openAuditAnchorer({ db: deps.db, keyring: deps.keyring, path: auditAnchorPath(config.dataDir), logger });
      try {
        return await (await opening).anchorOnce();
      } catch (error) {
        opening = undefined;
        throw error;
      }
    },
  };
}

/** Starts the worker role's KEK rewrap and re-tokenize jobs, retention erasures and audit anchors. */
export function startMaintenance(config: Config, deps: VaultDeps, logger: Logger): MaintenanceWorker {
  const purpose = process.env['DOMICILE_RETENTION_PURPOSE'];
  if (purpose !== undefined && purpose !== '' && !deps.policy.purposes.includes(purpose)) {
    throw new DomicileError('invalid_request', 'invalid configuration: DOMICILE_RETENTION_PURPOSE must be an access purpose of the data policy');
  }
  const rewrap = createKekRewrapRunner({ db: deps.db, keys: deps.keys, openKeys: (target) => openProviderFor(config, target), logger });
  const worker = startMaintenanceWorker({
    deps,
    rewrap,
    retokenize: createRetokenizeRunner({ db: deps.db, policy: deps.policy, logger }),
    retention: { purpose: purpose === undefined || purpose === '' ? RETENTION_PURPOSE : purpose },
    anchor: lazyAnchorer(config, deps, logger),
    intervalMs: maintenanceIntervalMs(),
    logger,
  });
  logger.info({ event: 'maintenance.started' }, 'maintenance worker started (KEK rewrap and re-tokenize jobs, retention, audit anchors)');
  return worker;
}
