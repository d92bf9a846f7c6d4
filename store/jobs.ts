import type { Database, Queryable } from './database.ts';

/**
 * Maintenance jobs in the `jobs` table. Job states are `pending`, `running`,
 * `completed` and `failed`. A worker claims one job with FOR UPDATE SKIP
 * LOCKED and keeps it for a lease. It saves a cursor after each batch, so
 * when it stops or its lease runs out, another worker resumes after that cursor.
 */
export type JobState = 'pending' | 'running' | 'completed' | 'failed';

export interface Job {
  id: string;
  kind: string;
  state: JobState;
  params: Record<string, unknown>;
  cursor: string | null;
  done: number;
  total: number;
  attempts: number;
  lastErrorCode: string | null;
  createdAt: string;
  completedAt: string | null;
}

/** A job that failed this many times is left `failed` instead of being retried. */
export const MAX_JOB_ATTEMPTS = 5;

interface JobRow {
  id: string;
  kind: string;
  state: JobState;
  params: Record<string, unknown>;
  cursor: string | null;
  done: string;
  total: string;
  attempts: number;
  last_error_code: string | null;
  created_at: Date;
  completed_at: Date | null;
}

const COLUMNS = 'id, kind, state, params, cursor, done, total, attempts, last_error_code, created_at, completed_at';

function toJob(row: JobRow): Job {
  return {
    id: String(row.id),
    kind: row.kind,
    state: row.state,
    params: row.params,
    cursor: row.cursor,
    done: Number(row.done),
    total: Number(row.total),
    attempts: row.attempts,
    lastErrorCode: row.last_error_code,
    createdAt: row.created_at.toISOString(),
    completedAt: row.completed_at?.toISOString() ?? null,
  };
}

export async function createJob(queryable: Queryable, input: { kind: string; params: Record<string, unknown>; total?: number }): Promise<Job> {
  const result = await queryable.query<JobRow>(
    `INSERT INTO jobs (kind, params, total) VALUES ($1, $2, $3) RETURNING ${COLUMNS}`,
    [input.kind, JSON.stringify(input.params), input.total ?? 0],
  );
  const row = result.rows[0];
  if (row === undefined) {
    throw new Error('INSERT INTO jobs returned no row');
  }
  return toJob(row);
}

export async function getJob(db: Database, id: string): Promise<Job | undefined> {
  const result = await db.pool.query<JobRow>(`SELECT ${COLUMNS} FROM jobs WHERE id = $1`, [id]);
  const row = result.rows[0];
  return row === undefined ? undefined : toJob(row);
}

/** Lists the newest jobs of a kind, newest first. */
export async function listJobs(db: Database, kind: string, limit = 20): Promise<Job[]> {
  const result = await db.pool.query<JobRow>(`SELECT ${COLUMNS} FROM jobs WHERE kind = $1 ORDER BY id DESC LIMIT $2`, [kind, limit]);
  return result.rows.map(toJob);
}

/**
 * Claims the oldest runnable job of the given kinds: a pending job whose retry
 * time has come, or a running job whose lease ran out (its worker stopped).
 */
export async function claimJob(db: Database, input: { kinds: readonly string[]; leaseMs: number }): Promise<Job | undefined> {
  const result = await db.pool.query<JobRow>(
    `UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_until = now() + make_interval(secs => $2::double precision / 1000), updated_at = now()
     WHERE id = (
       SELECT id FROM jobs
       WHERE kind = ANY($1::text[])
         AND ((state = 'pending' AND (lease_until IS NULL OR lease_until <= now())) OR (state = 'running' AND lease_until <= now()))
       ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED
     )
     RETURNING ${COLUMNS}`,
    [[...input.kinds], input.leaseMs],
  );
  const row = result.rows[0];
  return row === undefined ? undefined : toJob(row);
}

/**
 * Saves progress and extends the lease. Returns false when the job is no
 * longer running (superseded, or taken over after the lease ran out), so the
 * caller stops working on it.
 */
export async function saveJobProgress(
  db: Database,
  id: string,
  progress: { cursor: string | null; done: number; total: number; leaseMs: number },
): Promise<boolean> {
  const result = await db.pool.query(
    `UPDATE jobs SET cursor = $2, done = $3, total = $4, lease_until = now() + make_interval(secs => $5::double precision / 1000), updated_at = now()
     WHERE id = $1 AND state = 'running'`,
    [id, progress.cursor, progress.done, progress.total, progress.leaseMs],
  );
  return result.rowCount === 1;
}

export async function completeJob(db: Database, id: string, progress: { done: number; total: number }): Promise<void> {
  await db.pool.query(
    `UPDATE jobs SET state = 'completed', done = $2, total = $3, lease_until = NULL, completed_at = now(), updated_at = now()
     WHERE id = $1 AND state = 'running'`,
    [id, progress.done, progress.total],
  );
}

/**
 * Records a failed attempt: the job goes back to `pending` and becomes
 * runnable again after `retryMs`, keeping its cursor, or ends `failed` after
 * MAX_JOB_ATTEMPTS attempts.
 */
export async function failJob(db: Database, id: string, input: { errorCode: string; retryMs: number }): Promise<void> {
  await db.pool.query(
    `UPDATE jobs SET state = CASE WHEN attempts >= $4 THEN 'failed' ELSE 'pending' END,
       last_error_code = $2, lease_until = now() + make_interval(secs => $3::double precision / 1000), updated_at = now()
     WHERE id = $1 AND state = 'running'`,
    [id, input.errorCode, input.retryMs, MAX_JOB_ATTEMPTS],
  );
}

/** Marks every open job of a kind as failed with `superseded`, except `keepId`. */
export async function supersedeJobs(queryable: Queryable, kind: string, keepId: string): Promise<number> {
  const result = await queryable.query(
    `UPDATE jobs SET state = 'failed', last_error_code = 'superseded', lease_until = NULL, updated_at = now()
     WHERE kind = $1 AND id <> $2 AND state IN ('pending', 'running')`,
    [kind, keepId],
  );
  return result.rowCount ?? 0;
}
