import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { DomicileError, jsonPath } from '../policy/errors.ts';
import { base32Encode } from '../tokenizer/base32.ts';
import type { Database } from './database.ts';

export const CREDENTIAL_OPERATIONS = [
  'records:create',
  'records:read',
  'records:update',
  'records:lookup',
  'records:erase',
  'widget-sessions:create',
  'tokenize',
  'detokenize',
  'metrics:read',
] as const;
export type CredentialOperation = (typeof CREDENTIAL_OPERATIONS)[number];

/** Forms a credential may be granted per field; the same words and order as the egress forms of the policy. */
export const FIELD_FORMS = ['never', 'token', 'mask', 'generalize', 'clear'] as const;
export type FieldForm = (typeof FIELD_FORMS)[number];

const scopeName = z.string().regex(/^[a-z][a-zA-Z0-9_]{0,62}$/, 'must be a record type or field name of the data policy');

export const scopesSchema = z.strictObject({
  operations: z.array(z.enum(CREDENTIAL_OPERATIONS)),
  recordTypes: z.array(z.string().min(1)),
  /**
   * Field-level forms by record type, then field. A record type listed here
   * gives the credential only the fields it lists, in at most the listed
   * form; a record type left out gets every field in the default form
   * (clear in the country, the egress rule abroad).
   */
  fields: z.record(scopeName, z.record(scopeName, z.enum(FIELD_FORMS))).optional(),
});
export type CredentialScopes = z.infer<typeof scopesSchema>;

export interface Credential {
  id: string;
  name: string;
  location: 'in-country' | 'abroad';
  scopes: CredentialScopes;
  createdAt: string;
  revokedAt?: string;
}

interface CredentialRow {
  id: string;
  name: string;
  location: 'in-country' | 'abroad';
  scopes: unknown;
  secret_hash: Buffer;
  created_at: Date;
  revoked_at: Date | null;
}

/**
 * Secret layout: `dmc_<id>_<secret>`, where the id is 16 lowercase base32
 * characters (10 random bytes) and the secret is 43 base64url characters
 * (32 random bytes). Issued secrets depend on it: never change it.
 */
const SECRET_PATTERN = /^dmc_([a-z2-7]{16})_([A-Za-z0-9_-]{43})$/;

function hashSecret(secret: string): Buffer {
  return createHash('sha256').update(secret, 'utf8').digest();
}

/** Creates a credential and returns the secret once; only its SHA-256 is stored. */
export async function createCredential(
  db: Database,
  options: { name: string; location: 'in-country' | 'abroad'; scopes: CredentialScopes },
): Promise<{ id: string; secret: string }> {
  const scopes = scopesSchema.safeParse(options.scopes);
  if (!scopes.success) {
    throw new DomicileError('invalid_request', 'credential scopes are invalid', {
      issues: scopes.error.issues.map((issue) => ({ path: `$.scopes${jsonPath(issue.path).slice(1)}`, message: issue.message })),
    });
  }
  if (options.name.trim() === '') {
    throw new DomicileError('invalid_request', 'credential name is missing', { issues: [{ path: '$.name', message: 'is required' }] });
  }

  const id = base32Encode(randomBytes(10));
  const secret = `dmc_${id}_${randomBytes(32).toString('base64url')}`;
  await db.pool.query(
    'INSERT INTO credentials (id, name, location, scopes, secret_hash) VALUES ($1, $2, $3, $4, $5)',
    [id, options.name, options.location, JSON.stringify(scopes.data), hashSecret(secret)],
  );
  return { id, secret };
}

/** Returns the credential of a secret, or undefined when it is malformed, unknown or revoked. */
export async function verifyCredential(db: Database, secret: string): Promise<Credential | undefined> {
  const match = SECRET_PATTERN.exec(secret);
  if (match === null) {
    return undefined;
  }
  const result = await db.pool.query<CredentialRow>('SELECT * FROM credentials WHERE id = $1', [match[1]]);
  const row = result.rows[0];
  if (row === undefined || row.revoked_at !== null) {
    return undefined;
  }
  if (!timingSafeEqual(row.secret_hash, hashSecret(secret))) {
    return undefined;
  }
  return toCredential(row);
}

export async function listCredentials(db: Database): Promise<Credential[]> {
  const result = await db.pool.query<CredentialRow>('SELECT * FROM credentials ORDER BY created_at, id');
  return result.rows.map(toCredential);
}

/** Revokes a credential; returns false when no active credential has this id. */
export async function revokeCredential(db: Database, id: string): Promise<boolean> {
  const result = await db.pool.query('UPDATE credentials SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL', [id]);
  return result.rowCount === 1;
}

function toCredential(row: CredentialRow): Credential {
  const credential: Credential = {
    id: row.id,
    name: row.name,
    location: row.location,
    scopes: scopesSchema.parse(row.scopes),
    createdAt: row.created_at.toISOString(),
  };
  if (row.revoked_at !== null) {
    credential.revokedAt = row.revoked_at.toISOString();
  }
  return credential;
}
