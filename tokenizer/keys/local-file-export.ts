import { createCipheriv, createDecipheriv, randomBytes, scrypt as scryptCallback, timingSafeEqual } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { DomicileError } from '../../policy/index.ts';
import { checkKeyFileMode, parseKeyFile, serialize, writeKeyFile } from './local-file.ts';

/**
 * Passphrase-protected export of the local key file, for backups and for moving
 * the KEK to another machine. The export is JSON:
 * `{ format, kdf: { name: "scrypt", N, r, p, salt }, cipher: "aes-256-gcm", nonce, ciphertext, tag }`
 * with base64 binary fields. The plaintext is the key file itself; the AAD is the
 * JSON of `format` and `kdf`, so changed KDF parameters fail like a wrong passphrase.
 * Never change the meaning of a field: old exports must stay importable.
 */
const EXPORT_FORMAT = 'domicile-local-kek-export-v1';
const KEY_BYTES = 32;
const SALT_BYTES = 16;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const MIN_PASSPHRASE_LENGTH = 12;
const DECRYPT_FAILED = 'key file export could not be decrypted: wrong passphrase or changed file';

/** scrypt cost of new exports: N = 2^17, r = 8, p = 1 (128 MiB, about a second of CPU). */
const SCRYPT_DEFAULTS = { N: 2 ** 17, r: 8, p: 1 };
/** Upper bound of accepted cost, so a crafted export cannot make the import allocate without limit. */
const SCRYPT_MAX_N = 2 ** 20;

interface ScryptParameters {
  N: number;
  r: number;
  p: number;
}

interface KeyFileExport {
  format: typeof EXPORT_FORMAT;
  kdf: ScryptParameters & { name: 'scrypt'; salt: string };
  cipher: 'aes-256-gcm';
  nonce: string;
  ciphertext: string;
  tag: string;
}

export type ImportResult = 'created' | 'unchanged' | 'extended';

function deriveKey(passphrase: string, salt: Buffer, parameters: ScryptParameters): Promise<Buffer> {
  // scrypt needs 128 * N * r bytes; Node's default limit of 32 MiB is below the default cost.
  const maxmem = 128 * parameters.N * parameters.r + 1024 * 1024;
  return new Promise((resolve, reject) => {
    scryptCallback(passphrase.normalize('NFC'), salt, KEY_BYTES, { ...parameters, maxmem }, (error, key) => (error === null ? resolve(key) : reject(error)));
  });
}

function checkPassphrase(passphrase: string): void {
  if ([...passphrase].length < MIN_PASSPHRASE_LENGTH) {
    throw new DomicileError('invalid_request', `the passphrase must have at least ${MIN_PASSPHRASE_LENGTH} characters`);
  }
}

function associatedData(document: Pick<KeyFileExport, 'format' | 'kdf'>): Buffer {
  const { name, N, r, p, salt } = document.kdf;
  return Buffer.from(JSON.stringify({ format: document.format, kdf: { name, N, r, p, salt } }), 'utf8');
}

/**
 * Encrypts the local key file at `path` under a key derived from `passphrase`
 * and returns the export as JSON text. The key file is checked as on open
 * (mode 0600, valid content) first.
 */
export async function exportLocalKeyFile(path: string, passphrase: string, parameters: ScryptParameters = SCRYPT_DEFAULTS): Promise<Buffer> {
  checkPassphrase(passphrase);
  await checkKeyFileMode(path).catch((error: unknown) => {
    throw (error as NodeJS.ErrnoException).code === 'ENOENT' ? new DomicileError('not_found', `local key file ${path} does not exist`) : error;
  });
  const text = await readFile(path, 'utf8');
  const { keks, currentVersion } = parseKeyFile(path, text);
  const plaintext = Buffer.from(serialize(keks, currentVersion), 'utf8');

  const salt = randomBytes(SALT_BYTES);
  const key = await deriveKey(passphrase, salt, parameters);
  const nonce = randomBytes(NONCE_BYTES);
  const kdf = { name: 'scrypt' as const, ...parameters, salt: salt.toString('base64') };
  try {
    const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
    cipher.setAAD(associatedData({ format: EXPORT_FORMAT, kdf }));
    const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    const document: KeyFileExport = {
      format: EXPORT_FORMAT,
      kdf,
      cipher: 'aes-256-gcm',
      nonce: nonce.toString('base64'),
      ciphertext: ciphertext.toString('base64'),
      tag: cipher.getAuthTag().toString('base64'),
    };
    return Buffer.from(`${JSON.stringify(document, null, 2)}\n`, 'utf8');
  } finally {
    key.fill(0);
    plaintext.fill(0);
    for (const kek of keks.values()) kek.fill(0);
  }
}

function parseExport(data: Buffer): KeyFileExport {
  const invalid = (problem: string): DomicileError => new DomicileError('invalid_request', `key file export is invalid: ${problem}`);
  let document: unknown;
  try {
    document = JSON.parse(data.toString('utf8'));
  } catch {
    throw invalid('not JSON');
  }
  if (typeof document !== 'object' || document === null) {
    throw invalid('not a JSON object');
  }
  const candidate = document as Partial<Record<keyof KeyFileExport, unknown>>;
  if (candidate.format !== EXPORT_FORMAT) {
    throw invalid(`format must be ${EXPORT_FORMAT}`);
  }
  if (candidate.cipher !== 'aes-256-gcm') {
    throw invalid('cipher must be aes-256-gcm');
  }
  for (const field of ['nonce', 'ciphertext', 'tag'] as const) {
    if (typeof candidate[field] !== 'string') {
      throw invalid(`${field} must be a base64 string`);
    }
  }
  const kdf = candidate.kdf as Partial<KeyFileExport['kdf']> | undefined;
  const { N, r, p } = kdf ?? {};
  const powerOfTwo = typeof N === 'number' && Number.isInteger(N) && N >= 2 ** 14 && N <= SCRYPT_MAX_N && (N & (N - 1)) === 0;
  if (kdf?.name !== 'scrypt' || typeof kdf.salt !== 'string' || !powerOfTwo || r !== 8 || p !== 1) {
    throw invalid(`kdf must be scrypt with N a power of two from 2^14 to 2^20, r 8, p 1 and a base64 salt`);
  }
  return candidate as KeyFileExport;
}

async function decryptExport(data: Buffer, passphrase: string): Promise<Buffer> {
  const document = parseExport(data);
  const salt = Buffer.from(document.kdf.salt, 'base64');
  const nonce = Buffer.from(document.nonce, 'base64');
  const tag = Buffer.from(document.tag, 'base64');
  if (salt.length !== SALT_BYTES || nonce.length !== NONCE_BYTES || tag.length !== TAG_BYTES) {
    throw new DomicileError('invalid_request', DECRYPT_FAILED);
  }
  const key = await deriveKey(passphrase, salt, document.kdf);
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
    decipher.setAAD(associatedData(document));
    decipher.setAuthTag(tag);
    return Buffer.concat([decipher.update(Buffer.from(document.ciphertext, 'base64')), decipher.final()]);
  } catch {
    throw new DomicileError('invalid_request', DECRYPT_FAILED);
  } finally {
    key.fill(0);
  }
}

/**
 * Decrypts an export and writes it as the local key file at `path` (mode 0600).
 * An existing key file is kept when the export contains the same keys
 * (`unchanged`). It is replaced only when the export contains every key version of
 * the existing file with the same bytes, plus newer ones (`extended`), because
 * then no wrapped key can become unreadable. Any other existing file is an
 * error: overwriting it would lose the KEK of the data wrapped under it.
 */
export async function importLocalKeyFile(path: string, data: Buffer, passphrase: string): Promise<ImportResult> {
  const plaintext = await decryptExport(data, passphrase);
  const imported = parseKeyFile('in the export', plaintext.toString('utf8'));
  plaintext.fill(0);

  let existing: ReturnType<typeof parseKeyFile> | undefined;
  try {
    await checkKeyFileMode(path);
    existing = parseKeyFile(path, await readFile(path, 'utf8'));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw error;
    }
  }

  if (existing === undefined) {
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    await writeKeyFile(path, imported.keks, imported.currentVersion, true).catch((error: unknown) => {
      throw (error as NodeJS.ErrnoException).code === 'EEXIST'
        ? new DomicileError('conflict', `local key file ${path} was created while the export was imported: run the import again`)
        : error;
    });
    return 'created';
  }

  for (const [version, kek] of existing.keks) {
    const other = imported.keks.get(version);
    if (other === undefined || !timingSafeEqual(kek, other)) {
      throw new DomicileError(
        'conflict',
        `local key file ${path} already exists with a different key version ${version}: move it away first if it protects no data`,
      );
    }
  }
  if (imported.keks.size === existing.keks.size && imported.currentVersion === existing.currentVersion) {
    return 'unchanged';
  }
  const current = Math.max(imported.currentVersion, existing.currentVersion);
  await writeKeyFile(path, imported.keks, current, false);
  return 'extended';
}
