import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import type { Keyring } from '../tokenizer/keyring.ts';
import { openChainedFile, readChainedFile, type ChainedFileFormat, type ChainedFileWriter, type ChainedLine } from './chained-file.ts';
import type { Database } from './database.ts';

/**
 * Audit anchors: copies of the audit chain head (sequence number, hash, time)
 * in a file outside the database. The chain in the database shows a changed
 * row, but someone who deletes the last rows and moves `audit_head` back
 * leaves a shorter chain that verifies. An anchor of a later head shows that
 * rows are gone. Lines are chained as described in store/chained-file.ts with
 * the key `derive('audit', 'audit-anchor', keyVersion)`. The line format and
 * the namespace must never change.
 */
type AnchorPayload = {
  /** Sequence number of the audit row that was the head. */
  headSeq: number;
  /** Hex `hash` of that audit row. */
  headHash: string;
  /** ISO 8601 time the anchor was written. */
  anchoredAt: string;
};

export type AuditAnchor = ChainedLine<AnchorPayload>;

const FORMAT: ChainedFileFormat<AnchorPayload> = {
  namespace: 'audit-anchor',
  lineName: 'audit anchor',
  parsePayload: (value) => {
    const { headSeq, headHash, anchoredAt } = value;
    if (typeof headSeq !== 'number' || !Number.isSafeInteger(headSeq) || typeof headHash !== 'string' || typeof anchoredAt !== 'string') {
      return undefined;
    }
    return { headSeq, headHash, anchoredAt };
  },
};

export type AnchorVerification =
  | { ok: true; anchors: number; lastSeq: number | undefined }
  | { ok: false; seq?: number; reason: string };

/** Path of the anchor file: `DOMICILE_AUDIT_ANCHOR_FILE` when set, else `<dataDir>/audit-anchors.jsonl`. */
export function auditAnchorPath(dataDir: string, env: NodeJS.ProcessEnv = process.env): string {
  const configured = env['DOMICILE_AUDIT_ANCHOR_FILE'];
  return configured !== undefined && configured !== '' ? resolve(configured) : join(dataDir, 'audit-anchors.jsonl');
}

export interface AuditAnchorer {
  /**
   * Appends the current audit head to the anchor file unless it equals the
   * last anchor. Logs an error when the row of the last anchor is gone or
   * changed, because then the tail of the chain was removed or rewritten.
   * Returns the new anchor, or undefined when the head has not moved.
   */
  anchorOnce(): Promise<AuditAnchor | undefined>;
}

/** Opens the anchor file for appending; one writing process per file (see openChainedFile). */
export async function openAuditAnchorer(options: { db: Database; keyring: Keyring; path: string; logger: Logger }): Promise<AuditAnchorer> {
  const file: ChainedFileWriter<AnchorPayload> = await openChainedFile(options.path, options.keyring, FORMAT);
  const { db, logger } = options;
  if (!file.verification.ok) {
    logger.error(
      { event: 'audit.anchor_file_broken', line: file.verification.line },
      `the audit anchor file is broken at line ${file.verification.line}: ${file.verification.reason}; new anchors continue after its last line`,
    );
  }

  return {
    anchorOnce: async () => {
      const last = file.last();
      const head = await db.pool.query<{ seq: string; hash: Buffer; anchored_hash: Buffer | null }>(
        'SELECT h.seq, h.hash, (SELECT a.hash FROM audit_log a WHERE a.seq = $1) AS anchored_hash FROM audit_head h WHERE h.id = 1',
        [last?.headSeq ?? 0],
      );
      const row = head.rows[0];
      if (row === undefined) {
        throw new Error('audit_head row is missing; run the migrations');
      }
      const seq = Number(row.seq);
      const hash = row.hash.toString('hex');
      if (last !== undefined && last.headSeq > 0 && row.anchored_hash?.toString('hex') !== last.headHash) {
        logger.error({ event: 'audit.anchor_mismatch', seq: last.headSeq }, 'the audit row of the last anchor is missing or changed: the end of the audit log was removed or rewritten');
      }
      if (last !== undefined && last.headSeq === seq && last.headHash === hash) {
        return undefined;
      }
      const anchor = await file.append({ headSeq: seq, headHash: hash, anchoredAt: new Date().toISOString() });
      logger.debug({ event: 'audit.anchored', seq }, 'anchored the audit head');
      return anchor;
    },
  };
}

/**
 * Checks the audit rows in the database against every anchor of the file:
 * each anchored sequence number must still exist with the anchored hash.
 * Run it together with `verifyAudit`, which checks the chain between rows; an
 * intact chain that contains the last anchor's row has lost nothing before
 * that anchor was written. A missing file has no anchors and verifies.
 */
export async function verifyAuditAnchors(db: Database, keyring: Keyring, path: string): Promise<AnchorVerification> {
  const { lines, verification } = await readChainedFile(path, keyring, FORMAT);
  if (!verification.ok) {
    return { ok: false, reason: `anchor file is broken at line ${verification.line}: ${verification.reason}` };
  }
  const anchored = lines.filter((line) => line.headSeq > 0);
  const stored = await db.pool.query<{ seq: string; hash: Buffer }>('SELECT seq, hash FROM audit_log WHERE seq = ANY($1::bigint[])', [
    anchored.map((line) => line.headSeq),
  ]);
  const hashes = new Map(stored.rows.map((row) => [Number(row.seq), row.hash.toString('hex')]));

  for (const line of anchored) {
    const hash = hashes.get(line.headSeq);
    if (hash === undefined) {
      return { ok: false, seq: line.headSeq, reason: `anchored entry ${line.headSeq} (anchored at ${line.anchoredAt}) is missing: the end of the audit log was removed` };
    }
    if (hash !== line.headHash) {
      return { ok: false, seq: line.headSeq, reason: `anchored entry ${line.headSeq} (anchored at ${line.anchoredAt}) has another hash: the audit log was rewritten from there` };
    }
  }
  return { ok: true, anchors: lines.length, lastSeq: lines.at(-1)?.headSeq };
}
