import { timingSafeEqual } from 'node:crypto';
import type { Keyring } from '../tokenizer/keyring.ts';
import { chainHash, GENESIS_HASH, type AuditRow } from './audit-chain.ts';
import pg from 'pg';
import { insertPendingRows, pendingRows, type AuditEntry, type PendingRow } from './audit-pending.ts';
import { afterCommit, transactionState, withTransaction, type Database, type Queryable } from './database.ts';
import { auditSealerFor } from './audit-seal.ts';
import { MISSING_ACTION, watchCommittedEntries } from './audit-watch.ts';

/**
 * The audit log: append-only and chained. Each row's hash is
 * HMAC-SHA256(audit key, canonical JSON of the previous row's hash and this
 * row's fields), so a row that is edited, removed or moved breaks the chain.
 * Without the keyring, a replacement chain cannot be forged, and an entry
 * that waits in `audit_pending` cannot be changed or invented (see
 * audit-seal.ts).
 *
 * Keys come from the keyring: `derive('audit', 'audit-chain', v)` for the
 * chain and `derive('audit', 'audit-values', v)` for values. Stored hashes
 * depend on both namespaces and on the canonical form: never change them.
 */
const VERIFY_BATCH = 1000;

export { auditValueHmac, INSERT_PENDING_ROWS, pendingRows, type AuditEntry, type AuditOutcome } from './audit-pending.ts';

export type AuditVerification =
  | { ok: true; count: number }
  | { ok: false; seq: number; reason: string };

/**
 * Writes one entry inside the caller's transaction. See `appendAuditEntries`.
 */
export async function appendAudit(client: Queryable, keyring: Keyring, entry: AuditEntry): Promise<void> {
  await appendAuditEntries(client, keyring, [entry]);
}

/**
 * Walks the chain from the first row and returns the sequence number of the
 * first row that was changed, removed or moved, or the row count when the
 * chain is intact. A removed row is reported by its missing number; removed
 * rows at the end are caught by comparing with the chain head. The walk and
 * the head are read in one REPEATABLE READ snapshot, so seals that commit
 * meanwhile are not mistaken for a removed end.
 */
export async function verifyAudit(
  db: Database,
  keyring: Keyring,
  onProgress?: (checked: number) => void,
): Promise<AuditVerification> {
  return withTransaction(db, (client) => walkChain(client, keyring, onProgress), { snapshot: true });
}

async function walkChain(client: Queryable, keyring: Keyring, onProgress?: (checked: number) => void): Promise<AuditVerification> {
  let expectedSeq = 1;
  let previousHash: Buffer = GENESIS_HASH;

  for (;;) {
    const batch = await client.query<Omit<AuditRow, 'seq' | 'at' | 'nonce'> & { seq: string; at: Date; nonce: Buffer | null }>(
      `SELECT seq, at, actor_id, actor_location, action, purpose, subject_token, record_type,
              fields, value_hmacs, item_counts, outcome, key_version, prev_hash, hash, nonce
       FROM audit_log WHERE seq >= $1 ORDER BY seq LIMIT $2`,
      [expectedSeq, VERIFY_BATCH],
    );
    for (const stored of batch.rows) {
      const at = stored.at instanceof Date && !Number.isNaN(stored.at.getTime()) ? stored.at.toISOString() : undefined;
      if (at === undefined) {
        return { ok: false, seq: expectedSeq, reason: 'row was changed' };
      }
      const row: AuditRow = { ...stored, seq: Number(stored.seq), at, nonce: stored.nonce === null ? null : stored.nonce.toString('hex') };
      const problem = checkRow(keyring, row, expectedSeq, previousHash);
      if (problem !== undefined) {
        return { ok: false, seq: expectedSeq, reason: problem };
      }
      previousHash = row.hash;
      expectedSeq += 1;
    }
    onProgress?.(expectedSeq - 1);
    if (batch.rows.length < VERIFY_BATCH) {
      break;
    }
  }

  const head = await client.query<{ seq: string; hash: Buffer }>('SELECT seq, hash FROM audit_head WHERE id = 1');
  const last = head.rows[0];
  if (last === undefined || Number(last.seq) !== expectedSeq - 1 || !last.hash.equals(previousHash)) {
    return { ok: false, seq: expectedSeq, reason: 'rows are missing at the end of the chain' };
  }
  return { ok: true, count: expectedSeq - 1 };
}

/** Sequence numbers of the entries that a seal chained in place of a rejected pending entry. */
export async function rejectedAuditEntries(db: Database): Promise<number[]> {
  const result = await db.pool.query<{ seq: string }>("SELECT seq FROM audit_log WHERE action = 'audit.entry_rejected' ORDER BY seq");
  return result.rows.map((row) => Number(row.seq));
}

/** Sequence numbers of the `audit.entry_missing` entries: pending entries deleted before their seal and written again. */
export async function missingAuditEntries(db: Database): Promise<number[]> {
  const result = await db.pool.query<{ seq: string }>('SELECT seq FROM audit_log WHERE action = $1 ORDER BY seq', [MISSING_ACTION]);
  return result.rows.map((row) => Number(row.seq));
}

function checkRow(keyring: Keyring, row: AuditRow, expectedSeq: number, previousHash: Buffer): string | undefined {
  if (row.seq !== expectedSeq) {
    return 'row is missing';
  }
  if (!row.prev_hash.equals(previousHash)) {
    return 'row does not follow the previous row (removed or reordered)';
  }
  if (!keyring.hasAuditKeys(row.key_version)) {
    return `audit key version ${row.key_version} is not in the keyring`;
  }
  const { hash, ...fields } = row;
  const expected = chainHash(keyring, fields);
  if (hash.length !== expected.length || !timingSafeEqual(hash, expected)) {
    return 'row was changed';
  }
  return undefined;
}

/**
 * Writes entries inside the caller's transaction, in the order given. They
 * commit or roll back with the operation they record, so an operation whose
 * entry cannot be written fails. The entries land in `audit_pending`. After
 * the transaction commits, the sealer of the database chains them into
 * `audit_log` (see `sealAudit`), and `withTransaction` returns only after that
 * seal, so callers respond with their entries already chained. Writing needs
 * no lock: concurrent transactions commit side by side. Given the pool
 * instead of a client of `withTransaction`, the entries commit at once and
 * the caller seals (`auditSealerFor(db).seal`). Committed entries are
 * watched until they are chained (see `watchCommittedEntries`); given a
 * client outside `withTransaction`, they are not.
 */
export async function appendAuditEntries(client: Queryable, keyring: Keyring, entries: readonly AuditEntry[]): Promise<void> {
  if (entries.length === 0) {
    return;
  }
  const rows = pendingRows(keyring, entries);
  await insertPendingRows(client, rows);
  const written = transactionState<PendingRow[]>(client, 'audit-rows', () => []);
  if (written !== undefined) {
    written.push(...rows);
    afterCommit(client, 'audit-seal', (db) => {
      watchCommittedEntries(db.pool, written);
      return auditSealerFor(db).seal(keyring);
    });
  } else if (client instanceof pg.Pool) {
    // An autocommitted statement on the pool: the rows committed with it.
    watchCommittedEntries(client, rows);
  }
}


