import { join, resolve } from 'node:path';
import type { Keyring } from '../tokenizer/keyring.ts';
import { openChainedFile, readChainedFile, type ChainedFileFormat, type ChainedLine, type ChainVerification } from './chained-file.ts';

/**
 * The erasure log: one JSON line per erasure in a file beside the database,
 * not in it, so that restoring an old backup can erase again every subject
 * erased since. A line contains the subject token and the erasure time, nothing
 * personal. Lines are chained as described in store/chained-file.ts, with the
 * key `derive('audit', 'erasure-log', keyVersion)` of the keyring. The line
 * format and the namespace must never change.
 */
type ErasurePayload = {
  subjectToken: string;
  /** ISO 8601 time of the erasure. */
  erasedAt: string;
};

export type ErasureLogEntry = ChainedLine<ErasurePayload>;

/** Append target of the vault, called inside each erasure transaction before it commits. */
export interface ErasureLogWriter {
  append(entry: { subjectToken: string; erasedAt: string }): Promise<void>;
}

export type ErasureLogVerification = ChainVerification;

const FORMAT: ChainedFileFormat<ErasurePayload> = {
  namespace: 'erasure-log',
  lineName: 'erasure log entry',
  parsePayload: (value) => {
    const { subjectToken, erasedAt } = value;
    return typeof subjectToken === 'string' && typeof erasedAt === 'string' ? { subjectToken, erasedAt } : undefined;
  },
};

/** Path of the erasure log: `DOMICILE_ERASURE_LOG` when set, else `<dataDir>/erasure-log.jsonl`. */
export function erasureLogPath(dataDir: string, env: NodeJS.ProcessEnv = process.env): string {
  const configured = env['DOMICILE_ERASURE_LOG'];
  return configured !== undefined && configured !== '' ? resolve(configured) : join(dataDir, 'erasure-log.jsonl');
}

/**
 * Opens the erasure log for appending. Appends of this process are serialized,
 * and each line is synced to disk before `append` resolves.
 * NOTE: the chain assumes one writing process per file. Give every process
 * that erases its own file (each has its own data folder by default).
 */
export async function openErasureLog(path: string, keyring: Keyring): Promise<ErasureLogWriter> {
  const file = await openChainedFile(path, keyring, FORMAT);
  return {
    append: async (input) => {
      await file.append({ subjectToken: input.subjectToken, erasedAt: input.erasedAt });
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
  const { lines, verification } = await readChainedFile(path, keyring, FORMAT);
  return { entries: lines, verification };
}
