import { DomicileError } from '../policy/errors.ts';
import { blindIndex } from '../tokenizer/blind-index.ts';
import { normalizeValue } from '../tokenizer/normalize.ts';
import { appendAuditEntries } from './audit.ts';
import { auditSealerFor } from './audit-seal.ts';
import { withTransaction } from './database.ts';
import { dataKeyCacheFor } from './data-key-cache.ts';
import { blindIndexNamespace, dataKeyContext, decryptFields, type EncryptedFields } from './record-crypto.ts';
import { createTokenStore, type TokenStore } from './token-store.ts';
import type { Actor, RecordView } from './types.ts';
import type { VaultDeps } from './vault-common.ts';
import { createRecords, type ActorCreateItem, type BatchCreateItem, type BatchCreateResult } from './vault-batch.ts';
import { createGroupCommitter } from './vault-group.ts';
import { createReader, type ReadInput } from './vault-read.ts';
import { listVersions, type RecordVersionInfo, type VersionsInput } from './vault-history.ts';
import { eraseSubject, updateRecord, type UpdateInput } from './vault-update.ts';
import { requirePurpose } from './vault-validate.ts';

export type { Actor, RecordView } from './types.ts';
export type { UpdateInput } from './vault-update.ts';
export type { RecordVersionInfo, VersionsInput } from './vault-history.ts';
export type { BatchCreateItem, BatchCreateResult } from './vault-batch.ts';
export type { ReadInput } from './vault-read.ts';

export interface CreateInput {
  recordType: string;
  values: unknown;
  actor: Actor;
  purpose: string;
  /** Retries with the same key and the same values return the first result instead of a second subject. */
  idempotencyKey?: string;
}

export interface LookupInput {
  recordType: string;
  field: string;
  value: unknown;
  actor: Actor;
  purpose: string;
}

export interface Vault {
  create(input: CreateInput): Promise<{ subjectToken: string; version: number }>;
  /** Creates records of new subjects in one transaction; each item gets its own result or error. */
  createMany(input: { items: readonly BatchCreateItem[]; actor: Actor }): Promise<BatchCreateResult[]>;
  read(input: ReadInput): Promise<RecordView>;
  update(input: UpdateInput): Promise<{ subjectToken: string; version: number }>;
  erase(input: { subjectToken: string; actor: Actor; purpose: string }): Promise<{ subjectToken: string; erasedAt: string }>;
  /** Subject tokens of the live records whose searchable `field` equals `value` after normalization. */
  lookup(input: LookupInput): Promise<string[]>;
  /** Versions of a record (who, when, why, which fields; no values), oldest first; audited. */
  versions(input: VersionsInput): Promise<RecordVersionInfo[]>;
  /** Internal read for replication workers; not audited. */
  loadForReplication(subjectId: string, recordType: string): Promise<RecordView | { erased: true } | undefined>;
  /** Random token mappings and the tokenize and detokenize batches. */
  tokens: TokenStore;
}

interface RecordRow {
  fields: EncryptedFields;
  version: number;
  policy_version: number;
  updated_at: Date;
}


/**
 * Creates the store of authoritative records. Every write is one transaction
 * with its outbox events and audit entry; every read is audited in the
 * transaction that reads it.
 */
export function createVault(deps: VaultDeps): Vault {
  // Single creates go through the batch path in groups, see createGroupCommitter;
  // reads are grouped too, see createReader.
  const createOne = createGroupCommitter(deps);
  auditSealerFor(deps.db).useLogger(deps.logger);
  return {
    create: (input) => createOne(toCreateItem(input)),
    createMany: (input) => createRecords(deps, input),
    read: createReader(deps),
    update: (input) => updateRecord(deps, input),
    erase: (input) => eraseSubject(deps, input),
    lookup: (input) => lookupRecords(deps, input),
    versions: (input) => listVersions(deps, input),
    loadForReplication: (subjectId, recordType) => loadForReplication(deps, subjectId, recordType),
    tokens: createTokenStore(deps),
  };
}

function toCreateItem(input: CreateInput): ActorCreateItem {
  const item: ActorCreateItem = { recordType: input.recordType, values: input.values, purpose: input.purpose, actor: input.actor };
  if (input.idempotencyKey !== undefined) {
    item.idempotencyKey = input.idempotencyKey;
  }
  return item;
}

async function lookupRecords(deps: VaultDeps, input: LookupInput): Promise<string[]> {
  requirePurpose(deps.policy, input.purpose);
  const field = deps.policy.recordTypes[input.recordType]?.fields[input.field];
  if (field === undefined || !field.searchable) {
    throw new DomicileError('invalid_request', 'invalid request: $.field is not a searchable field of the record type', {
      issues: [{ path: '$.field', message: 'is not a searchable field of the record type' }],
    });
  }
  let normalized: string;
  try {
    normalized = String(normalizeValue(field.type, input.value, { defaultRegion: deps.policy.defaultRegion, maxLength: field.maxLength }));
  } catch (error) {
    if (error instanceof DomicileError) {
      throw new DomicileError('invalid_value', `invalid request: $.value ${error.message}`, { issues: [{ path: '$.value', message: error.message }] });
    }
    throw error;
  }

  // One digest per keyring version, so records indexed before a rotation are still found.
  const namespace = blindIndexNamespace(input.recordType, input.field);
  const versions = deps.keyring.versions();
  const digests = versions.map((version) => blindIndex(deps.keyring, namespace, normalized, version));

  return withTransaction(deps.db, async (client) => {
    const result = await client.query<{ token: string }>(
      `SELECT DISTINCT s.token
       FROM blind_index b
       JOIN unnest($3::int[], $4::bytea[]) AS k(key_version, digest) ON k.key_version = b.key_version AND k.digest = b.digest
       JOIN subjects s ON s.id = b.subject_id
       WHERE b.record_type = $1 AND b.field = $2 AND s.erased_at IS NULL
       ORDER BY s.token`,
      [input.recordType, input.field, versions, digests],
    );
    const tokens = result.rows.map((row) => row.token);
    // One entry per subject found, so the subject access export of each lists
    // the lookup; a lookup that found no subject still leaves one entry.
    const entry = {
      actor: input.actor,
      action: 'record.lookup',
      purpose: input.purpose,
      recordType: input.recordType,
      fields: [input.field],
      values: { [input.field]: normalized },
    };
    const entries = tokens.length === 0 ? [entry] : tokens.map((subjectToken) => ({ ...entry, subjectToken }));
    await appendAuditEntries(client, deps.keyring, entries);
    return tokens;
  });
}

async function loadForReplication(
  deps: VaultDeps,
  subjectId: string,
  recordType: string,
): Promise<RecordView | { erased: true } | undefined> {
  // One statement, so an erasure that commits meanwhile is seen entirely or not at all.
  const result = await deps.db.pool.query<
    { token: string; erased_at: Date | null; kek_version: string | null; wrapped: Buffer | null } & { [K in keyof RecordRow]: RecordRow[K] | null }
  >(
    `SELECT s.token, s.erased_at, r.fields, r.version, r.policy_version, r.updated_at, d.kek_version, d.wrapped
     FROM subjects s
     LEFT JOIN records r ON r.subject_id = s.id AND r.record_type = $2
     LEFT JOIN data_keys d ON d.subject_id = s.id
     WHERE s.id = $1`,
    [subjectId, recordType],
  );
  const row = result.rows[0];
  if (row === undefined) {
    return undefined;
  }
  if (row.erased_at !== null || row.kek_version === null || row.wrapped === null) {
    return { erased: true };
  }
  if (row.fields === null || row.version === null || row.policy_version === null || row.updated_at === null) {
    return undefined;
  }
  const record: RecordRow = { fields: row.fields, version: row.version, policy_version: row.policy_version, updated_at: row.updated_at };
  const dataKey = await dataKeyCacheFor(deps.db).unwrap(deps.keys, subjectId, { kekVersion: row.kek_version, ciphertext: row.wrapped }, dataKeyContext(row.token));
  const values = decryptFields(dataKey, { recordType, subjectToken: row.token }, record.fields);
  dataKey.fill(0);
  return toView(row.token, recordType, record, values);
}

function toView(subjectToken: string, recordType: string, record: RecordRow, values: RecordView['values']): RecordView {
  return {
    subjectToken,
    recordType,
    version: record.version,
    policyVersion: record.policy_version,
    updatedAt: record.updated_at.toISOString(),
    values,
  };
}
