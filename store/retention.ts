import type { Actor } from './types.ts';
import type { VaultDeps } from './vault-common.ts';
import { eraseSubject } from './vault-update.ts';

/** Actor that retention erasures are audited under. */
export const RETENTION_ACTOR: Actor = { id: 'system:retention', location: 'in-country' };
/** Purpose of retention erasures unless a policy purpose is configured. */
export const RETENTION_PURPOSE = 'system:retention';

const DEFAULT_BATCH = 100;
/** Milliseconds a claim on subjects lasts, so another worker skips them meanwhile. */
const DEFAULT_LEASE_MS = 5 * 60_000;

export interface RetentionOptions {
  batchSize?: number;
  leaseMs?: number;
  /** Access purpose recorded with each erasure: `system:retention` or a purpose of the policy. */
  purpose?: string;
}

/**
 * Claims a batch of subjects whose records have all lapsed and erases each
 * through the normal erase path. A record lapses when its record type
 * declares `retention.days` and it was last changed longer ago than that.
 * A subject is erased only when every live record it has lapsed, because
 * erasure is per subject: a record type without retention keeps its subject.
 * Workers coordinate through FOR UPDATE SKIP LOCKED and a lease on the
 * subject row. Returns the number of subjects erased; a full batch means
 * more may be waiting.
 */
export async function eraseLapsedSubjects(deps: VaultDeps, options: RetentionOptions = {}): Promise<number> {
  const rules = Object.entries(deps.policy.recordTypes).flatMap(([recordType, policy]) =>
    policy.retention === undefined ? [] : [{ recordType, days: policy.retention.days }],
  );
  if (rules.length === 0) {
    return 0;
  }

  const claimed = await deps.db.pool.query<{ token: string }>(
    `WITH rules AS (
       SELECT * FROM unnest($1::text[], $2::int[]) AS rule(record_type, days)
     ),
     lapsed AS (
       SELECT r.subject_id, r.record_type FROM records r JOIN rules ON rules.record_type = r.record_type
       WHERE r.erased_at IS NULL AND r.updated_at < now() - make_interval(days => rules.days)
     ),
     candidates AS (
       SELECT s.id FROM subjects s
       WHERE s.erased_at IS NULL
         AND (s.retention_lease_until IS NULL OR s.retention_lease_until < now())
         AND EXISTS (SELECT 1 FROM lapsed l WHERE l.subject_id = s.id)
         AND NOT EXISTS (
           SELECT 1 FROM records live
           WHERE live.subject_id = s.id AND live.erased_at IS NULL
             AND NOT EXISTS (SELECT 1 FROM lapsed l WHERE l.subject_id = live.subject_id AND l.record_type = live.record_type)
         )
       ORDER BY s.id
       LIMIT $3
       FOR UPDATE OF s SKIP LOCKED
     )
     UPDATE subjects SET retention_lease_until = now() + make_interval(secs => $4::double precision / 1000)
     WHERE id IN (SELECT id FROM candidates)
     RETURNING token`,
    [rules.map((rule) => rule.recordType), rules.map((rule) => rule.days), options.batchSize ?? DEFAULT_BATCH, options.leaseMs ?? DEFAULT_LEASE_MS],
  );

  const purpose = options.purpose ?? RETENTION_PURPOSE;
  let erased = 0;
  for (const { token } of claimed.rows) {
    await eraseSubject(deps, { subjectToken: token, actor: RETENTION_ACTOR, purpose });
    erased += 1;
  }
  if (erased > 0) {
    deps.logger.info({ event: 'retention.erased', subjects: erased }, 'erased subjects whose records passed their retention period');
  }
  return erased;
}
