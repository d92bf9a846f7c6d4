import type { EncryptionContext, KeyProvider } from '../tokenizer/keys/provider.ts';
import { generateTokenizationSecret, Keyring } from '../tokenizer/keyring.ts';
import type { Database, Queryable } from './database.ts';

interface TokenizationKeyRow {
  version: number;
  kek_version: string;
  /** The wrapped secret, or for a retired version the wrapped bundle of its audit keys. */
  wrapped: Buffer;
  retired_at: Date | null;
}

/** Encryption context of a wrapped tokenization secret. Stored wraps depend on it: never change it. */
export function tokenizationSecretContext(version: number): EncryptionContext {
  return { purpose: 'tokenization-secret', version: String(version) };
}

/**
 * Loads and unwraps every tokenization secret. On first start it creates
 * version 1; when two processes start at once, both end up with the row that
 * won the insert.
 */
export async function loadKeyring(db: Database, keys: KeyProvider): Promise<Keyring> {
  let rows = await selectKeys(db.pool);
  if (rows.length === 0) {
    await insertSecret(db.pool, keys, 1);
    rows = await selectKeys(db.pool);
  }
  return unwrapAll(rows, keys);
}

/**
 * Adds a new tokenization secret version and makes it current. Tokens and blind
 * indexes made with older versions stay valid because the old secrets remain.
 * Returns the new version.
 */
export async function rotateTokenizationSecret(db: Database, keys: KeyProvider): Promise<number> {
  for (;;) {
    const result = await db.pool.query<{ max: number | null }>('SELECT max(version) AS max FROM tokenization_keys');
    const next = (result.rows[0]?.max ?? 0) + 1;
    if (await insertSecret(db.pool, keys, next)) {
      return next;
    }
  }
}

async function selectKeys(queryable: Queryable): Promise<TokenizationKeyRow[]> {
  const result = await queryable.query<TokenizationKeyRow>(
    'SELECT version, kek_version, wrapped, retired_at FROM tokenization_keys ORDER BY version',
  );
  return result.rows;
}

/** Returns false when another process inserted this version first. */
async function insertSecret(queryable: Queryable, keys: KeyProvider, version: number): Promise<boolean> {
  const secret = generateTokenizationSecret();
  try {
    const wrapped = await keys.wrap(secret, tokenizationSecretContext(version));
    const result = await queryable.query(
      `INSERT INTO tokenization_keys (version, kek_version, wrapped) VALUES ($1, $2, $3)
       ON CONFLICT (version) DO NOTHING`,
      [version, wrapped.kekVersion, wrapped.ciphertext],
    );
    return result.rowCount === 1;
  } finally {
    secret.fill(0);
  }
}

async function unwrapAll(rows: readonly TokenizationKeyRow[], keys: KeyProvider): Promise<Keyring> {
  const secrets = new Map<number, Buffer>();
  const retainedAudit = new Map<number, Buffer>();
  for (const row of rows) {
    const plaintext = await keys.unwrap({ kekVersion: row.kek_version, ciphertext: row.wrapped }, tokenizationSecretContext(row.version));
    (row.retired_at === null ? secrets : retainedAudit).set(row.version, plaintext);
  }
  const current = Math.max(...secrets.keys());
  return new Keyring(secrets, current, retainedAudit);
}
