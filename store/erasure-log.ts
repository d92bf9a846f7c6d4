import { createHmac, timingSafeEqual } from 'node:crypto';
import { mkdir, open, readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import type { Keyring } from '../tokenizer/keyring.ts';
import { canonicalJson } from './canonical.ts';

/**
 * The erasure log: one JSON line per erasure in a file beside the database,
 * not in it, so that restoring an old backup can erase again every subject
 * erased since. A line contains the subject token and the erasure time, nothing
 * personal. Lines are chained: `hmac` = HMAC-SHA256(key, canonical JSON of the
 * other fields, `prev` included), with the key `derive('audit', 'erasure-log', keyVersion)`
 * of the keyring. The line format and the namespace must never change.
 */
const HMAC_NAMESPACE = 'erasure-log';
const GENESIS = '0'.repeat(64);

export interface ErasureLogEntry {
  seq: number;
  subjectToken: string;
  /** ISO 8601 time of the erasure. */
  erasedAt: string;
  keyVersion: number;
  /** Hex HMAC of the previous line; 64 zeros on the first line. */
  prev: string;
  hmac: string;
}

/** Append target of the vault, called inside each erasure transaction before it commits. */
export interface ErasureLogWriter {
  append(entry: { subjectToken: string; erasedAt: string }): Promise<void>;
}

export type ErasureLogVerification = { ok: true } | { ok: false; line: number; reason: string };

/** Path of the erasure log: `DOMICILE_ERASURE_LOG` when set, else `<dataDir>/erasure-log.jsonl`. */
export function erasureLogPath(dataDir: string, env: NodeJS.ProcessEnv = process.env): string {
  const configured = env['DOMICILE_ERASURE_LOG'];
  return configured !== undefined && configured !== '' ? resolve(configured) : join(dataDir, 'erasure-log.jsonl');
}

function entryHmac(keyring: Keyring, entry: Omit<ErasureLogEntry, 'hmac'>): string {
  const key = keyring.derive('audit', HMAC_NAMESPACE, entry.keyVersion);
  const canonical = canonicalJson({
    seq: entry.seq,
    subjectToken: entry.subjectToken,
    erasedAt: entry.erasedAt,
    keyVersion: entry.keyVersion,
    prev: entry.prev,
  });
  return createHmac('sha256', key).update(canonical, 'utf8').digest('hex');
}

/**
 * Opens the erasure log for appending. Appends of this process are serialized,
 * and each line is synced to disk before `append` resolves.
 * NOTE: the chain assumes one writing process per file. Give every process
 * that erases its own file (each has its own data folder by default).
 */
export async function openErasureLog(path: string, keyring: Keyring): Promise<ErasureLogWriter> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const { entries } = await readErasureLog(path, keyring);
  const last = entries.at(-1);
  let seq = last?.seq ?? 0;
  let prev = last?.hmac ?? GENESIS;
  let queue: Promise<void> = Promise.resolve();

  const write = async (input: { subjectToken: string; erasedAt: string }): Promise<void> => {
    const body = { seq: seq + 1, subjectToken: input.subjectToken, erasedAt: input.erasedAt, keyVersion: keyring.currentVersion, prev };
    const entry: ErasureLogEntry = { ...body, hmac: entryHmac(keyring, body) };
    const handle = await open(path, 'a', 0o600);
    try {
      await handle.write(`${JSON.stringify(entry)}\n`);
      await handle.sync();
    } finally {
      await handle.close();
    }
    seq = entry.seq;
    prev = entry.hmac;
  };

  return {
    append: (input) => {
      const next = queue.then(() => write(input));
      // A failed append fails its erasure; later appends still run.
      queue = next.catch(() => undefined);
      return next;
    },
  };
}

/**
 * Reads every line of the erasure log (none when the file is missing) and
 * checks the chain. Lines after a broken one are still returned, because
 * re-applying an erasure is always safe, while skipping one could revive a
 * subject. A line whose key version is not in the keyring cannot be checked
 * and counts as broken.
 */
export async function readErasureLog(
  path: string,
  keyring: Keyring,
): Promise<{ entries: ErasureLogEntry[]; verification: ErasureLogVerification }> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      return { entries: [], verification: { ok: true } };
    }
    throw error;
  }

  const entries: ErasureLogEntry[] = [];
  let verification: ErasureLogVerification = { ok: true };
  let prev = GENESIS;
  const lines = text.split('\n');
  for (const [index, line] of lines.entries()) {
    if (line === '') {
      continue;
    }
    const entry = parseEntry(line);
    if (entry === undefined) {
      verification = firstProblem(verification, index + 1, 'line is not a valid erasure log entry');
      continue;
    }
    entries.push(entry);
    const problem = checkEntry(keyring, entry, entries.length, prev);
    if (problem !== undefined) {
      verification = firstProblem(verification, index + 1, problem);
    }
    prev = entry.hmac;
  }
  return { entries, verification };
}

function firstProblem(current: ErasureLogVerification, line: number, reason: string): ErasureLogVerification {
  return current.ok ? { ok: false, line, reason } : current;
}

function checkEntry(keyring: Keyring, entry: ErasureLogEntry, expectedSeq: number, prev: string): string | undefined {
  if (entry.seq !== expectedSeq) {
    return 'line is out of sequence (a line was removed or moved)';
  }
  if (entry.prev !== prev) {
    return 'line does not follow the previous line (removed or reordered)';
  }
  if (!keyring.has(entry.keyVersion)) {
    return `key version ${entry.keyVersion} is not in the keyring`;
  }
  const { hmac, ...body } = entry;
  const expected = Buffer.from(entryHmac(keyring, body), 'hex');
  const actual = Buffer.from(hmac, 'hex');
  if (actual.length !== expected.length || !timingSafeEqual(actual, expected)) {
    return 'line was changed';
  }
  return undefined;
}

function parseEntry(line: string): ErasureLogEntry | undefined {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) {
    return undefined;
  }
  const entry = value as Partial<Record<keyof ErasureLogEntry, unknown>>;
  if (
    typeof entry.seq !== 'number' ||
    typeof entry.subjectToken !== 'string' ||
    typeof entry.erasedAt !== 'string' ||
    typeof entry.keyVersion !== 'number' ||
    typeof entry.prev !== 'string' ||
    typeof entry.hmac !== 'string'
  ) {
    return undefined;
  }
  return {
    seq: entry.seq,
    subjectToken: entry.subjectToken,
    erasedAt: entry.erasedAt,
    keyVersion: entry.keyVersion,
    prev: entry.prev,
    hmac: entry.hmac,
  };
}
