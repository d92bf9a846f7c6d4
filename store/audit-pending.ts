import { createHmac } from 'node:crypto';
import type { Keyring } from '../tokenizer/keyring.ts';
import { secureRandomBytes } from '../tokenizer/random-pool.ts';
import { pendingMac, type PendingEntry } from './audit-chain.ts';
import type { Queryable } from './database.ts';
import type { Actor } from './types.ts';

/**
 * Audit entries as operations describe them, and the rows of `audit_pending`
 * that record them until a seal chains them (see audit-seal.ts).
 */
const VALUE_NAMESPACE = 'audit-values';
const VALUE_HMAC_PREFIX = 'hmac-sha256:';

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

/**
 * Computes the keyed HMAC under which an audit row records a value, so an
 * auditor holding the keyring can check whether a row concerned a given value.
 */
export function auditValueHmac(keyring: Keyring, value: string, version: number = keyring.currentVersion): string {
  const key = keyring.derive('audit', VALUE_NAMESPACE, version);
  return `${VALUE_HMAC_PREFIX}v${version}:${createHmac('sha256', key).update(value, 'utf8').digest('hex')}`;
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
 * Inserts `rows` into `audit_pending` through a named statement, so each
 * connection parses and plans it once.
 */
export async function insertPendingRows(client: Queryable, rows: readonly PendingRow[]): Promise<void> {
  await client.query({ name: 'domicile_append_audit', text: INSERT_PENDING_ROWS, values: [JSON.stringify(rows)] });
}

/** A row of `audit_pending` as this process writes it: the entry, its nonce and its MAC, in hex. */
export type PendingRow = PendingEntry & { mac: string };

/** Builds the JSON rows of `entries` for INSERT_PENDING_ROWS, with values as keyed HMACs and a MAC per row. */
export function pendingRows(keyring: Keyring, entries: readonly AuditEntry[]): PendingRow[] {
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
