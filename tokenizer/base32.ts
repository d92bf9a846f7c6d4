/** RFC 4648 base32 alphabet in lowercase. Stored tokens use it: never change it. */
const ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567';

/** All 1024 two-character strings, indexed by 10 bits; deterministic tokens are encoded 10 bits at a time. */
const PAIRS: readonly string[] = Array.from({ length: 1024 }, (_, i) => (ALPHABET[i >>> 5] ?? '') + (ALPHABET[i & 31] ?? ''));

/** Encodes bytes as lowercase RFC 4648 base32 without padding. */
export function base32Encode(bytes: Uint8Array): string {
  if (bytes.length % 5 === 0) {
    return base32EncodeGroups(bytes, bytes.length);
  }
  let out = '';
  let buffer = 0;
  let bits = 0;
  for (const byte of bytes) {
    buffer = ((buffer << 8) | byte) & 0xffff;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += ALPHABET[(buffer >>> bits) & 31];
    }
  }
  if (bits > 0) {
    out += ALPHABET[(buffer << (5 - bits)) & 31];
  }
  return out;
}

/**
 * Encodes the first `length` bytes (a multiple of 5) as whole 5-byte groups of
 * four 10-bit pairs. Token creation calls it on the full HMAC, which avoids a subarray.
 */
export function base32EncodeGroups(bytes: Uint8Array, length: number): string {
  let out = '';
  for (let k = 0; k + 5 <= length; k += 5) {
    const high = ((bytes[k] ?? 0) << 12) | ((bytes[k + 1] ?? 0) << 4) | ((bytes[k + 2] ?? 0) >>> 4);
    const low = (((bytes[k + 2] ?? 0) & 15) << 16) | ((bytes[k + 3] ?? 0) << 8) | (bytes[k + 4] ?? 0);
    out += (PAIRS[high >>> 10] ?? '') + (PAIRS[high & 1023] ?? '') + (PAIRS[low >>> 10] ?? '') + (PAIRS[low & 1023] ?? '');
  }
  return out;
}

/** True if `text` uses only the lowercase base32 alphabet. */
export function isBase32(text: string): boolean {
  return /^[a-z2-7]*$/.test(text);
}
