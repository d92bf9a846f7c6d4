import { DomicileError } from '../../policy/index.ts';
import type { EncryptionContext, KeyProvider, WrappedKey } from './provider.ts';

/** Kinds of KEK provider; each stored KEK version names one by its prefix. */
export type KeyProviderKind = KeyProvider['kind'];

/** Prefixes of stored KEK versions. Stored wraps depend on them: never change them. */
const VERSION_PREFIXES: Record<KeyProviderKind, string> = { local: 'local:', 'aws-kms': 'kms:' };

/** Returns the provider kind that a stored KEK version belongs to, or undefined for an unknown prefix. */
export function providerKindOf(kekVersion: string): KeyProviderKind | undefined {
  for (const [kind, prefix] of Object.entries(VERSION_PREFIXES) as Array<[KeyProviderKind, string]>) {
    if (kekVersion.startsWith(prefix) && kekVersion.length > prefix.length) {
      return kind;
    }
  }
  return undefined;
}

/** A member that can report whether it contains a KEK version, as the local key file can. */
interface VersionedKeyProvider extends KeyProvider {
  hasVersion(kekVersion: string): boolean;
}

function hasVersionCheck(keys: KeyProvider): keys is VersionedKeyProvider {
  return typeof (keys as Partial<VersionedKeyProvider>).hasVersion === 'function';
}

/**
 * A KEK provider made of at most one provider of each kind (the local key file
 * and AWS KMS), so an installation can move its keys from one to the other
 * while it serves. Unwraps go to the member that the prefix of the stored KEK
 * version names (`local:` or `kms:`), so keys wrapped by either member stay
 * readable. New wraps use the current version of one member: the primary's at
 * first, another one's after `useVersion`.
 */
export class RoutingKeyProvider implements KeyProvider {
  /** True when opening the primary generated a new local key file. */
  readonly created: boolean;
  readonly #members = new Map<KeyProviderKind, KeyProvider>();
  #current: KeyProvider;

  constructor(primary: KeyProvider & { readonly created?: boolean }, secondary?: KeyProvider) {
    if (secondary !== undefined && secondary.kind === primary.kind) {
      throw new DomicileError('invalid_request', `the secondary key provider must be of another kind than the primary (${primary.kind})`);
    }
    this.created = primary.created ?? false;
    this.#members.set(primary.kind, primary);
    if (secondary !== undefined) {
      this.#members.set(secondary.kind, secondary);
    }
    this.#current = primary;
  }

  /** Kind of the member that wraps new keys. */
  get kind(): KeyProviderKind {
    return this.#current.kind;
  }

  /** Returns the member of a kind, or undefined when none is configured. */
  member(kind: KeyProviderKind): KeyProvider | undefined {
    return this.#members.get(kind);
  }

  /** Returns the member that wraps new keys. */
  wrapProvider(): KeyProvider {
    return this.#current;
  }

  /** Makes the member whose current version is `kekVersion` wrap new keys; returns false, changing nothing, when no member has it. */
  useVersion(kekVersion: string): boolean {
    for (const member of this.#members.values()) {
      if (member.currentVersion() === kekVersion) {
        this.#current = member;
        return true;
      }
    }
    return false;
  }

  /**
   * Returns whether a member can unwrap keys of `kekVersion`. For the local key
   * file it checks that the file contains that version. For AWS KMS it checks
   * only that a KMS member is configured, because whether the KMS key is
   * enabled shows only on the first call.
   */
  canUnwrap(kekVersion: string): boolean {
    const kind = providerKindOf(kekVersion);
    const member = kind === undefined ? undefined : this.#members.get(kind);
    if (member === undefined) {
      return false;
    }
    return hasVersionCheck(member) ? member.hasVersion(kekVersion) : true;
  }

  currentVersion(): string {
    return this.#current.currentVersion();
  }

  generateDataKey(context: EncryptionContext): Promise<{ plaintext: Buffer; wrapped: WrappedKey }> {
    return this.#current.generateDataKey(context);
  }

  wrap(plaintext: Buffer, context: EncryptionContext): Promise<WrappedKey> {
    return this.#current.wrap(plaintext, context);
  }

  async unwrap(wrapped: WrappedKey, context: EncryptionContext): Promise<Buffer> {
    const kind = providerKindOf(wrapped.kekVersion);
    const member = kind === undefined ? undefined : this.#members.get(kind);
    if (member === undefined) {
      throw new DomicileError('internal', `KEK version ${wrapped.kekVersion} belongs to no configured key provider`);
    }
    return member.unwrap(wrapped, context);
  }

  async close(): Promise<void> {
    for (const member of this.#members.values()) {
      await member.close();
    }
  }
}
