import type { Request, RequestHandler, Response } from 'express';
import { DomicileError } from '../policy/index.ts';
import { appendAuditEntries, type AuditEntry } from '../store/audit.ts';
import type { Credential } from '../store/credentials.ts';
import { createCountedLog } from '../store/counted-log.ts';
import { withTransaction, type Database } from '../store/database.ts';
import { createGroupRunner } from '../store/vault-group.ts';
import { isSubjectToken } from '../store/record-crypto.ts';
import { actorOf, credentialOf } from './auth.ts';
import type { GatewayDeps } from './deps.ts';

/**
 * Audit entries with outcome `denied` for reads and reveals that the gateway
 * refuses: a missing scope, a caller in the wrong location, or a missing or
 * unknown access purpose. The refusal never depends on the audit write: a
 * failed write is logged and the refusal is sent all the same.
 */

/**
 * Maximum number of denied entries waiting to be written per database.
 * Refusals that arrive together share one statement (see createGroupRunner),
 * so a flood costs a few statements per batch of refusals. Beyond this many
 * waiting, refusals are counted and logged instead of audited, which bounds
 * the memory a flood can take.
 */
export const MAX_PENDING_REFUSAL_AUDITS = 5_000;
/** Maximum time in milliseconds that a refusal waits for its audit write; the write goes on after it. */
export const REFUSAL_AUDIT_WAIT_MS = 2_000;
const SKIPPED_LOG_INTERVAL_MS = 10_000;

/** Paths at which an access purpose arrives: body, header or query. */
const PURPOSE_PATHS = new Set(['$.purpose', 'header.x-access-purpose', 'query.purpose']);

export interface RefusalContext {
  action: string;
  subjectToken?: string;
  recordType?: string;
  fields?: readonly string[];
  /** The purpose as the caller sent it; recorded in clear only when the policy declares it, else as a keyed HMAC. */
  purpose?: unknown;
  itemCounts?: Readonly<Record<string, number>>;
}

interface RefusalAuditState {
  pending: number;
  /** Counts a refusal that was not audited, for a log line at most every SKIPPED_LOG_INTERVAL_MS. */
  noteSkipped: (action: string) => void;
  write: (entry: AuditEntry) => Promise<void>;
}

const states = new WeakMap<Database, RefusalAuditState>();

function stateOf(deps: GatewayDeps): RefusalAuditState {
  let state = states.get(deps.db);
  if (state === undefined) {
    // One statement and one seal per group of refusals.
    const write = createGroupRunner(async (entries: readonly AuditEntry[]) => {
      await withTransaction(deps.db, (client) => appendAuditEntries(client, deps.keyring, entries));
      return entries.map(() => ({ ok: true as const, value: undefined }));
    });
    const noteSkipped = createCountedLog(SKIPPED_LOG_INTERVAL_MS, (skipped, action: string) => {
      deps.logger.warn({ event: 'audit.denied_skipped', action, skipped }, 'refused requests were not audited: too many audit writes in progress');
    });
    state = { pending: 0, noteSkipped, write };
    states.set(deps.db, state);
  }
  return state;
}

/** True for the errors that refuse access: `forbidden`, or a missing or unknown access purpose. */
export function isRefusal(error: unknown): error is DomicileError {
  if (!(error instanceof DomicileError)) return false;
  if (error.code === 'forbidden') return true;
  return error.code === 'invalid_request' && error.issues.some((issue) => PURPOSE_PATHS.has(issue.path));
}

function auditEntry(deps: GatewayDeps, credential: Credential, context: RefusalContext): AuditEntry {
  const entry: AuditEntry = { actor: actorOf(credential), action: context.action, outcome: 'denied', fields: context.fields ?? [] };
  const { purpose } = context;
  if (typeof purpose === 'string' && deps.policy.purposes.includes(purpose)) {
    entry.purpose = purpose;
  } else if (typeof purpose === 'string' && purpose !== '') {
    // An unknown purpose is caller text, which may hold anything: only its keyed HMAC is kept.
    entry.values = { purpose: purpose.slice(0, 256) };
  }
  if (context.subjectToken !== undefined && isSubjectToken(context.subjectToken)) entry.subjectToken = context.subjectToken;
  if (context.recordType !== undefined && Object.hasOwn(deps.policy.recordTypes, context.recordType)) entry.recordType = context.recordType;
  if (context.itemCounts !== undefined) entry.itemCounts = context.itemCounts;
  return entry;
}

/**
 * Appends a `denied` audit entry for a refused request. It never throws, so
 * the caller always goes on to send its refusal. A failed write is logged
 * without the error message, which may quote a value. Refusals beyond
 * MAX_PENDING_REFUSAL_AUDITS waiting are skipped, counted and logged, and a
 * slow write is awaited for at most REFUSAL_AUDIT_WAIT_MS.
 */
export async function auditRefusal(deps: GatewayDeps, credential: Credential, context: RefusalContext): Promise<void> {
  const state = stateOf(deps);
  if (state.pending >= MAX_PENDING_REFUSAL_AUDITS) {
    state.noteSkipped(context.action);
    return;
  }

  state.pending += 1;
  const write = state
    .write(auditEntry(deps, credential, context))
    .catch((error: unknown) => {
      deps.logger.warn(
        { event: 'audit.denied_failed', action: context.action, credentialId: credential.id, errorName: error instanceof Error ? error.name : typeof error },
        'could not audit a refused request; the refusal was sent',
      );
    })
    .finally(() => {
      state.pending -= 1;
    });

  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, REFUSAL_AUDIT_WAIT_MS);
    timer.unref();
  });
  await Promise.race([write, timeout]);
  clearTimeout(timer);
}

/**
 * Wraps a route handler so that a refusal it throws is audited as `denied`
 * with the context that `contextOf` reads from the request, then rethrown.
 */
export function auditRefusals(
  deps: GatewayDeps,
  contextOf: (req: Request, res: Response) => RefusalContext,
  handler: (req: Request, res: Response) => Promise<void>,
): RequestHandler {
  return async (req, res) => {
    try {
      await handler(req, res);
    } catch (error) {
      if (isRefusal(error)) {
        await auditRefusal(deps, credentialOf(res), contextOf(req, res));
      }
      throw error;
    }
  };
}

/** Reads a string member of a parsed JSON body, or undefined. */
export function bodyString(req: Request, name: string): string | undefined {
  const body: unknown = req.body;
  if (typeof body !== 'object' || body === null || !Object.hasOwn(body, name)) return undefined;
  const value: unknown = (body as Record<string, unknown>)[name];
  return typeof value === 'string' ? value : undefined;
}

/** Reads a string query parameter, or undefined. */
export function queryString(req: Request, name: string): string | undefined {
  const value: unknown = req.query[name];
  return typeof value === 'string' ? value : undefined;
}
