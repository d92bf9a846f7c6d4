import { randomFillSync } from 'node:crypto';

/**
 * Cryptographically secure random bytes for the hot paths (nonces, data keys,
 * tokens), drawn from a buffer that is refilled from the operating system's
 * generator in blocks. Each `randomBytes` call pays a fixed cost of several
 * microseconds however few bytes it returns, which made it the largest single
 * CPU cost of a record create (seven calls per record).
 *
 * Bytes are handed out once: the consumed part of the block is zeroed before
 * it is returned, so no two callers share bytes and no drawn secret stays in
 * the block. The block lives in this process's memory like any key in use.
 */
const BLOCK_BYTES = 4096;
/** Requests above this size bypass the block; they are rare and not hot. */
const MAX_POOLED = 256;

const block = Buffer.alloc(BLOCK_BYTES);
let offset = BLOCK_BYTES;

/** Returns `size` fresh random bytes in a buffer of its own. */
export function secureRandomBytes(size: number): Buffer {
  if (!Number.isSafeInteger(size) || size < 0) {
    throw new RangeError('size must be a non-negative integer');
  }
  const out = Buffer.alloc(size);
  if (size > MAX_POOLED) {
    return randomFillSync(out);
  }
  if (offset + size > BLOCK_BYTES) {
    randomFillSync(block);
    offset = 0;
  }
  block.copy(out, 0, offset, offset + size);
  block.fill(0, offset, offset + size);
  offset += size;
  return out;
}
