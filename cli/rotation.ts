import type { Command } from 'commander';
import type { Database } from '../store/database.ts';
import { kekProviderStatus } from '../store/kek-migration.ts';
import { latestRewrapJob, retireKekVersion, startKekRotation } from '../store/kek-rotation.ts';
import type { RoutingKeyProvider } from '../tokenizer/keys/routing.ts';
import { followRewrapJob } from './rewrap-progress.ts';
import { withKeys, withStore } from './with-store.ts';

const PROVIDER_NAMES = { local: 'local key file', 'aws-kms': 'AWS KMS' } as const;

/** Adds `domicile keys rotate|status|retire`, under the `keys` command if another module made it. */
export function registerRotationCommands(program: Command): void {
  const keys = program.commands.find((command) => command.name() === 'keys') ?? program.command('keys').description('manage key encryption keys');

  keys
    .command('rotate')
    .description('create a new KEK version (local key file) or adopt the configured KMS key, and queue a job that rewraps every data key and tokenization secret; the worker role runs it')
    .option('--no-wait', 'return once the job is queued instead of waiting for the worker to finish it')
    .action(async (options: { wait: boolean }) => {
      await withStore(async ({ db, keys: provider, logger }) => {
        // The member that wraps new keys rotates: the local key file adds a version, AWS KMS adopts its configured key.
        const { job, previousVersion, kekVersion } = await startKekRotation(db, provider.wrapProvider());
        console.log(`new keys are wrapped with ${kekVersion} (was ${previousVersion}); rewrap job ${job.id} queued for ${job.total} data keys`);
        if (!options.wait) {
          return;
        }
        const done = await followRewrapJob({ db, keys: provider, job, logger, again: 'domicile keys rotate' });
        console.log(`rewrap job ${job.id} completed: ${done.done} data keys rewrapped`);
      });
    });

  keys
    .command('status')
    .description('show how many data keys and tokenization secrets each key provider and KEK version still wraps, and the newest rewrap or migration job')
    .action(async () => {
      await withKeys(async ({ db, keys: provider }) => {
        await printKeyStatus(db, provider);
      });
    });

  keys
    .command('retire')
    .description('mark a KEK version as retired; rejected while any data key or tokenization secret is still wrapped by it')
    .requiredOption('--version <kekVersion>', 'KEK version, such as local:1')
    .action(async (options: { version: string }) => {
      await withStore(async ({ db, keys: provider }) => {
        await retireKekVersion(db, provider, options.version);
        console.log(`retired KEK version ${options.version}; remove its key from the key file or disable it in KMS`);
      });
    });
}

/** Prints the counts per provider and KEK version, and the state of the newest rewrap or migration job. */
async function printKeyStatus(db: Database, provider: RoutingKeyProvider): Promise<void> {
  console.log(`current KEK version: ${provider.currentVersion()} (${PROVIDER_NAMES[provider.kind]})`);
  for (const entry of await kekProviderStatus(db, provider)) {
    const name = entry.provider === undefined ? 'unknown provider' : PROVIDER_NAMES[entry.provider];
    const empty = entry.dataKeys === 0 && entry.tokenizationSecrets === 0 && entry.provider !== provider.kind;
    const removable = empty ? ' (wraps no key: it can be removed from the configuration)' : '';
    console.log(`${name}: ${entry.dataKeys} data keys, ${entry.tokenizationSecrets} tokenization secrets${removable}`);
    for (const version of entry.versions) {
      const retired = version.retired ? ' (retired)' : '';
      const missing = version.canUnwrap ? '' : ' (no configured key provider can unwrap it)';
      console.log(`  ${version.kekVersion}${retired}: ${version.dataKeys} data keys, ${version.tokenizationSecrets} tokenization secrets${missing}`);
    }
  }
  const job = await latestRewrapJob(db);
  if (job !== undefined) {
    const from = job.params['fromProvider'];
    const to = job.params['toProvider'];
    const kind = typeof from === 'string' && typeof to === 'string' ? `migration from ${from} to ${to}` : 'rotation';
    const error = job.lastErrorCode === null ? '' : `, last error ${job.lastErrorCode}`;
    console.log(`newest rewrap job ${job.id} (${kind} to ${String(job.params['targetKekVersion'])}): ${job.state}, ${job.done}/${job.total} data keys${error}`);
  }
}
