import { createHmac } from 'node:crypto';
import type { Keyring } from '../tokenizer/keyring.ts';
import { canonicalJson } from './canonical.ts';

/**
 * The chain format of the audit log. Each row's hash is HMAC-SHA256 under
 * `derive('audit', 'audit-chain', key_version)` of the canonical JSON of the
 * previous row's hash and this row's fields. Stored hashes depend on the
 * namespace and the canonical form: never change them.
 */
const CHAIN_NAMESPACE = 'audit-chain';

/** The `prev_hash` of the first row. */
export const GENESIS_HASH = Buffer.alloc(32);

/** The fields of an audit entry that `audit_log` and `audit_pending` share, with `at` as an ISO 8601 string in milliseconds. */
export interface AuditFields {
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
}

/** One row of `audit_log`. */
export interface AuditRow extends AuditFields {
  seq: number;
  /** Hex of the entry's nonce; null for entries chained before entries had one. */
  nonce: string | null;
  prev_hash: Buffer;
  hash: Buffer;
}

/** Computes the hash of `row` chained to `row.prev_hash`. */
export function chainHash(keyring: Keyring, row: Omit<AuditRow, 'hash'>): Buffer {
  const key = keyring.derive('audit', CHAIN_NAMESPACE, row.key_version);
  // Item counts join the hashed fields only when present, so rows written
  // before the column existed keep their hashes.
  const counts = row.item_counts === null ? {} : { itemCounts: row.item_counts };
  // The nonce joins the same way, for rows chained before entries had one.
  const nonce = row.nonce === null ? {} : { nonce: row.nonce };
  const canonical = canonicalJson({
    ...counts,
    ...nonce,
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

/** Sequence number and hash of the last audit row, as stored in `audit_head`. */
export interface AuditHead {
  seq: number;
  hash: Buffer;
}

/** The fields of an entry that waits in `audit_pending`, as its MAC covers them. */
export interface PendingEntry extends AuditFields {
  /** Hex of 16 random bytes, unique per entry. */
  nonce: string;
}

const PENDING_NAMESPACE = 'audit-pending';

/**
 * Computes the MAC of a pending entry under `derive('audit', 'audit-pending',
 * key_version)`, over a JSON array of its fields in a fixed order. Only the
 * two objects, whose key order jsonb does not keep, are in canonical form. A
 * pending entry lives for one seal, so this form may change between releases
 * once no entry of the old form is pending.
 */
export function pendingMac(keyring: Keyring, entry: PendingEntry): Buffer {
  const key = keyring.deriveKeyObject('audit', PENDING_NAMESPACE, entry.key_version);
  const serialized = JSON.stringify([
    entry.nonce,
    entry.at,
    entry.actor_id,
    entry.actor_location,
    entry.action,
    entry.purpose,
    entry.subject_token,
    entry.record_type,
    entry.fields,
    entry.outcome,
    entry.key_version,
  ]);
  const objects = `${canonicalJson(entry.value_hmacs)}${entry.item_counts === null ? 'null' : canonicalJson(entry.item_counts)}`;
  return createHmac('sha256', key).update(serialized, 'utf8').update(objects, 'utf8').digest();
}
