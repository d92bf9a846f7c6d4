import { Command, Option } from 'commander';
import { DomicileError } from '../policy/index.ts';
import { loadConfig } from './config.ts';
import { registerCredentialCommands } from './credentials.ts';
import { registerTokenizationKeyCommands } from './tokenization-keys.ts';
import { registerKeyCommands } from './keys.ts';
import { registerBackupCommands } from './backup.ts';
import { registerRotationCommands } from './rotation.ts';
import { createLogger } from './logger.ts';
import { startDomicile, type Role } from './start.ts';
import { withStore } from './with-store.ts';
import { verifyAudit } from '../store/audit.ts';
import { migrate } from '../store/migrate.ts';

const program = new Command('domicile')
  .description('In-country data residency gateway: stores personal data locally and sends tokens abroad')
  .showHelpAfterError();

program
  .command('start')
  .description('start the gateway listeners, the replication worker, or both (settings come from DOMICILE_* environment variables)')
  .addOption(new Option('--role <role>', 'what this process runs').choices(['all', 'gateway', 'worker']).default('all'))
  .action(async (options: { role: Role }) => {
    const config = loadConfig();
    const logger = createLogger(config.logLevel);
    const running = await startDomicile(config, options.role, logger);

    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      logger.info({ event: 'shutdown.started', signal }, 'shutting down');
      running.close().then(
        () => process.exit(0),
        () => process.exit(1),
      );
    };
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGTERM', () => stop('SIGTERM'));
  });

program
  .command('migrate')
  .description('apply pending database migrations and exit')
  .action(async () => {
    await withStore(async ({ db, logger }) => {
      await migrate(db, logger);
    });
  });

const audit = program.command('audit').description('inspect the tamper-evident audit log');
audit
  .command('verify')
  .description('check the hash chain of the audit log; exits 1 and names the first broken entry if it was changed, removed or reordered')
  .action(async () => {
    await withStore(async ({ db, keyring }) => {
      const result = await verifyAudit(db, keyring);
      if (result.ok) {
        console.log(`audit log intact: ${result.count} entries verified`);
      } else {
        console.error(`audit log broken at entry ${result.seq}: ${result.reason}`);
        process.exitCode = 1;
      }
    });
  });

registerCredentialCommands(program);
registerKeyCommands(program);
// After registerKeyCommands, so these join its `keys` command.
registerTokenizationKeyCommands(program);
registerRotationCommands(program);
registerBackupCommands(program);

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof DomicileError) {
    console.error(`domicile: ${error.message}`);
  } else {
    console.error('domicile: failed:', error);
  }
  process.exitCode = 1;
}
