import { createHmac, type KeyObject } from 'node:crypto';
import { base32EncodeGroups, isBase32 } from './base32.ts';
import type { Keyring } from './keyring.ts';

/**
 * Deterministic tokens: `det_v<version>_<body>`, where the body is the lowercase
 * base32 (no padding) of the first 20 bytes of HMAC-SHA256 over the UTF-8 of the
 * normalized value, keyed by the keyring's `deterministic` key of the namespace.
 * Tokens are stored abroad: never change this format for an existing prefix.
 */
const DETERMINISTIC_PREFIX = 'det_v';
const TRUNCATED_BYTES = 20;
/** 20 bytes = 160 bits = exactly 32 base32 characters. */
const DETERMINISTIC_BODY_LENGTH = 32;

/** Random tokens (`rnd_v<version>_<26 base32>`) are made and mapped by the store; the version is the keyring version of the mapping. */
const RANDOM_PREFIX = 'rnd_v';
const RANDOM_BODY_LENGTH = 26;

export type ParsedToken = { kind: 'deterministic' | 'random'; version: number; body: string };

/** HMAC-SHA256 (RFC 2104) of a UTF-8 string or bytes; the construction of deterministic tokens and blind indexes. */
export function hmacSha256(key: Buffer | KeyObject, message: string | Buffer): Buffer {
  return typeof message === 'string'
    ? createHmac('sha256', key).update(message, 'utf8').digest()
    : createHmac('sha256', key).update(message).digest();
}

/** Returns the deterministic token of a normalized value under the key `version` (default: current). */
export function deterministicToken(keyring: Keyring, namespace: string, normalized: string, version?: number): string {
  const keyVersion = version ?? keyring.currentVersion;
  const key = keyring.deriveKeyObject('deterministic', namespace, keyVersion);
  const mac = createHmac('sha256', key).update(normalized, 'utf8').digest();
  return `${DETERMINISTIC_PREFIX}${keyVersion}_${base32EncodeGroups(mac, TRUNCATED_BYTES)}`;
}

/** Splits a deterministic or random token into its parts; undefined if `token` is neither. */
export function parseToken(token: string): ParsedToken | undefined {
  const match = /^(det|rnd)_v([1-9][0-9]{0,8})_([a-z2-7]+)$/.exec(token);
  if (match === null) {
    return undefined;
  }
  const [, prefix, versionText, body] = match;
  if (versionText === undefined || body === undefined || !isBase32(body)) {
    return undefined;
  }
  const kind = prefix === 'det' ? 'deterministic' : 'random';
  const expectedLength = kind === 'deterministic' ? DETERMINISTIC_BODY_LENGTH : RANDOM_BODY_LENGTH;
  if (body.length !== expectedLength) {
    return undefined;
  }
  return { kind, version: Number(versionText), body };
}

export { DETERMINISTIC_PREFIX, RANDOM_PREFIX };
