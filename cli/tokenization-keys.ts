import { setTimeout as sleep } from 'node:timers/promises';
import { InvalidArgumentError, type Command } from 'commander';
import { DomicileError, loadPolicyFile } from '../policy/index.ts';
import { appendAudit } from '../store/audit.ts';
import { withTransaction } from '../store/database.ts';
import { loadKeyring, rotateTokenizationSecret } from '../store/keyring-store.ts';
import { getJob } from '../store/jobs.ts';
import { countStaleCopies, createRetokenizeRunner, startRetokenize } from '../store/retokenize.ts';
import { retireTokenizationSecret, tokenizationKeyUsage } from '../store/tokenization-retire.ts';
import type { Actor } from '../store/types.ts';
import { loadConfig } from './config.ts';
import { startProgress } from './progress.ts';
import { withStore, type StoreContext } from './with-store.ts';

/**
 * Lease of the command's re-tokenize job, in milliseconds. Short, so that a
 * run stopped with Ctrl+C can be resumed by the next run within seconds.
 */
const RETOKENIZE_LEASE_MS = 10_000;
const RETOKENIZE_POLL_MS = 1000;

/** Actor of the audit entries that these commands write. */
const OPERATOR: Actor = { id: 'operator:cli', location: 'in-country' };

function positiveInteger(value: string): number {
  const parsed = Number(value);
  if (!/^[0-9]+$/.test(value) || !Number.isSafeInteger(parsed) || parsed < 1) {
    throw new InvalidArgumentError('must be a positive integer');
  }
  return parsed;
}

/**
 * Runs the re-tokenize job of the current key version in this process, with a
 * progress bar on a terminal. The job only writes outbox events, so it needs
 * the database and the policy but no keys; an interrupted run resumes at the
 * job's cursor.
 */
async function retokenize({ db, keyring, logger }: StoreContext): Promise<void> {
  const policy = loadPolicyFile(loadConfig().policyFile);
  const { job, resumed } = await startRetokenize(db, keyring.currentVersion);
  console.log(`${resumed ? 'resuming' : 'started'} re-tokenize job ${job.id} for key version ${keyring.currentVersion}: ${job.total} partial copies use an older version`);

  const progress = startProgress('retokenize', 'partial copies');
  const runner = createRetokenizeRunner({ db, policy, logger, leaseMs: RETOKENIZE_LEASE_MS, onProgress: (done, total) => progress.update(done, total) });
  try {
    for (;;) {
      const ran = await runner.runOnce();
      const current = await getJob(db, job.id);
      if (current === undefined) {
        throw new DomicileError('not_found', `re-tokenize job ${job.id} disappeared`);
      }
      progress.update(current.done, current.total);
      if (current.state === 'completed') {
        break;
      }
      if (current.state === 'failed') {
        throw new DomicileError('internal', `re-tokenize job ${job.id} failed (${current.lastErrorCode ?? 'unknown'}); run domicile keys retokenize again`);
      }
      if (ran === undefined) {
        // Another process holds the job's lease; it is taken over once the lease runs out.
        await sleep(RETOKENIZE_POLL_MS);
      }
    }
  } finally {
    progress.stop();
  }
  const completed = await getJob(db, job.id);
  const stale = await countStaleCopies(db, keyring.currentVersion);
  console.log(
    `re-tokenize job ${job.id} completed: ${completed?.done ?? 0} partial copies queued for replication; ${stale} still carry an older version until the replication workers deliver them (domicile keys tokenization-usage --version N)`,
  );
}

/** Adds `domicile keys rotate-tokenization|retokenize|retire-tokenization|tokenization-usage`, under the `keys` command if another module made it. */
export function registerTokenizationKeyCommands(program: Command): void {
  const keys = program.commands.find((command) => command.name() === 'keys') ?? program.command('keys').description('manage encryption and tokenization keys');

  keys
    .command('rotate-tokenization')
    .description(
      'add a tokenization key version and make it current: new tokens and blind indexes use it, tokens of older versions still resolve; restart running gateways and workers to pick it up',
    )
    .action(async () => {
      await withStore(async ({ db, keys: provider }) => {
        const version = await rotateTokenizationSecret(db, provider);
        const keyring = await loadKeyring(db, provider);
        await withTransaction(db, (client) => appendAudit(client, keyring, { actor: OPERATOR, action: 'tokenization-key.rotate', fields: [] }));
        console.log(`tokenization key version ${version} is now current; restart gateways and workers so they use it, then run domicile keys retokenize`);
      });
    });

  keys
    .command('retokenize')
    .description(
      'after rotate-tokenization and a restart of the workers: queue every partial copy abroad whose tokens use an older key version for replication again, so its format-preserving tokens are re-issued under the current version; resumes an interrupted run',
    )
    .action(async () => {
      await withStore(retokenize);
    });

  keys
    .command('tokenization-usage')
    .description('count what uses a tokenization key version: blind indexes, random token mappings and partial copies abroad, which block its retirement, and audit entries, which do not')
    .requiredOption('--version <n>', 'tokenization key version', positiveInteger)
    .action(async (options: { version: number }) => {
      await withStore(async ({ db }) => {
        console.log(JSON.stringify({ version: options.version, ...(await tokenizationKeyUsage(db.pool, options.version)) }));
      });
    });

  keys
    .command('retire-tokenization')
    .description('delete the secret of an old tokenization key version and keep only its audit keys; rejected while the current version, or while blind indexes, random tokens or partial copies still need it')
    .requiredOption('--version <n>', 'tokenization key version to retire', positiveInteger)
    .action(async (options: { version: number }) => {
      await withStore(async ({ db, keys, keyring }) => {
        await retireTokenizationSecret(db, keys, keyring, options.version, OPERATOR);
        console.log(`tokenization key version ${options.version} retired`);
      });
    });
}
