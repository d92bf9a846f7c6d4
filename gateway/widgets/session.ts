import { randomUUID } from 'node:crypto';
import jose from 'node-jose';
import { z } from 'zod';
import { DomicileError } from '../../policy/index.ts';
import type { Keyring } from '../../tokenizer/keyring.ts';

/** Lifetime of a widget session in seconds. */
export const SESSION_TTL_SECONDS = 10 * 60;

/** Audience claim of widget sessions, so no other JWS signed with the key is accepted as one. */
const AUDIENCE = 'domicile:widget';

/** Keyring namespace of the session key. Changing it invalidates every session in flight. */
const KEYRING_NAMESPACE = 'widget-session';

/** Key id of a session signed with a configured key instead of the keyring. */
const CONFIGURED_KEY_ID = 'configured';

const claimsSchema = z.object({
  iss: z.string(),
  aud: z.literal(AUDIENCE),
  sub: z.string(),
  jti: z.string(),
  iat: z.number().int(),
  exp: z.number().int(),
  recordType: z.string(),
  purpose: z.string(),
  parentOrigin: z.string(),
});

/** Claims of a widget session: one record type, one access purpose and one parent origin that may frame the widget. */
export type WidgetSession = z.infer<typeof claimsSchema>;

export interface SessionSigner {
  sign(grant: { credentialId: string; recordType: string; purpose: string; parentOrigin: string }): Promise<{ session: string; claims: WidgetSession }>;
  /** Returns the claims of a valid, unexpired session, or throws `unauthenticated`. */
  verify(session: string): Promise<WidgetSession>;
}

/** Source of the HS256 key: a configured key, or the tokenization keyring that every replica loads from the database. */
export type SessionKeySource = { key: Buffer } | { keyring: Keyring };

/** Every verification failure gives this one message, so the response is no oracle. */
const INVALID_SESSION = 'widget session is invalid or expired: ask the web app for a new one';

/**
 * Creates the signer of widget sessions: compact JWS, HS256. With a keyring,
 * the key is derived from the current tokenization secret and the JWS header's
 * `kid` names its version. So every replica verifies every session, and a
 * session signed before a key rotation stays valid until it expires. A
 * configured key must be at least 32 bytes, the output size of SHA-256.
 */
export function createSessionSigner(source: SessionKeySource, issuer: string): SessionSigner {
  if ('key' in source && source.key.length < 32) {
    throw new DomicileError('invalid_request', 'widget session key is too short: configure a key of at least 32 random bytes');
  }
  // node-jose imports keys asynchronously; each key is imported once and cached by key id.
  const keys = new Map<string, Promise<jose.JWK.Key>>();
  const keyFor = (kid: string): Promise<jose.JWK.Key> | undefined => {
    const material = keyMaterial(source, kid);
    if (material === undefined) {
      return undefined;
    }
    let key = keys.get(kid);
    if (key === undefined) {
      key = jose.JWK.asKey({ kty: 'oct', k: material.toString('base64url'), alg: 'HS256', use: 'sig', kid });
      keys.set(kid, key);
    }
    return key;
  };
  const currentKid = (): string => ('key' in source ? CONFIGURED_KEY_ID : `v${source.keyring.currentVersion}`);

  const sign: SessionSigner['sign'] = async (grant) => {
    const now = Math.floor(Date.now() / 1000);
    const claims: WidgetSession = {
      iss: issuer,
      aud: AUDIENCE,
      sub: grant.credentialId,
      jti: randomUUID(),
      iat: now,
      exp: now + SESSION_TTL_SECONDS,
      recordType: grant.recordType,
      purpose: grant.purpose,
      parentOrigin: grant.parentOrigin,
    };
    const kid = currentKid();
    const key = await keyFor(kid);
    if (key === undefined) {
      throw new DomicileError('internal', 'the current widget session key is missing');
    }
    const signed: unknown = await jose.JWS.createSign({ format: 'compact', fields: { alg: 'HS256', typ: 'JWT', kid } }, key)
      .update(JSON.stringify(claims), 'utf8')
      .final();
    if (typeof signed !== 'string') {
      throw new DomicileError('internal', 'node-jose returned no compact JWS');
    }
    return { session: signed, claims };
  };

  const verify: SessionSigner['verify'] = async (session) => {
    if (session.length > 4096 || !/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(session)) {
      throw new DomicileError('unauthenticated', INVALID_SESSION);
    }
    const key = keyFor(headerKeyId(session) ?? '');
    if (key === undefined) {
      throw new DomicileError('unauthenticated', INVALID_SESSION);
    }
    let payload: Buffer;
    try {
      const result = await jose.JWS.createVerify(await key, { algorithms: ['HS256'] }).verify(session);
      payload = result.payload;
    } catch {
      throw new DomicileError('unauthenticated', INVALID_SESSION);
    }
    const claims = claimsSchema.safeParse(parseJson(payload));
    if (!claims.success || claims.data.iss !== issuer || claims.data.exp <= Math.floor(Date.now() / 1000)) {
      throw new DomicileError('unauthenticated', INVALID_SESSION);
    }
    return claims.data;
  };

  return { sign, verify };
}

/** Key material of a key id, or undefined for a key id that this source does not have. */
function keyMaterial(source: SessionKeySource, kid: string): Buffer | undefined {
  if ('key' in source) {
    return kid === CONFIGURED_KEY_ID ? source.key : undefined;
  }
  const match = /^v([1-9][0-9]{0,8})$/.exec(kid);
  const version = Number(match?.[1]);
  if (match === null || !source.keyring.has(version)) {
    return undefined;
  }
  return source.keyring.derive('widget-session', KEYRING_NAMESPACE, version);
}

/** Reads `kid` from the unverified JWS header; the signature check that follows decides whether to trust the session. */
function headerKeyId(session: string): string | undefined {
  const header = parseJson(Buffer.from(session.split('.', 1)[0] ?? '', 'base64url'));
  if (typeof header === 'object' && header !== null && 'kid' in header && typeof header.kid === 'string') {
    return header.kid;
  }
  return undefined;
}

function parseJson(payload: Buffer): unknown {
  try {
    return JSON.parse(payload.toString('utf8'));
  } catch {
    return undefined;
  }
}
