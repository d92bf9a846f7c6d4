import type { Logger } from 'pino';
import { DomicileError } from '../policy/errors.ts';
import type { AuditAnchorer } from './audit-anchor.ts';
import { sealAuditLogged } from './audit-seal.ts';
import type { KekRewrapRunner } from './kek-rotation.ts';
import { eraseLapsedSubjects, type RetentionOptions } from './retention.ts';
import type { RetokenizeRunner } from './retokenize.ts';
import type { VaultDeps } from './vault-common.ts';

export interface MaintenanceWorker {
  /** Stops after the pass in flight. */
  stop(): Promise<void>;
}

/**
 * Runs the worker role's periodic maintenance: KEK rewrap jobs, re-tokenize
 * jobs, retention erasures, sealing of pending audit entries and audit anchors. A pass that found work starts the next one at
 * once; otherwise the loop waits `intervalMs`. An anchor is written at most
 * once per `intervalMs`, also while passes follow each other at once.
 * Failures are logged and retried on the next pass.
 */
export function startMaintenanceWorker(options: {
  deps: VaultDeps;
  rewrap: KekRewrapRunner;
  retokenize?: RetokenizeRunner;
  retention?: RetentionOptions;
  anchor?: AuditAnchorer;
  intervalMs: number;
  logger: Logger;
}): MaintenanceWorker {
  const { logger } = options;
  let stopped = false;
  let wake: (() => void) | undefined;
  let anchoredAt = Number.NEGATIVE_INFINITY;

  const anchor = async (): Promise<void> => {
    if (options.anchor === undefined || performance.now() - anchoredAt < options.intervalMs) {
      return;
    }
    anchoredAt = performance.now();
    try {
      await options.anchor.anchorOnce();
    } catch (error) {
      logger.error({ event: 'maintenance.anchor_failed', errorCode: codeOf(error) }, 'writing the audit anchor failed');
    }
  };

  const pass = async (): Promise<boolean> => {
    let busy = false;
    try {
      busy = (await options.rewrap.runOnce()) !== undefined;
    } catch (error) {
      logger.error({ event: 'maintenance.rewrap_failed', errorCode: codeOf(error) }, 'claiming a KEK rewrap job failed');
    }
    try {
      busy = (await options.retokenize?.runOnce()) !== undefined || busy;
    } catch (error) {
      logger.error({ event: 'maintenance.retokenize_failed', errorCode: codeOf(error) }, 'claiming a re-tokenize job failed');
    }
    try {
      const batch = options.retention?.batchSize ?? 100;
      busy = (await eraseLapsedSubjects(options.deps, options.retention)) >= batch || busy;
    } catch (error) {
      logger.error({ event: 'maintenance.retention_failed', errorCode: codeOf(error) }, 'retention pass failed');
    }
    try {
      // Chains entries that a process wrote and could not chain, for example because it stopped right after a commit.
      await sealAuditLogged(options.deps.db, options.deps.keyring, logger);
    } catch (error) {
      logger.error({ event: 'maintenance.seal_failed', errorCode: codeOf(error) }, 'sealing pending audit entries failed');
    }
    await anchor();
    return busy;
  };

  const loop = (async () => {
    while (!stopped) {
      const busy = await pass();
      if (!busy && !stopped) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, options.intervalMs);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        wake = undefined;
      }
    }
  })();

  return {
    async stop() {
      stopped = true;
      wake?.();
      await loop;
    },
  };
}

function codeOf(error: unknown): string {
  if (error instanceof DomicileError) {
    return error.code;
  }
  return typeof error === 'object' && error !== null && 'code' in error && typeof error.code === 'string' ? error.code : 'unknown';
}
