import { hmacSha256 } from './deterministic.ts';
import type { Keyring } from './keyring.ts';

/**
 * Computes the 32-byte blind index of a normalized value: HMAC-SHA256 keyed by
 * the namespace's `blind-index` key of `version` (default: current). A lookup
 * after a key rotation computes one index per version still in use.
 */
export function blindIndex(keyring: Keyring, namespace: string, normalized: string, version?: number): Buffer {
  const key = keyring.deriveKeyObject('blind-index', namespace, version ?? keyring.currentVersion);
  return hmacSha256(key, normalized);
}
