import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Keyring } from '../tokenizer/keyring.ts';
import { canonicalJson } from './canonical.ts';
import type { Database, Queryable } from './database.ts';
import type { Actor } from './types.ts';

/**
 * The audit log: append-only and chained. Each row's hash is
 * HMAC-SHA256(audit key, canonical JSON of the previous row's hash and this
 * row's fields), so a row that is edited, removed or moved breaks the chain.
 * Without the keyring, a replacement chain cannot be forged.
 *
 * Keys come from the keyring: `derive('audit', 'audit-chain', v)` for the
 * chain and `derive('audit', 'audit-values', v)` for values. Stored hashes
 * depend on both namespaces and on the canonical form: never change them.
 */
const CHAIN_NAMESPACE = 'audit-chain';
const VALUE_NAMESPACE = 'audit-values';
const VALUE_HMAC_PREFIX = 'hmac-sha256:';
const GENESIS_HASH = Buffer.alloc(32);
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

interface AuditRow {
  seq: number;
  at: string;
  actor_id: string;
  actor_location: string;
  action: string;
  purpose: string | null;
  subject_token: string | null;
  record_type: string | null;
  fields: string[];
  value_hmacs: Record<string, string>;
  item_counts: Record<string, number> | null;
  outcome: string;
  key_version: number;
  prev_hash: Buffer;
  hash: Buffer;
}

/**
 * Computes the keyed HMAC under which an audit row records a value, so an
 * auditor holding the keyring can check whether a row concerned a given value.
 */
export function auditValueHmac(keyring: Keyring, value: string, version: number = keyring.currentVersion): string {
  const key = keyring.derive('audit', VALUE_NAMESPACE, version);
  return `${VALUE_HMAC_PREFIX}v${version}:${createHmac('sha256', key).update(value, 'utf8').digest('hex')}`;
}

function chainHash(keyring: Keyring, row: Omit<AuditRow, 'hash'>): Buffer {
  const key = keyring.derive('audit', CHAIN_NAMESPACE, row.key_version);
  // Item counts join the hashed fields only when present, so rows written
  // before the column existed keep their hashes.
  const counts = row.item_counts === null ? {} : { itemCounts: row.item_counts };
  const canonical = canonicalJson({
    ...counts,
    prevHash: row.prev_hash.toString('hex'),
    seq: row.seq,
    at: row.at,
    actorId: row.actor_id,
    actorLocation: row.actor_location,
    action: row.action,
    purpose: row.purpose,
    subjectToken: row.subject_token,
    recordType: row.record_type,
    fields: row.fields,
    valueHmacs: row.value_hmacs,
    outcome: row.outcome,
    keyVersion: row.key_version,
  });
  return createHmac('sha256', key).update(canonical, 'utf8').digest();
}

/**
 * Appends one entry inside the caller's transaction and returns its sequence
 * number. Locks the chain head until the transaction ends, so appends are
 * serialized: call it as the last step of a transaction.
 */
export async function appendAudit(client: Queryable, keyring: Keyring, entry: AuditEntry): Promise<number> {
  return appendAuditEntries(client, keyring, [entry]);
}

/**
 * Walks the chain from the first row and returns the sequence number of the
 * first row that was changed, removed or moved, or the row count when the
 * chain is intact. A removed row is reported by its missing number; removed
 * rows at the end are caught by comparing with the chain head.
 */
export async function verifyAudit(
  db: Database,
  keyring: Keyring,
  onProgress?: (checked: number) => void,
): Promise<AuditVerification> {
  let expectedSeq = 1;
  let previousHash: Buffer = GENESIS_HASH;

  for (;;) {
    const batch = await db.pool.query<Omit<AuditRow, 'seq' | 'at'> & { seq: string; at: Date }>(
      `SELECT seq, at, actor_id, actor_location, action, purpose, subject_token, record_type,
              fields, value_hmacs, item_counts, outcome, key_version, prev_hash, hash
       FROM audit_log WHERE seq >= $1 ORDER BY seq LIMIT $2`,
      [expectedSeq, VERIFY_BATCH],
    );
    for (const stored of batch.rows) {
      const row: AuditRow = { ...stored, seq: Number(stored.seq), at: stored.at.toISOString() };
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

  const head = await db.pool.query<{ seq: string; hash: Buffer }>('SELECT seq, hash FROM audit_head WHERE id = 1');
  const last = head.rows[0];
  if (last === undefined || Number(last.seq) !== expectedSeq - 1 || !last.hash.equals(previousHash)) {
    return { ok: false, seq: expectedSeq, reason: 'rows are missing at the end of the chain' };
  }
  return { ok: true, count: expectedSeq - 1 };
}

function checkRow(keyring: Keyring, row: AuditRow, expectedSeq: number, previousHash: Buffer): string | undefined {
  if (row.seq !== expectedSeq) {
    return 'row is missing';
  }
  if (!row.prev_hash.equals(previousHash)) {
    return 'row does not follow the previous row (removed or reordered)';
  }
  if (!keyring.has(row.key_version)) {
    return `audit key version ${row.key_version} is not in the keyring`;
  }
  const { hash, ...fields } = row;
  const expected = chainHash(keyring, fields);
  if (hash.length !== expected.length || !timingSafeEqual(hash, expected)) {
    return 'row was changed';
  }
  return undefined;
}

/** Sequence number and hash of the last audit row, as stored in `audit_head`. */
export interface AuditHead {
  seq: number;
  hash: Buffer;
}

/** Columns of audit_log as `jsonb_to_recordset` reads them from the JSON rows of `buildRows`. */
const INSERT_ROWS = `
  INSERT INTO audit_log (seq, at, actor_id, actor_location, action, purpose, subject_token, record_type,
                         fields, value_hmacs, outcome, key_version, prev_hash, hash, item_counts)
  SELECT x.seq, x.at, x.actor_id, x.actor_location, x.action, x.purpose, x.subject_token, x.record_type,
         ARRAY(SELECT jsonb_array_elements_text(x.fields)), x.value_hmacs, x.outcome, x.key_version,
         decode(x.prev_hash, 'hex'), decode(x.hash, 'hex'), x.item_counts
  FROM jsonb_to_recordset($1::jsonb) AS x(seq bigint, at timestamptz, actor_id text, actor_location text, action text,
       purpose text, subject_token text, record_type text, fields jsonb, value_hmacs jsonb, outcome text,
       key_version integer, prev_hash text, hash text, item_counts jsonb)`;

/**
 * Appends several entries inside the caller's transaction, in the order
 * given, and returns the first sequence number. The rows are the same as from
 * one `appendAudit` call per entry, so verification does not tell them apart.
 *
 * With `expectedHead`, the head that the caller read earlier in the
 * transaction (without a lock), the rows are chained to it and written in ONE
 * statement that moves the head only if it is still that head. The head row
 * is then locked from that statement to the commit only. When another
 * transaction moved the head meanwhile, nothing is written by that statement
 * and the entries are appended as without `expectedHead`: lock the head,
 * chain to it, write.
 */
export async function appendAuditEntries(
  client: Queryable,
  keyring: Keyring,
  entries: readonly AuditEntry[],
  expectedHead?: AuditHead,
): Promise<number> {
  if (expectedHead !== undefined && entries.length > 0) {
    const built = buildRows(keyring, expectedHead, entries);
    const result = await client.query<{ moved: number }>(
      `WITH moved AS (
         UPDATE audit_head SET seq = $2, hash = $3 WHERE id = 1 AND seq = $4 AND hash = $5 RETURNING 1
       ), appended AS (${INSERT_ROWS} WHERE EXISTS (SELECT 1 FROM moved)
       )
       SELECT count(*)::int AS moved FROM moved`,
      [JSON.stringify(built.rows), built.head.seq, built.head.hash, expectedHead.seq, expectedHead.hash],
    );
    if (result.rows[0]?.moved === 1) {
      return expectedHead.seq + 1;
    }
  }

  const head = await client.query<{ seq: string; hash: Buffer }>('SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE');
  const locked = head.rows[0];
  if (locked === undefined) {
    throw new Error('audit_head row is missing; run the migrations');
  }
  const previous: AuditHead = { seq: Number(locked.seq), hash: locked.hash };
  if (entries.length === 0) {
    return previous.seq + 1;
  }

  const built = buildRows(keyring, previous, entries);
  // One statement writes the rows and moves the head, to save a round trip
  // while the head row is locked.
  await client.query(`WITH appended AS (${INSERT_ROWS}) UPDATE audit_head SET seq = $2, hash = $3 WHERE id = 1`, [
    JSON.stringify(built.rows),
    built.head.seq,
    built.head.hash,
  ]);
  return previous.seq + 1;
}

/** Computes the chained rows of `entries` after `previous`, as JSON rows for INSERT_ROWS, and the new head. */
function buildRows(keyring: Keyring, previous: AuditHead, entries: readonly AuditEntry[]): { rows: Array<Record<string, unknown>>; head: AuditHead } {
  const version = keyring.currentVersion;
  const at = new Date().toISOString();
  let seq = previous.seq;
  let prevHash = previous.hash;
  const rows: Array<Record<string, unknown>> = [];
  for (const entry of entries) {
    const valueHmacs: Record<string, string> = {};
    for (const [name, value] of Object.entries(entry.values ?? {})) {
      valueHmacs[name] = auditValueHmac(keyring, value, version);
    }
    seq += 1;
    const row: Omit<AuditRow, 'hash'> = {
      seq,
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
      prev_hash: prevHash,
    };
    const hash = chainHash(keyring, row);
    rows.push({ ...row, prev_hash: row.prev_hash.toString('hex'), hash: hash.toString('hex') });
    prevHash = hash;
  }
  return { rows, head: { seq, hash: prevHash } };
}
