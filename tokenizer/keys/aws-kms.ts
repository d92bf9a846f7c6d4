import {
  DecryptCommand,
  EncryptCommand,
  GenerateDataKeyCommand,
  KMSClient,
  KMSServiceException,
  ReEncryptCommand,
  type KMSClientConfig,
} from '@aws-sdk/client-kms';
import { DomicileError } from '../../policy/index.ts';
import type { EncryptionContext, KeyProvider, WrappedKey } from './provider.ts';

/**
 * KEK provider backed by AWS KMS or a KMS-compatible service inside the country.
 * Data keys come from GenerateDataKey; the KEK never leaves KMS. Every call
 * passes the caller's encryption context, which KMS binds to the ciphertext,
 * so a wrapped key only unwraps for the subject or secret it was made for.
 *
 * kekVersion is `kms:<key id or key ARN>` exactly as configured. Stored wraps
 * depend on that form: never change it. Rotating to another KMS key is a new
 * version, and wraps under the old key still unwrap while that key is enabled.
 */
const VERSION_PREFIX = 'kms:';
const DATA_KEY_BYTES = 32;
const UNWRAP_FAILED = 'wrapped key could not be unwrapped with AWS KMS';

/** Defaults that make a dead KMS fail within seconds: 2 s to connect, 5 s per request, 2 attempts. */
const DEFAULT_CONNECTION_TIMEOUT_MS = 2_000;
const DEFAULT_REQUEST_TIMEOUT_MS = 5_000;
const DEFAULT_MAX_ATTEMPTS = 2;

/** KMS errors after which the same request can succeed later: the provider is unavailable, not wrong. */
const TRANSIENT_ERRORS = new Set([
  'DependencyTimeoutException',
  'KMSInternalException',
  'KeyUnavailableException',
  'ThrottlingException',
  'LimitExceededException',
  'ServiceUnavailableException',
]);
/** The key exists but is switched off (disabled, or pending deletion or import): reads and writes fail closed until an operator acts. */
const KEY_STATE_ERRORS = new Set(['DisabledException', 'KMSInvalidStateException']);
/** The ciphertext or its encryption context does not match: one fixed message, so the error is no oracle. */
const CIPHERTEXT_ERRORS = new Set(['InvalidCiphertextException', 'IncorrectKeyException']);

export interface AwsKmsOptions {
  /** Key id or key ARN of the symmetric KMS key for new wraps. Aliases are rejected because they can be moved to another key. */
  keyId: string;
  region: string;
  /** Endpoint of a KMS-compatible service, such as one inside the country; the AWS endpoint of the region when undefined. */
  endpoint?: string;
  /** Credentials or a credential provider; the default AWS credential chain (environment, profile, instance role) when undefined. */
  credentials?: KMSClientConfig['credentials'];
  connectionTimeoutMs?: number;
  requestTimeoutMs?: number;
  /** Total attempts per call, including the first. */
  maxAttempts?: number;
}

export class AwsKmsKeyProvider implements KeyProvider {
  readonly kind = 'aws-kms' as const;
  /** Always false: KMS keys are created outside Domicile, never by opening the provider. */
  readonly created = false;
  readonly keyId: string;
  declare private client: KMSClient;

  constructor(options: AwsKmsOptions) {
    this.keyId = checkKeyId(options.keyId);
    const client = new KMSClient({
      region: options.region,
      ...(options.endpoint === undefined ? {} : { endpoint: options.endpoint }),
      ...(options.credentials === undefined ? {} : { credentials: options.credentials }),
      maxAttempts: options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS,
      requestHandler: {
        connectionTimeout: options.connectionTimeoutMs ?? DEFAULT_CONNECTION_TIMEOUT_MS,
        requestTimeout: options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS,
        throwOnRequestTimeout: true,
      },
    });
    // Non-enumerable, so logging the provider never prints the client with its credentials.
    Object.defineProperty(this, 'client', { value: client, enumerable: false });
  }

  currentVersion(): string {
    return `${VERSION_PREFIX}${this.keyId}`;
  }

  async generateDataKey(context: EncryptionContext): Promise<{ plaintext: Buffer; wrapped: WrappedKey }> {
    const output = await this.send(
      () => this.client.send(new GenerateDataKeyCommand({ KeyId: this.keyId, KeySpec: 'AES_256', EncryptionContext: { ...context } })),
    );
    const plaintext = output.Plaintext === undefined ? undefined : Buffer.from(output.Plaintext);
    if (plaintext?.length !== DATA_KEY_BYTES || output.CiphertextBlob === undefined) {
      throw new DomicileError('internal', 'AWS KMS returned a data key of the wrong form');
    }
    return { plaintext, wrapped: { kekVersion: this.currentVersion(), ciphertext: Buffer.from(output.CiphertextBlob) } };
  }

  async wrap(plaintext: Buffer, context: EncryptionContext): Promise<WrappedKey> {
    const output = await this.send(
      () => this.client.send(new EncryptCommand({ KeyId: this.keyId, Plaintext: plaintext, EncryptionContext: { ...context } })),
    );
    if (output.CiphertextBlob === undefined) {
      throw new DomicileError('internal', 'AWS KMS returned no ciphertext');
    }
    return { kekVersion: this.currentVersion(), ciphertext: Buffer.from(output.CiphertextBlob) };
  }

  async unwrap(wrapped: WrappedKey, context: EncryptionContext): Promise<Buffer> {
    const keyId = keyIdOf(wrapped.kekVersion);
    // Naming the key makes KMS reject a blob of another key (IncorrectKeyException).
    const output = await this.send(
      () => this.client.send(new DecryptCommand({ KeyId: keyId, CiphertextBlob: wrapped.ciphertext, EncryptionContext: { ...context } })),
    );
    if (output.Plaintext === undefined) {
      throw new DomicileError('internal', UNWRAP_FAILED);
    }
    return Buffer.from(output.Plaintext);
  }

  /**
   * Rewraps under the current key with ReEncrypt, so the plaintext key never
   * leaves KMS. The encryption context stays the same.
   */
  async rewrap(wrapped: WrappedKey, context: EncryptionContext): Promise<WrappedKey> {
    const sourceKeyId = keyIdOf(wrapped.kekVersion);
    const output = await this.send(() =>
      this.client.send(
        new ReEncryptCommand({
          CiphertextBlob: wrapped.ciphertext,
          SourceKeyId: sourceKeyId,
          SourceEncryptionContext: { ...context },
          DestinationKeyId: this.keyId,
          DestinationEncryptionContext: { ...context },
        }),
      ),
    );
    if (output.CiphertextBlob === undefined) {
      throw new DomicileError('internal', 'AWS KMS returned no ciphertext');
    }
    return { kekVersion: this.currentVersion(), ciphertext: Buffer.from(output.CiphertextBlob) };
  }

  async close(): Promise<void> {
    this.client.destroy();
  }

  /** Runs one KMS call and turns its failure into a DomicileError that names no key material. */
  private async send<T>(call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (error) {
      throw translateError(error, this.keyId);
    }
  }
}

function checkKeyId(keyId: string): string {
  if (keyId.startsWith('alias/') || /^arn:[^:]+:kms:[^:]*:[^:]*:alias\//.test(keyId)) {
    throw new DomicileError(
      'invalid_request',
      'the KMS key must be a key id or key ARN, not an alias: an alias can be moved to another key, and the key version stored with each wrapped key must name one key',
    );
  }
  if (!/^[A-Za-z0-9:/_.-]{1,2048}$/.test(keyId)) {
    throw new DomicileError('invalid_request', 'the KMS key id must be a key id or key ARN');
  }
  return keyId;
}

function keyIdOf(kekVersion: string): string {
  if (!kekVersion.startsWith(VERSION_PREFIX) || kekVersion.length === VERSION_PREFIX.length) {
    throw new DomicileError('internal', `KEK version ${kekVersion} does not belong to AWS KMS`);
  }
  return kekVersion.slice(VERSION_PREFIX.length);
}

/**
 * Maps a failed KMS call to a DomicileError. A KMS that cannot be reached, times
 * out, throttles or has the key switched off gives `unavailable` (HTTP 503), so
 * reads and writes fail closed. A ciphertext that does not decrypt gives
 * `internal` with one fixed message. The original error stays as `cause` for
 * the log. KMS error responses carry no key material or plaintext.
 */
export function translateError(error: unknown, keyId: string): DomicileError {
  if (error instanceof DomicileError) {
    return error;
  }
  const name = error instanceof Error ? error.name : 'unknown error';
  if (error instanceof KMSServiceException) {
    if (CIPHERTEXT_ERRORS.has(name)) {
      return new DomicileError('internal', UNWRAP_FAILED, { cause: error });
    }
    if (KEY_STATE_ERRORS.has(name)) {
      return new DomicileError('unavailable', `key provider unavailable: KMS key ${keyId} is disabled or not in a usable state (${name})`, { cause: error });
    }
    if (TRANSIENT_ERRORS.has(name) || error.$fault === 'server') {
      return new DomicileError('unavailable', `key provider unavailable: KMS failed with ${name}`, { cause: error });
    }
    if (name === 'NotFoundException') {
      return new DomicileError('internal', `KMS key ${keyId} or the key of a wrapped key was not found`, { cause: error });
    }
    return new DomicileError('internal', `KMS rejected the request with ${name}`, { cause: error });
  }
  if (name === 'CredentialsProviderError') {
    return new DomicileError('internal', 'no AWS credentials for KMS were found: set them in the environment, a profile or an instance role', { cause: error });
  }
  // Network failures carry a Node.js error code such as ECONNREFUSED; timeouts of the SDK are named TimeoutError.
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  const reason = code ?? name;
  return new DomicileError('unavailable', `key provider unavailable: KMS could not be reached (${reason})`, { cause: error });
}
