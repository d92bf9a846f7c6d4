import { DomicileError } from '../policy/errors.ts';
import { appendAudit } from './audit.ts';
import { sealAudit } from './audit-seal.ts';
import { withTransaction } from './database.ts';
import { decryptFields, unwrapDataKey, type EncryptedFields, type NormalizedValue } from './record-crypto.ts';
import type { Actor } from './types.ts';
import { findSubject, requireNotErased, type VaultDeps } from './vault-common.ts';
import { requirePurpose } from './vault-validate.ts';

/**
 * Everything the store keeps about one subject, for a subject access request:
 * its records in clear, the history of each record and the audit entries that
 * name the subject. Values of other subjects never appear: version rows and
 * audit rows are selected by this subject only, and audit value HMACs are
 * left out.
 */
export interface SubjectExport {
  subjectToken: string;
  createdAt: string;
  exportedAt: string;
  records: Array<{
    recordType: string;
    version: number;
    policyVersion: number;
    createdAt: string;
    updatedAt: string;
    values: Record<string, NormalizedValue>;
  }>;
  history: Array<{
    recordType: string;
    version: number;
    /** Names of the fields this version set or removed. */
    changedFields: string[];
    /** New values of the fields this version set, in clear. */
    values: Record<string, NormalizedValue>;
    actor: Actor;
    purpose: string;
    policyVersion: number;
    at: string;
  }>;
  audit: Array<{
    seq: number;
    at: string;
    actor: Actor;
    action: string;
    purpose: string | null;
    recordType: string | null;
    fields: string[];
    outcome: string;
  }>;
}

export interface ExportInput {
  subjectToken: string;
  actor: Actor;
  purpose: string;
  /** Record types the caller may read; a subject with a record of another type is `forbidden`. */
  recordTypes?: readonly string[];
}

/**
 * Builds the subject access export in one transaction and audits it as
 * `subject.export`. Only in-country actors may export, because the document
 * holds every value in clear.
 */
export async function exportSubject(deps: VaultDeps, input: ExportInput): Promise<SubjectExport> {
  if (input.actor.location !== 'in-country') {
    throw new DomicileError('forbidden', 'subject access export is open to in-country callers only: it returns every value in clear');
  }
  requirePurpose(deps.policy, input.purpose);

  // Entries that a stopped process left pending are chained first, so the export lists them with their sequence numbers.
  await sealAudit(deps.db, deps.keyring);
  return withTransaction(deps.db, async (client) => {
    const subject = await findSubject(client, input.subjectToken, { lock: false });
    requireNotErased(subject);
    const created = await client.query<{ created_at: Date }>('SELECT created_at FROM subjects WHERE id = $1', [subject.id]);

    const records = await client.query<{ record_type: string; fields: EncryptedFields; version: number; policy_version: number; created_at: Date; updated_at: Date }>(
      `SELECT record_type, fields, version, policy_version, created_at, updated_at FROM records
       WHERE subject_id = $1 AND erased_at IS NULL ORDER BY record_type`,
      [subject.id],
    );
    const forbidden = records.rows.find((row) => input.recordTypes !== undefined && !input.recordTypes.includes(row.record_type));
    if (forbidden !== undefined) {
      throw new DomicileError('forbidden', `credential lacks access to record type ${forbidden.record_type}, which this subject has`);
    }
    const versions = await client.query<{
      record_type: string;
      version: number;
      changed_fields: string[];
      fields: EncryptedFields | null;
      actor_id: string;
      actor_location: Actor['location'];
      purpose: string;
      policy_version: number;
      created_at: Date;
    }>(
      `SELECT record_type, version, changed_fields, fields, actor_id, actor_location, purpose, policy_version, created_at
       FROM record_versions WHERE subject_id = $1 ORDER BY record_type, version`,
      [subject.id],
    );
    const audit = await client.query<{
      seq: string;
      at: Date;
      actor_id: string;
      actor_location: Actor['location'];
      action: string;
      purpose: string | null;
      record_type: string | null;
      fields: string[];
      outcome: string;
    }>(
      `SELECT seq, at, actor_id, actor_location, action, purpose, record_type, fields, outcome
       FROM audit_log WHERE subject_token = $1 ORDER BY seq`,
      [subject.token],
    );

    const dataKey = await unwrapDataKey(client, deps.keys, subject);
    let document: SubjectExport;
    try {
      document = {
        subjectToken: subject.token,
        createdAt: created.rows[0]?.created_at.toISOString() ?? '',
        exportedAt: new Date().toISOString(),
        records: records.rows.map((row) => ({
          recordType: row.record_type,
          version: row.version,
          policyVersion: row.policy_version,
          createdAt: row.created_at.toISOString(),
          updatedAt: row.updated_at.toISOString(),
          values: decryptFields(dataKey, { recordType: row.record_type, subjectToken: subject.token }, row.fields),
        })),
        history: versions.rows.map((row) => ({
          recordType: row.record_type,
          version: row.version,
          changedFields: row.changed_fields,
          values: row.fields === null ? {} : decryptFields(dataKey, { recordType: row.record_type, subjectToken: subject.token }, row.fields),
          actor: { id: row.actor_id, location: row.actor_location },
          purpose: row.purpose,
          policyVersion: row.policy_version,
          at: row.created_at.toISOString(),
        })),
        audit: audit.rows.map((row) => ({
          seq: Number(row.seq),
          at: row.at.toISOString(),
          actor: { id: row.actor_id, location: row.actor_location },
          action: row.action,
          purpose: row.purpose,
          recordType: row.record_type,
          fields: row.fields,
          outcome: row.outcome,
        })),
      };
    } finally {
      dataKey.fill(0);
    }

    await appendAudit(client, deps.keyring, {
      actor: input.actor,
      action: 'subject.export',
      purpose: input.purpose,
      subjectToken: subject.token,
      fields: [...new Set(document.records.flatMap((record) => Object.keys(record.values)))].sort(),
    });
    deps.logger.info({ event: 'subject.exported', subjectToken: subject.token, records: document.records.length, auditEntries: document.audit.length }, 'exported a subject');
    return document;
  });
}
