import type { Logger } from 'pino';
import { DomicileError } from '../policy/errors.ts';
import type { Policy } from '../policy/schema.ts';
import type { Database } from '../store/database.ts';
import { claimOutbox, completeOutbox, failOutbox, type OutboxEvent } from '../store/outbox.ts';
import { randomTokenLookup, type TokenStore } from '../store/token-store.ts';
import type { Vault } from '../store/vault.ts';
import type { Keyring } from '../tokenizer/keyring.ts';
import { createDestination, partialCopyKey, type Destination } from './destinations/index.ts';
import { projectRecord, randomTokenRequests, serializePartialCopy } from './project.ts';
import { DEFAULT_RETRY, errorCode, retryDelayMs, type RetryPolicy } from './retry.ts';
import { createReplicationStats, measureLag, type ReplicationStats } from './stats.ts';

/**
 * Milliseconds before the end of a lease after which no delivery starts: more
 * than the longest S3 request with its one SDK retry (2 x (5 s connect + 15 s
 * response) plus the SDK's backoff).
 */
const LEASE_MARGIN_MS = 45_000;

/** Maximum milliseconds between passes while the database fails. */
const MAX_FAILURE_WAIT_MS = 30_000;

export interface ReplicationWorkerOptions {
  db: Database;
  vault: Vault;
  policy: Policy;
  keyring: Keyring;
  logger: Logger;
  /** Folder that relative folder targets resolve against. */
  dataDir: string;
  /** Milliseconds to wait after a pass that found less than a full batch; default 200. */
  pollMs?: number;
  /** Maximum events claimed per destination and pass; default 100. */
  batchSize?: number;
  /**
   * Milliseconds a claim leases its events for before another worker may take them
   * over; default 120 000. Events of a batch that cannot start well before the
   * lease ends are left for the next claim, so two workers never write one
   * record at the same time.
   */
  leaseMs?: number;
  /** Maximum deliveries in flight per batch; default 8. */
  concurrency?: number;
  retry?: RetryPolicy;
  /**
   * Destinations by policy name, in place of those built from the policy's
   * targets; names the policy does not declare are ignored. The worker closes
   * them on stop.
   */
  destinations?: ReadonlyMap<string, Destination>;
  /**
   * Token store for random tokens and for recording which keyring version a
   * destination's tokens use. Without it, a projection with a random-token
   * field fails (and is retried), and no keyring version is recorded.
   */
  tokens?: TokenStore;
}

export interface ReplicationWorker {
  /** Stops polling after the batch in flight is delivered and closes the destinations. */
  stop(): Promise<void>;
  /**
   * Resolves once the outbox contains no pending event for any destination of
   * the policy, including events waiting for a retry. Rejects with
   * DomicileError `unavailable` after `timeoutMs` (default 30 000).
   */
  drain(timeoutMs?: number): Promise<void>;
  /** Counters for metrics; updated in place. */
  readonly stats: ReplicationStats;
}

/**
 * Starts a loop that delivers outbox events to the policy's destinations:
 * it claims events, loads the current record, projects it and puts the
 * partial copy (upsert) or removes it (erase), then completes the events.
 * Delivery is at least once and in order per record: the outbox hands out
 * only the oldest pending event of each subject, and a failed event is
 * retried with backoff before any later event of the same subject.
 * Several workers may run against one database; they share work only through
 * the outbox's row locks.
 */
export function startReplicationWorker(options: ReplicationWorkerOptions): ReplicationWorker {
  const { db, logger } = options;
  const pollMs = options.pollMs ?? 200;
  const batchSize = options.batchSize ?? 100;
  const leaseMs = options.leaseMs ?? 120_000;
  const concurrency = options.concurrency ?? 8;
  const retry = options.retry ?? DEFAULT_RETRY;

  const destinations = new Map<string, Destination>();
  for (const [name, destination] of Object.entries(options.policy.destinations)) {
    if (Object.keys(destination.records).length > 0) {
      destinations.set(name, options.destinations?.get(name) ?? createDestination(destination.target, options.dataDir));
    }
  }
  const stats = createReplicationStats([...destinations.keys()]);

  let stopping = false;
  // Aborted on stop, so a waiting drain() rejects at once.
  const stopped = new AbortController();
  let wake: (() => void) | undefined;
  const passListeners = new Set<() => void>();

  const deliverer: Deliverer = { ...options, retry, concurrency, stats };

  // Returns whether a batch was full, and the code of the first database error of the pass.
  const runPass = async (): Promise<{ full: boolean; failure?: string }> => {
    let full = false;
    let failure: string | undefined;
    for (const [name, destination] of destinations) {
      if (stopping) {
        break;
      }
      try {
        // The deadline is taken before the claim, so it is never later than the lease's end in the database.
        const startBy = Date.now() + leaseMs - Math.min(LEASE_MARGIN_MS, leaseMs / 2);
        const events = await claimOutbox(db, { destination: name, limit: batchSize, leaseMs });
        if (events.length > 0) {
          await deliverBatch(deliverer, name, destination, events, startBy);
        }
        full ||= events.length >= batchSize;
      } catch (error) {
        failure ??= errorCode(error);
      }
    }
    try {
      await measureLag(db, stats);
    } catch (error) {
      failure ??= errorCode(error);
    }
    return failure === undefined ? { full } : { full, failure };
  };

  let consecutiveFailures = 0;
  // Logs a database outage at the 1st, 2nd, 4th, 8th ... failed pass, so an outage does not flood the log.
  const trackFailures = (failure: string | undefined): void => {
    if (failure !== undefined) {
      consecutiveFailures += 1;
      if ((consecutiveFailures & (consecutiveFailures - 1)) === 0) {
        logger.error(
          { event: 'replication.outbox_failed', errorCode: failure, consecutiveFailures },
          'replication failed to claim, settle or count outbox events; retrying with backoff',
        );
      }
    } else if (consecutiveFailures > 0) {
      logger.info({ event: 'replication.outbox_recovered', consecutiveFailures }, 'replication reached the outbox again');
      consecutiveFailures = 0;
    }
  };

  const loop = (async () => {
    while (!stopping) {
      const pass = await runPass();
      trackFailures(pass.failure);
      for (const listener of [...passListeners]) {
        listener();
      }
      if (stopping || (pass.full && pass.failure === undefined)) {
        continue;
      }
      const waitMs = consecutiveFailures === 0 ? pollMs : Math.min(MAX_FAILURE_WAIT_MS, pollMs * 2 ** Math.min(consecutiveFailures, 20));
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, waitMs);
        function done(): void {
          clearTimeout(timer);
          wake = undefined;
          resolve();
        }
        wake = done;
      });
    }
  })();

  return {
    stats,

    async stop(): Promise<void> {
      stopping = true;
      stopped.abort();
      wake?.();
      await loop;
      await Promise.all([...destinations.values()].map((destination) => destination.close()));
      logger.info({ event: 'replication.stopped', delivered: stats.delivered, failed: stats.failed }, 'replication worker stopped');
    },

    async drain(timeoutMs = 30_000): Promise<void> {
      const deadline = Date.now() + timeoutMs;
      // The first wait covers two passes, because the pass running at this point may have claimed before the caller's last write.
      let passes = 2;
      while (!stopping) {
        const finished = await waitForPasses(passListeners, () => wake?.(), passes, deadline - Date.now(), stopped.signal);
        passes = 1;
        if (finished && consecutiveFailures === 0 && stats.pending === 0) {
          return;
        }
        if (Date.now() >= deadline) {
          throw new DomicileError('unavailable', `replication did not drain within ${timeoutMs} ms: ${stats.pending} events pending`);
        }
      }
      throw new DomicileError('unavailable', 'replication worker is stopping');
    },
  };
}

/**
 * Resolves true after `count` more passes have finished, or false after
 * `timeoutMs` or when `signal` aborts. `poke` ends an idle wait, so the passes
 * start at once.
 */
function waitForPasses(listeners: Set<() => void>, poke: () => void, count: number, timeoutMs: number, signal: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    let remaining = count;
    const finish = (finished: boolean): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', abort);
      listeners.delete(listener);
      resolve(finished);
    };
    const abort = (): void => finish(false);
    const listener = (): void => {
      remaining -= 1;
      if (remaining === 0) {
        finish(true);
      } else {
        poke();
      }
    };
    const timer = setTimeout(() => finish(false), Math.max(0, timeoutMs));
    if (signal.aborted) {
      finish(false);
      return;
    }
    signal.addEventListener('abort', abort);
    listeners.add(listener);
    poke();
  });
}

interface Deliverer extends ReplicationWorkerOptions {
  retry: RetryPolicy;
  concurrency: number;
  stats: ReplicationStats;
}

/**
 * Delivers one claimed batch and settles it: delivered events are completed
 * together, failed ones are rescheduled, and events that could not start by
 * `startBy` (epoch milliseconds) are left for the next claim after the lease.
 * Events of one record run one after another in claim order, and a failure
 * defers the record's later events too, so a newer state is never
 * overwritten by an older one.
 */
async function deliverBatch(deliverer: Deliverer, name: string, destination: Destination, events: OutboxEvent[], startBy: number): Promise<void> {
  const groups = new Map<string, OutboxEvent[]>();
  for (const event of events) {
    const record = `${event.subjectId}/${event.recordType}`;
    const group = groups.get(record);
    if (group === undefined) {
      groups.set(record, [event]);
    } else {
      group.push(event);
    }
  }

  const delivered: string[] = [];
  const failed: Array<{ event: OutboxEvent; code: string }> = [];
  let deferred = 0;
  await forEachConcurrently([...groups.values()], deliverer.concurrency, async (group) => {
    let blockedBy: string | undefined;
    for (const event of group) {
      if (blockedBy === undefined && Date.now() > startBy) {
        deferred += group.length - group.indexOf(event);
        return;
      }
      if (blockedBy !== undefined) {
        failed.push({ event, code: blockedBy });
        continue;
      }
      try {
        await deliverEvent(deliverer, name, destination, event);
        delivered.push(event.id);
      } catch (error) {
        blockedBy = errorCode(error);
        failed.push({ event, code: blockedBy });
      }
    }
  });

  if (deferred > 0) {
    deliverer.logger.warn(
      { event: 'replication.lease_running_out', destination: name, deferred },
      'replication left events for the next claim because their lease was running out; lower batchSize or raise leaseMs',
    );
  }
  if (delivered.length > 0) {
    await completeOutbox(deliverer.db, delivered);
    deliverer.stats.recordDelivered(name, delivered.length);
  }
  for (const { event, code } of failed) {
    const delayMs = retryDelayMs(event.attempts, deliverer.retry);
    await failOutbox(deliverer.db, event.id, { errorCode: code, retryAt: new Date(Date.now() + delayMs) });
    deliverer.stats.recordFailed(name, 1);
    deliverer.logger.warn(
      { event: 'replication.delivery_failed', eventId: event.id, destination: name, op: event.op, errorCode: code, attempts: event.attempts, retryInMs: delayMs },
      'replication delivery failed; will retry',
    );
  }
}

/**
 * Applies one event to the destination. The record is loaded as it is now,
 * not as it was when the event was written: a later state is always at least
 * as new, and an erased record must never be written again.
 */
async function deliverEvent(deliverer: Deliverer, name: string, destination: Destination, event: OutboxEvent): Promise<void> {
  const key = partialCopyKey(event.recordType, event.subjectToken);
  if (event.op === 'erase') {
    await destination.remove(key);
    return;
  }

  const loaded = await deliverer.vault.loadForReplication(event.subjectId, event.recordType);
  if (loaded === undefined || 'erased' in loaded) {
    await destination.remove(key);
    return;
  }
  const { policy, keyring, tokens } = deliverer;

  const requests = randomTokenRequests(policy, name, loaded);
  let randomToken: ((namespace: string, value: string) => string) | undefined;
  if (requests.length > 0) {
    if (tokens === undefined) {
      throw new DomicileError('internal', `$.destinations.${name} receives random tokens, which need the token store: start the worker with tokens`);
    }
    randomToken = randomTokenLookup(await tokens.randomTokensForSubject(loaded.subjectToken, requests));
  }
  const copy = projectRecord(policy, name, loaded, keyring, randomToken === undefined ? {} : { randomToken });

  // Recorded before the put, so a keyring version is never retired while a copy abroad may still carry its tokens.
  // A copy can mix versions (a random token keeps the version it was made with), so the oldest one counts.
  const versions = Object.values(copy.tokenVersions ?? {});
  if (tokens !== undefined && versions.length > 0) {
    await tokens.recordTokenVersion({ destination: name, subjectToken: loaded.subjectToken, recordType: loaded.recordType, keyVersion: Math.min(...versions) });
  }
  await destination.put(key, serializePartialCopy(copy));
}

async function forEachConcurrently<T>(items: readonly T[], limit: number, run: (item: T) => Promise<void>): Promise<void> {
  // The lanes share one iterator, so each item runs exactly once.
  const iterator = items[Symbol.iterator]();
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    for (let step = iterator.next(); step.done !== true; step = iterator.next()) {
      await run(step.value);
    }
  });
  await Promise.all(lanes);
}
