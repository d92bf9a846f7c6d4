import { InvalidArgumentError, type Command } from 'commander';
import { appendAudit } from '../store/audit.ts';
import { withTransaction } from '../store/database.ts';
import { loadKeyring, rotateTokenizationSecret } from '../store/keyring-store.ts';
import { retireTokenizationSecret, tokenizationKeyUsage } from '../store/tokenization-retire.ts';
import type { Actor } from '../store/types.ts';
import { withStore } from './with-store.ts';

/** Actor of the audit entries that these commands write. */
const OPERATOR: Actor = { id: 'operator:cli', location: 'in-country' };

function positiveInteger(value: string): number {
  const parsed = Number(value);
  if (!/^[0-9]+$/.test(value) || !Number.isSafeInteger(parsed) || parsed < 1) {
    throw new InvalidArgumentError('must be a positive integer');
  }
  return parsed;
}

/** Adds `domicile keys rotate-tokenization|retire-tokenization|tokenization-usage`, under the `keys` command if another module made it. */
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
        console.log(`tokenization key version ${version} is now current; restart gateways and workers so they use it`);
      });
    });

  keys
    .command('tokenization-usage')
    .description('count what still needs a tokenization key version: blind indexes, random token mappings, partial copies abroad, audit entries')
    .requiredOption('--version <n>', 'tokenization key version', positiveInteger)
    .action(async (options: { version: number }) => {
      await withStore(async ({ db }) => {
        console.log(JSON.stringify({ version: options.version, ...(await tokenizationKeyUsage(db.pool, options.version)) }));
      });
    });

  keys
    .command('retire-tokenization')
    .description('delete an old tokenization key version; rejected while the current version, or while blind indexes, random tokens, partial copies or audit entries still need it')
    .requiredOption('--version <n>', 'tokenization key version to retire', positiveInteger)
    .action(async (options: { version: number }) => {
      await withStore(async ({ db, keyring }) => {
        await retireTokenizationSecret(db, keyring, options.version, OPERATOR);
        console.log(`tokenization key version ${options.version} retired`);
      });
    });
}
