import { createHmac, timingSafeEqual } from 'node:crypto';
import { mkdir, open, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Keyring } from '../tokenizer/keyring.ts';
import { canonicalJson, type CanonicalValue } from './canonical.ts';

/**
 * An append-only file of JSON lines chained by keyed hashes, kept outside the
 * database. Every line has `seq` (1, 2, ...), `keyVersion`, `prev` (the
 * previous line's `hmac`, 64 zeros on the first line), the payload fields and
 * `hmac` = HMAC-SHA256(key, canonical JSON of every other field), with the key
 * `derive('audit', namespace, keyVersion)` of the keyring. Stored lines
 * depend on this form: never change it.
 */
const GENESIS = '0'.repeat(64);

export type ChainPayload = Readonly<Record<string, CanonicalValue>>;

export type ChainedLine<P extends ChainPayload> = P & {
  seq: number;
  keyVersion: number;
  prev: string;
  hmac: string;
};

export type ChainVerification = { ok: true } | { ok: false; line: number; reason: string };

export interface ChainedFileFormat<P extends ChainPayload> {
  /** Keyring namespace of the line key. */
  namespace: string;
  /** Name of one line in messages, such as `erasure log entry`. */
  lineName: string;
  /** Picks the payload fields out of a parsed line, or undefined when one is missing or has the wrong type. */
  parsePayload(value: Readonly<Record<string, unknown>>): P | undefined;
}

export interface ChainedFileWriter<P extends ChainPayload> {
  /** Appends one line, synced to disk before the promise resolves; appends of this process run one at a time. */
  append(payload: P): Promise<ChainedLine<P>>;
  /** The last line written or read at open, if any. */
  last(): ChainedLine<P> | undefined;
  /** Result of checking the lines that were in the file at open. */
  readonly verification: ChainVerification;
}

function lineHmac(keyring: Keyring, namespace: string, body: Readonly<Record<string, CanonicalValue>> & { keyVersion: number }): string {
  const key = keyring.derive('audit', namespace, body.keyVersion);
  return createHmac('sha256', key).update(canonicalJson(body), 'utf8').digest('hex');
}

/**
 * Opens a chained file for appending, continuing the chain of the lines
 * already in it.
 * NOTE: the chain assumes one writing process per file, because each process
 * keeps the last line in memory.
 */
export async function openChainedFile<P extends ChainPayload>(
  path: string,
  keyring: Keyring,
  format: ChainedFileFormat<P>,
): Promise<ChainedFileWriter<P>> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const { lines, verification } = await readChainedFile(path, keyring, format);
  let last = lines.at(-1);
  let queue: Promise<unknown> = Promise.resolve();

  const write = async (payload: P): Promise<ChainedLine<P>> => {
    const body = { ...payload, seq: (last?.seq ?? 0) + 1, keyVersion: keyring.currentVersion, prev: last?.hmac ?? GENESIS };
    const line = { ...body, hmac: lineHmac(keyring, format.namespace, body) } as ChainedLine<P>;
    const handle = await open(path, 'a', 0o600);
    try {
      await handle.write(`${JSON.stringify(line)}\n`);
      await handle.sync();
    } finally {
      await handle.close();
    }
    last = line;
    return line;
  };

  return {
    append: (payload) => {
      const next = queue.then(() => write(payload));
      // A failed append fails only its caller; later appends still run.
      queue = next.catch(() => undefined);
      return next;
    },
    last: () => last,
    verification,
  };
}

/**
 * Reads every line of a chained file (none when the file is missing) and
 * checks the chain. Lines after a broken one are still returned, and the
 * verification names the first broken line (1-based line number of the file).
 * A line whose key version is not in the keyring cannot be checked and counts
 * as broken.
 */
export async function readChainedFile<P extends ChainPayload>(
  path: string,
  keyring: Keyring,
  format: ChainedFileFormat<P>,
): Promise<{ lines: Array<ChainedLine<P>>; verification: ChainVerification }> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      return { lines: [], verification: { ok: true } };
    }
    throw error;
  }

  const lines: Array<ChainedLine<P>> = [];
  let verification: ChainVerification = { ok: true };
  let prev = GENESIS;
  for (const [index, raw] of text.split('\n').entries()) {
    if (raw === '') {
      continue;
    }
    const line = parseLine(raw, format);
    if (line === undefined) {
      verification = firstProblem(verification, index + 1, `line is not a valid ${format.lineName}`);
      continue;
    }
    lines.push(line);
    const problem = checkLine(keyring, format.namespace, line, lines.length, prev);
    if (problem !== undefined) {
      verification = firstProblem(verification, index + 1, problem);
    }
    prev = line.hmac;
  }
  return { lines, verification };
}

function firstProblem(current: ChainVerification, line: number, reason: string): ChainVerification {
  return current.ok ? { ok: false, line, reason } : current;
}

function checkLine<P extends ChainPayload>(keyring: Keyring, namespace: string, line: ChainedLine<P>, expectedSeq: number, prev: string): string | undefined {
  if (line.seq !== expectedSeq) {
    return 'line is out of sequence (a line was removed or moved)';
  }
  if (line.prev !== prev) {
    return 'line does not follow the previous line (removed or reordered)';
  }
  if (!keyring.hasAuditKeys(line.keyVersion)) {
    return `key version ${line.keyVersion} is not in the keyring`;
  }
  const { hmac, ...body } = line;
  const expected = Buffer.from(lineHmac(keyring, namespace, body as unknown as Record<string, CanonicalValue> & { keyVersion: number }), 'hex');
  const actual = Buffer.from(hmac, 'hex');
  if (actual.length !== expected.length || !timingSafeEqual(actual, expected)) {
    return 'line was changed';
  }
  return undefined;
}

function parseLine<P extends ChainPayload>(text: string, format: ChainedFileFormat<P>): ChainedLine<P> | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return undefined;
  }
  const fields = value as Record<string, unknown>;
  const { seq, keyVersion, prev, hmac } = fields;
  if (typeof seq !== 'number' || typeof keyVersion !== 'number' || typeof prev !== 'string' || typeof hmac !== 'string') {
    return undefined;
  }
  const payload = format.parsePayload(fields);
  if (payload === undefined) {
    return undefined;
  }
  return { ...payload, seq, keyVersion, prev, hmac } as ChainedLine<P>;
}
