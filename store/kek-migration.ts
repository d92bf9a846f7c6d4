import { randomBytes } from 'node:crypto';
import { DomicileError } from '../policy/errors.ts';
import type { KeyProvider } from '../tokenizer/keys/provider.ts';
import { providerKindOf, type KeyProviderKind, type RoutingKeyProvider } from '../tokenizer/keys/routing.ts';
import { withTransaction, type Database } from './database.ts';
import { createJob, supersedeJobs, type Job } from './jobs.ts';
import { KEK_REWRAP_JOB, kekStatus, type KekVersionStatus } from './kek-rotation.ts';

/**
 * Moving every key from one KEK provider to another (the local key file to
 * AWS KMS, or back). A migration is a rewrap job of the KEK rotation whose
 * target version belongs to the other provider. So the worker role runs it
 * with the same cursor, lease and retries, and running processes wrap new
 * keys with the target once they read the job.
 */

/** Encryption context of the probe wrap that checks the target provider before a migration starts. */
const PROBE_CONTEXT = { purpose: 'kek-migration-probe' } as const;

export interface StoredKekVersion {
  kekVersion: string;
  dataKeys: number;
  tokenizationSecrets: number;
}

/** Lists every KEK version that wraps a data key or tokenization secret, with counts. */
export async function storedKekVersions(db: Database): Promise<StoredKekVersion[]> {
  const result = await db.pool.query<{ kek_version: string; data_keys: string; secrets: string }>(
    `SELECT kek_version, sum(data_keys) AS data_keys, sum(secrets) AS secrets FROM (
       SELECT kek_version, count(*) AS data_keys, 0 AS secrets FROM data_keys GROUP BY kek_version
       UNION ALL
       SELECT kek_version, 0, count(*) FROM tokenization_keys GROUP BY kek_version
     ) AS wraps GROUP BY kek_version ORDER BY kek_version`,
  );
  return result.rows.map((row) => ({ kekVersion: row.kek_version, dataKeys: Number(row.data_keys), tokenizationSecrets: Number(row.secrets) }));
}

/**
 * Wraps and unwraps a random key with `target`, so a migration to a KMS that
 * cannot be reached or whose key is disabled fails before any job is queued.
 */
async function probe(target: KeyProvider): Promise<void> {
  const key = randomBytes(32);
  const wrapped = await target.wrap(key, PROBE_CONTEXT);
  const unwrapped = await target.unwrap(wrapped, PROBE_CONTEXT);
  try {
    if (!unwrapped.equals(key)) {
      throw new DomicileError('internal', `the ${target.kind} key provider returned another key than it wrapped`);
    }
  } finally {
    key.fill(0);
    unwrapped.fill(0);
  }
}

/**
 * Starts moving every data key and tokenization secret to the provider of kind
 * `to`: checks that it wraps and unwraps, queues a rewrap job targeting its
 * current KEK version (superseding older open rewrap jobs), and makes `keys`
 * wrap new keys with it. Rejected with `invalid_request` when `keys` has no
 * member of that kind. Returns no job when nothing is left to move.
 */
export async function startKekMigration(
  db: Database,
  keys: RoutingKeyProvider,
  to: KeyProviderKind,
): Promise<{ job: Job | undefined; previousVersion: string; kekVersion: string }> {
  const target = keys.member(to);
  if (target === undefined) {
    throw new DomicileError('invalid_request', `no ${to} key provider is configured`);
  }
  await probe(target);

  const previousVersion = keys.currentVersion();
  const kekVersion = target.currentVersion();
  const remaining = await db.pool.query<{ count: string }>(
    'SELECT (SELECT count(*) FROM data_keys WHERE kek_version <> $1) + (SELECT count(*) FROM tokenization_keys WHERE kek_version <> $1) AS count',
    [kekVersion],
  );
  const left = Number(remaining.rows[0]?.count ?? 0);
  if (left === 0 && previousVersion === kekVersion) {
    return { job: undefined, previousVersion, kekVersion };
  }

  const dataKeys = await db.pool.query<{ count: string }>('SELECT count(*) AS count FROM data_keys WHERE kek_version <> $1', [kekVersion]);
  const params = { targetKekVersion: kekVersion, previousKekVersion: previousVersion, fromProvider: providerKindOf(previousVersion) ?? 'unknown', toProvider: to };
  const job = await withTransaction(db, async (client) => {
    const created = await createJob(client, { kind: KEK_REWRAP_JOB, params, total: Number(dataKeys.rows[0]?.count ?? 0) });
    await supersedeJobs(client, KEK_REWRAP_JOB, created.id);
    return created;
  });
  keys.useVersion(kekVersion);
  return { job, previousVersion, kekVersion };
}

export interface KekProviderStatus {
  /** Undefined for a version of no known provider. */
  provider: KeyProviderKind | undefined;
  dataKeys: number;
  tokenizationSecrets: number;
  versions: Array<KekVersionStatus & { canUnwrap: boolean }>;
}

/**
 * Groups the counts of `kekStatus` by provider, and marks each version that
 * none of `keys` can unwrap. A provider whose counts are both 0 can be removed
 * from the configuration.
 */
export async function kekProviderStatus(db: Database, keys: RoutingKeyProvider): Promise<KekProviderStatus[]> {
  const byProvider = new Map<string, KekProviderStatus>();
  for (const version of await kekStatus(db)) {
    const provider = providerKindOf(version.kekVersion);
    const name = provider ?? 'unknown';
    let entry = byProvider.get(name);
    if (entry === undefined) {
      entry = { provider, dataKeys: 0, tokenizationSecrets: 0, versions: [] };
      byProvider.set(name, entry);
    }
    entry.dataKeys += version.dataKeys;
    entry.tokenizationSecrets += version.tokenizationSecrets;
    const wrapsKeys = version.dataKeys > 0 || version.tokenizationSecrets > 0;
    entry.versions.push({ ...version, canUnwrap: !wrapsKeys || keys.canUnwrap(version.kekVersion) });
  }
  return [...byProvider.values()];
}
