import type { Logger } from 'pino';
import { openDatabase, type Database } from '../store/database.ts';
import { loadKeyring } from '../store/keyring-store.ts';
import { migrate } from '../store/migrate.ts';
import type { Keyring } from '../tokenizer/keyring.ts';
import type { KeyProvider } from '../tokenizer/keys/provider.ts';
import { loadConfig } from './config.ts';
import { openKeyProvider } from './key-provider.ts';
import { createLogger } from './logger.ts';

export interface StoreContext {
  db: Database;
  keys: KeyProvider;
  keyring: Keyring;
  logger: Logger;
}

/** Opens the configured database and keys for one CLI command, then closes them, also on failure. */
export async function withStore(run: (context: StoreContext) => Promise<void>): Promise<void> {
  const config = loadConfig();
  const logger = createLogger(process.env.DOMICILE_LOG_LEVEL ?? 'warn');
  const keys = await openKeyProvider(config);
  try {
    const db = await openDatabase({ ...(config.databaseUrl === undefined ? {} : { databaseUrl: config.databaseUrl }), dataDir: config.dataDir, logger });
    try {
      await migrate(db, logger);
      const keyring = await loadKeyring(db, keys);
      await run({ db, keys, keyring, logger });
    } finally {
      await db.close();
    }
  } finally {
    await keys.close();
  }
}
