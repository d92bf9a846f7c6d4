import type { Logger } from 'pino';
import { openDatabase, type Database } from '../store/database.ts';
import { loadKeyring } from '../store/keyring-store.ts';
import { migrate } from '../store/migrate.ts';
import type { Keyring } from '../tokenizer/keyring.ts';
import type { RoutingKeyProvider } from '../tokenizer/keys/routing.ts';
import { loadConfig, type Config } from './config.ts';
import { checkStoredKekVersions, openKeyProvider, useNewestJobVersion } from './key-provider.ts';
import { createLogger } from './logger.ts';

export interface KeysContext {
  config: Config;
  db: Database;
  /** The configured providers, wrapping with the target of the newest rotation or migration when they can. */
  keys: RoutingKeyProvider;
  logger: Logger;
}

export interface StoreContext extends KeysContext {
  keyring: Keyring;
}

/**
 * Opens the configured database and key providers for one CLI command, then
 * closes them, also on failure. Unlike `withStore` it neither checks the stored
 * KEK versions nor unwraps the keyring, so `keys status` still reports when a
 * provider is missing.
 */
export async function withKeys(run: (context: KeysContext) => Promise<void>, options: { createLocalKeyFile?: boolean } = {}): Promise<void> {
  const config = loadConfig();
  const logger = createLogger(process.env.DOMICILE_LOG_LEVEL ?? 'warn');
  const keys = await openKeyProvider(config, options);
  try {
    const db = await openDatabase({ ...(config.databaseUrl === undefined ? {} : { databaseUrl: config.databaseUrl }), dataDir: config.dataDir, logger });
    try {
      await migrate(db, logger);
      await useNewestJobVersion(db, keys);
      await run({ config, db, keys, logger });
    } finally {
      await db.close();
    }
  } finally {
    await keys.close();
  }
}

/** Opens the configured database and keys for one CLI command, checks that every stored KEK version can be unwrapped, and loads the keyring. */
export async function withStore(run: (context: StoreContext) => Promise<void>, options: { createLocalKeyFile?: boolean } = {}): Promise<void> {
  await withKeys(async (context) => {
    await checkStoredKekVersions(context.db, context.keys, context.config);
    const keyring = await loadKeyring(context.db, context.keys);
    await run({ ...context, keyring });
  }, options);
}
