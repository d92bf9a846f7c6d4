import { DomicileError } from '../policy/errors.ts';
import { appendAuditEntries, type AuditEntry } from './audit.ts';
import { auditSealerFor } from './audit-seal.ts';
import { dataKeyCacheFor } from './data-key-cache.ts';
import { dataKeyContext, decryptFields, isSubjectToken, type EncryptedFields } from './record-crypto.ts';
import type { Actor, RecordView } from './types.ts';
import type { VaultDeps } from './vault-common.ts';
import { createGroupRunner, groupsInFlight, type GroupResult } from './vault-group.ts';
import { requirePurpose } from './vault-validate.ts';

export interface ReadInput {
  subjectToken: string;
  recordType: string;
  actor: Actor;
  purpose: string;
  /** Fields to decrypt, return and audit as read; all stored fields when absent. */
  fields?: readonly string[];
}

interface ReadRow {
  id: string | null;
  token: string | null;
  erased_at: Date | null;
  fields: EncryptedFields | null;
  version: number | null;
  policy_version: number | null;
  updated_at: Date | null;
  kek_version: string | null;
  wrapped: Buffer | null;
}

/** Reads the subject, record and wrapped data key of every item in ONE statement, in item order. */
const READ_SQL = `
SELECT s.id, s.token, s.erased_at, r.fields, r.version, r.policy_version, r.updated_at, d.kek_version, d.wrapped
FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS k(token, record_type, n)
LEFT JOIN subjects s ON s.token = k.token
LEFT JOIN records r ON r.subject_id = s.id AND r.record_type = k.record_type AND r.erased_at IS NULL
LEFT JOIN data_keys d ON d.subject_id = s.id
ORDER BY k.n`;

/**
 * Returns the read operation of the vault. Reads that arrive together are
 * served as a group (see createGroupRunner). One statement reads every
 * record, then one statement writes a `record.read` entry per record
 * returned. No value leaves before that statement committed and the entries
 * are chained, because the caller waits for the seal after its group. Each
 * statement commits on its own: a read changes nothing, so only the order
 * before the response matters. A read that fails (unknown subject, erased,
 * no record, undecryptable) fails alone and writes no audit entry, while a
 * database failure fails the whole group.
 */
export function createReader(deps: VaultDeps): (input: ReadInput) => Promise<RecordView> {
  const grouped = createGroupRunner((items: readonly ReadInput[]) => readGroup(deps, items), groupsInFlight(deps));
  return async (input) => {
    requirePurpose(deps.policy, input.purpose);
    if (!isSubjectToken(input.subjectToken)) {
      throw new DomicileError('not_found', 'no subject has this subject token');
    }
    const view = await grouped(input);
    // The seal runs after the group made way for the next one; see createGroupCommitter.
    await auditSealerFor(deps.db).seal(deps.keyring);
    return view;
  };
}

async function readGroup(deps: VaultDeps, items: readonly ReadInput[]): Promise<Array<GroupResult<RecordView>>> {
  const cache = dataKeyCacheFor(deps.db);
  const result = await deps.db.pool.query<ReadRow>(READ_SQL, [items.map((item) => item.subjectToken), items.map((item) => item.recordType)]);
  // Unwraps run side by side, which matters when the KEK is in a KMS.
  const outcomes = await Promise.allSettled(items.map((item, index) => readOne(deps, cache, item, result.rows[index])));
  const results: Array<GroupResult<RecordView>> = [];
  const audit: AuditEntry[] = [];
  for (const [index, outcome] of outcomes.entries()) {
    const item = items[index];
    if (outcome.status === 'rejected' || item === undefined) {
      results.push({ ok: false, error: outcome.status === 'rejected' ? outcome.reason : new DomicileError('internal', 'read returned no result') });
      continue;
    }
    results.push({ ok: true, value: outcome.value });
    audit.push({
      actor: item.actor,
      action: 'record.read',
      purpose: item.purpose,
      subjectToken: outcome.value.subjectToken,
      recordType: item.recordType,
      fields: Object.keys(outcome.value.values),
    });
  }

  if (audit.length > 0) {
    await appendAuditEntries(deps.db.pool, deps.keyring, audit);
  }
  return results;
}

async function readOne(deps: VaultDeps, cache: ReturnType<typeof dataKeyCacheFor>, item: ReadInput, row: ReadRow | undefined): Promise<RecordView> {
  if (row === undefined || row.id === null || row.token === null) {
    throw new DomicileError('not_found', 'no subject has this subject token');
  }
  if (row.erased_at !== null) {
    cache.evict(row.id);
    throw new DomicileError('gone', 'subject was erased');
  }
  if (row.fields === null || row.version === null || row.policy_version === null || row.updated_at === null) {
    throw new DomicileError('not_found', `subject has no ${item.recordType} record`);
  }
  if (row.kek_version === null || row.wrapped === null) {
    cache.evict(row.id);
    throw new DomicileError('gone', 'subject was erased');
  }

  const selected = item.fields === undefined ? row.fields : pickFields(row.fields, item.fields);
  const dataKey = await cache.unwrap(deps.keys, row.id, { kekVersion: row.kek_version, ciphertext: row.wrapped }, dataKeyContext(row.token));
  let values: RecordView['values'];
  try {
    values = decryptFields(dataKey, { recordType: item.recordType, subjectToken: row.token }, selected);
  } finally {
    dataKey.fill(0);
  }
  return {
    subjectToken: row.token,
    recordType: item.recordType,
    version: row.version,
    policyVersion: row.policy_version,
    updatedAt: row.updated_at.toISOString(),
    values,
  };
}

function pickFields(fields: EncryptedFields, names: readonly string[]): EncryptedFields {
  const picked: EncryptedFields = {};
  for (const name of names) {
    const blob = Object.hasOwn(fields, name) ? fields[name] : undefined;
    if (blob !== undefined) {
      picked[name] = blob;
    }
  }
  return picked;
}
