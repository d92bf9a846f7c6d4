import { DomicileError } from '../../policy/errors.ts';

/**
 * A place abroad that receives partial copies. Both operations are idempotent,
 * because the outbox delivers at least once: putting the same key twice leaves
 * the last body, and removing a missing key succeeds.
 */
export interface Destination {
  /** Target kind, for logs and metrics labels. */
  readonly kind: 'folder' | 's3';
  /** Creates or replaces the object at `key`; a reader sees the old body or the new one, never a mix. */
  put(key: string, body: Buffer): Promise<void>;
  /** Deletes the object at `key`; succeeds when it is already gone. */
  remove(key: string): Promise<void>;
  /** Releases connections; the destination is unusable afterwards. */
  close(): Promise<void>;
}

/** Maximum key length in bytes, the limit S3 sets for object keys. */
export const MAX_KEY_BYTES = 1024;

const SEGMENT = /^[A-Za-z0-9_][A-Za-z0-9._-]*$/;

/**
 * Throws DomicileError `internal` unless `key` is a relative path of
 * `/`-separated segments made of letters, digits, `.`, `_` and `-`, with no
 * empty, `.` or `..` segment and no segment that starts with a dot. Such a key
 * maps to the same object on every destination and cannot escape a folder root.
 * Dot-files stay free for the temporary files of the folder destination.
 */
export function validateObjectKey(key: string): void {
  if (key.length === 0 || Buffer.byteLength(key) > MAX_KEY_BYTES) {
    throw new DomicileError('internal', `object key must be 1 to ${MAX_KEY_BYTES} bytes long`);
  }
  for (const segment of key.split('/')) {
    if (!SEGMENT.test(segment)) {
      throw new DomicileError('internal', 'object key must be /-separated segments of letters, digits, ".", "_" and "-", none empty or starting with a dot');
    }
  }
}

/** Returns the object key of a partial copy, `<recordType>/<subjectToken>.json`, relative to the destination's prefix. */
export function partialCopyKey(recordType: string, subjectToken: string): string {
  const key = `${recordType}/${subjectToken}.json`;
  validateObjectKey(key);
  return key;
}
