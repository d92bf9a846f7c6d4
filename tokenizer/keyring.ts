import { createSecretKey, hkdfSync, randomBytes, type KeyObject } from 'node:crypto';
import { DomicileError } from '../policy/index.ts';

/** Use of a derived key. It is part of the HKDF info string, so never rename a purpose. */
export type KeyPurpose = 'deterministic' | 'blind-index' | 'ff1' | 'audit' | 'widget-session';

/**
 * Namespaces of the `audit` purpose, in the order of a retired version's
 * bundle of audit keys. Stored bundles depend on this order: only append. A
 * bundle stored before an append lacks the newer keys, and its retired
 * version cannot get them, so code that needs one of them must treat a
 * missing key of a retired version as absent.
 */
export const AUDIT_NAMESPACES = ['audit-chain', 'audit-values', 'audit-anchor', 'erasure-log', 'audit-pending'] as const;

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
  declare private readonly retainedAudit: ReadonlyMap<number, Buffer>;
  declare private readonly derived: Map<string, { key: Buffer; keyObject: KeyObject }>;

  /**
   * `retainedAudit` holds, for retired versions, the bundle of their audit
   * keys (see `auditKeyBundle`): their secrets are gone, but the audit log,
   * its anchors and the erasure log written under them must stay verifiable.
   */
  constructor(secrets: ReadonlyMap<number, Buffer>, currentVersion: number, retainedAudit: ReadonlyMap<number, Buffer> = new Map()) {
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
    for (const [version, bundle] of retainedAudit) {
      // A bundle stored before a namespace was appended is shorter; its version lacks only the newer keys.
      if (secrets.has(version) || bundle.length === 0 || bundle.length % DERIVED_BYTES !== 0 || bundle.length > AUDIT_NAMESPACES.length * DERIVED_BYTES) {
        throw new DomicileError('internal', `retained audit keys of tokenization key version ${version} are malformed`);
      }
    }
    Object.defineProperty(this, 'secrets', { value: new Map(secrets), enumerable: false });
    Object.defineProperty(this, 'retainedAudit', { value: new Map(retainedAudit), enumerable: false });
    Object.defineProperty(this, 'derived', { value: new Map(), enumerable: false });
  }

  /** Versions held, in ascending order. */
  versions(): number[] {
    return [...this.secrets.keys()].sort((a, b) => a - b);
  }

  has(version: number): boolean {
    return this.secrets.has(version);
  }

  /** Versions whose audit keys are available, in ascending order: those held and those retired. */
  auditVersions(): number[] {
    return [...this.secrets.keys(), ...this.retainedAudit.keys()].sort((a, b) => a - b);
  }

  /** Reports whether the audit keys of `version` are available: from its secret, or retained after it was retired. */
  hasAuditKeys(version: number): boolean {
    return this.secrets.has(version) || this.retainedAudit.has(version);
  }

  /**
   * Returns the audit keys of `version` concatenated in AUDIT_NAMESPACES
   * order, the form in which a retired version keeps them. The caller zeroes
   * the buffer after use.
   */
  auditKeyBundle(version: number): Buffer {
    return Buffer.concat(AUDIT_NAMESPACES.map((namespace) => this.derive('audit', namespace, version)));
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
      const retained = purpose === 'audit' ? this.retainedKey(namespace, version) : undefined;
      if (retained === undefined) {
        throw new DomicileError('internal', `tokenization secret version ${version} is not in the keyring`);
      }
      const entry = { key: retained, keyObject: createSecretKey(retained) };
      this.derived.set(cacheKey, entry);
      return entry;
    }
    // NUL cannot occur in a purpose or a namespace, so distinct pairs give distinct info strings.
    const info = Buffer.from(`${purpose}\u0000${namespace}`, 'utf8');
    const key = Buffer.from(hkdfSync('sha256', secret, HKDF_SALT, info, DERIVED_BYTES));
    const entry = { key, keyObject: createSecretKey(key) };
    this.derived.set(cacheKey, entry);
    return entry;
  }

  private retainedKey(namespace: string, version: number): Buffer | undefined {
    const bundle = this.retainedAudit.get(version);
    const index = (AUDIT_NAMESPACES as readonly string[]).indexOf(namespace);
    if (bundle === undefined || index < 0 || (index + 1) * DERIVED_BYTES > bundle.length) {
      return undefined;
    }
    return Buffer.from(bundle.subarray(index * DERIVED_BYTES, (index + 1) * DERIVED_BYTES));
  }
}
