import type { Database, Queryable } from './database.ts';

export interface OutboxEvent {
  id: string;
  destination: string;
  subjectId: string;
  subjectToken: string;
  recordType: string;
  op: 'upsert' | 'erase';
  recordVersion: number;
  /** Delivery attempts so far, this one included. */
  attempts: number;
}

export interface OutboxStats {
  destination: string;
  /** Events not yet delivered, leased ones included. */
  open: number;
  /** Open events that failed at least once. */
  retrying: number;
  /** Age in seconds of the oldest open event; 0 when none is open. */
  oldestAgeSeconds: number;
}

interface OutboxRow {
  id: string;
  destination: string;
  subject_id: string;
  subject_token: string;
  record_type: string;
  op: 'upsert' | 'erase';
  record_version: number;
  attempts: number;
}

/** Adds one event; call it inside the transaction of the change it describes. */
export async function enqueueOutbox(
  client: Queryable,
  event: Omit<OutboxEvent, 'id' | 'attempts'>,
): Promise<void> {
  await client.query(
    `INSERT INTO outbox (destination, subject_id, subject_token, record_type, op, record_version)
     VALUES ($1, $2, $3, $4, $5, $6)`,
    [event.destination, event.subjectId, event.subjectToken, event.recordType, event.op, event.recordVersion],
  );
}

/**
 * Leases up to `limit` events of one destination for `leaseMs` milliseconds.
 * Only the oldest open event of each subject is eligible, so a subject's
 * events are delivered one after the other, in order. Rows locked by another
 * worker are skipped. An event whose lease ran out without completion is
 * eligible again (at-least-once delivery).
 *
 * `completed_at IS NULL` is repeated in the locking step because Postgres
 * re-checks only that step's conditions on a row another worker just changed.
 */
export async function claimOutbox(
  db: Database,
  options: { destination: string; limit: number; leaseMs: number },
): Promise<OutboxEvent[]> {
  const result = await db.pool.query<OutboxRow>(
    `WITH heads AS (
       SELECT DISTINCT ON (subject_id) id
       FROM outbox
       WHERE destination = $1 AND completed_at IS NULL
       ORDER BY subject_id, id
     ), ready AS (
       SELECT o.id
       FROM outbox o JOIN heads h ON h.id = o.id
       WHERE o.completed_at IS NULL
         AND o.available_at <= now()
         AND (o.lease_until IS NULL OR o.lease_until < now())
       ORDER BY o.id
       LIMIT $2
       FOR UPDATE OF o SKIP LOCKED
     )
     UPDATE outbox SET lease_until = now() + $3 * interval '1 millisecond', attempts = attempts + 1
     FROM ready WHERE outbox.id = ready.id
     RETURNING outbox.id, outbox.destination, outbox.subject_id, outbox.subject_token, outbox.record_type,
               outbox.op, outbox.record_version, outbox.attempts`,
    [options.destination, options.limit, options.leaseMs],
  );
  return result.rows
    .map((row) => ({
      id: String(row.id),
      destination: row.destination,
      subjectId: row.subject_id,
      subjectToken: row.subject_token,
      recordType: row.record_type,
      op: row.op,
      recordVersion: row.record_version,
      attempts: row.attempts,
    }))
    .sort((a, b) => Number(BigInt(a.id) - BigInt(b.id)));
}

/** Marks delivered events as done, which makes each subject's next event eligible. */
export async function completeOutbox(db: Database, ids: readonly string[]): Promise<void> {
  if (ids.length === 0) {
    return;
  }
  await db.pool.query(
    'UPDATE outbox SET completed_at = now(), lease_until = NULL, last_error_code = NULL WHERE id = ANY($1::bigint[])',
    [ids],
  );
}

/**
 * Releases a failed event for another attempt at `retryAt`. Later events of
 * the same subject wait behind it, so order per subject holds. `errorCode` is
 * a short code, never a message that could carry a value.
 */
export async function failOutbox(db: Database, id: string, options: { errorCode: string; retryAt: Date }): Promise<void> {
  await db.pool.query(
    'UPDATE outbox SET lease_until = NULL, available_at = $2, last_error_code = $3 WHERE id = $1 AND completed_at IS NULL',
    [id, options.retryAt, options.errorCode.slice(0, 64)],
  );
}

export async function outboxStats(db: Database): Promise<OutboxStats[]> {
  const result = await db.pool.query<{ destination: string; open: string; retrying: string; oldest_age: number | null }>(
    `SELECT destination,
            count(*) AS open,
            count(*) FILTER (WHERE last_error_code IS NOT NULL) AS retrying,
            extract(epoch FROM now() - min(created_at))::float8 AS oldest_age
     FROM outbox WHERE completed_at IS NULL
     GROUP BY destination ORDER BY destination`,
  );
  return result.rows.map((row) => ({
    destination: row.destination,
    open: Number(row.open),
    retrying: Number(row.retrying),
    oldestAgeSeconds: row.oldest_age ?? 0,
  }));
}
