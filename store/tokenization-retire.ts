import { DomicileError } from '../policy/errors.ts';
import type { Keyring } from '../tokenizer/keyring.ts';
import { appendAudit } from './audit.ts';
import type { KeyProvider } from '../tokenizer/keys/provider.ts';
import { withTransaction, type Database, type Queryable } from './database.ts';
import { tokenizationSecretContext } from './keyring-store.ts';
import type { Actor } from './types.ts';

/**
 * Rows that use one tokenization key version. Blind indexes, random tokens
 * and partial copies need its secret, so they block its retirement. Audit
 * entries need only its audit keys, which a retired version keeps.
 */
export interface TokenizationKeyUsage {
  /** Search blind indexes computed with the version. */
  blindIndexes: number;
  /** Random token mappings filed under the version (their tokens start with `rnd_v<version>_`). */
  randomTokens: number;
  /** Partial copies abroad whose tokens were made with the version. */
  partialCopies: number;
  /** Audit entries, chained or pending, whose hashes use the version's audit keys. */
  auditEntries: number;
}

/** Counts what still depends on a tokenization key version. */
export async function tokenizationKeyUsage(client: Queryable, version: number): Promise<TokenizationKeyUsage> {
  const result = await client.query<{ blind: string; mappings: string; copies: string; audit: string }>(
    `SELECT (SELECT count(*) FROM blind_index WHERE key_version = $1) AS blind,
            (SELECT count(*) FROM token_mappings WHERE key_version = $1) AS mappings,
            (SELECT count(*) FROM token_version_uses WHERE key_version = $1) AS copies,
            (SELECT count(*) FROM audit_log WHERE key_version = $1)
              + (SELECT count(*) FROM audit_pending WHERE key_version = $1) AS audit`,
    [version],
  );
  const row = result.rows[0];
  return {
    blindIndexes: Number(row?.blind ?? 0),
    randomTokens: Number(row?.mappings ?? 0),
    partialCopies: Number(row?.copies ?? 0),
    auditEntries: Number(row?.audit ?? 0),
  };
}

function describeUsage(usage: TokenizationKeyUsage): string {
  const parts = [
    usage.blindIndexes > 0 ? `${usage.blindIndexes} search blind indexes` : undefined,
    usage.randomTokens > 0 ? `${usage.randomTokens} random token mappings` : undefined,
    usage.partialCopies > 0 ? `${usage.partialCopies} partial copies abroad` : undefined,
  ];
  return parts.filter((part) => part !== undefined).join(', ');
}

/**
 * Retires a tokenization key version after checking, in the same
 * transaction, that nothing needs its secret any more. The row then keeps
 * the version's audit keys, wrapped by the KEK, in place of the secret. So
 * the audit log, anchors and erasure log written under it stay verifiable.
 * Rejects the current version and an unknown or retired one. Processes that
 * loaded the keyring before keep the secret in memory until they restart.
 */
export async function retireTokenizationSecret(db: Database, keys: KeyProvider, keyring: Keyring, version: number, actor: Actor): Promise<void> {
  if (version === keyring.currentVersion) {
    throw new DomicileError('conflict', `tokenization key version ${version} is the current version; rotate first, then retire the old version`);
  }
  await requireUnretired(db.pool, version);
  // Wrapped before the transaction, so a slow KMS does not keep the tables locked.
  const bundle = keyring.auditKeyBundle(version);
  let wrapped: Awaited<ReturnType<KeyProvider['wrap']>>;
  try {
    wrapped = await keys.wrap(bundle, tokenizationSecretContext(version));
  } finally {
    bundle.fill(0);
  }
  await withTransaction(db, async (client) => {
    const current = await client.query<{ max: number | null }>('SELECT max(version) AS max FROM tokenization_keys');
    if (current.rows[0]?.max === version) {
      throw new DomicileError('conflict', `tokenization key version ${version} is the current version; rotate first, then retire the old version`);
    }
    await requireUnretired(client, version, 'FOR UPDATE');
    // Waits for writes in flight to these tables and holds back new ones until
    // the commit: the count below includes every row written before, and the
    // triggers of migration 007 reject rows of this version written after.
    await client.query('LOCK TABLE blind_index, token_mappings, token_version_uses IN SHARE MODE');
    const usage = await tokenizationKeyUsage(client, version);
    const described = describeUsage(usage);
    if (described !== '') {
      throw new DomicileError('conflict', `tokenization key version ${version} is still needed by ${described}; re-tokenize or erase that data before retiring it`);
    }
    // Same context as the secret, so KEK rotation and provider migration rewrap the bundle like a secret.
    await client.query('UPDATE tokenization_keys SET kek_version = $2, wrapped = $3, retired_at = now() WHERE version = $1', [
      version,
      wrapped.kekVersion,
      wrapped.ciphertext,
    ]);
    await appendAudit(client, keyring, { actor, action: 'tokenization-key.retire', fields: [] });
  });
}

async function requireUnretired(client: Queryable, version: number, lock: '' | 'FOR UPDATE' = ''): Promise<void> {
  const found = await client.query(`SELECT version FROM tokenization_keys WHERE version = $1 AND retired_at IS NULL ${lock}`, [version]);
  if (found.rowCount !== 1) {
    throw new DomicileError('not_found', `tokenization key version ${version} does not exist or was already retired`);
  }
}
