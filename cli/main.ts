import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { Command, Option } from 'commander';
import { DomicileError } from '../policy/index.ts';
import { loadConfig } from './config.ts';
import { registerCredentialCommands } from './credentials.ts';
import { registerTokenizationKeyCommands } from './tokenization-keys.ts';
import { registerKeyCommands } from './keys.ts';
import { registerBackupCommands } from './backup.ts';
import { registerRotationCommands } from './rotation.ts';
import { registerKeyMigrationCommand } from './key-migration.ts';
import { createLogger } from './logger.ts';
import { startDomicile, type Role } from './start.ts';
import { withStore } from './with-store.ts';
import { missingAuditEntries, rejectedAuditEntries, verifyAudit } from '../store/audit.ts';
import { countPendingOfOtherVersions, pendingAuditStats, sealAudit, type RejectedEntry } from '../store/audit-seal.ts';
import { auditAnchorPath, verifyAuditAnchors } from '../store/audit-anchor.ts';
import { migrate } from '../store/migrate.ts';

/** Age after which a pending audit entry counts as stuck rather than on its way to a seal. */
const STUCK_PENDING_SECONDS = 60;
/** Sequence numbers listed by `audit verify` before it gives the count of the rest. */
const LISTED_ENTRIES = 20;

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
  .description(
    'check the hash chain of the audit log and the anchors of its head; exits 1 and names the first broken entry if one was changed, removed or reordered, or if the end of the log was removed or rewritten',
  )
  .option('--anchor-file <path>', 'anchor file to check against, such as a copy kept elsewhere (default: DOMICILE_AUDIT_ANCHOR_FILE or <data dir>/audit-anchors.jsonl)')
  .action(async (options: { anchorFile?: string }) => {
    const anchorFile = options.anchorFile === undefined ? auditAnchorPath(loadConfig().dataDir) : resolve(options.anchorFile);
    if (options.anchorFile !== undefined && !existsSync(anchorFile)) {
      throw new DomicileError('invalid_request', `anchor file not found: ${anchorFile}`);
    }
    await withStore(async ({ db, keyring }) => {
      // Entries that a stopped process wrote but did not chain are chained first, so they are checked too.
      let sealed = 0;
      const rejectedNow: RejectedEntry[] = [];
      try {
        sealed = await sealAudit(db, keyring, (entry) => rejectedNow.push(entry));
      } catch (error) {
        console.error(`chaining pending audit entries failed (${(error as Error).message}); checking the chained log as it is`);
        process.exitCode = 1;
      }
      const result = await verifyAudit(db, keyring);
      if (!result.ok) {
        console.error(`audit log broken at entry ${result.seq}: ${result.reason}`);
        process.exitCode = 1;
        return;
      }
      const anchors = await verifyAuditAnchors(db, keyring, anchorFile);
      if (!anchors.ok) {
        console.error(anchors.seq === undefined ? `audit anchors: ${anchors.reason}` : `audit log broken at entry ${anchors.seq}: ${anchors.reason}`);
        process.exitCode = 1;
        return;
      }
      for (const reason of new Set(rejectedNow.map((entry) => entry.reason))) {
        console.error(`pending audit entries rejected while chaining them now: ${reason}`);
      }
      const rejected = await rejectedAuditEntries(db);
      if (rejected.length > 0) {
        console.error(`audit log chain intact, but ${rejected.length} entries stand in for pending entries that were changed, copied or written without the keyring: ${listSeqs(rejected)}`);
        process.exitCode = 1;
      }
      const missing = await missingAuditEntries(db);
      if (missing.length > 0) {
        console.error(`audit log chain intact, but ${missing.length} entries record pending entries that were deleted before their seal and written again by their process: ${listSeqs(missing)}`);
        process.exitCode = 1;
      }
      const foreign = await countPendingOfOtherVersions(db, keyring.auditVersions());
      if (foreign > 0) {
        console.error(`${foreign} audit entries wait in audit_pending under a key version that is not in this keyring, so no seal here can chain them`);
        process.exitCode = 1;
      }
      const pending = await pendingAuditStats(db, keyring.auditVersions());
      if (pending.count > 0 && pending.oldestAgeSeconds > STUCK_PENDING_SECONDS) {
        console.error(
          `${pending.count} audit entries wait in audit_pending, the oldest for ${Math.round(pending.oldestAgeSeconds)} s: sealing fails (see the gateway log)`,
        );
        process.exitCode = 1;
      }
      const checked = anchors.anchors === 0 ? `no anchors in ${anchorFile}` : `${anchors.anchors} anchors checked, the last at entry ${anchors.lastSeq}`;
      const chained = sealed === 0 ? '' : ` (${sealed} pending entries chained first)`;
      const verdict = process.exitCode === 1 ? 'audit log chain intact, with the problems above' : 'audit log intact';
      console.log(`${verdict}: ${result.count} entries verified${chained}, ${checked}`);
    });
  });

/** Lists the first LISTED_ENTRIES sequence numbers and counts the rest. */
function listSeqs(seqs: readonly number[]): string {
  const rest = seqs.length - LISTED_ENTRIES;
  return seqs.slice(0, LISTED_ENTRIES).join(', ') + (rest > 0 ? `, and ${rest} more` : '');
}

registerCredentialCommands(program);
registerKeyCommands(program);
// After registerKeyCommands, so these join its `keys` command.
registerTokenizationKeyCommands(program);
registerRotationCommands(program);
registerKeyMigrationCommand(program);
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
