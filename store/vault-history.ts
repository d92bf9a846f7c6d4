import { DomicileError } from '../policy/errors.ts';
import { appendAudit } from './audit.ts';
import { withTransaction } from './database.ts';
import type { Actor } from './types.ts';
import { findSubject, requireNotErased, type VaultDeps } from './vault-common.ts';
import { requirePurpose } from './vault-validate.ts';

export interface VersionsInput {
  subjectToken: string;
  recordType: string;
  actor: Actor;
  purpose: string;
  /** Maximum number of versions, oldest first. */
  limit: number;
  /** Only versions after this one, for paging. */
  afterVersion?: number;
}

/** One write of a record: who, when, why and which fields, without values. */
export interface RecordVersionInfo {
  version: number;
  createdAt: string;
  actor: string;
  actorLocation: 'in-country' | 'abroad';
  purpose: string;
  changedFields: string[];
  policyVersion: number;
}

interface VersionRow {
  version: number;
  created_at: Date;
  actor_id: string;
  actor_location: 'in-country' | 'abroad';
  purpose: string;
  changed_fields: string[];
  policy_version: number;
}

/**
 * Lists the versions of a record, oldest first, and audits the listing.
 * Ciphertexts of old values stay in the store; this reads only metadata.
 */
export async function listVersions(deps: VaultDeps, input: VersionsInput): Promise<RecordVersionInfo[]> {
  requirePurpose(deps.policy, input.purpose);

  return withTransaction(deps.db, async (client) => {
    const subject = await findSubject(client, input.subjectToken, { lock: false });
    requireNotErased(subject);
    const result = await client.query<VersionRow>(
      `SELECT version, created_at, actor_id, actor_location, purpose, changed_fields, policy_version
       FROM record_versions
       WHERE subject_id = $1 AND record_type = $2 AND version > $3
       ORDER BY version LIMIT $4`,
      [subject.id, input.recordType, input.afterVersion ?? 0, input.limit],
    );
    if (result.rows.length === 0 && (input.afterVersion ?? 0) === 0) {
      throw new DomicileError('not_found', `subject has no ${input.recordType} record`);
    }
    await appendAudit(client, deps.keyring, {
      actor: input.actor,
      action: 'record.history',
      purpose: input.purpose,
      subjectToken: subject.token,
      recordType: input.recordType,
    });
    return result.rows.map((row) => ({
      version: row.version,
      createdAt: row.created_at.toISOString(),
      actor: row.actor_id,
      actorLocation: row.actor_location,
      purpose: row.purpose,
      changedFields: row.changed_fields,
      policyVersion: row.policy_version,
    }));
  });
}
