import { createCipheriv, createDecipheriv, randomBytes, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * Test double of AWS KMS: an HTTP server on 127.0.0.1 that speaks the AWS JSON
 * 1.1 protocol of KMS (`POST /`, `X-Amz-Target: TrentService.<Operation>`,
 * blobs as base64 in JSON), so the real `@aws-sdk/client-kms` can talk to it.
 *
 * It enforces what KMS enforces for symmetric keys: the encryption context of
 * Decrypt and ReEncrypt must equal the one of the encryption exactly, a changed
 * ciphertext fails, a disabled key fails, an unknown key fails. Ciphertexts are
 * real AES-256-GCM under a secret per key, held only by the double.
 *
 * Ciphertext blob: `0x01 | key id length (1 byte) | key id (UTF-8) | 12-byte nonce | ciphertext | 16-byte tag`.
 * The header is authenticated together with the canonical JSON of the
 * encryption context, so Decrypt finds the key from the blob as KMS does.
 * The signature of requests is not verified; only its presence is checked.
 */
const ACCOUNT = '111122223333';
const BLOB_FORMAT = 0x01;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const MAX_PLAINTEXT_BYTES = 4096;

interface DoubleKey {
  id: string;
  arn: string;
  secret: Buffer;
  enabled: boolean;
}

class KmsFault extends Error {
  constructor(
    readonly type: string,
    message: string,
    readonly status = 400,
  ) {
    super(message);
  }
}

export interface KmsDouble {
  /** Endpoint URL for the client, such as `http://127.0.0.1:40123`. */
  readonly endpoint: string;
  readonly region: string;
  /** Creates an enabled symmetric key; returns its key id and ARN. */
  createKey(): { keyId: string; arn: string };
  setEnabled(keyId: string, enabled: boolean): void;
  /** Number of requests per operation name, for tests that check which calls were made. */
  readonly calls: Map<string, number>;
  /** Delay in milliseconds before each response is sent, to simulate a hung KMS. */
  delayMs: number;
  /** Stops listening and drops open connections, so the endpoint refuses connections. */
  stop(): Promise<void>;
}

type Json = Record<string, unknown>;

/** Starts the double on a random free port of 127.0.0.1. */
export async function startKmsDouble(options: { region?: string } = {}): Promise<KmsDouble> {
  const region = options.region ?? 'eu-central-1';
  const keys = new Map<string, DoubleKey>();
  const aliases = new Map<string, string>();
  const calls = new Map<string, number>();

  const createKey = (): { keyId: string; arn: string } => {
    const id = randomUUID();
    const arn = `arn:aws:kms:${region}:${ACCOUNT}:key/${id}`;
    keys.set(id, { id, arn, secret: randomBytes(32), enabled: true });
    return { keyId: id, arn };
  };

  /** Resolves a key id, key ARN, alias name or alias ARN as KMS does. */
  const resolve = (reference: unknown): DoubleKey => {
    if (typeof reference !== 'string' || reference === '') {
      throw new KmsFault('ValidationException', 'KeyId is required');
    }
    let id = reference;
    const arnMatch = /^arn:aws:kms:[^:]+:\d{12}:(key|alias)\/(.+)$/.exec(reference);
    if (arnMatch !== null) {
      id = arnMatch[1] === 'key' ? (arnMatch[2] ?? '') : (aliases.get(`alias/${arnMatch[2] ?? ''}`) ?? '');
    } else if (reference.startsWith('alias/')) {
      id = aliases.get(reference) ?? '';
    }
    const key = keys.get(id);
    if (key === undefined) {
      throw new KmsFault('NotFoundException', `Key '${reference}' does not exist`);
    }
    return key;
  };

  const usable = (key: DoubleKey): DoubleKey => {
    if (!key.enabled) {
      throw new KmsFault('DisabledException', `${key.arn} is disabled.`);
    }
    return key;
  };

  const operations: Record<string, (input: Json) => Json> = {
    CreateKey: () => {
      const { keyId, arn } = createKey();
      return { KeyMetadata: { KeyId: keyId, Arn: arn, Enabled: true, KeyState: 'Enabled', KeySpec: 'SYMMETRIC_DEFAULT', KeyUsage: 'ENCRYPT_DECRYPT' } };
    },
    CreateAlias: (input) => {
      const name = input['AliasName'];
      if (typeof name !== 'string' || !name.startsWith('alias/')) {
        throw new KmsFault('ValidationException', 'AliasName must begin with alias/');
      }
      aliases.set(name, resolve(input['TargetKeyId']).id);
      return {};
    },
    EnableKey: (input) => {
      resolve(input['KeyId']).enabled = true;
      return {};
    },
    DisableKey: (input) => {
      resolve(input['KeyId']).enabled = false;
      return {};
    },
    GenerateDataKey: (input) => {
      const key = usable(resolve(input['KeyId']));
      const length = dataKeyLength(input);
      const plaintext = randomBytes(length);
      return { KeyId: key.arn, Plaintext: plaintext.toString('base64'), CiphertextBlob: seal(key, plaintext, context(input, 'EncryptionContext')).toString('base64') };
    },
    Encrypt: (input) => {
      const key = usable(resolve(input['KeyId']));
      const plaintext = blob(input, 'Plaintext');
      if (plaintext.length === 0 || plaintext.length > MAX_PLAINTEXT_BYTES) {
        throw new KmsFault('ValidationException', `Plaintext must be 1 to ${MAX_PLAINTEXT_BYTES} bytes`);
      }
      return { KeyId: key.arn, EncryptionAlgorithm: 'SYMMETRIC_DEFAULT', CiphertextBlob: seal(key, plaintext, context(input, 'EncryptionContext')).toString('base64') };
    },
    Decrypt: (input) => {
      const { key, plaintext } = open(blob(input, 'CiphertextBlob'), context(input, 'EncryptionContext'), input['KeyId']);
      return { KeyId: key.arn, EncryptionAlgorithm: 'SYMMETRIC_DEFAULT', Plaintext: plaintext.toString('base64') };
    },
    ReEncrypt: (input) => {
      const source = open(blob(input, 'CiphertextBlob'), context(input, 'SourceEncryptionContext'), input['SourceKeyId']);
      const destination = usable(resolve(input['DestinationKeyId']));
      const ciphertext = seal(destination, source.plaintext, context(input, 'DestinationEncryptionContext'));
      return {
        CiphertextBlob: ciphertext.toString('base64'),
        SourceKeyId: source.key.arn,
        KeyId: destination.arn,
        SourceEncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
        DestinationEncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
      };
    },
  };

  /** Decrypts a blob; with `expectedKey`, the blob must belong to that key (IncorrectKeyException otherwise). */
  const open = (ciphertext: Buffer, encryptionContext: Buffer, expectedKey: unknown): { key: DoubleKey; plaintext: Buffer } => {
    const invalid = new KmsFault('InvalidCiphertextException', 'The ciphertext is invalid or the encryption context does not match');
    const idLength = ciphertext[1] ?? 0;
    const headerLength = 2 + idLength;
    if (ciphertext[0] !== BLOB_FORMAT || ciphertext.length < headerLength + NONCE_BYTES + TAG_BYTES) {
      throw invalid;
    }
    const key = keys.get(ciphertext.subarray(2, headerLength).toString('utf8'));
    if (key === undefined) {
      throw invalid;
    }
    if (expectedKey !== undefined && resolve(expectedKey).id !== key.id) {
      throw new KmsFault('IncorrectKeyException', 'The key ID in the request does not identify a KMS key that can perform this operation');
    }
    usable(key);
    try {
      const nonce = ciphertext.subarray(headerLength, headerLength + NONCE_BYTES);
      const decipher = createDecipheriv('aes-256-gcm', key.secret, nonce, { authTagLength: TAG_BYTES });
      decipher.setAAD(Buffer.concat([ciphertext.subarray(0, headerLength), encryptionContext]));
      decipher.setAuthTag(ciphertext.subarray(ciphertext.length - TAG_BYTES));
      const body = ciphertext.subarray(headerLength + NONCE_BYTES, ciphertext.length - TAG_BYTES);
      return { key, plaintext: Buffer.concat([decipher.update(body), decipher.final()]) };
    } catch {
      throw invalid;
    }
  };

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const reply = (): void => {
        const { status, body } = handle(operations, calls, req, Buffer.concat(chunks));
        res.writeHead(status, { 'Content-Type': 'application/x-amz-json-1.1', 'x-amzn-RequestId': randomUUID() });
        res.end(JSON.stringify(body));
      };
      if (double.delayMs > 0) {
        setTimeout(reply, double.delayMs).unref();
      } else {
        reply();
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;

  const double: KmsDouble = {
    endpoint: `http://127.0.0.1:${port}`,
    region,
    createKey,
    setEnabled: (keyId, enabled) => {
      resolve(keyId).enabled = enabled;
    },
    calls,
    delayMs: 0,
    stop: async () => {
      if (!server.listening) {
        return;
      }
      const closed = new Promise<void>((done) => server.close(() => done()));
      server.closeAllConnections();
      await closed;
    },
  };
  return double;
}

function handle(
  operations: Record<string, (input: Json) => Json>,
  calls: Map<string, number>,
  req: http.IncomingMessage,
  body: Buffer,
): { status: number; body: Json } {
  try {
    const target = req.headers['x-amz-target'];
    const operation = typeof target === 'string' && target.startsWith('TrentService.') ? target.slice('TrentService.'.length) : '';
    const run = operations[operation];
    if (req.method !== 'POST' || req.url !== '/' || run === undefined) {
      throw new KmsFault('UnknownOperationException', 'unknown operation');
    }
    if (!String(req.headers['authorization'] ?? '').startsWith('AWS4-HMAC-SHA256 ')) {
      throw new KmsFault('MissingAuthenticationTokenException', 'request is not signed');
    }
    if (req.headers['content-type'] !== 'application/x-amz-json-1.1') {
      throw new KmsFault('SerializationException', 'content type must be application/x-amz-json-1.1');
    }
    calls.set(operation, (calls.get(operation) ?? 0) + 1);
    const input: unknown = body.length === 0 ? {} : JSON.parse(body.toString('utf8'));
    if (typeof input !== 'object' || input === null || Array.isArray(input)) {
      throw new KmsFault('SerializationException', 'body must be a JSON object');
    }
    return { status: 200, body: run(input as Json) };
  } catch (error) {
    if (error instanceof KmsFault) {
      return { status: error.status, body: { __type: error.type, message: error.message } };
    }
    if (error instanceof SyntaxError) {
      return { status: 400, body: { __type: 'SerializationException', message: 'body is not JSON' } };
    }
    return { status: 500, body: { __type: 'KMSInternalException', message: 'internal failure of the test double' } };
  }
}

function dataKeyLength(input: Json): number {
  const spec = input['KeySpec'];
  const bytes = input['NumberOfBytes'];
  if ((spec === undefined) === (bytes === undefined)) {
    throw new KmsFault('ValidationException', 'exactly one of KeySpec and NumberOfBytes is required');
  }
  if (spec === 'AES_256') return 32;
  if (spec === 'AES_128') return 16;
  if (typeof bytes === 'number' && Number.isInteger(bytes) && bytes >= 1 && bytes <= 1024) return bytes;
  throw new KmsFault('ValidationException', 'KeySpec must be AES_256 or AES_128, NumberOfBytes 1 to 1024');
}

function blob(input: Json, field: string): Buffer {
  const value = input[field];
  if (typeof value !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(value) || value.length % 4 !== 0) {
    throw new KmsFault('SerializationException', `${field} must be a base64 blob`);
  }
  return Buffer.from(value, 'base64');
}

/** Canonical form of an encryption context: JSON with sorted keys; a missing context equals an empty one, as in KMS. */
function context(input: Json, field: string): Buffer {
  const value = input[field] ?? {};
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new KmsFault('ValidationException', `${field} must be a map of strings`);
  }
  const entries = Object.entries(value as Record<string, unknown>);
  if (entries.some(([, entry]) => typeof entry !== 'string')) {
    throw new KmsFault('ValidationException', `${field} must be a map of strings`);
  }
  // Code unit order, so equal contexts give equal AAD whatever the locale.
  entries.sort(([a], [b]) => {
    if (a === b) return 0;
    return a < b ? -1 : 1;
  });
  return Buffer.from(JSON.stringify(entries), 'utf8');
}

function seal(key: DoubleKey, plaintext: Buffer, encryptionContext: Buffer): Buffer {
  const id = Buffer.from(key.id, 'utf8');
  const header = Buffer.concat([Buffer.from([BLOB_FORMAT, id.length]), id]);
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key.secret, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(Buffer.concat([header, encryptionContext]));
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([header, nonce, body, cipher.getAuthTag()]);
}
