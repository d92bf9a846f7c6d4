import { timingSafeEqual } from 'node:crypto';
import type pg from 'pg';
import type { Logger } from 'pino';
import type { Keyring } from '../tokenizer/keyring.ts';
import { chainHash, pendingMac, type AuditHead, type AuditRow } from './audit-chain.ts';
import { checkWatchedEntries, takeWatchedEntries } from './audit-watch.ts';
import { createCountedLog } from './counted-log.ts';
import { withClient, type Database } from './database.ts';


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
 * after a seal with a higher id already chained joins the next seal. Its
 * sequence number then follows those entries.
 *
 * NOTE: the MAC of a pending entry does not cover its id, so someone with
 * database write access can reorder entries before their seal without
 * detection. A deleted entry is written again by the process that wrote it
 * (see audit-watch.ts), unless that process stopped first.
 */
const SEAL_BATCH = 2000;

/** Actor and action of the entry chained in place of a pending entry that failed its checks. */
const SEALER_ACTOR_ID = 'system:audit-sealer';
const REJECTED_ACTION = 'audit.entry_rejected';

/**
 * Whether the pending row `p` has the shape of an entry this code writes:
 * short texts, a flat array of at most 1,000 field names without NULLs, and
 * small objects of strings and numbers. Real entries hold names and hashes, a
 * few hundred bytes. A row outside these bounds was written by someone else,
 * and reading it whole could exhaust this process, so the seal rejects it
 * without reading its content. `octet_length` reads the stored length of a
 * compressed text without expanding it. The CASE guards keep `jsonb_each`
 * away from non-objects, on which it would fail the whole seal.
 */
const WELL_FORMED = `(
  octet_length(p.actor_id) <= 1024 AND octet_length(p.actor_location) <= 64 AND octet_length(p.action) <= 256
  AND coalesce(octet_length(p.purpose), 0) <= 1024 AND coalesce(octet_length(p.subject_token), 0) <= 256
  AND coalesce(octet_length(p.record_type), 0) <= 256 AND octet_length(p.outcome) <= 64
  AND octet_length(p.nonce) <= 64 AND octet_length(p.mac) <= 64
  AND coalesce(cardinality(p.fields), 0) <= 1000 AND coalesce(array_ndims(p.fields), 1) = 1
  AND array_position(p.fields, NULL) IS NULL
  AND coalesce(octet_length(array_to_string(p.fields, ',')), 0) <= 65536
  AND CASE WHEN jsonb_typeof(p.value_hmacs) = 'object'
        THEN (SELECT count(*) <= 100 AND coalesce(bool_and(jsonb_typeof(e.value) = 'string' AND octet_length(e.key) <= 256
                                                            AND octet_length(e.value #>> '{}') <= 256), true)
              FROM jsonb_each(p.value_hmacs) AS e)
        ELSE false END
  AND CASE WHEN p.item_counts IS NULL THEN true
        WHEN jsonb_typeof(p.item_counts) = 'object'
        THEN (SELECT count(*) <= 1000 AND coalesce(bool_and(jsonb_typeof(e.value) = 'number' AND octet_length(e.key) <= 256), true)
              FROM jsonb_each(p.item_counts) AS e)
        ELSE false END
)`;

/**
 * Selects the pending entries of the key versions in `$1` (the versions of
 * the sealer's keyring), in id order. An entry of another version, written by
 * a process with a newer keyring, waits for a sealer whose keyring has that
 * version instead of being rejected here. An entry outside WELL_FORMED comes
 * back with only its id and `oversized` set. `replayed` is set when audit_log
 * already contains its nonce. `OFFSET 0` keeps the lateral subquery from
 * being merged into the outer query, where WELL_FORMED would be computed
 * once per output column instead of once per row.
 */
const SELECT_PENDING = `
  SELECT p.id::text AS id, s.oversized, NOT s.oversized AND EXISTS (SELECT 1 FROM audit_log l WHERE l.nonce = p.nonce) AS replayed,
         CASE WHEN s.oversized THEN NULL ELSE p.at END AS at,
         CASE WHEN s.oversized THEN NULL ELSE p.actor_id END AS actor_id,
         CASE WHEN s.oversized THEN NULL ELSE p.actor_location END AS actor_location,
         CASE WHEN s.oversized THEN NULL ELSE p.action END AS action,
         CASE WHEN s.oversized THEN NULL ELSE p.purpose END AS purpose,
         CASE WHEN s.oversized THEN NULL ELSE p.subject_token END AS subject_token,
         CASE WHEN s.oversized THEN NULL ELSE p.record_type END AS record_type,
         CASE WHEN s.oversized THEN NULL ELSE p.fields END AS fields,
         CASE WHEN s.oversized THEN NULL ELSE p.value_hmacs END AS value_hmacs,
         CASE WHEN s.oversized THEN NULL ELSE p.item_counts END AS item_counts,
         CASE WHEN s.oversized THEN NULL ELSE p.outcome END AS outcome,
         p.key_version,
         CASE WHEN s.oversized THEN NULL ELSE p.nonce END AS nonce,
         CASE WHEN s.oversized THEN NULL ELSE p.mac END AS mac
  FROM audit_pending p
  CROSS JOIN LATERAL (SELECT NOT coalesce(${WELL_FORMED}, false) AS oversized OFFSET 0) s
  WHERE p.key_version = ANY($1::integer[])
  ORDER BY p.id LIMIT ${SEAL_BATCH}`;

/**
 * Deletes the sealed pending rows (`$1`), appends the chained rows (`$2`, a
 * JSON array) to audit_log and moves the head to `$3` and `$4`.
 */
const WRITE_SEAL = `
  WITH sealed AS (
    DELETE FROM audit_pending WHERE id = ANY($1::bigint[])
  ), appended AS (
    INSERT INTO audit_log (seq, at, actor_id, actor_location, action, purpose, subject_token, record_type,
                           fields, value_hmacs, outcome, key_version, prev_hash, hash, item_counts, nonce)
    SELECT x.seq, x.at, x.actor_id, x.actor_location, x.action, x.purpose, x.subject_token, x.record_type,
           ARRAY(SELECT jsonb_array_elements_text(x.fields)), x.value_hmacs, x.outcome, x.key_version,
           decode(x.prev_hash, 'hex'), decode(x.hash, 'hex'), x.item_counts, decode(x.nonce, 'hex')
    FROM jsonb_to_recordset($2::jsonb) AS x(seq bigint, at timestamptz, actor_id text, actor_location text, action text,
         purpose text, subject_token text, record_type text, fields jsonb, value_hmacs jsonb, outcome text,
         key_version integer, prev_hash text, hash text, item_counts jsonb, nonce text)
  )
  UPDATE audit_head SET seq = $3::bigint, hash = $4::bytea WHERE id = 1`;

/**
 * Planning the two statements of a seal cost more than running them. The
 * pending read took 1.4 to 1.8 ms to plan and 0.1 ms to run for a few
 * entries (pg_stat_statements and EXPLAIN ANALYZE, Postgres 15). A seal runs
 * under the head lock, so no other seal could run while it planned. Each
 * connection therefore prepares the statements once, and the seal executes
 * them with a generic plan. The seal also turns off sequential scans for its
 * transaction, because `audit_pending` is a queue whose deleted rows wait for
 * vacuum. A sequential scan reads all of them (4 to 5 ms with 8,000 deleted
 * rows), while the primary key index reaches the few live ones.
 */
const STATEMENTS = { pending: 'domicile_audit_pending', write: 'domicile_audit_seal' } as const;
/** Connections whose session has the prepared STATEMENTS; a new connection is a new session. */
const preparedOn = new WeakSet<pg.PoolClient>();
/**
 * SQLSTATEs after which the seal prepares its statements again: 26000, the
 * session does not have them (after DISCARD ALL, say); 0A000, "cached plan
 * must not change result type", after a column of `audit_pending` changed
 * its type.
 */
const STALE_STATEMENT = new Set(['26000', '0A000']);
/** SQLSTATE of DEALLOCATE naming a statement that the session does not have. */
const UNKNOWN_STATEMENT = '26000';

/**
 * Prepares STATEMENTS on the connection of `client` unless it did so before.
 * A statement of the same name is dropped first: PGlite serves every
 * connection from one session, in which another pool may have prepared it,
 * and after a stale statement the session still has the old one.
 */
async function prepareStatements(client: pg.PoolClient): Promise<void> {
  if (preparedOn.has(client)) {
    return;
  }
  for (const [name, text, types] of [
    [STATEMENTS.pending, SELECT_PENDING, 'integer[]'],
    [STATEMENTS.write, WRITE_SEAL, 'bigint[], jsonb, bigint, bytea'],
  ] as const) {
    try {
      await client.query(`DEALLOCATE ${name}`);
    } catch (error) {
      if ((error as { code?: unknown }).code !== UNKNOWN_STATEMENT) throw error;
    }
    await client.query(`PREPARE ${name} (${types}) AS ${text}`);
  }
  preparedOn.add(client);
}

/**
 * Quotes `text` as an SQL string literal, as pg's escapeLiteral does: quotes
 * doubled, and with a backslash present an E'' literal with backslashes
 * doubled. Whole-string replacements instead of escapeLiteral's loop over
 * characters, which built a new string per character of the seal's JSON.
 */
export function quoteLiteral(text: string): string {
  const quoted = text.replaceAll("'", "''");
  return text.includes('\\') ? ` E'${quoted.replaceAll('\\', '\\\\')}'` : `'${quoted}'`;
}

/** A pending row as SELECT_PENDING returns it; the columns are null when `oversized`. */
interface PendingRow {
  id: string;
  oversized: boolean;
  replayed: boolean;
  at: Date | null;
  actor_id: string | null;
  actor_location: string | null;
  action: string | null;
  purpose: string | null;
  subject_token: string | null;
  record_type: string | null;
  fields: string[] | null;
  value_hmacs: Record<string, string> | null;
  item_counts: Record<string, number> | null;
  outcome: string | null;
  key_version: number;
  nonce: Buffer | null;
  mac: Buffer | null;
}

/** Callbacks of a seal: each rejected entry, and once it committed, the nonce of every entry it chained or rejected. */
interface SealObserver {
  onRejected(rejected: RejectedEntry): void;
  onHandled?(nonce: string): void;
}

/** Pending entries that failed the seal's checks, by id; see chainRows. */
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
 * COMMIT in a second, so a seal costs two round trips once its connection
 * has prepared the statements. Rejected entries are reported once the seal
 * committed.
 */
async function sealBatch(db: Database, keyring: Keyring, observer: SealObserver): Promise<number> {
  try {
    return await sealBatchOnce(db, keyring, observer);
  } catch (error) {
    // The session lost its prepared statements or they went stale; the failed attempt forgot them, so the next one prepares them.
    if (!STALE_STATEMENT.has(String((error as { code?: unknown }).code))) throw error;
    return sealBatchOnce(db, keyring, observer);
  }
}

async function sealBatchOnce(db: Database, keyring: Keyring, observer: SealObserver): Promise<number> {
  const versions = keyring.auditVersions();
  if (!versions.every((version) => Number.isSafeInteger(version))) {
    throw new Error('keyring has a key version that is not an integer');
  }
  const rejected: RejectedEntry[] = [];
  const handled: string[] = [];
  const sealed = await withClient(db, async (client) => {
    await prepareStatements(client);
    try {
      // The simple query protocol runs the statements in order, each with a new snapshot.
      const results = (await client.query(
        `BEGIN; SET LOCAL plan_cache_mode = force_generic_plan; SET LOCAL enable_seqscan = off;
         SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE; EXECUTE ${STATEMENTS.pending}('{${versions.join(',')}}')`,
      )) as unknown as [...pg.QueryResult[], pg.QueryResult<{ seq: string; hash: Buffer }>, pg.QueryResult<PendingRow>];
      const locked = results.at(-2)?.rows[0] as { seq: string; hash: Buffer } | undefined;
      const pending = (results.at(-1)?.rows ?? []) as PendingRow[];
      if (locked === undefined) {
        throw new Error('audit_head row is missing; run the migrations');
      }
      if (pending.length === 0) {
        await client.query('ROLLBACK');
        return 0;
      }

      const ids = pending.map((row) => row.id);
      if (!ids.every((id) => /^-?[0-9]{1,19}$/.test(id))) {
        throw new Error('audit_pending returned an id that is not a bigint');
      }
      const chained = chainRows({ seq: Number(locked.seq), hash: locked.hash }, pending, keyring, rejected);
      const head = chained.head;
      await client.query(
        `EXECUTE ${STATEMENTS.write}('{${ids.join(',')}}', ${quoteLiteral(JSON.stringify(chained.rows))}, ${head.seq}, decode('${head.hash.toString('hex')}', 'hex')); COMMIT`,
      );
      for (const row of pending) {
        if (row.nonce !== null) handled.push(row.nonce.toString('hex'));
      }
      return pending.length;
    } catch (error) {
      if (STALE_STATEMENT.has(String((error as { code?: unknown }).code))) {
        preparedOn.delete(client);
      }
      throw error;
    }
  });
  for (const entry of rejected) {
    observer.onRejected(entry);
  }
  for (const nonce of handled) {
    observer.onHandled?.(nonce);
  }
  return sealed;
}

/**
 * Chains `pending` after `head`, as JSON rows for WRITE_SEAL, and returns
 * the new head. An entry whose MAC does not match, that is oversized, whose
 * nonce is already chained or that cannot be chained (an impossible time,
 * say) was edited, inserted or copied by someone without the keyring. In its
 * place the chain gets an `audit.entry_rejected` entry of the sealer, so the
 * tampering shows in the verified log, and `rejected` gets its id.
 */
function chainRows(head: AuditHead, pending: readonly PendingRow[], keyring: Keyring, rejected: RejectedEntry[]): { rows: Array<Record<string, unknown>>; head: AuditHead } {
  let seq = head.seq;
  let prevHash = head.hash;
  const rows: Array<Record<string, unknown>> = [];
  const nonces = new Set<string>();
  for (const entry of pending) {
    seq += 1;
    let fields = checkedFields(entry, keyring);
    if (typeof fields !== 'string' && fields.nonce !== null) {
      if (nonces.has(fields.nonce)) fields = 'nonce repeats another entry: the entry was copied';
      else nonces.add(fields.nonce);
    }
    if (typeof fields === 'string') {
      rejected.push({ id: entry.id, reason: fields });
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
  if (entry.oversized) {
    return 'entry is larger or shaped otherwise than entries this code writes';
  }
  if (entry.replayed) {
    return 'nonce is already chained: the entry was copied';
  }
  const { at, nonce, mac, actor_id, actor_location, action, fields, value_hmacs, outcome } = entry;
  if (!(at instanceof Date) || Number.isNaN(at.getTime())) {
    return 'time is not a valid timestamp';
  }
  if (nonce === null || mac === null || actor_id === null || actor_location === null || action === null || fields === null || value_hmacs === null || outcome === null) {
    return 'entry is incomplete';
  }
  const row = {
    at: at.toISOString(),
    actor_id,
    actor_location,
    action,
    purpose: entry.purpose,
    subject_token: entry.subject_token,
    record_type: entry.record_type,
    fields,
    value_hmacs,
    item_counts: entry.item_counts,
    outcome,
    key_version: entry.key_version,
    nonce: nonce.toString('hex'),
  };
  let expected: Buffer;
  try {
    expected = pendingMac(keyring, row);
  } catch {
    return 'entry cannot be checked';
  }
  if (mac.length !== expected.length || !timingSafeEqual(mac, expected)) {
    return 'MAC does not match: the entry was changed or written without the keyring';
  }
  return row;
}

/** Returns the fields of the entry that the chain gets in place of a rejected one. */
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
    nonce: null,
  };
}

/**
 * Chains every entry committed before the call into `audit_log` and returns
 * how many it chained. Throws when the database fails.
 */
export async function sealAudit(
  db: Database,
  keyring: Keyring,
  onRejected: (rejected: RejectedEntry) => void = () => undefined,
  onHandled?: (nonce: string) => void,
): Promise<number> {
  let total = 0;
  for (;;) {
    const sealed = await sealBatch(db, keyring, onHandled === undefined ? { onRejected } : { onRejected, onHandled });
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

/** Number of pending entries of key versions outside `versions`, which no seal of this keyring will chain. */
export async function countPendingOfOtherVersions(db: Database, versions: readonly number[]): Promise<number> {
  const result = await db.pool.query<{ count: number }>('SELECT count(*)::int AS count FROM audit_pending WHERE NOT (key_version = ANY($1::integer[]))', [versions]);
  return result.rows[0]?.count ?? 0;
}

/**
 * Entries written but not yet chained, and the age of the oldest in seconds
 * (0 when none); with `versions`, only entries of those key versions.
 */
export async function pendingAuditStats(db: Database, versions?: readonly number[]): Promise<{ count: number; oldestAgeSeconds: number }> {
  const result = await db.pool.query<{ count: number; age: number | null }>(
    `SELECT count(*)::int AS count, extract(epoch FROM now() - min(at))::float8 AS age FROM audit_pending
     WHERE $1::integer[] IS NULL OR key_version = ANY($1::integer[])`,
    [versions ?? null],
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

/** Ids listed in one log line about rejected entries; the count covers the rest. */
const LOGGED_IDS = 20;

/**
 * Logs the pending entries that one seal rejected as one line with their
 * count, the first ids and the reasons. Their content stays out of the log.
 */
export function logRejected(logger: Logger | undefined, rejected: readonly RejectedEntry[]): void {
  if (rejected.length === 0) {
    return;
  }
  logger?.error(
    {
      event: 'audit.entry_rejected',
      count: rejected.length,
      pendingIds: rejected.slice(0, LOGGED_IDS).map((entry) => entry.id),
      reasons: [...new Set(rejected.map((entry) => entry.reason))],
    },
    'rejected pending audit entries; audit.entry_rejected entries took their places in the chain',
  );
}

/** Chains pending entries like `sealAudit` and logs the rejected ones (see logRejected). */
export async function sealAuditLogged(db: Database, keyring: Keyring, logger: Logger | undefined, onHandled?: (nonce: string) => void): Promise<number> {
  const rejected: RejectedEntry[] = [];
  try {
    return await sealAudit(db, keyring, (entry) => rejected.push(entry), onHandled);
  } finally {
    logRejected(logger, rejected);
  }
}

/** Shortest time between two `audit.seal_failed` log lines; each line counts the failed seals since the previous one. */
const SEAL_FAILURE_LOG_INTERVAL_MS = 10_000;

const sealers = new WeakMap<Database, AuditSealer>();

/** Returns the one sealer of `db` in this process. */
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
  const noteSealFailed = createCountedLog(SEAL_FAILURE_LOG_INTERVAL_MS, (failedSeals, errorCode: unknown) => {
    logger?.error({ event: 'audit.seal_failed', errorCode, failedSeals }, 'sealing audit entries failed; they stay pending');
  });
  const waiting: Array<{ ticket: number; resolve: () => void }> = [];

  const run = async (): Promise<void> => {
    running = true;
    let finished = 0;
    while (finished < requested && keyring !== undefined) {
      // Every call up to `ticket` committed before this seal starts, and so did every watched entry.
      const ticket = requested;
      const watched = takeWatchedEntries(db.pool);
      const handled = new Set<string>();
      try {
        await sealAuditLogged(db, keyring, logger, (nonce) => handled.add(nonce));
      } catch (error) {
        noteSealFailed((error as { code?: unknown }).code ?? 'error');
      }
      finished = ticket;
      for (let i = waiting.length - 1; i >= 0; i -= 1) {
        const entry = waiting[i];
        if (entry !== undefined && entry.ticket <= ticket) {
          waiting.splice(i, 1);
          entry.resolve();
        }
      }
      // After the waiting callers resume: a deleted entry is written again and needs one more seal.
      if ((await checkWatchedEntries(db, keyring, logger, watched, handled)) > 0) {
        requested += 1;
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
