import { DomicileError } from '../policy/errors.ts';
import { blindIndex } from '../tokenizer/blind-index.ts';
import { decryptValue, encryptValue } from '../tokenizer/envelope.ts';
import type { Keyring } from '../tokenizer/keyring.ts';
import type { EncryptionContext, KeyProvider } from '../tokenizer/keys/provider.ts';
import { generateRandomToken } from '../tokenizer/random.ts';
import type { Database, Queryable } from './database.ts';
import { dataKeyContext } from './record-crypto.ts';

/**
 * The mapping table of random tokens (`token_mappings`). A random token is
 * filed under the current keyring version, which its `rnd_v<version>_` prefix
 * names. Subject rows are encrypted under the subject's data key, so erasure
 * shreds them; rows without a subject use the data key of their namespace.
 */

/** Encryption context of a namespace data key. Stored wraps depend on it: never change it. */
export function namespaceKeyContext(namespace: string): EncryptionContext {
  return { purpose: 'token-namespace', namespace };
}

/** AAD of a mapping blob. Stored blobs depend on it: never change it. */
function mappingAad(namespace: string, token: string, subjectToken: string | undefined): string {
  return subjectToken === undefined ? `token.${namespace}.${token}` : `token.${namespace}.${token}.${subjectToken}`;
}

/** Keyed hash that finds the mapping of a value; its own namespace keeps it apart from search blind indexes. */
export function mappingDigest(keyring: Keyring, namespace: string, value: string, version: number): Buffer {
  return blindIndex(keyring, `random-token/${namespace}`, value, version);
}

/** Advisory lock id of one namespace and digest, so two transactions never mint two stable tokens for one value. */
function stableLockId(digest: Buffer): string {
  return digest.readBigInt64BE(0).toString();
}

/**
 * Unwrapped namespace data keys, created on first use. Reads and inserts go
 * through the pool outside any caller transaction, so a cached key is always a
 * committed one.
 */
export class NamespaceKeys {
  declare private readonly cache: Map<string, Buffer>;
  private readonly db: Database;
  private readonly keys: KeyProvider;

  constructor(db: Database, keys: KeyProvider) {
    this.db = db;
    this.keys = keys;
    // Non-enumerable, so key material never shows up when the object is logged.
    Object.defineProperty(this, 'cache', { value: new Map(), enumerable: false });
  }

  /** Returns the namespace's data key, creating it on first use. */
  async get(namespace: string): Promise<Buffer> {
    return (await this.load(namespace, true)) ?? Buffer.alloc(0);
  }

  /** Returns the namespace's data key, or undefined when none was ever created. */
  async find(namespace: string): Promise<Buffer | undefined> {
    return this.load(namespace, false);
  }

  private async load(namespace: string, create: boolean): Promise<Buffer | undefined> {
    const cached = this.cache.get(namespace);
    if (cached !== undefined) {
      return cached;
    }
    let row = await this.select(namespace);
    if (row === undefined && !create) {
      return undefined;
    }
    if (row === undefined) {
      const dataKey = await this.keys.generateDataKey(namespaceKeyContext(namespace));
      dataKey.plaintext.fill(0);
      await this.db.pool.query(
        'INSERT INTO namespace_keys (namespace, kek_version, wrapped) VALUES ($1, $2, $3) ON CONFLICT (namespace) DO NOTHING',
        [namespace, dataKey.wrapped.kekVersion, dataKey.wrapped.ciphertext],
      );
      // Another process may have won the insert: always use the stored key.
      row = await this.select(namespace);
    }
    if (row === undefined) {
      throw new DomicileError('internal', 'namespace data key could not be stored');
    }
    const key = await this.keys.unwrap({ kekVersion: row.kek_version, ciphertext: row.wrapped }, namespaceKeyContext(namespace));
    this.cache.set(namespace, key);
    return key;
  }

  private async select(namespace: string): Promise<{ kek_version: string; wrapped: Buffer } | undefined> {
    const result = await this.db.pool.query<{ kek_version: string; wrapped: Buffer }>(
      'SELECT kek_version, wrapped FROM namespace_keys WHERE namespace = $1',
      [namespace],
    );
    return result.rows[0];
  }
}

export interface SubjectMappingInput {
  subject: { id: string; token: string };
  dataKey: Buffer;
  namespace: string;
  value: string;
  stable: boolean;
}

/**
 * Returns the subject's random token for a value, creating the mapping when
 * the subject has none. The same subject and value keep one token, so
 * re-projecting a record does not change it; a stable token is shared with
 * every other holder of the value in the namespace.
 */
export async function subjectRandomToken(client: Queryable, keyring: Keyring, input: SubjectMappingInput): Promise<string> {
  const version = keyring.currentVersion;
  const digest = mappingDigest(keyring, input.namespace, input.value, version);
  const existing = await selectSubjectToken(client, input.subject.id, input.namespace, version, digest);
  if (existing !== undefined) {
    return existing;
  }

  const token = input.stable ? await stableToken(client, input.namespace, version, digest) : generateRandomToken(version);
  const ciphertext = encryptValue(input.dataKey, input.value, mappingAad(input.namespace, token, input.subject.token));
  await client.query(
    `INSERT INTO token_mappings (token, namespace, subject_id, key_version, value_digest, stable, ciphertext)
     VALUES ($1, $2, $3, $4, $5, $6, $7)
     ON CONFLICT (subject_id, namespace, key_version, value_digest) WHERE subject_id IS NOT NULL DO NOTHING`,
    [token, input.namespace, input.subject.id, version, digest, input.stable, ciphertext],
  );
  const stored = await selectSubjectToken(client, input.subject.id, input.namespace, version, digest);
  if (stored === undefined) {
    throw new DomicileError('internal', 'random token mapping could not be stored');
  }
  return stored;
}

async function selectSubjectToken(client: Queryable, subjectId: string, namespace: string, version: number, digest: Buffer): Promise<string | undefined> {
  const result = await client.query<{ token: string }>(
    `SELECT token FROM token_mappings
     WHERE subject_id = $1 AND namespace = $2 AND key_version = $3 AND value_digest = $4`,
    [subjectId, namespace, version, digest],
  );
  return result.rows[0]?.token;
}

/** Returns the stable token of a digest, or a new one; holds a transaction lock on the digest until commit. */
async function stableToken(client: Queryable, namespace: string, version: number, digest: Buffer): Promise<string> {
  await client.query('SELECT pg_advisory_xact_lock($1::bigint)', [stableLockId(digest)]);
  const result = await client.query<{ token: string }>(
    'SELECT token FROM token_mappings WHERE stable AND namespace = $1 AND key_version = $2 AND value_digest = $3 ORDER BY id LIMIT 1',
    [namespace, version, digest],
  );
  return result.rows[0]?.token ?? generateRandomToken(version);
}

/**
 * Creates a random token without a subject (tokenize API). A stable token is
 * looked up first; otherwise every call gives a new, unlinkable token.
 */
export async function namespaceRandomToken(
  client: Queryable,
  keyring: Keyring,
  input: { namespaceKey: Buffer; namespace: string; value: string; stable: boolean },
): Promise<string> {
  const version = keyring.currentVersion;
  const digest = input.stable ? mappingDigest(keyring, input.namespace, input.value, version) : null;
  const token = digest === null ? generateRandomToken(version) : await stableToken(client, input.namespace, version, digest);
  if (digest !== null) {
    const own = await client.query<{ token: string }>(
      'SELECT token FROM token_mappings WHERE subject_id IS NULL AND stable AND namespace = $1 AND key_version = $2 AND value_digest = $3',
      [input.namespace, version, digest],
    );
    if (own.rows[0] !== undefined) {
      return own.rows[0].token;
    }
  }
  const ciphertext = encryptValue(input.namespaceKey, input.value, mappingAad(input.namespace, token, undefined));
  await client.query(
    `INSERT INTO token_mappings (token, namespace, subject_id, key_version, value_digest, stable, ciphertext)
     VALUES ($1, $2, NULL, $3, $4, $5, $6)`,
    [token, input.namespace, version, digest, input.stable, ciphertext],
  );
  return token;
}

interface MappingRow {
  ciphertext: Buffer;
  subject_token: string | null;
  kek_version: string | null;
  wrapped: Buffer | null;
}

/**
 * Returns the value of a random token of a namespace, or undefined when no
 * live mapping exists (never made, erased, or of a retired version). Rows
 * without a subject are preferred, because they need no subject data key.
 * The caller reads `namespaceKey` before its transaction.
 */
export async function resolveRandomToken(
  client: Queryable,
  keys: KeyProvider,
  namespaceKey: Buffer | undefined,
  namespace: string,
  token: string,
): Promise<string | undefined> {
  const result = await client.query<MappingRow>(
    `SELECT m.ciphertext, s.token AS subject_token, d.kek_version, d.wrapped
     FROM token_mappings m
     LEFT JOIN subjects s ON s.id = m.subject_id
     LEFT JOIN data_keys d ON d.subject_id = m.subject_id
     WHERE m.token = $1 AND m.namespace = $2 AND (m.subject_id IS NULL OR d.subject_id IS NOT NULL)
     ORDER BY (m.subject_id IS NULL) DESC, m.id
     LIMIT 1`,
    [token, namespace],
  );
  const row = result.rows[0];
  if (row === undefined) {
    return undefined;
  }
  if (row.subject_token === null) {
    if (namespaceKey === undefined) {
      throw new DomicileError('internal', 'namespace data key is missing for a stored random token');
    }
    return decryptValue(namespaceKey, row.ciphertext, mappingAad(namespace, token, undefined));
  }
  if (row.kek_version === null || row.wrapped === null) {
    return undefined;
  }
  const dataKey = await keys.unwrap({ kekVersion: row.kek_version, ciphertext: row.wrapped }, dataKeyContext(row.subject_token));
  try {
    return decryptValue(dataKey, row.ciphertext, mappingAad(namespace, token, row.subject_token));
  } finally {
    dataKey.fill(0);
  }
}

/** Deletes a subject's random token mappings and token version records; part of erasure. */
export async function deleteSubjectTokens(client: Queryable, subjectId: string): Promise<void> {
  await client.query('DELETE FROM token_mappings WHERE subject_id = $1', [subjectId]);
  await client.query('DELETE FROM token_version_uses WHERE subject_id = $1', [subjectId]);
}
