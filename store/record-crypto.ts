import { DomicileError } from '../policy/errors.ts';
import { base32Encode } from '../tokenizer/base32.ts';
import { blindIndex } from '../tokenizer/blind-index.ts';
import { decryptValue, encryptValue } from '../tokenizer/envelope.ts';
import { secureRandomBytes } from '../tokenizer/random-pool.ts';
import type { Keyring } from '../tokenizer/keyring.ts';
import type { EncryptionContext, KeyProvider } from '../tokenizer/keys/provider.ts';
import type { DataKeyCache } from './data-key-cache.ts';
import type { Queryable } from './database.ts';

export type NormalizedValue = string | number | boolean;

/** Field name → base64 of the envelope blob, as stored in `records.fields`. */
export type EncryptedFields = Record<string, string>;

/** Creates a subject token: `sub_` + 26 lowercase base32 characters of 16 random bytes. */
export function generateSubjectToken(): string {
  return `sub_${base32Encode(secureRandomBytes(16))}`;
}

export function isSubjectToken(text: string): boolean {
  return /^sub_[a-z2-7]{26}$/.test(text);
}

/** Encryption context of a subject's wrapped data key. Stored wraps depend on it: never change it. */
export function dataKeyContext(subjectToken: string): EncryptionContext {
  return { subject: subjectToken };
}

/** AAD of a field blob. Stored blobs depend on it: never change it. */
function fieldAad(recordType: string, field: string, subjectToken: string): string {
  return `${recordType}.${field}.${subjectToken}`;
}

/** Encrypts one field. The plaintext is the JSON of the normalized value, so numbers and booleans keep their type. */
export function encryptField(
  dataKey: Buffer,
  location: { recordType: string; field: string; subjectToken: string },
  value: NormalizedValue,
): string {
  const aad = fieldAad(location.recordType, location.field, location.subjectToken);
  return encryptValue(dataKey, JSON.stringify(value), aad).toString('base64');
}

export function decryptFields(
  dataKey: Buffer,
  location: { recordType: string; subjectToken: string },
  fields: EncryptedFields,
): Record<string, NormalizedValue> {
  const values: Record<string, NormalizedValue> = {};
  for (const [field, blob] of Object.entries(fields)) {
    const aad = fieldAad(location.recordType, field, location.subjectToken);
    const parsed: unknown = JSON.parse(decryptValue(dataKey, Buffer.from(blob, 'base64'), aad));
    if (typeof parsed !== 'string' && typeof parsed !== 'number' && typeof parsed !== 'boolean') {
      throw new DomicileError('internal', 'value could not be decrypted');
    }
    values[field] = parsed;
  }
  return values;
}

/**
 * Reads and unwraps a subject's data key, through `cache` when given; throws
 * `gone` when it was shredded. The caller zeroes the returned key.
 */
export async function unwrapDataKey(
  client: Queryable,
  keys: KeyProvider,
  subject: { id: string; token: string },
  cache?: DataKeyCache,
): Promise<Buffer> {
  const result = await client.query<{ kek_version: string; wrapped: Buffer }>(
    'SELECT kek_version, wrapped FROM data_keys WHERE subject_id = $1',
    [subject.id],
  );
  const row = result.rows[0];
  if (row === undefined) {
    throw new DomicileError('gone', 'subject was erased');
  }
  const wrapped = { kekVersion: row.kek_version, ciphertext: row.wrapped };
  if (cache === undefined) {
    return keys.unwrap(wrapped, dataKeyContext(subject.token));
  }
  return cache.unwrap(keys, subject.id, wrapped, dataKeyContext(subject.token));
}

/** Blind indexes are keyed per record type and field: namespace `<recordType>.<field>`. */
export function blindIndexNamespace(recordType: string, field: string): string {
  return `${recordType}.${field}`;
}

/** Replaces the blind index of one field of one subject with the digest of `value` (none when undefined). */
export async function writeBlindIndex(
  client: Queryable,
  keyring: Keyring,
  entry: { subjectId: string; recordType: string; field: string; value: NormalizedValue | undefined },
): Promise<void> {
  await client.query('DELETE FROM blind_index WHERE subject_id = $1 AND record_type = $2 AND field = $3', [
    entry.subjectId,
    entry.recordType,
    entry.field,
  ]);
  if (entry.value === undefined) {
    return;
  }
  const namespace = blindIndexNamespace(entry.recordType, entry.field);
  const digest = blindIndex(keyring, namespace, String(entry.value));
  await client.query(
    'INSERT INTO blind_index (record_type, field, key_version, digest, subject_id) VALUES ($1, $2, $3, $4, $5)',
    [entry.recordType, entry.field, keyring.currentVersion, digest, entry.subjectId],
  );
}
