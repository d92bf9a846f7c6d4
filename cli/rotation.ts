import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import { DomicileError } from '../policy/index.ts';
import { getJob } from '../store/jobs.ts';
import { createKekRewrapRunner, kekStatus, retireKekVersion, startKekRotation } from '../store/kek-rotation.ts';
import { startProgress } from './progress.ts';
import { withStore } from './with-store.ts';

const POLL_MS = 500;

/** Adds `domicile keys rotate|status|retire`, under the `keys` command if another module made it. */
export function registerRotationCommands(program: Command): void {
  const keys = program.commands.find((command) => command.name() === 'keys') ?? program.command('keys').description('manage key encryption keys');

  keys
    .command('rotate')
    .description('create a new KEK version (local key file) or adopt the configured KMS key, and queue a job that rewraps every data key and tokenization secret; the worker role runs it')
    .option('--no-wait', 'return once the job is queued instead of waiting for the worker to finish it')
    .action(async (options: { wait: boolean }) => {
      await withStore(async ({ db, keys: provider, logger }) => {
        const { job, previousVersion, kekVersion } = await startKekRotation(db, provider);
        console.log(`new keys are wrapped with ${kekVersion} (was ${previousVersion}); rewrap job ${job.id} queued for ${job.total} data keys`);
        if (!options.wait) {
          return;
        }
        const progress = startProgress('rewrap', 'data keys');
        // The embedded database admits one process, so no worker can run beside this command: run the job here.
        const runner = db.kind === 'pglite' ? createKekRewrapRunner({ db, keys: provider, openKeys: () => Promise.reject(new DomicileError('internal', 'the key provider of this command does not wrap with the rotated version')), logger }) : undefined;
        if (runner === undefined) {
          console.log('waiting for a worker (domicile start, role all or worker) to run the job; press Ctrl+C to stop waiting, the job goes on');
        }
        try {
          for (;;) {
            await runner?.runOnce();
            const current = await getJob(db, job.id);
            if (current === undefined) {
              throw new DomicileError('not_found', `rewrap job ${job.id} disappeared`);
            }
            progress.update(current.done, current.total);
            if (current.state === 'completed') {
              progress.stop();
              console.log(`rewrap job ${job.id} completed: ${current.done} data keys rewrapped`);
              return;
            }
            if (current.state === 'failed') {
              throw new DomicileError('internal', `rewrap job ${job.id} failed (${current.lastErrorCode ?? 'unknown'}); run domicile keys rotate again`);
            }
            await sleep(POLL_MS);
          }
        } finally {
          progress.stop();
        }
      });
    });

  keys
    .command('status')
    .description('show how many data keys and tokenization secrets each KEK version still wraps')
    .action(async () => {
      await withStore(async ({ db, keys: provider }) => {
        console.log(`current KEK version: ${provider.currentVersion()}`);
        for (const entry of await kekStatus(db)) {
          const retired = entry.retired ? ' (retired)' : '';
          console.log(`${entry.kekVersion}${retired}: ${entry.dataKeys} data keys, ${entry.tokenizationSecrets} tokenization secrets`);
        }
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
