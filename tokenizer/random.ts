import { base32Encode } from './base32.ts';
import { secureRandomBytes } from './random-pool.ts';

/**
 * Creates a random token `rnd_v<version>_<26 base32 characters of 16 random
 * bytes>`, where `version` is the keyring version that the store files the
 * mapping under. The token carries no information about the value.
 */
export function generateRandomToken(version = 1): string {
  if (!Number.isSafeInteger(version) || version < 1) {
    throw new RangeError('random token version must be a positive integer');
  }
  return `rnd_v${version}_${base32Encode(secureRandomBytes(16))}`;
}
