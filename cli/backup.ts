import path from 'node:path';
import type { Command } from 'commander';
import { loadPolicyFile } from '../policy/index.ts';
import { writeBackup } from '../store/backup.ts';
import { openDatabase } from '../store/database.ts';
import { erasureLogPath, readErasureLog } from '../store/erasure-log.ts';
import { loadKeyring } from '../store/keyring-store.ts';
import { reapplyErasures, restoreBackup } from '../store/restore.ts';
import { loadConfig } from './config.ts';
import { openKeyProvider } from './key-provider.ts';
import { createLogger } from './logger.ts';
import { startProgress } from './progress.ts';
import { withStore } from './with-store.ts';

/** Adds `domicile backup` and `domicile restore`. */
export function registerBackupCommands(program: Command): void {
  program
    .command('backup')
    .description('write an encrypted backup of the in-country database (AES-256-GCM under a backup key that the KEK wraps); back up the key file or KMS key apart from it')
    .requiredOption('--out <file>', 'backup file to create')
    .action(async (options: { out: string }) => {
      const out = path.resolve(options.out);
      await withStore(async ({ db, keys }) => {
        const progress = startProgress('backup', 'rows');
        try {
          const result = await writeBackup(db, keys, out, { onProgress: (done, total) => progress.update(done, total) });
          progress.stop();
          console.log(`wrote ${result.rows} rows of ${result.tables} tables to ${result.path}`);
        } finally {
          progress.stop();
        }
      });
    });

  program
    .command('restore')
    .description('restore a backup into an empty database, then erase again every subject of the erasure log, so a backup cannot bring an erased subject back')
    .requiredOption('--in <file>', 'backup file written by domicile backup')
    .option('--force', 'replace the contents of a database that is not empty', false)
    .action(async (options: { in: string; force: boolean }) => {
      await restoreCommand(path.resolve(options.in), options.force);
    });
}

async function restoreCommand(file: string, force: boolean): Promise<void> {
  const config = loadConfig();
  const logger = createLogger(process.env['DOMICILE_LOG_LEVEL'] ?? 'warn');
  const policy = loadPolicyFile(config.policyFile);
  const keys = await openKeyProvider(config);
  try {
    const db = await openDatabase({ ...(config.databaseUrl === undefined ? {} : { databaseUrl: config.databaseUrl }), dataDir: config.dataDir, logger });
    try {
      const progress = startProgress('restore', 'bytes');
      let restored;
      try {
        restored = await restoreBackup(db, keys, file, { force, logger, onProgress: (done, total) => progress.update(done, total) });
      } finally {
        progress.stop();
      }
      console.log(`restored ${restored.rows} rows of ${restored.tables} tables from ${file}`);

      // The keyring comes from the restored tokenization secrets, which also key the erasure log's HMACs.
      const keyring = await loadKeyring(db, keys);
      const logPath = erasureLogPath(config.dataDir);
      const { entries, verification } = await readErasureLog(logPath, keyring);
      if (!verification.ok) {
        console.error(`warning: erasure log ${logPath} is broken at line ${verification.line}: ${verification.reason}; every erasure in it is applied anyway`);
      }
      const erased = await reapplyErasures({ db, policy, keys, keyring, logger }, entries);
      console.log(`erased ${erased} subjects again from the erasure log ${logPath} (${entries.length} entries)`);
    } finally {
      await db.close();
    }
  } finally {
    await keys.close();
  }
}
