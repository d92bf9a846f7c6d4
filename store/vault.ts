import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { DomicileError } from '../policy/errors.ts';
import { blindIndex } from '../tokenizer/blind-index.ts';
import { normalizeValue } from '../tokenizer/normalize.ts';
import { appendAudit } from './audit.ts';
import { canonicalJson } from './canonical.ts';
import { withTransaction } from './database.ts';
import {
  blindIndexNamespace,
  dataKeyContext,
  decryptFields,
  encryptField,
  generateSubjectToken,
  unwrapDataKey,
  writeBlindIndex,
  type EncryptedFields,
} from './record-crypto.ts';
import { createTokenStore, type TokenStore } from './token-store.ts';
import type { Actor, RecordView } from './types.ts';
import { enqueueForDestinations, findSubject, requireNotErased, type VaultDeps } from './vault-common.ts';
import { createRecords, type BatchCreateItem, type BatchCreateResult } from './vault-batch.ts';
import { listVersions, type RecordVersionInfo, type VersionsInput } from './vault-history.ts';
import { eraseSubject, updateRecord, type UpdateInput } from './vault-update.ts';
import { requirePurpose, validateValues } from './vault-validate.ts';

export type { Actor, RecordView } from './types.ts';
export type { UpdateInput } from './vault-update.ts';
export type { RecordVersionInfo, VersionsInput } from './vault-history.ts';
export type { BatchCreateItem, BatchCreateResult } from './vault-batch.ts';

export interface CreateInput {
  recordType: string;
  values: unknown;
  actor: Actor;
  purpose: string;
  /** Retries with the same key and the same values return the first result instead of a second subject. */
  idempotencyKey?: string;
}

export interface ReadInput {
  subjectToken: string;
  recordType: string;
  actor: Actor;
  purpose: string;
  /** Fields to decrypt, return and audit as read; all stored fields when absent. */
  fields?: readonly string[];
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

/** Rolls back a create whose idempotency key another request already used. */
class IdempotencyKeyTaken extends Error {}

const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,200}$/;

/** Creates the store of authoritative records. Every write is one transaction with its outbox events and audit entry. */
export function createVault(deps: VaultDeps): Vault {
  return {
    create: (input) => createRecord(deps, input),
    createMany: (input) => createRecords(deps, input),
    read: (input) => readRecord(deps, input),
    update: (input) => updateRecord(deps, input),
    erase: (input) => eraseSubject(deps, input),
    lookup: (input) => lookupRecords(deps, input),
    versions: (input) => listVersions(deps, input),
    loadForReplication: (subjectId, recordType) => loadForReplication(deps, subjectId, recordType),
    tokens: createTokenStore(deps),
  };
}

async function createRecord(deps: VaultDeps, input: CreateInput): Promise<{ subjectToken: string; version: number }> {
  const { policy, keyring } = deps;
  if (input.idempotencyKey !== undefined && !IDEMPOTENCY_KEY.test(input.idempotencyKey)) {
    throw new DomicileError('invalid_request', 'invalid request: $.idempotencyKey must be 1 to 200 printable ASCII characters', {
      issues: [{ path: '$.idempotencyKey', message: 'must be 1 to 200 printable ASCII characters' }],
    });
  }
  const validated = validateValues(policy, { ...input, mode: 'create' });

  // A keyed hash of the normalized request detects a key reused for other values without storing them.
  const requestHmac = blindIndex(keyring, 'idempotency-request', canonicalJson({ recordType: input.recordType, values: Object.fromEntries(validated.set) }));
  if (input.idempotencyKey !== undefined) {
    const earlier = await findIdempotent(deps, input.actor, input.idempotencyKey, requestHmac);
    if (earlier !== undefined) {
      return earlier;
    }
  }

  const subjectId = randomUUID();
  const subjectToken = generateSubjectToken();
  const dataKey = await deps.keys.generateDataKey(dataKeyContext(subjectToken));
  const location = { recordType: input.recordType, subjectToken };
  const fields: EncryptedFields = {};
  for (const [field, value] of validated.set) {
    fields[field] = encryptField(dataKey.plaintext, { ...location, field }, value);
  }
  dataKey.plaintext.fill(0);

  try {
    await withTransaction(deps.db, async (client) => {
      await client.query('INSERT INTO subjects (id, token) VALUES ($1, $2)', [subjectId, subjectToken]);
      if (input.idempotencyKey !== undefined) {
        const claimed = await client.query(
          `INSERT INTO idempotency_keys (actor_id, key, record_type, request_hmac, subject_id, version)
           VALUES ($1, $2, $3, $4, $5, 1) ON CONFLICT (actor_id, key) DO NOTHING`,
          [input.actor.id, input.idempotencyKey, input.recordType, requestHmac, subjectId],
        );
        if (claimed.rowCount !== 1) {
          throw new IdempotencyKeyTaken();
        }
      }
      await client.query('INSERT INTO data_keys (subject_id, kek_version, wrapped) VALUES ($1, $2, $3)', [
        subjectId,
        dataKey.wrapped.kekVersion,
        dataKey.wrapped.ciphertext,
      ]);
      await insertRecordAndVersion(deps, client, { subjectId, recordType: input.recordType, fields, actor: input.actor, purpose: input.purpose });
      for (const [field, definition] of Object.entries(validated.recordPolicy.fields)) {
        if (definition.searchable && validated.set.has(field)) {
          await writeBlindIndex(client, keyring, { subjectId, recordType: input.recordType, field, value: validated.set.get(field) });
        }
      }
      await enqueueForDestinations(client, policy, { subjectId, subjectToken, recordType: input.recordType, op: 'upsert', recordVersion: 1 });
      await appendAudit(client, keyring, {
        actor: input.actor,
        action: 'record.create',
        purpose: input.purpose,
        subjectToken,
        recordType: input.recordType,
        fields: [...validated.set.keys()],
      });
    });
  } catch (error) {
    if (error instanceof IdempotencyKeyTaken && input.idempotencyKey !== undefined) {
      const earlier = await findIdempotent(deps, input.actor, input.idempotencyKey, requestHmac);
      if (earlier !== undefined) {
        return earlier;
      }
    }
    throw error;
  }

  deps.logger.info({ event: 'record.created', subjectToken, recordType: input.recordType, version: 1 }, 'created a record');
  return { subjectToken, version: 1 };
}

async function insertRecordAndVersion(
  deps: VaultDeps,
  client: pg.PoolClient,
  row: { subjectId: string; recordType: string; fields: EncryptedFields; actor: Actor; purpose: string },
): Promise<void> {
  const policyVersion = deps.policy.version;
  await client.query(
    'INSERT INTO records (subject_id, record_type, fields, version, policy_version) VALUES ($1, $2, $3, 1, $4)',
    [row.subjectId, row.recordType, JSON.stringify(row.fields), policyVersion],
  );
  await client.query(
    `INSERT INTO record_versions (subject_id, record_type, version, changed_fields, actor_id, actor_location, purpose, policy_version, fields)
     VALUES ($1, $2, 1, $3, $4, $5, $6, $7, $8)`,
    [row.subjectId, row.recordType, Object.keys(row.fields), row.actor.id, row.actor.location, row.purpose, policyVersion, JSON.stringify(row.fields)],
  );
}

/** Returns the result of an earlier create with this key, or throws `conflict` when the key was used for other values. */
async function findIdempotent(
  deps: VaultDeps,
  actor: Actor,
  key: string,
  requestHmac: Buffer,
): Promise<{ subjectToken: string; version: number } | undefined> {
  const result = await deps.db.pool.query<{ token: string; version: number; request_hmac: Buffer; erased_at: Date | null }>(
    `SELECT s.token, i.version, i.request_hmac, s.erased_at
     FROM idempotency_keys i JOIN subjects s ON s.id = i.subject_id
     WHERE i.actor_id = $1 AND i.key = $2`,
    [actor.id, key],
  );
  const row = result.rows[0];
  if (row === undefined) {
    return undefined;
  }
  // Erasure clears the stored hash, so a retry after erasure returns the erased subject instead of recreating it.
  if (row.erased_at === null && !row.request_hmac.equals(requestHmac)) {
    throw new DomicileError('conflict', 'idempotency key was already used for a request with other values', {
      issues: [{ path: '$.idempotencyKey', message: 'was already used for a request with other values' }],
    });
  }
  return { subjectToken: row.token, version: row.version };
}

async function readRecord(deps: VaultDeps, input: ReadInput): Promise<RecordView> {
  requirePurpose(deps.policy, input.purpose);

  return withTransaction(deps.db, async (client) => {
    const subject = await findSubject(client, input.subjectToken, { lock: false });
    requireNotErased(subject);
    const record = await selectRecord(client, subject.id, input.recordType);
    if (record === undefined) {
      throw new DomicileError('not_found', `subject has no ${input.recordType} record`);
    }
    const wanted = input.fields === undefined ? record.fields : pickFields(record.fields, input.fields);
    const dataKey = await unwrapDataKey(client, deps.keys, subject);
    const values = decryptFields(dataKey, { recordType: input.recordType, subjectToken: subject.token }, wanted);
    dataKey.fill(0);

    await appendAudit(client, deps.keyring, {
      actor: input.actor,
      action: 'record.read',
      purpose: input.purpose,
      subjectToken: subject.token,
      recordType: input.recordType,
      fields: Object.keys(values),
    });
    return toView(subject.token, input.recordType, record, values);
  });
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
    await appendAudit(client, deps.keyring, {
      actor: input.actor,
      action: 'record.lookup',
      purpose: input.purpose,
      recordType: input.recordType,
      fields: [input.field],
      values: { [input.field]: normalized },
    });
    return result.rows.map((row) => row.token);
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
  const dataKey = await deps.keys.unwrap({ kekVersion: row.kek_version, ciphertext: row.wrapped }, dataKeyContext(row.token));
  const values = decryptFields(dataKey, { recordType, subjectToken: row.token }, record.fields);
  dataKey.fill(0);
  return toView(row.token, recordType, record, values);
}

async function selectRecord(
  client: Pick<pg.PoolClient, 'query'>,
  subjectId: string,
  recordType: string,
): Promise<RecordRow | undefined> {
  const result = await client.query<RecordRow>(
    'SELECT fields, version, policy_version, updated_at FROM records WHERE subject_id = $1 AND record_type = $2 AND erased_at IS NULL',
    [subjectId, recordType],
  );
  return result.rows[0];
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
