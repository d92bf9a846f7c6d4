import { randomBytes } from 'node:crypto';
import { base32Encode } from './base32.ts';

/**
 * Creates a random token `rnd_v1_<26 base32 characters of 16 random bytes>`.
 * It carries no information about the value; the store keeps the mapping.
 */
export function generateRandomToken(): string {
  return `rnd_v1_${base32Encode(randomBytes(16))}`;
}
