import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { secureRandomBytes } from '../random-pool.ts';
import { link, mkdir, open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { DomicileError } from '../../policy/index.ts';
import type { EncryptionContext, KeyProvider, WrappedKey } from './provider.ts';

/**
 * KEK provider backed by a local JSON key file. Meant for development and
 * small single-machine installs. Anyone who can read the file can unwrap every
 * key, so it must be backed up and protected like the database itself.
 *
 * File layout (never change the meaning of a field):
 * `{ "format": "domicile-local-kek", "currentVersion": 1, "keys": { "1": "<base64 of 32 bytes>" } }`.
 * Wrapped layout: `12-byte nonce | AES-256-GCM ciphertext | 16-byte tag`, with
 * the canonical JSON of the encryption context as AAD.
 */
const FILE_FORMAT = 'domicile-local-kek';
const KEK_BYTES = 32;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const VERSION_PREFIX = 'local:';
const UNWRAP_FAILED = 'wrapped key could not be unwrapped with the local key file';

export interface KeyFile {
  format: typeof FILE_FORMAT;
  currentVersion: number;
  keys: Record<string, string>;
}

/** Serializes a context as JSON with sorted keys, so equal contexts give equal AAD. */
export function canonicalContext(context: EncryptionContext): Buffer {
  const sorted = Object.keys(context)
    .sort()
    .map((key) => [key, context[key]] as const);
  return Buffer.from(JSON.stringify(Object.fromEntries(sorted)), 'utf8');
}

export class LocalKeyProvider implements KeyProvider {
  readonly kind = 'local' as const;
  readonly path: string;
  /** True when `openLocalKeyFile` generated the file in this call. */
  readonly created: boolean;
  declare private keks: Map<number, Buffer>;
  declare private current: number;

  constructor(path: string, keks: Map<number, Buffer>, currentVersion: number, created: boolean) {
    this.path = path;
    this.created = created;
    // Non-enumerable, so the KEKs never show up when the provider is logged or inspected.
    Object.defineProperty(this, 'keks', { value: keks, enumerable: false, writable: true });
    Object.defineProperty(this, 'current', { value: currentVersion, enumerable: false, writable: true });
  }

  currentVersion(): string {
    return `${VERSION_PREFIX}${this.current}`;
  }

  /** Returns whether the file contains the KEK of `kekVersion`, such as `local:2`. */
  hasVersion(kekVersion: string): boolean {
    const version = parseKekVersion(kekVersion);
    return version !== undefined && this.keks.has(version);
  }

  async generateDataKey(context: EncryptionContext): Promise<{ plaintext: Buffer; wrapped: WrappedKey }> {
    const plaintext = secureRandomBytes(32);
    return { plaintext, wrapped: await this.wrap(plaintext, context) };
  }

  async wrap(plaintext: Buffer, context: EncryptionContext): Promise<WrappedKey> {
    const kek = this.keks.get(this.current);
    if (kek === undefined) {
      throw new DomicileError('internal', 'current KEK version is missing from the local key file');
    }
    const nonce = secureRandomBytes(NONCE_BYTES);
    const cipher = createCipheriv('aes-256-gcm', kek, nonce, { authTagLength: TAG_BYTES });
    cipher.setAAD(canonicalContext(context));
    const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    return { kekVersion: this.currentVersion(), ciphertext: Buffer.concat([nonce, body, cipher.getAuthTag()]) };
  }

  async unwrap(wrapped: WrappedKey, context: EncryptionContext): Promise<Buffer> {
    const version = parseKekVersion(wrapped.kekVersion);
    const kek = version === undefined ? undefined : this.keks.get(version);
    if (kek === undefined) {
      throw new DomicileError('internal', `KEK version ${wrapped.kekVersion} is not in the local key file`);
    }
    const blob = wrapped.ciphertext;
    if (blob.length < NONCE_BYTES + TAG_BYTES) {
      throw new DomicileError('internal', UNWRAP_FAILED);
    }
    try {
      const decipher = createDecipheriv('aes-256-gcm', kek, blob.subarray(0, NONCE_BYTES), { authTagLength: TAG_BYTES });
      decipher.setAAD(canonicalContext(context));
      decipher.setAuthTag(blob.subarray(blob.length - TAG_BYTES));
      return Buffer.concat([decipher.update(blob.subarray(NONCE_BYTES, blob.length - TAG_BYTES)), decipher.final()]);
    } catch {
      throw new DomicileError('internal', UNWRAP_FAILED);
    }
  }

  /**
   * Adds a new KEK version, makes it current and rewrites the file atomically.
   * Old versions stay, so keys wrapped before still unwrap until they are rewrapped.
   */
  async rotate(): Promise<string> {
    const next = Math.max(...this.keks.keys()) + 1;
    const keks = new Map(this.keks);
    keks.set(next, randomBytes(KEK_BYTES));
    await writeKeyFile(this.path, keks, next, false);
    this.keks = keks;
    this.current = next;
    return this.currentVersion();
  }

  async close(): Promise<void> {
    for (const kek of this.keks.values()) {
      kek.fill(0);
    }
    this.keks.clear();
  }
}

function parseKekVersion(kekVersion: string): number | undefined {
  const match = /^local:([1-9][0-9]{0,8})$/.exec(kekVersion);
  return match?.[1] === undefined ? undefined : Number(match[1]);
}

export function serialize(keks: Map<number, Buffer>, currentVersion: number): string {
  const keys: Record<string, string> = {};
  for (const [version, kek] of [...keks].sort(([a], [b]) => a - b)) {
    keys[String(version)] = kek.toString('base64');
  }
  const file: KeyFile = { format: FILE_FORMAT, currentVersion, keys };
  return `${JSON.stringify(file, null, 2)}\n`;
}

/**
 * Writes the key file with mode 0600 through a synced temporary file, so no
 * reader ever sees a partial file. With `exclusive`, the temporary file is
 * hard-linked into place, which fails with EEXIST if the file exists, so two
 * processes starting at once cannot both create a KEK. Otherwise it is renamed
 * over the old file.
 */
export async function writeKeyFile(path: string, keks: Map<number, Buffer>, currentVersion: number, exclusive: boolean): Promise<void> {
  const temporary = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const handle = await open(temporary, 'wx', 0o600);
  try {
    await handle.writeFile(serialize(keks, currentVersion), 'utf8');
    await handle.sync();
  } finally {
    await handle.close();
  }
  if (!exclusive) {
    await rename(temporary, path);
    return;
  }
  try {
    await link(temporary, path);
  } finally {
    await unlink(temporary);
  }
}

export function parseKeyFile(path: string, text: string): { keks: Map<number, Buffer>; currentVersion: number } {
  const invalid = (problem: string): DomicileError =>
    new DomicileError('internal', `local key file ${path} is invalid: ${problem}`);
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch {
    throw invalid('not JSON');
  }
  if (typeof document !== 'object' || document === null) {
    throw invalid('not a JSON object');
  }
  const { format, currentVersion, keys } = document as Partial<Record<keyof KeyFile, unknown>>;
  if (format !== FILE_FORMAT) {
    throw invalid(`format must be ${FILE_FORMAT}`);
  }
  if (typeof keys !== 'object' || keys === null) {
    throw invalid('keys must be an object');
  }
  const keks = new Map<number, Buffer>();
  for (const [versionText, encoded] of Object.entries(keys)) {
    const version = Number(versionText);
    const kek = typeof encoded === 'string' ? Buffer.from(encoded, 'base64') : undefined;
    if (!/^[1-9][0-9]{0,8}$/.test(versionText) || kek?.length !== KEK_BYTES) {
      throw invalid(`key version ${versionText} must map to the base64 of ${KEK_BYTES} bytes`);
    }
    keks.set(version, kek);
  }
  if (typeof currentVersion !== 'number' || !keks.has(currentVersion)) {
    throw invalid('currentVersion must name a key version of the file');
  }
  return { keks, currentVersion };
}

/**
 * Opens the local key file, creating it (and its parent folders) with a random
 * 256-bit KEK version 1 and mode 0600 when it is missing.
 */
export async function openLocalKeyFile(path: string): Promise<LocalKeyProvider> {
  try {
    await checkKeyFileMode(path);
    const { keks, currentVersion } = parseKeyFile(path, await readFile(path, 'utf8'));
    return new LocalKeyProvider(path, keks, currentVersion, false);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw wrapFileError(path, error);
    }
  }

  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const keks = new Map([[1, randomBytes(KEK_BYTES)]]);
  try {
    await writeKeyFile(path, keks, 1, true);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
      // Another process created the file between our read and our write: use its key.
      return openLocalKeyFile(path);
    }
    throw wrapFileError(path, error);
  }
  return new LocalKeyProvider(path, keks, 1, true);
}

/**
 * Rejects a key file that other users may read or write, or that is not a
 * regular file, as ssh does for private keys. Windows has no such mode bits.
 */
export async function checkKeyFileMode(path: string): Promise<void> {
  const info = await stat(path);
  if (!info.isFile()) {
    throw new DomicileError('internal', `local key file ${path} is not a regular file`);
  }
  const mode = info.mode & 0o777;
  if (process.platform !== 'win32' && (mode & 0o077) !== 0) {
    throw new DomicileError(
      'internal',
      `local key file ${path} has mode ${mode.toString(8).padStart(4, '0')}, so other users can access it: run chmod 600 on it`,
    );
  }
}

function wrapFileError(path: string, error: unknown): unknown {
  if (error instanceof DomicileError) {
    return error;
  }
  const code = (error as NodeJS.ErrnoException).code ?? 'unknown error';
  return new DomicileError('internal', `cannot use local key file ${path}: ${code}`, { cause: error });
}
