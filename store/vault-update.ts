import { DomicileError } from '../policy/errors.ts';
import { appendAudit } from './audit.ts';
import { dataKeyCacheFor } from './data-key-cache.ts';
import { withTransaction } from './database.ts';
import { deleteSubjectTokens } from './token-mappings.ts';
import { decryptFields, encryptField, unwrapDataKey, writeBlindIndex, type EncryptedFields } from './record-crypto.ts';
import type { Actor } from './types.ts';
import { enqueueForDestinations, findSubject, requireNotErased, type VaultDeps } from './vault-common.ts';
import { requirePurpose, validateValues } from './vault-validate.ts';

export interface UpdateInput {
  subjectToken: string;
  recordType: string;
  /** Fields to set; `null` removes an optional field. Fields left out keep their value. */
  values: unknown;
  actor: Actor;
  purpose: string;
  /** When given, the update fails with `precondition_failed` unless the record is at this version. */
  expectedVersion?: number;
}

/**
 * Changes some fields of a record in one transaction: new ciphertexts, a new
 * version, blind indexes, outbox events and an audit entry. An update that
 * changes nothing writes only the audit entry and keeps the version.
 */
export async function updateRecord(deps: VaultDeps, input: UpdateInput): Promise<{ subjectToken: string; version: number }> {
  const validated = validateValues(deps.policy, { ...input, mode: 'update' });

  const result = await withTransaction(deps.db, async (client) => {
    const subject = await findSubject(client, input.subjectToken, { lock: true });
    requireNotErased(subject);
    const records = await client.query<{ fields: EncryptedFields; version: number }>(
      'SELECT fields, version FROM records WHERE subject_id = $1 AND record_type = $2 FOR UPDATE',
      [subject.id, input.recordType],
    );
    const record = records.rows[0];
    if (record === undefined) {
      throw new DomicileError('not_found', `subject has no ${input.recordType} record`);
    }
    if (input.expectedVersion !== undefined && input.expectedVersion !== record.version) {
      throw new DomicileError(
        'precondition_failed',
        `the current version ${record.version} of the record does not match the expected version ${input.expectedVersion}: read the record again and retry`,
      );
    }

    const dataKey = await unwrapDataKey(client, deps.keys, subject, dataKeyCacheFor(deps.db));
    const location = { recordType: input.recordType, subjectToken: subject.token };
    const current = decryptFields(dataKey, location, record.fields);

    const fields: EncryptedFields = { ...record.fields };
    const changedCiphertexts: EncryptedFields = {};
    const changed: string[] = [];
    for (const [field, value] of validated.set) {
      if (current[field] !== value) {
        fields[field] = encryptField(dataKey, { ...location, field }, value);
        changedCiphertexts[field] = fields[field];
        changed.push(field);
      }
    }
    for (const field of validated.remove) {
      if (Object.hasOwn(fields, field)) {
        delete fields[field];
        changed.push(field);
      }
    }
    dataKey.fill(0);

    const audit = { actor: input.actor, action: 'record.update', purpose: input.purpose, subjectToken: subject.token, recordType: input.recordType };
    if (changed.length === 0) {
      await appendAudit(client, deps.keyring, { ...audit, fields: [] });
      return { version: record.version, changed };
    }

    const version = record.version + 1;
    await client.query(
      'UPDATE records SET fields = $3, version = $4, policy_version = $5, updated_at = now() WHERE subject_id = $1 AND record_type = $2',
      [subject.id, input.recordType, JSON.stringify(fields), version, deps.policy.version],
    );
    await client.query(
      `INSERT INTO record_versions (subject_id, record_type, version, changed_fields, actor_id, actor_location, purpose, policy_version, fields)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
      [subject.id, input.recordType, version, changed, input.actor.id, input.actor.location, input.purpose, deps.policy.version, JSON.stringify(changedCiphertexts)],
    );
    for (const field of changed) {
      if (validated.recordPolicy.fields[field]?.searchable === true) {
        await writeBlindIndex(client, deps.keyring, { subjectId: subject.id, recordType: input.recordType, field, value: validated.set.get(field) });
      }
    }
    await enqueueForDestinations(client, deps.policy, { subjectId: subject.id, subjectToken: subject.token, recordType: input.recordType, op: 'upsert', recordVersion: version });
    await appendAudit(client, deps.keyring, { ...audit, fields: changed });
    return { version, changed };
  });

  deps.logger.info(
    { event: 'record.updated', subjectToken: input.subjectToken, recordType: input.recordType, version: result.version, changedCount: result.changed.length },
    'updated a record',
  );
  return { subjectToken: input.subjectToken, version: result.version };
}

/**
 * Purposes that only system actors (id `system:...`) may give for an erasure,
 * such as retention and restore. A policy purpose is an identifier and cannot
 * contain `:`, so these never collide with one.
 */
export const SYSTEM_ERASE_PURPOSES = ['system:retention', 'system:restore'] as const;

function requireErasePurpose(policy: VaultDeps['policy'], input: { actor: Actor; purpose: string }): void {
  const systemPurpose = (SYSTEM_ERASE_PURPOSES as readonly string[]).includes(input.purpose);
  if (!(systemPurpose && input.actor.id.startsWith('system:'))) {
    requirePurpose(policy, input.purpose);
  }
}

/**
 * Erases a subject and all its records. Deleting the data key crypto-shreds
 * every ciphertext, backups included. The blind indexes, random token
 * mappings and stored ciphertexts are deleted too, and the subject stays as a tombstone. Each destination that
 * received one of its records gets an erase event. Erasing an erased subject
 * again returns the first erasure time and queues nothing.
 */
export async function eraseSubject(
  deps: VaultDeps,
  input: { subjectToken: string; actor: Actor; purpose: string },
): Promise<{ subjectToken: string; erasedAt: string }> {
  requireErasePurpose(deps.policy, input);

  const outcome = await withTransaction(deps.db, async (client) => {
    const subject = await findSubject(client, input.subjectToken, { lock: true });
    const audit = { actor: input.actor, action: 'subject.erase', purpose: input.purpose, subjectToken: subject.token };
    if (subject.erased_at !== null) {
      await appendAudit(client, deps.keyring, audit);
      return { subjectId: subject.id, erasedAt: subject.erased_at, events: 0, again: true };
    }

    const records = await client.query<{ record_type: string; version: number }>(
      'SELECT record_type, version FROM records WHERE subject_id = $1 ORDER BY record_type',
      [subject.id],
    );
    await client.query('DELETE FROM data_keys WHERE subject_id = $1', [subject.id]);
    dataKeyCacheFor(deps.db).evict(subject.id);
    await client.query('DELETE FROM blind_index WHERE subject_id = $1', [subject.id]);
    await deleteSubjectTokens(client, subject.id);
    await client.query("UPDATE idempotency_keys SET request_hmac = '\\x'::bytea WHERE subject_id = $1", [subject.id]);
    await client.query("UPDATE records SET fields = '{}'::jsonb, erased_at = now(), updated_at = now() WHERE subject_id = $1", [subject.id]);
    await client.query('UPDATE record_versions SET fields = NULL WHERE subject_id = $1', [subject.id]);
    const erased = await client.query<{ erased_at: Date }>(
      'UPDATE subjects SET erased_at = now() WHERE id = $1 RETURNING erased_at',
      [subject.id],
    );

    let events = 0;
    for (const record of records.rows) {
      events += await enqueueForDestinations(client, deps.policy, {
        subjectId: subject.id,
        subjectToken: subject.token,
        recordType: record.record_type,
        op: 'erase',
        recordVersion: record.version,
      });
    }
    const erasedAt = erased.rows[0]?.erased_at ?? new Date();
    // Logged before COMMIT: a failed commit leaves an extra line, which a
    // restore re-applies, but a commit never lacks its line.
    await deps.erasureLog?.append({ subjectToken: subject.token, erasedAt: erasedAt.toISOString() });
    await appendAudit(client, deps.keyring, audit);
    return { subjectId: subject.id, erasedAt, events, again: false };
  });
  // Again after COMMIT, because a read of this process may have cached the key
  // between the eviction above and the commit.
  dataKeyCacheFor(deps.db).evict(outcome.subjectId);

  deps.logger.info(
    { event: 'subject.erased', subjectToken: input.subjectToken, outboxEvents: outcome.events, alreadyErased: outcome.again },
    'erased a subject',
  );
  return { subjectToken: input.subjectToken, erasedAt: outcome.erasedAt.toISOString() };
}
