import type { Logger } from 'pino';
import type { Keyring } from '../tokenizer/keyring.ts';
import { timingSafeEqual } from 'node:crypto';
import { chainHash, pendingMac, type AuditHead, type AuditRow } from './audit-chain.ts';
import pg from 'pg';
import type { Database } from './database.ts';

const { escapeLiteral } = pg;

/**
 * Sealing moves committed entries from `audit_pending` into the chain of
 * `audit_log`. Operations write their entries to `audit_pending` in their own
 * transaction, which takes no lock, so concurrent operations commit side by
 * side and can share a WAL flush. Only the sealer locks the chain head, and
 * one seal chains every entry committed before it, however many operations
 * wrote them.
 *
 * Order: entries are chained in the order of their `audit_pending` id among
 * the entries committed when the seal runs. An entry whose transaction commits
 * after a seal with a higher id already chained joins the next seal; its
 * sequence number then follows those entries.
 */
const SEAL_BATCH = 2000;

/** Actor and action of the entry chained in place of a pending entry that failed its checks. */
const SEALER_ACTOR_ID = 'system:audit-sealer';
const REJECTED_ACTION = 'audit.entry_rejected';

/**
 * Selects the pending entries of the key versions in this process's keyring.
 * An entry of another version, written by a process with a newer keyring,
 * waits for a sealer whose keyring has that version instead of being
 * rejected here.
 */
function selectPending(versions: readonly number[]): string {
  return `
  SELECT id, at, actor_id, actor_location, action, purpose, subject_token, record_type,
         fields, value_hmacs, item_counts, outcome, key_version, nonce, mac
  FROM audit_pending WHERE key_version = ANY(ARRAY[${versions.join(',')}]::integer[]) ORDER BY id LIMIT ${SEAL_BATCH}`;
}

/**
 * Builds the statement of a seal with its values as SQL literals, so that it
 * can travel with COMMIT in one message. `rows` is the JSON text of the
 * chained rows, which pg's escapeLiteral quotes here. The other values are
 * numbers and hex. The statement deletes the sealed pending rows, appends
 * them to audit_log and moves the head.
 */
function sealStatement(rows: string, head: AuditHead, ids: readonly number[]): string {
  return `
  WITH sealed AS (
    DELETE FROM audit_pending WHERE id = ANY(ARRAY[${ids.join(',')}]::bigint[])
  ), appended AS (
    INSERT INTO audit_log (seq, at, actor_id, actor_location, action, purpose, subject_token, record_type,
                           fields, value_hmacs, outcome, key_version, prev_hash, hash, item_counts)
    SELECT x.seq, x.at, x.actor_id, x.actor_location, x.action, x.purpose, x.subject_token, x.record_type,
           ARRAY(SELECT jsonb_array_elements_text(x.fields)), x.value_hmacs, x.outcome, x.key_version,
           decode(x.prev_hash, 'hex'), decode(x.hash, 'hex'), x.item_counts
    FROM jsonb_to_recordset(${escapeLiteral(rows)}::jsonb) AS x(seq bigint, at timestamptz, actor_id text, actor_location text, action text,
         purpose text, subject_token text, record_type text, fields jsonb, value_hmacs jsonb, outcome text,
         key_version integer, prev_hash text, hash text, item_counts jsonb)
  )
  UPDATE audit_head SET seq = ${head.seq}, hash = decode('${head.hash.toString('hex')}', 'hex') WHERE id = 1`;
}

type PendingRow = Omit<AuditRow, 'seq' | 'at' | 'prev_hash' | 'hash'> & { id: string; at: Date; nonce: Buffer; mac: Buffer };

/** Pending entries whose MAC or content failed the seal's checks, by id; see chainRows. */
export interface RejectedEntry {
  id: string;
  reason: string;
}

/**
 * Chains up to SEAL_BATCH committed pending entries in one transaction and
 * returns how many. The head row is locked before the pending rows are read,
 * in a later statement with its own snapshot, so two sealers never chain the
 * same entry: the second one reads after the first committed its deletions.
 * BEGIN, the lock and the read travel in one message, and the write and
 * COMMIT in a second, so a seal costs two round trips.
 */
async function sealBatch(db: Database, keyring: Keyring, onRejected: (rejected: RejectedEntry) => void): Promise<number> {
  const client = await db.pool.connect();
  let broken: Error | undefined;
  try {
    // The simple query protocol runs the three statements in order, each with a new snapshot.
    const results = (await client.query(
      `BEGIN; SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE; ${selectPending(keyring.auditVersions())}`,
    )) as unknown as [pg.QueryResult, pg.QueryResult<{ seq: string; hash: Buffer }>, pg.QueryResult<PendingRow>];
    const locked = results[1].rows[0];
    const pending = results[2].rows;
    if (locked === undefined) {
      throw new Error('audit_head row is missing; run the migrations');
    }
    if (pending.length === 0) {
      await client.query('ROLLBACK');
      return 0;
    }
    const chained = chainRows({ seq: Number(locked.seq), hash: locked.hash }, pending, keyring, onRejected);
    const ids = pending.map((row) => Number(row.id));
    if (!ids.every(Number.isSafeInteger)) {
      throw new Error('audit_pending id is out of range');
    }
    const write = sealStatement(JSON.stringify(chained.rows), chained.head, ids);
    await client.query(`${write}; COMMIT`);
    return pending.length;
  } catch (error) {
    try {
      await client.query('ROLLBACK');
    } catch (rollbackError) {
      broken = rollbackError as Error;
    }
    throw error;
  } finally {
    client.release(broken);
  }
}

/**
 * Chains `pending` after `head`, as JSON rows for sealStatement, and returns
 * the new head. An entry whose MAC does not match, or that cannot be chained
 * (an impossible time, say), was edited or inserted by someone without the
 * keyring: in its place the chain gets an `audit.entry_rejected` entry of the
 * sealer, so the tampering shows in the verified log, and `onRejected`
 * learns its id.
 */
function chainRows(
  head: AuditHead,
  pending: readonly PendingRow[],
  keyring: Keyring,
  onRejected: (rejected: RejectedEntry) => void,
): { rows: Array<Record<string, unknown>>; head: AuditHead } {
  let seq = head.seq;
  let prevHash = head.hash;
  const rows: Array<Record<string, unknown>> = [];
  for (const entry of pending) {
    seq += 1;
    const fields = checkedFields(entry, keyring);
    if (typeof fields === 'string') {
      onRejected({ id: entry.id, reason: fields });
    }
    const row: Omit<AuditRow, 'hash'> = { ...(typeof fields === 'string' ? rejectedFields(keyring) : fields), seq, prev_hash: prevHash };
    const hash = chainHash(keyring, row);
    rows.push({ ...row, prev_hash: prevHash.toString('hex'), hash: hash.toString('hex') });
    prevHash = hash;
  }
  return { rows, head: { seq, hash: prevHash } };
}

/** Returns the fields to chain for `entry`, or why it is rejected. */
function checkedFields(entry: PendingRow, keyring: Keyring): Omit<AuditRow, 'seq' | 'prev_hash' | 'hash'> | string {
  const { id: _id, at, nonce, mac, ...fields } = entry;
  if (!(at instanceof Date) || Number.isNaN(at.getTime())) {
    return 'time is not a valid timestamp';
  }
  const row = { ...fields, at: at.toISOString() };
  let expected: Buffer;
  try {
    expected = pendingMac(keyring, { ...row, nonce: nonce.toString('hex') });
  } catch {
    return 'entry cannot be checked';
  }
  if (mac.length !== expected.length || !timingSafeEqual(mac, expected)) {
    return 'MAC does not match: the entry was changed or written without the keyring';
  }
  return row;
}

function rejectedFields(keyring: Keyring): Omit<AuditRow, 'seq' | 'prev_hash' | 'hash'> {
  return {
    at: new Date().toISOString(),
    actor_id: SEALER_ACTOR_ID,
    actor_location: 'in-country',
    action: REJECTED_ACTION,
    purpose: null,
    subject_token: null,
    record_type: null,
    fields: [],
    value_hmacs: {},
    item_counts: null,
    outcome: 'failed',
    key_version: keyring.currentVersion,
  };
}

/**
 * Chains every entry committed before the call into `audit_log` and returns
 * how many it chained. Throws when the database fails.
 */
export async function sealAudit(db: Database, keyring: Keyring, onRejected: (rejected: RejectedEntry) => void = () => undefined): Promise<number> {
  let total = 0;
  for (;;) {
    const sealed = await sealBatch(db, keyring, onRejected);
    total += sealed;
    if (sealed < SEAL_BATCH) {
      return total;
    }
  }
}

/** Number of entries written but not yet chained. */
export async function countPendingAudit(db: Database): Promise<number> {
  return (await pendingAuditStats(db)).count;
}

/** Entries written but not yet chained, and the age of the oldest in seconds (0 when none). */
export async function pendingAuditStats(db: Database): Promise<{ count: number; oldestAgeSeconds: number }> {
  const result = await db.pool.query<{ count: number; age: number | null }>(
    'SELECT count(*)::int AS count, extract(epoch FROM now() - min(at))::float8 AS age FROM audit_pending',
  );
  const row = result.rows[0];
  return { count: row?.count ?? 0, oldestAgeSeconds: Math.max(0, row?.age ?? 0) };
}

export interface AuditSealer {
  /**
   * Resolves once a seal that started after the call has finished, so the
   * entries the caller committed before are chained. Calls that arrive while
   * a seal runs share the next one. Never rejects: the caller's transaction
   * has committed, and a failed seal is logged and retried by the next call
   * and by the worker's maintenance pass.
   */
  seal(keyring: Keyring): Promise<void>;
  /** Logger for failed seals. */
  useLogger(logger: Logger): void;
}

/** Logs a rejected pending entry by id and reason; the entry's content stays out of the log. */
export function logRejected(logger: Logger | undefined, rejected: RejectedEntry): void {
  logger?.error({ event: 'audit.entry_rejected', pendingId: rejected.id, reason: rejected.reason }, 'rejected a pending audit entry; an audit.entry_rejected entry took its place in the chain');
}

const sealers = new WeakMap<Database, AuditSealer>();

/** The one sealer of `db` in this process. */
export function auditSealerFor(db: Database): AuditSealer {
  let sealer = sealers.get(db);
  if (sealer === undefined) {
    sealer = createSealer(db);
    sealers.set(db, sealer);
  }
  return sealer;
}

function createSealer(db: Database): AuditSealer {
  let logger: Logger | undefined;
  let keyring: Keyring | undefined;
  let requested = 0;
  let running = false;
  const waiting: Array<{ ticket: number; resolve: () => void }> = [];

  const run = async (): Promise<void> => {
    running = true;
    let finished = 0;
    while (finished < requested && keyring !== undefined) {
      // Every call up to `ticket` committed before this seal starts.
      const ticket = requested;
      try {
        await sealAudit(db, keyring, (rejected) => logRejected(logger, rejected));
      } catch (error) {
        logger?.error({ event: 'audit.seal_failed', errorCode: (error as { code?: unknown }).code ?? 'error' }, 'sealing audit entries failed; they stay pending');
      }
      finished = ticket;
      for (let i = waiting.length - 1; i >= 0; i -= 1) {
        const entry = waiting[i];
        if (entry !== undefined && entry.ticket <= ticket) {
          waiting.splice(i, 1);
          entry.resolve();
        }
      }
    }
    running = false;
  };

  return {
    seal(current) {
      keyring = current;
      requested += 1;
      const ticket = requested;
      const done = new Promise<void>((resolve) => waiting.push({ ticket, resolve }));
      if (!running) {
        void run();
      }
      return done;
    },
    useLogger(next) {
      logger = next;
    },
  };
}
