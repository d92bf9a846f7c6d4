import type { Logger } from 'pino';
import { DomicileError } from '../policy/errors.ts';
import type { KeyProvider } from '../tokenizer/keys/provider.ts';
import { withTransaction, type Database } from './database.ts';
import { claimJob, completeJob, createJob, failJob, listJobs, saveJobProgress, supersedeJobs, type Job } from './jobs.ts';
import { rewrapKeys } from './rewrap.ts';

/** Job kinds. Stored in `jobs.kind`: never rename them. */
export const KEK_REWRAP_JOB = 'kek-rewrap';
/** A completed job of this kind records that an operator retired a KEK version. */
export const KEK_RETIRE_JOB = 'kek-retire';

const DEFAULT_LEASE_MS = 60_000;
/** A rewrap pass misses keys that gateways still wrapped with the old KEK behind its cursor; later passes pick them up. */
const MAX_PASSES = 3;

/** A provider that can add a KEK version itself, as the local key file can. */
interface RotatableKeyProvider extends KeyProvider {
  rotate(): Promise<string>;
}

function canRotate(keys: KeyProvider): keys is RotatableKeyProvider {
  return typeof (keys as Partial<RotatableKeyProvider>).rotate === 'function';
}

export interface KekVersionStatus {
  kekVersion: string;
  dataKeys: number;
  tokenizationSecrets: number;
  retired: boolean;
}

/**
 * Creates a new KEK version when the provider can (the local key file), or
 * takes the provider's configured version (AWS KMS: the key id of the
 * configuration), then queues a rewrap job for the worker role. Older open
 * rewrap jobs are superseded, since the new job rewraps everything they would.
 */
export async function startKekRotation(db: Database, keys: KeyProvider): Promise<{ job: Job; previousVersion: string; kekVersion: string }> {
  const previousVersion = keys.currentVersion();
  const kekVersion = canRotate(keys) ? await keys.rotate() : previousVersion;
  const remaining = await db.pool.query<{ count: string }>('SELECT count(*) AS count FROM data_keys WHERE kek_version <> $1', [kekVersion]);
  const job = await withTransaction(db, async (client) => {
    const created = await createJob(client, { kind: KEK_REWRAP_JOB, params: { targetKekVersion: kekVersion, previousKekVersion: previousVersion }, total: Number(remaining.rows[0]?.count ?? 0) });
    await supersedeJobs(client, KEK_REWRAP_JOB, created.id);
    return created;
  });
  return { job, previousVersion, kekVersion };
}

/** Counts the data keys and tokenization secrets that each KEK version wraps, retired versions included. */
export async function kekStatus(db: Database): Promise<KekVersionStatus[]> {
  const dataKeys = await db.pool.query<{ kek_version: string; count: string }>('SELECT kek_version, count(*) AS count FROM data_keys GROUP BY kek_version');
  const secrets = await db.pool.query<{ kek_version: string; count: string }>('SELECT kek_version, count(*) AS count FROM tokenization_keys GROUP BY kek_version');
  const retired = await db.pool.query<{ version: string }>("SELECT DISTINCT params->>'kekVersion' AS version FROM jobs WHERE kind = $1", [KEK_RETIRE_JOB]);
  const jobs = await db.pool.query<{ version: string }>(
    `SELECT params->>'targetKekVersion' AS version FROM jobs WHERE kind = $1
     UNION SELECT params->>'previousKekVersion' FROM jobs WHERE kind = $1 AND params ? 'previousKekVersion'`,
    [KEK_REWRAP_JOB],
  );

  const byVersion = new Map<string, KekVersionStatus>();
  const entry = (kekVersion: string): KekVersionStatus => {
    let status = byVersion.get(kekVersion);
    if (status === undefined) {
      status = { kekVersion, dataKeys: 0, tokenizationSecrets: 0, retired: false };
      byVersion.set(kekVersion, status);
    }
    return status;
  };
  for (const row of dataKeys.rows) entry(row.kek_version).dataKeys = Number(row.count);
  for (const row of secrets.rows) entry(row.kek_version).tokenizationSecrets = Number(row.count);
  for (const row of jobs.rows) entry(row.version);
  for (const row of retired.rows) entry(row.version).retired = true;
  return [...byVersion.values()].sort((a, b) => a.kekVersion.localeCompare(b.kekVersion, 'en', { numeric: true }));
}

/**
 * Records that a KEK version is retired. Rejected with `conflict` while any
 * data key or tokenization secret is still wrapped by it, or when it is the
 * provider's current version.
 * NOTE: retiring records the decision only. The local key file keeps the old
 * key until it is removed from the file, and a KMS key is disabled in KMS.
 */
export async function retireKekVersion(db: Database, keys: KeyProvider, kekVersion: string): Promise<void> {
  if (kekVersion === keys.currentVersion()) {
    throw new DomicileError('conflict', `KEK version ${kekVersion} is the current version; rotate first with domicile keys rotate`);
  }
  const status = (await kekStatus(db)).find((entry) => entry.kekVersion === kekVersion);
  if (status === undefined) {
    throw new DomicileError('not_found', `no data key, tokenization secret or rotation names KEK version ${kekVersion}`);
  }
  if (status.dataKeys > 0 || status.tokenizationSecrets > 0) {
    throw new DomicileError(
      'conflict',
      `KEK version ${kekVersion} still wraps ${status.dataKeys} data keys and ${status.tokenizationSecrets} tokenization secrets; wait for the rewrap job (domicile keys status)`,
    );
  }
  const job = await createJob(db.pool, { kind: KEK_RETIRE_JOB, params: { kekVersion } });
  await db.pool.query("UPDATE jobs SET state = 'completed', completed_at = now() WHERE id = $1", [job.id]);
}

export interface KekRewrapRunner {
  /** Claims and runs at most one rewrap job; returns the job it ran, or undefined when none was runnable. */
  runOnce(): Promise<Job | undefined>;
}

/**
 * Runs rewrap jobs. `openKeys` opens a key provider whose current version is
 * the job's target: the worker's own provider was opened before the rotation
 * and may still wrap with the old version.
 */
export function createKekRewrapRunner(options: {
  db: Database;
  keys: KeyProvider;
  /** Opens a provider that wraps with the job's target version, such as the configured providers after a rotation or a migration. */
  openKeys: (targetKekVersion: string) => Promise<KeyProvider>;
  logger: Logger;
  batchSize?: number;
  leaseMs?: number;
}): KekRewrapRunner {
  const { db, logger } = options;
  const leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS;

  return {
    async runOnce() {
      const job = await claimJob(db, { kinds: [KEK_REWRAP_JOB], leaseMs });
      if (job === undefined) {
        return undefined;
      }
      const target = String(job.params['targetKekVersion'] ?? '');
      let keys = options.keys;
      let opened: KeyProvider | undefined;
      try {
        if (keys.currentVersion() !== target) {
          opened = await options.openKeys(target);
          keys = opened;
        }
        if (keys.currentVersion() !== target) {
          throw new DomicileError('unavailable', `the key provider wraps with ${keys.currentVersion()}, but the job rewraps to ${target}`);
        }
        await runRewrap(db, keys, job, { leaseMs, ...(options.batchSize === undefined ? {} : { batchSize: options.batchSize }) });
        logger.info({ event: 'kek_rewrap.completed', jobId: job.id, kekVersion: target }, 'rewrapped the keys of older KEK versions');
      } catch (error) {
        const errorCode = error instanceof DomicileError ? error.code : 'internal';
        logger.error({ event: 'kek_rewrap.failed', jobId: job.id, errorCode, attempt: job.attempts }, 'KEK rewrap job failed; it will be retried');
        await failJob(db, job.id, { errorCode, retryMs: Math.min(60_000, 1000 * 2 ** job.attempts) });
      } finally {
        await opened?.close();
      }
      return job;
    },
  };
}

async function runRewrap(db: Database, keys: KeyProvider, job: Job, options: { leaseMs: number; batchSize?: number }): Promise<void> {
  let done = job.done;
  let cursor = job.cursor ?? undefined;
  for (let pass = 0; pass < MAX_PASSES; pass += 1) {
    const startDone = done;
    const result = await rewrapKeys(db, keys, {
      ...(cursor === undefined ? {} : { after: cursor }),
      ...(options.batchSize === undefined ? {} : { batchSize: options.batchSize }),
      onBatch: async (state) => {
        done = startDone + state.dataKeys;
        return saveJobProgress(db, job.id, { cursor: state.cursor, done, total: Math.max(job.total, done), leaseMs: options.leaseMs });
      },
    });
    if (result.stopped === true) {
      return;
    }
    done = startDone + result.dataKeys;
    cursor = undefined;
    const left = await db.pool.query<{ count: string }>('SELECT count(*) AS count FROM data_keys WHERE kek_version <> $1', [keys.currentVersion()]);
    if (Number(left.rows[0]?.count ?? 0) === 0) {
      // Every key counted at the start is done, including keys rewrapped after the last saved batch of an
      // interrupted run, which that run's progress never counted.
      done = Math.max(job.total, done);
      break;
    }
    // Keys created behind the cursor with the old KEK: start again from the first subject.
    await saveJobProgress(db, job.id, { cursor: null, done, total: Math.max(job.total, done), leaseMs: options.leaseMs });
  }
  await completeJob(db, job.id, { done, total: Math.max(job.total, done) });
}

/** Returns the newest rewrap job, for progress display. */
export async function latestRewrapJob(db: Database): Promise<Job | undefined> {
  return (await listJobs(db, KEK_REWRAP_JOB, 1))[0];
}
