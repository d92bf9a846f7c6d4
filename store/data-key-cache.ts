import type { EncryptionContext, KeyProvider, WrappedKey } from '../tokenizer/keys/provider.ts';
import type { Database } from './database.ts';

/**
 * A short-lived in-memory cache of unwrapped data keys, so that reads and
 * updates of a subject seen moments ago skip the KEK unwrap (a KMS call with
 * AWS KMS). Bounded by entry count and age; an evicted or expired key is
 * zeroed. An entry is used only when the caller has just read the subject's
 * wrapped key row in its own transaction and the wrapped bytes are equal, so a
 * subject whose data key row was deleted (erased) is never served from the
 * cache, not even by another process. Erasure also evicts the entry at once.
 */
const MAX_ENTRIES = 10_000;
/** Milliseconds an unwrapped key stays cached after its unwrap. */
const MAX_AGE_MS = 60_000;

interface Entry {
  wrapped: Buffer;
  kekVersion: string;
  dataKey: Buffer;
  expiresAt: number;
}

export class DataKeyCache {
  /** Insertion order is recency order: a hit moves its entry to the end. */
  readonly #entries = new Map<string, Entry>();
  readonly #maxEntries: number;
  readonly #maxAgeMs: number;

  constructor(options: { maxEntries?: number; maxAgeMs?: number } = {}) {
    this.#maxEntries = options.maxEntries ?? MAX_ENTRIES;
    this.#maxAgeMs = options.maxAgeMs ?? MAX_AGE_MS;
  }

  get size(): number {
    return this.#entries.size;
  }

  /**
   * Returns a copy of the subject's data key, unwrapping `wrapped` with
   * `context` and caching it on a miss. The caller zeroes the copy when done.
   */
  async unwrap(keys: KeyProvider, subjectId: string, wrapped: WrappedKey, context: EncryptionContext): Promise<Buffer> {
    const cached = this.#entries.get(subjectId);
    if (cached !== undefined) {
      this.#entries.delete(subjectId);
      if (cached.expiresAt > performance.now() && cached.kekVersion === wrapped.kekVersion && cached.wrapped.equals(wrapped.ciphertext)) {
        this.#entries.set(subjectId, cached);
        return Buffer.from(cached.dataKey);
      }
      cached.dataKey.fill(0);
    }

    const dataKey = await keys.unwrap(wrapped, context);
    this.#store(subjectId, { wrapped: Buffer.from(wrapped.ciphertext), kekVersion: wrapped.kekVersion, dataKey: Buffer.from(dataKey), expiresAt: performance.now() + this.#maxAgeMs });
    return dataKey;
  }

  /** Removes and zeroes the subject's entry; called by erasure. */
  evict(subjectId: string): void {
    const entry = this.#entries.get(subjectId);
    if (entry !== undefined) {
      entry.dataKey.fill(0);
      this.#entries.delete(subjectId);
    }
  }

  /** Removes and zeroes every entry. */
  clear(): void {
    for (const entry of this.#entries.values()) {
      entry.dataKey.fill(0);
    }
    this.#entries.clear();
  }

  #store(subjectId: string, entry: Entry): void {
    this.evict(subjectId);
    this.#entries.set(subjectId, entry);
    while (this.#entries.size > this.#maxEntries) {
      const oldest = this.#entries.keys().next();
      if (oldest.done === true) {
        break;
      }
      this.evict(oldest.value);
    }
  }
}

const caches = new WeakMap<Database, DataKeyCache>();

/** The cache of one database handle, shared by every vault of this process on it, so an erasure through any of them evicts. */
export function dataKeyCacheFor(db: Database): DataKeyCache {
  let cache = caches.get(db);
  if (cache === undefined) {
    cache = new DataKeyCache();
    caches.set(db, cache);
  }
  return cache;
}
