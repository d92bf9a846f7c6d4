import { Option, type Command } from 'commander';
import { DomicileError } from '../policy/index.ts';
import { startKekMigration } from '../store/kek-migration.ts';
import type { KeyProviderKind } from '../tokenizer/keys/routing.ts';
import type { Config } from './config.ts';
import { followRewrapJob } from './rewrap-progress.ts';
import { withStore } from './with-store.ts';

/** Adds `domicile keys migrate`, under the `keys` command if another module made it. */
export function registerKeyMigrationCommand(program: Command): void {
  const keys = program.commands.find((command) => command.name() === 'keys') ?? program.command('keys').description('manage key encryption keys');

  keys
    .command('migrate')
    .description(
      'move every data key and tokenization secret to another key provider (the local key file or AWS KMS) in a resumable job that the worker role runs; ' +
        'the target must be DOMICILE_KEY_PROVIDER or DOMICILE_SECONDARY_KEY_PROVIDER, and running processes wrap new keys with it within one maintenance interval',
    )
    .addOption(new Option('--to <provider>', 'key provider that wraps every key afterwards').choices(['local', 'aws-kms']).makeOptionMandatory())
    .option('--no-wait', 'return once the job is queued instead of waiting for the worker to finish it')
    .action(async (options: { to: KeyProviderKind; wait: boolean }) => {
      await withStore(
        async ({ config, db, keys: provider, logger }) => {
          checkTargetConfigured(config, options.to);
          const { job, previousVersion, kekVersion } = await startKekMigration(db, provider, options.to);
          if (job === undefined) {
            console.log(`every key is already wrapped with ${kekVersion}; nothing to migrate`);
            return;
          }
          console.log(`new keys are wrapped with ${kekVersion} (was ${previousVersion}); migration job ${job.id} queued for ${job.total} data keys`);
          if (!options.wait) {
            return;
          }
          const done = await followRewrapJob({ db, keys: provider, job, logger, again: `domicile keys migrate --to ${options.to}` });
          console.log(`migration job ${job.id} completed: ${done.done} data keys rewrapped with ${kekVersion}; check domicile keys status before removing the old provider from the configuration`);
        },
        { createLocalKeyFile: options.to === 'local' },
      );
    });
}

/** Rejects a target that the configuration does not name, because the running processes could not unwrap what the job wraps. */
function checkTargetConfigured(config: Config, to: KeyProviderKind): void {
  if (config.keyProvider === to || config.secondaryKeyProvider === to) {
    return;
  }
  const kmsSettings = to === 'aws-kms' ? ' with DOMICILE_KMS_KEY_ID and DOMICILE_KMS_REGION' : '';
  throw new DomicileError(
    'invalid_request',
    `keys migrate --to ${to} needs ${to} as a key provider: set DOMICILE_SECONDARY_KEY_PROVIDER=${to}${kmsSettings} on every process, restart them, then run the command again`,
  );
}
