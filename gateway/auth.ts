import { createHash } from 'node:crypto';
import type { RequestHandler, Response } from 'express';
import { DomicileError } from '../policy/index.ts';
import { verifyCredential, type Credential, type CredentialOperation } from '../store/credentials.ts';
import type { Database } from '../store/database.ts';
import type { Actor } from '../store/types.ts';

/** Reads the token of an `Authorization: Bearer <token>` header, or undefined. */
export function bearerToken(header: string | undefined): string | undefined {
  if (header === undefined) {
    return undefined;
  }
  const match = /^Bearer[ ]+([^\s]+)\s*$/i.exec(header);
  return match?.[1];
}

/**
 * Time in milliseconds for which a verified credential is reused without a
 * database query. A revocation therefore takes effect on every gateway
 * replica within this time. Failed verifications are never cached.
 */
export const CREDENTIAL_CACHE_MS = 5_000;
const CREDENTIAL_CACHE_MAX = 1_000;

interface CachedCredential {
  credential: Credential;
  expiresAt: number;
}

/** One cache per database, keyed by the SHA-256 of the secret, so the secret itself is not kept as a key. */
const caches = new WeakMap<Database, Map<string, CachedCredential>>();

async function verifyCached(db: Database, secret: string): Promise<Credential | undefined> {
  let cache = caches.get(db);
  if (cache === undefined) {
    cache = new Map();
    caches.set(db, cache);
  }
  const key = createHash('sha256').update(secret, 'utf8').digest('base64');
  const now = Date.now();
  const cached = cache.get(key);
  if (cached !== undefined && cached.expiresAt > now) {
    return cached.credential;
  }
  cache.delete(key);

  const credential = await verifyCredential(db, secret);
  if (credential !== undefined) {
    if (cache.size >= CREDENTIAL_CACHE_MAX) {
      // Maps iterate in insertion order, so this drops the oldest entry.
      const oldest = cache.keys().next();
      if (oldest.done !== true) cache.delete(oldest.value);
    }
    cache.set(key, { credential, expiresAt: now + CREDENTIAL_CACHE_MS });
  }
  return credential;
}

/**
 * Verifies the API credential of the request and stores it in `res.locals`.
 * Every failure gives the same 401, so no caller can learn from the response
 * whether a credential exists, was revoked or was mistyped.
 */
export function authenticate(db: Database): RequestHandler {
  return async (req, res, next) => {
    res.setHeader('WWW-Authenticate', 'Bearer realm="domicile"');
    const secret = bearerToken(req.headers.authorization);
    const credential = secret === undefined ? undefined : await verifyCached(db, secret);
    if (credential === undefined) {
      throw new DomicileError('unauthenticated', 'missing or invalid API credential: send Authorization: Bearer <secret>');
    }
    res.removeHeader('WWW-Authenticate');
    res.locals['credential'] = credential;
    next();
  };
}

/** Throws `forbidden` unless the credential belongs to a caller in the country. */
export function requireInCountry(credential: Credential, feature: string): void {
  if (credential.location !== 'in-country') {
    throw new DomicileError('forbidden', `${feature} is open to in-country callers only`);
  }
}

export function credentialOf(res: Response): Credential {
  const credential: unknown = res.locals['credential'];
  if (typeof credential !== 'object' || credential === null) {
    throw new DomicileError('internal', 'route runs without the authenticate middleware');
  }
  return credential as Credential;
}

/** Throws `forbidden` unless the credential may run `operation`. */
export function requireOperation(credential: Credential, operation: CredentialOperation): void {
  if (!credential.scopes.operations.includes(operation)) {
    throw new DomicileError('forbidden', `credential lacks the scope ${operation}`);
  }
}

/** Throws `forbidden` unless the credential may run `operation` on `recordType`. */
export function requireScope(credential: Credential, operation: CredentialOperation, recordType: string): void {
  requireOperation(credential, operation);
  if (!credential.scopes.recordTypes.includes(recordType)) {
    throw new DomicileError('forbidden', `credential lacks access to record type ${recordType}`);
  }
}

/** Returns the actor that the store audits for a credential. */
export function actorOf(credential: Credential): Actor {
  return { id: `credential:${credential.id}`, location: credential.location };
}
