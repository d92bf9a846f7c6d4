import type { Logger } from 'pino';
import { DomicileError } from '../policy/errors.ts';
import type { Policy } from '../policy/schema.ts';
import { withTransaction, type Database } from './database.ts';
import { claimJob, completeJob, createJob, failJob, listJobs, saveJobProgress, supersedeJobs, type Job } from './jobs.ts';

/**
 * Re-tokenizing after `domicile keys rotate-tokenization`. Format-preserving
 * tokens cannot carry their key version, so the store records per destination
 * and record which version the partial copy abroad was made with
 * (`token_version_uses`). This job queues an outbox upsert for every such copy
 * made with an older version. The replication worker then projects the record
 * again with its current keyring, replaces the copy abroad and records the new
 * version. Once no copy needs the old version, it can be retired.
 *
 * Replication workers load the keyring at start, so they must be restarted
 * after the rotation, before this job runs; a worker still on the old version
 * records the old version again, and the usage count shows it.
 *
 * NOTE: format-preserving tokens that the tokenize API or a record read abroad
 * returned are not recorded by the store, so no job can re-issue them; their
 * holders re-tokenize through the API. Random token mappings keep their
 * version (the token names it), so a copy with a random token field still
 * counts against that version after this job.
 */

/** Job kind. Stored in `jobs.kind`: never rename it. */
export const RETOKENIZE_JOB = 'retokenize';

const DEFAULT_LEASE_MS = 60_000;
const DEFAULT_BATCH_SIZE = 500;

/** Position after the last copy queued, in the order of the primary key of `token_version_uses`. */
interface Cursor {
  destination: string;
  subjectId: string;
  recordType: string;
}

function parseCursor(text: string | null): Cursor | undefined {
  if (text === null) {
    return undefined;
  }
  const [destination, subjectId, recordType] = JSON.parse(text) as [string, string, string];
  return { destination, subjectId, recordType };
}

/** Destinations of the policy, by the record types that their projection names. */
function destinationsOf(policy: Policy): Array<{ destination: string; recordTypes: string[] }> {
  return Object.entries(policy.destinations).map(([destination, spec]) => ({ destination, recordTypes: Object.keys(spec.records) }));
}

const STALE_COPIES = `
  FROM token_version_uses u
  JOIN subjects s ON s.id = u.subject_id AND s.erased_at IS NULL
  JOIN records r ON r.subject_id = u.subject_id AND r.record_type = u.record_type AND r.erased_at IS NULL
  WHERE u.key_version < $1`;

/** Counts the partial copies abroad whose tokens were made with a version older than `targetVersion`. */
export async function countStaleCopies(db: Database, targetVersion: number): Promise<number> {
  const result = await db.pool.query<{ count: string }>(`SELECT count(*) AS count ${STALE_COPIES}`, [targetVersion]);
  return Number(result.rows[0]?.count ?? 0);
}

/**
 * Queues a re-tokenize job for the keyring's current version, or returns the
 * open job for that version so an interrupted run resumes at its cursor. Open
 * jobs for older versions are superseded, since the new job covers their copies.
 */
export async function startRetokenize(db: Database, targetVersion: number): Promise<{ job: Job; resumed: boolean }> {
  const open = (await listJobs(db, RETOKENIZE_JOB, 20)).find(
    (job) => (job.state === 'pending' || job.state === 'running') && job.params['targetVersion'] === targetVersion,
  );
  if (open !== undefined) {
    return { job: open, resumed: true };
  }
  const total = await countStaleCopies(db, targetVersion);
  const job = await withTransaction(db, async (client) => {
    const created = await createJob(client, { kind: RETOKENIZE_JOB, params: { targetVersion }, total });
    await supersedeJobs(client, RETOKENIZE_JOB, created.id);
    return created;
  });
  return { job, resumed: false };
}

/** Returns the newest re-tokenize job, for progress display. */
export async function latestRetokenizeJob(db: Database): Promise<Job | undefined> {
  return (await listJobs(db, RETOKENIZE_JOB, 1))[0];
}

export interface RetokenizeRunner {
  /** Claims and runs at most one re-tokenize job; returns the job it ran, or undefined when none was runnable. */
  runOnce(): Promise<Job | undefined>;
}

export interface RetokenizeRunnerOptions {
  db: Database;
  policy: Policy;
  logger: Logger;
  batchSize?: number;
  leaseMs?: number;
  /** Called after each batch with the copies examined so far and the expected total. */
  onProgress?: (done: number, total: number) => void;
}

/**
 * Runs re-tokenize jobs, for `domicile keys retokenize` and the worker role's
 * maintenance loop; only destinations of `policy` that project the record type get events.
 */
export function createRetokenizeRunner(options: RetokenizeRunnerOptions): RetokenizeRunner {
  const { db, logger } = options;
  const leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS;
  const batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE;

  return {
    async runOnce() {
      const job = await claimJob(db, { kinds: [RETOKENIZE_JOB], leaseMs });
      if (job === undefined) {
        return undefined;
      }
      try {
        const targetVersion = job.params['targetVersion'];
        if (typeof targetVersion !== 'number' || !Number.isSafeInteger(targetVersion)) {
          throw new DomicileError('internal', `re-tokenize job ${job.id} has no valid targetVersion`);
        }
        await runRetokenize(db, job, { targetVersion, policy: options.policy, batchSize, leaseMs, onProgress: options.onProgress ?? (() => undefined) });
        logger.info({ event: 'retokenize.completed', jobId: job.id, keyVersion: targetVersion }, 'queued re-projection of partial copies with older token versions');
      } catch (error) {
        const errorCode = error instanceof DomicileError ? error.code : 'internal';
        logger.error({ event: 'retokenize.failed', jobId: job.id, errorCode, attempt: job.attempts }, 're-tokenize job failed; it will be retried');
        await failJob(db, job.id, { errorCode, retryMs: Math.min(60_000, 1000 * 2 ** job.attempts) });
      }
      return job;
    },
  };
}

interface StaleCopyRow {
  destination: string;
  subject_id: string;
  subject_token: string;
  record_type: string;
  version: number;
}

/**
 * Walks the stale copies in primary key order, one batch per transaction, and
 * saves the cursor after each batch. A copy that already has an open outbox
 * event is skipped: the worker loads the record when it delivers, so that
 * event re-projects it with the current version too.
 */
async function runRetokenize(
  db: Database,
  job: Job,
  options: { targetVersion: number; policy: Policy; batchSize: number; leaseMs: number; onProgress: (done: number, total: number) => void },
): Promise<void> {
  const destinations = JSON.stringify(destinationsOf(options.policy));
  let cursor = parseCursor(job.cursor);
  let done = job.done;

  for (;;) {
    const rows = await withTransaction(db, async (client) => {
      const batch = await client.query<StaleCopyRow>(
        `SELECT u.destination, u.subject_id, s.token AS subject_token, u.record_type, r.version
         ${STALE_COPIES}
           AND ($2::text IS NULL OR (u.destination, u.subject_id, u.record_type) > ($2::text, $3::uuid, $4::text))
         ORDER BY u.destination, u.subject_id, u.record_type
         LIMIT $5`,
        [options.targetVersion, cursor?.destination ?? null, cursor?.subjectId ?? null, cursor?.recordType ?? null, options.batchSize],
      );
      // One INSERT per batch; the destination list limits events to destinations that still project the record type.
      await client.query(
        `INSERT INTO outbox (destination, subject_id, subject_token, record_type, op, record_version)
         SELECT c.destination, c.subject_id, c.subject_token, c.record_type, 'upsert', c.version
         FROM jsonb_to_recordset($1::jsonb) AS c(destination text, subject_id uuid, subject_token text, record_type text, version integer)
         WHERE EXISTS (
           SELECT 1 FROM jsonb_to_recordset($2::jsonb) AS d(destination text, "recordTypes" jsonb)
           WHERE d.destination = c.destination AND d."recordTypes" ? c.record_type
         )
         AND NOT EXISTS (
           SELECT 1 FROM outbox o
           WHERE o.destination = c.destination AND o.subject_id = c.subject_id AND o.record_type = c.record_type AND o.completed_at IS NULL
         )`,
        [JSON.stringify(batch.rows), destinations],
      );
      return batch.rows;
    });

    const last = rows.at(-1);
    if (last === undefined) {
      break;
    }
    done += rows.length;
    cursor = { destination: last.destination, subjectId: last.subject_id, recordType: last.record_type };
    const cursorText = JSON.stringify([cursor.destination, cursor.subjectId, cursor.recordType]);
    const stillOurs = await saveJobProgress(db, job.id, { cursor: cursorText, done, total: Math.max(job.total, done), leaseMs: options.leaseMs });
    if (!stillOurs) {
      return;
    }
    options.onProgress(done, Math.max(job.total, done));
  }
  await completeJob(db, job.id, { done, total: Math.max(job.total, done) });
}
