import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Keyring } from '../tokenizer/keyring.ts';
import { secureRandomBytes } from '../tokenizer/random-pool.ts';
import { chainHash, GENESIS_HASH, pendingMac, type AuditRow, type PendingEntry } from './audit-chain.ts';
import { afterCommit, withTransaction, type Database, type Queryable } from './database.ts';
import { auditSealerFor } from './audit-seal.ts';
import type { Actor } from './types.ts';

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
const VALUE_NAMESPACE = 'audit-values';
const VALUE_HMAC_PREFIX = 'hmac-sha256:';
const VERIFY_BATCH = 1000;

export type AuditOutcome = 'ok' | 'denied' | 'failed';

export interface AuditEntry {
  actor: Actor;
  /** Verb and object, such as `record.create` or `subject.erase`. */
  action: string;
  purpose?: string;
  subjectToken?: string;
  recordType?: string;
  /** Field names touched, read or revealed. */
  fields?: readonly string[];
  /** Values to make findable without storing them, by name; stored only as keyed HMACs. */
  values?: Readonly<Record<string, string>>;
  /** Item counts of a batch operation by field name, such as `{ email: 120 }`. */
  itemCounts?: Readonly<Record<string, number>>;
  outcome?: AuditOutcome;
}

export type AuditVerification =
  | { ok: true; count: number }
  | { ok: false; seq: number; reason: string };

/**
 * Computes the keyed HMAC under which an audit row records a value, so an
 * auditor holding the keyring can check whether a row concerned a given value.
 */
export function auditValueHmac(keyring: Keyring, value: string, version: number = keyring.currentVersion): string {
  const key = keyring.derive('audit', VALUE_NAMESPACE, version);
  return `${VALUE_HMAC_PREFIX}v${version}:${createHmac('sha256', key).update(value, 'utf8').digest('hex')}`;
}

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

/** Columns of audit_pending as `jsonb_to_recordset` reads them from the JSON rows of `pendingRows`. */
export const INSERT_PENDING_ROWS = `
  INSERT INTO audit_pending (at, actor_id, actor_location, action, purpose, subject_token, record_type,
                             fields, value_hmacs, item_counts, outcome, key_version, nonce, mac)
  SELECT x.at, x.actor_id, x.actor_location, x.action, x.purpose, x.subject_token, x.record_type,
         ARRAY(SELECT jsonb_array_elements_text(x.fields)), x.value_hmacs, x.item_counts, x.outcome, x.key_version,
         decode(x.nonce, 'hex'), decode(x.mac, 'hex')
  FROM jsonb_to_recordset($1::jsonb) AS x(at timestamptz, actor_id text, actor_location text, action text,
       purpose text, subject_token text, record_type text, fields jsonb, value_hmacs jsonb, item_counts jsonb,
       outcome text, key_version integer, nonce text, mac text)`;

/**
 * Writes entries inside the caller's transaction, in the order given. They
 * commit or roll back with the operation they record, so an operation whose
 * entry cannot be written fails. The entries land in `audit_pending`. After
 * the transaction commits, the sealer of the database chains them into
 * `audit_log` (see `sealAudit`), and `withTransaction` returns only after that
 * seal, so callers respond with their entries already chained. Writing needs
 * no lock: concurrent transactions commit side by side. Given the pool
 * instead of a client of `withTransaction`, the entries commit at once and
 * the caller seals (`auditSealerFor(db).seal`).
 */
export async function appendAuditEntries(client: Queryable, keyring: Keyring, entries: readonly AuditEntry[]): Promise<void> {
  if (entries.length === 0) {
    return;
  }
  await client.query({ name: 'domicile_append_audit', text: INSERT_PENDING_ROWS, values: [JSON.stringify(pendingRows(keyring, entries))] });
  requestSealAfterCommit(client, keyring);
}

/** Registers the seal that runs once the transaction of `client` commits; see `appendAuditEntries`. */
function requestSealAfterCommit(client: Queryable, keyring: Keyring): void {
  afterCommit(client, 'audit-seal', (db) => auditSealerFor(db).seal(keyring));
}

/** Builds the JSON rows of `entries` for INSERT_PENDING_ROWS, with values as keyed HMACs and a MAC per row. */
export function pendingRows(keyring: Keyring, entries: readonly AuditEntry[]): Array<Record<string, unknown>> {
  const version = keyring.currentVersion;
  const at = new Date().toISOString();
  return entries.map((entry) => {
    const valueHmacs: Record<string, string> = {};
    for (const [name, value] of Object.entries(entry.values ?? {})) {
      valueHmacs[name] = auditValueHmac(keyring, value, version);
    }
    const pending: PendingEntry = {
      at,
      actor_id: entry.actor.id,
      actor_location: entry.actor.location,
      action: entry.action,
      purpose: entry.purpose ?? null,
      subject_token: entry.subjectToken ?? null,
      record_type: entry.recordType ?? null,
      fields: [...(entry.fields ?? [])],
      value_hmacs: valueHmacs,
      item_counts: entry.itemCounts === undefined ? null : { ...entry.itemCounts },
      outcome: entry.outcome ?? 'ok',
      key_version: version,
      nonce: secureRandomBytes(16).toString('hex'),
    };
    return { ...pending, mac: pendingMac(keyring, pending).toString('hex') };
  });
}
