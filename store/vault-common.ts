import type { Logger } from 'pino';
import { DomicileError } from '../policy/errors.ts';
import type { Policy } from '../policy/schema.ts';
import type { Keyring } from '../tokenizer/keyring.ts';
import type { KeyProvider } from '../tokenizer/keys/provider.ts';
import type { Database, Queryable } from './database.ts';
import type { ErasureLogWriter } from './erasure-log.ts';
import { enqueueOutbox } from './outbox.ts';
import { isSubjectToken } from './record-crypto.ts';

export interface VaultDeps {
  db: Database;
  policy: Policy;
  keys: KeyProvider;
  keyring: Keyring;
  logger: Logger;
  /** Receives every erasure inside its transaction; see store/erasure-log.ts. */
  erasureLog?: ErasureLogWriter;
}

export interface SubjectRow {
  id: string;
  token: string;
  erased_at: Date | null;
}

/**
 * Finds a subject by token, optionally locking its row for the rest of the
 * transaction so writes to one subject are serialized. Throws `not_found` for
 * an unknown or malformed token.
 */
export async function findSubject(client: Queryable, subjectToken: string, options: { lock: boolean }): Promise<SubjectRow> {
  if (!isSubjectToken(subjectToken)) {
    throw new DomicileError('not_found', 'no subject has this subject token');
  }
  const result = await client.query<SubjectRow>(
    `SELECT id, token, erased_at FROM subjects WHERE token = $1${options.lock ? ' FOR UPDATE' : ''}`,
    [subjectToken],
  );
  const subject = result.rows[0];
  if (subject === undefined) {
    throw new DomicileError('not_found', 'no subject has this subject token');
  }
  return subject;
}

export function requireNotErased(subject: SubjectRow): void {
  if (subject.erased_at !== null) {
    throw new DomicileError('gone', 'subject was erased');
  }
}

/** Names of the destinations whose projection includes the record type. */
export function destinationsFor(policy: Policy, recordType: string): string[] {
  return Object.entries(policy.destinations)
    .filter(([, destination]) => Object.hasOwn(destination.records, recordType))
    .map(([name]) => name)
    .sort();
}

/** Writes one outbox event per destination that receives the record type. */
export async function enqueueForDestinations(
  client: Queryable,
  policy: Policy,
  event: { subjectId: string; subjectToken: string; recordType: string; op: 'upsert' | 'erase'; recordVersion: number },
): Promise<number> {
  const destinations = destinationsFor(policy, event.recordType);
  for (const destination of destinations) {
    await enqueueOutbox(client, { destination, ...event });
  }
  return destinations.length;
}
