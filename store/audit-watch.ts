import type { Logger } from 'pino';
import type { Keyring } from '../tokenizer/keyring.ts';
import { secureRandomBytes } from '../tokenizer/random-pool.ts';
import { pendingMac } from './audit-chain.ts';
import { insertPendingRows, pendingRows, type PendingRow } from './audit-pending.ts';
import type { Database } from './database.ts';

/**
 * A pending entry has no protection of its own against deletion: its MAC
 * shows a change, but someone with write access to `audit_pending` can delete
 * it before a seal chains it, and the chain then never learns of it. The
 * process that wrote an entry still has it in memory, though. So every
 * committed entry is watched until it is chained: after each seal, the sealer looks for the
 * watched entries that no seal of this process handled, by nonce, in
 * `audit_log` and `audit_pending`. An entry found in neither was deleted. The
 * process writes it again with a new nonce, next to an `audit.entry_missing`
 * entry of the sealer, and logs the event, so the deletion shows in the
 * verified log and nothing the process did goes unaudited.
 *
 * NOTE: an entry whose writing process stops before the check stays
 * unwatched, so a deletion in that window still goes unnoticed.
 */
const MAX_WATCHED = 100_000;

const SEALER_ACTOR = { id: 'system:audit-sealer', location: 'in-country' } as const;
export const MISSING_ACTION = 'audit.entry_missing';

interface WatchList {
  rows: PendingRow[];
  /** Entries not watched since the last check because the list was full. */
  dropped: number;
}

/** Watched entries by pool, so the sealer of a database finds the entries written through its pool. */
const watched = new WeakMap<object, WatchList>();

function listOf(pool: object): WatchList {
  let list = watched.get(pool);
  if (list === undefined) {
    list = { rows: [], dropped: 0 };
    watched.set(pool, list);
  }
  return list;
}

/** Watches entries that committed through `pool` until a seal chains them. */
export function watchCommittedEntries(pool: object, rows: readonly PendingRow[]): void {
  const list = listOf(pool);
  const room = Math.max(0, MAX_WATCHED - list.rows.length);
  list.rows.push(...rows.slice(0, room));
  list.dropped += rows.length - Math.min(room, rows.length);
}

/** Removes and returns the watched entries of `pool`, which all committed before the call. */
export function takeWatchedEntries(pool: object): { rows: PendingRow[]; dropped: number } {
  const list = listOf(pool);
  const removed = { rows: list.rows, dropped: list.dropped };
  list.rows = [];
  list.dropped = 0;
  return removed;
}

/**
 * Checks the entries watched before a seal whose nonces the seal did not
 * handle (`handled`), and writes the deleted ones again. Entries still
 * pending, and all of them when the check fails, are watched again. Returns
 * how many entries it wrote, so that the caller seals again. It does not
 * throw: it logs a failure and keeps the entries watched.
 */
export async function checkWatchedEntries(
  db: Database,
  keyring: Keyring,
  logger: Logger | undefined,
  watched: { rows: readonly PendingRow[]; dropped: number },
  handled: ReadonlySet<string>,
): Promise<number> {
  if (watched.dropped > 0) {
    logger?.warn({ event: 'audit.watch_full', count: watched.dropped }, `more than ${MAX_WATCHED} audit entries waited for a seal, so some were not watched for deletion`);
  }
  const unresolved = watched.rows.filter((row) => !handled.has(row.nonce));
  if (unresolved.length === 0) {
    return 0;
  }
  let state: Map<string, boolean>;
  try {
    const found = await db.pool.query<{ nonce: string; pending: boolean }>(
      `SELECT encode(nonce, 'hex') AS nonce, false AS pending FROM audit_log WHERE nonce = ANY($1::bytea[])
       UNION ALL
       SELECT encode(nonce, 'hex') AS nonce, true AS pending FROM audit_pending WHERE nonce = ANY($1::bytea[])`,
      [unresolved.map((row) => Buffer.from(row.nonce, 'hex'))],
    );
    state = new Map(found.rows.map((row) => [row.nonce, row.pending]));
  } catch (error) {
    logger?.error({ event: 'audit.watch_failed', errorCode: (error as { code?: unknown }).code ?? 'error' }, 'checking that audit entries were chained failed; they stay watched');
    watchCommittedEntries(db.pool, unresolved);
    return 0;
  }
  watchCommittedEntries(db.pool, unresolved.filter((row) => state.get(row.nonce) === true));
  const missing = unresolved.filter((row) => !state.has(row.nonce));
  if (missing.length === 0) {
    return 0;
  }
  try {
    return await writeAgain(db, keyring, logger, missing);
  } catch (error) {
    logger?.error({ event: 'audit.watch_failed', errorCode: (error as { code?: unknown }).code ?? 'error' }, 'writing deleted audit entries again failed; the next seal retries');
    watchCommittedEntries(db.pool, missing);
    return 0;
  }
}

/** Writes `missing` again under new nonces, after an `audit.entry_missing` entry that counts them. */
async function writeAgain(db: Database, keyring: Keyring, logger: Logger | undefined, missing: readonly PendingRow[]): Promise<number> {
  logger?.error(
    { event: MISSING_ACTION, count: missing.length, actions: [...new Set(missing.map((row) => row.action))] },
    'audit entries that this process wrote were deleted from audit_pending before their seal; writing them again',
  );
  const marker = pendingRows(keyring, [{ actor: SEALER_ACTOR, action: MISSING_ACTION, fields: [], itemCounts: { entries: missing.length }, outcome: 'failed' }]);
  const again = missing.map((row): PendingRow => {
    const { mac: _mac, ...entry } = row;
    const renewed = { ...entry, nonce: secureRandomBytes(16).toString('hex') };
    return { ...renewed, mac: pendingMac(keyring, renewed).toString('hex') };
  });
  const rows = [...marker, ...again];
  await insertPendingRows(db.pool, rows);
  watchCommittedEntries(db.pool, rows);
  return rows.length;
}
