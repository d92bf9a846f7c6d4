import { createSecretKey, hkdfSync, randomBytes, type KeyObject } from 'node:crypto';
import { DomicileError } from '../policy/index.ts';

/** Use of a derived key. It is part of the HKDF info string, so never rename a purpose. */
export type KeyPurpose = 'deterministic' | 'blind-index' | 'ff1' | 'audit' | 'widget-session';

const SECRET_BYTES = 32;
const DERIVED_BYTES = 32;

/**
 * HKDF salt, fixed so a derived key depends only on the secret, the purpose and
 * the namespace. Tokens stored abroad depend on it: never change it.
 */
const HKDF_SALT = Buffer.from('domicile tokenization v1', 'utf8');

/** Creates a fresh 32-byte tokenization secret. */
export function generateTokenizationSecret(): Buffer {
  return randomBytes(SECRET_BYTES);
}

/**
 * Versioned tokenization secrets and the keys derived from them. Each purpose
 * and namespace gets its own key (HKDF-SHA256), so tokens of two namespaces are
 * unlinkable and a blind index cannot be compared with a token.
 */
export class Keyring {
  readonly currentVersion: number;
  declare private readonly secrets: ReadonlyMap<number, Buffer>;
  declare private readonly derived: Map<string, { key: Buffer; keyObject: KeyObject }>;

  constructor(secrets: ReadonlyMap<number, Buffer>, currentVersion: number) {
    for (const [version, secret] of secrets) {
      if (!Number.isSafeInteger(version) || version < 1) {
        throw new DomicileError('internal', 'tokenization secret versions must be positive integers');
      }
      if (secret.length !== SECRET_BYTES) {
        throw new DomicileError('internal', `tokenization secret version ${version} must be ${SECRET_BYTES} bytes`);
      }
    }
    if (!secrets.has(currentVersion)) {
      throw new DomicileError('internal', `current tokenization secret version ${currentVersion} is missing from the keyring`);
    }
    this.currentVersion = currentVersion;
    // Non-enumerable, so the secrets never show up when a keyring is logged or inspected.
    Object.defineProperty(this, 'secrets', { value: new Map(secrets), enumerable: false });
    Object.defineProperty(this, 'derived', { value: new Map(), enumerable: false });
  }

  /** Versions held, in ascending order. */
  versions(): number[] {
    return [...this.secrets.keys()].sort((a, b) => a - b);
  }

  has(version: number): boolean {
    return this.secrets.has(version);
  }

  /** Derives the 32-byte key of a purpose and namespace from the secret of `version` (default: current). */
  derive(purpose: KeyPurpose, namespace: string, version: number = this.currentVersion): Buffer {
    return this.derivedEntry(purpose, namespace, version).key;
  }

  /** Derives the same key as `derive`, as a KeyObject, which HMAC uses without copying the key on every call. */
  deriveKeyObject(purpose: KeyPurpose, namespace: string, version: number = this.currentVersion): KeyObject {
    return this.derivedEntry(purpose, namespace, version).keyObject;
  }

  private derivedEntry(purpose: KeyPurpose, namespace: string, version: number): { key: Buffer; keyObject: KeyObject } {
    const cacheKey = `${version}\u0000${purpose}\u0000${namespace}`;
    const cached = this.derived.get(cacheKey);
    if (cached !== undefined) {
      return cached;
    }
    if (namespace.length === 0 || namespace.includes('\u0000')) {
      throw new DomicileError('internal', 'token namespace must be non-empty and contain no NUL');
    }
    const secret = this.secrets.get(version);
    if (secret === undefined) {
      throw new DomicileError('internal', `tokenization secret version ${version} is not in the keyring`);
    }
    // NUL cannot occur in a purpose or a namespace, so distinct pairs give distinct info strings.
    const info = Buffer.from(`${purpose}\u0000${namespace}`, 'utf8');
    const key = Buffer.from(hkdfSync('sha256', secret, HKDF_SALT, info, DERIVED_BYTES));
    const entry = { key, keyObject: createSecretKey(key) };
    this.derived.set(cacheKey, entry);
    return entry;
  }
}
