import { Writable } from 'node:stream';
import pino, { type Logger } from 'pino';
import type { Policy } from '../../policy/schema.ts';
import type { Database } from '../../store/database.ts';
import { createTestVault, type TestDatabase } from '../../store/testing.ts';
import { createTokenStore, type TokenStore } from '../../store/token-store.ts';
import type { Vault } from '../../store/vault.ts';
import type { Keyring } from '../../tokenizer/keyring.ts';

/** Everything a replication worker needs, on a fresh database and data folder. */
export interface ReplicationHarness {
  db: Database;
  vault: Vault;
  tokens: TokenStore;
  keyring: Keyring;
  policy: Policy;
  /** Temporary folder that relative folder targets resolve against; removed on close. */
  dataDir: string;
  /** Logger for the worker; it keeps every line for `logLines`. */
  logger: Logger;
  /** Every log line written so far, parsed. */
  logLines(): Array<Record<string, unknown>>;
  close(): Promise<void>;
}

/** Opens a fresh migrated database of `database` with a vault for `policy`. */
export async function openReplicationHarness(database: TestDatabase, policy: Policy): Promise<ReplicationHarness> {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      lines.push(...chunk.toString('utf8').split('\n').filter((line) => line !== ''));
      callback();
    },
  });
  const logger = pino({ level: 'debug' }, sink);

  const db = await database.open();
  const { vault, keys, keyring } = await createTestVault(db, policy);

  const tokens = createTokenStore({ db, policy, keys, keyring, logger });

  return {
    db,
    vault,
    tokens,
    keyring,
    policy,
    dataDir: db.dataDir,
    logger,
    logLines: () => lines.map((line) => JSON.parse(line) as Record<string, unknown>),
    async close() {
      await keys.close();
      await db.close();
    },
  };
}
