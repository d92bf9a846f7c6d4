/**
 * A key encryption key (KEK) provider wraps and unwraps key material: the data
 * key of each subject and the tokenization secrets. The KEK itself never
 * leaves the provider's control (the local key file, or AWS KMS).
 */

/** Wrapped key material and the KEK version that wrapped it. Stored as is; never change its meaning. */
export interface WrappedKey {
  /** Provider-qualified KEK version such as `local:1` or `kms:<key arn>`. */
  kekVersion: string;
  ciphertext: Buffer;
}

/**
 * Binds wrapped material to what it protects (for example `{ subject: token }`),
 * as the encryption context of AWS KMS does: unwrapping with another context fails.
 */
export type EncryptionContext = Readonly<Record<string, string>>;

export interface KeyProvider {
  readonly kind: 'local' | 'aws-kms';
  /** KEK version that new wraps use. */
  currentVersion(): string;
  /** Creates a fresh 32-byte data key and returns it in clear and wrapped. */
  generateDataKey(context: EncryptionContext): Promise<{ plaintext: Buffer; wrapped: WrappedKey }>;
  wrap(plaintext: Buffer, context: EncryptionContext): Promise<WrappedKey>;
  /** Fails with DomicileError `unavailable` when the provider cannot be reached, `internal` when the material does not unwrap. */
  unwrap(wrapped: WrappedKey, context: EncryptionContext): Promise<Buffer>;
  /**
   * Rewraps under the current KEK version without the plaintext leaving the
   * provider (ReEncrypt in KMS). Optional: callers fall back to unwrap + wrap.
   */
  rewrap?(wrapped: WrappedKey, context: EncryptionContext): Promise<WrappedKey>;
  close(): Promise<void>;
}
