import type { EncryptionContext, KeyProvider, WrappedKey } from '../tokenizer/keys/provider.ts';
import type { Database } from './database.ts';
import { tokenizationSecretContext } from './keyring-store.ts';
import { dataKeyContext } from './record-crypto.ts';

export interface RewrapResult {
  dataKeys: number;
  tokenizationSecrets: number;
}

const DEFAULT_BATCH = 200;

/**
 * Rewraps every data key and tokenization secret that an older KEK version
 * wrapped, so the old KEK can be retired. The plaintext keys and every field
 * ciphertext stay the same. Safe to run while the gateway serves, and to run
 * again after an interruption: a row is updated only if it still has the old
 * wrap, so a concurrent erasure wins. `onProgress` receives rewrapped data keys
 * so far and the count that needed it at the start.
 */
export async function rewrapKeys(
  db: Database,
  keys: KeyProvider,
  options: {
    batchSize?: number;
    onProgress?: (done: number, total: number) => void;
    /** Subject id to continue after, as saved by `onBatch` of an earlier, interrupted run. */
    after?: string;
    /** Called after each batch with the last subject id done; returning false stops the run before the next batch. */
    onBatch?: (state: { cursor: string; dataKeys: number; total: number }) => Promise<boolean>;
  } = {},
): Promise<RewrapResult & { stopped?: true }> {
  const current = keys.currentVersion();
  const batchSize = options.batchSize ?? DEFAULT_BATCH;

  const totals = await db.pool.query<{ count: string }>('SELECT count(*) AS count FROM data_keys WHERE kek_version <> $1', [current]);
  const total = Number(totals.rows[0]?.count ?? 0);
  let dataKeys = 0;
  let after = options.after ?? '00000000-0000-0000-0000-000000000000';

  for (;;) {
    const batch = await db.pool.query<{ subject_id: string; token: string; kek_version: string; wrapped: Buffer }>(
      `SELECT d.subject_id, s.token, d.kek_version, d.wrapped
       FROM data_keys d JOIN subjects s ON s.id = d.subject_id
       WHERE d.kek_version <> $1 AND d.subject_id > $2
       ORDER BY d.subject_id LIMIT $3`,
      [current, after, batchSize],
    );
    for (const row of batch.rows) {
      const wrapped = await rewrap(keys, { kekVersion: row.kek_version, ciphertext: row.wrapped }, dataKeyContext(row.token));
      const updated = await db.pool.query(
        'UPDATE data_keys SET kek_version = $2, wrapped = $3 WHERE subject_id = $1 AND kek_version = $4 AND wrapped = $5',
        [row.subject_id, wrapped.kekVersion, wrapped.ciphertext, row.kek_version, row.wrapped],
      );
      dataKeys += updated.rowCount ?? 0;
      after = row.subject_id;
    }
    options.onProgress?.(dataKeys, total);
    if (batch.rows.length < batchSize) {
      break;
    }
    if (options.onBatch !== undefined && !(await options.onBatch({ cursor: after, dataKeys, total }))) {
      return { dataKeys, tokenizationSecrets: 0, stopped: true };
    }
  }

  const secrets = await db.pool.query<{ version: number; kek_version: string; wrapped: Buffer }>(
    'SELECT version, kek_version, wrapped FROM tokenization_keys WHERE kek_version <> $1 ORDER BY version',
    [current],
  );
  let tokenizationSecrets = 0;
  for (const row of secrets.rows) {
    const context = tokenizationSecretContext(row.version);
    const wrapped = await rewrap(keys, { kekVersion: row.kek_version, ciphertext: row.wrapped }, context);
    const updated = await db.pool.query(
      'UPDATE tokenization_keys SET kek_version = $2, wrapped = $3 WHERE version = $1 AND kek_version = $4',
      [row.version, wrapped.kekVersion, wrapped.ciphertext, row.kek_version],
    );
    tokenizationSecrets += updated.rowCount ?? 0;
  }
  return { dataKeys, tokenizationSecrets };
}

async function rewrap(keys: KeyProvider, wrapped: WrappedKey, context: EncryptionContext): Promise<WrappedKey> {
  const plaintext = await keys.unwrap(wrapped, context);
  try {
    return await keys.wrap(plaintext, context);
  } finally {
    plaintext.fill(0);
  }
}
