import { createCipheriv, createDecipheriv } from 'node:crypto';
import { DomicileError } from '../policy/index.ts';
import { secureRandomBytes } from './random-pool.ts';

/**
 * Envelope encryption of one field value with the subject's data key.
 *
 * Stored blob layout, which must never change for format byte 0x01:
 * `0x01 | 12-byte nonce | AES-256-GCM ciphertext | 16-byte tag`.
 * The AAD binds the blob to its place (`recordType.field.subjectToken`), so a
 * blob copied to another field or subject does not decrypt.
 */
const FORMAT_AES_256_GCM = 0x01;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const KEY_BYTES = 32;

/** The one message of every decryption failure, so callers learn nothing about the cause. */
const DECRYPT_FAILED = 'value could not be decrypted';

export function encryptValue(dataKey: Buffer, plaintext: string, aad: string): Buffer {
  if (dataKey.length !== KEY_BYTES) {
    throw new DomicileError('internal', `data key must be ${KEY_BYTES} bytes`);
  }
  const nonce = secureRandomBytes(NONCE_BYTES);
  const cipher = createCipheriv('aes-256-gcm', dataKey, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(Buffer.from(aad, 'utf8'));
  const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  return Buffer.concat([Buffer.of(FORMAT_AES_256_GCM), nonce, body, cipher.getAuthTag()]);
}

/** Decrypts a blob of `encryptValue`; throws DomicileError `internal` with one fixed message on any failure. */
export function decryptValue(dataKey: Buffer, blob: Buffer, aad: string): string {
  try {
    if (dataKey.length !== KEY_BYTES || blob.length < 1 + NONCE_BYTES + TAG_BYTES || blob[0] !== FORMAT_AES_256_GCM) {
      throw new Error('malformed blob or key');
    }
    const nonce = blob.subarray(1, 1 + NONCE_BYTES);
    const body = blob.subarray(1 + NONCE_BYTES, blob.length - TAG_BYTES);
    const tag = blob.subarray(blob.length - TAG_BYTES);
    const decipher = createDecipheriv('aes-256-gcm', dataKey, nonce, { authTagLength: TAG_BYTES });
    decipher.setAAD(Buffer.from(aad, 'utf8'));
    decipher.setAuthTag(tag);
    const plain = Buffer.concat([decipher.update(body), decipher.final()]);
    return new TextDecoder('utf-8', { fatal: true }).decode(plain);
  } catch {
    // The cause is dropped on purpose: a distinct cause per failure would be an oracle.
    throw new DomicileError('internal', DECRYPT_FAILED);
  }
}
