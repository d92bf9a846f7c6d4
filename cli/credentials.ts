import { Option, type Command } from 'commander';
import { createCredential, listCredentials, revokeCredential } from '../store/credentials.ts';
import { withStore } from './with-store.ts';

const OPERATIONS = ['records:create', 'records:read', 'records:erase', 'widget-sessions:create', 'tokenize', 'detokenize'] as const;
type Operation = (typeof OPERATIONS)[number];

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** Adds `domicile credentials create|list|revoke`. */
export function registerCredentialCommands(program: Command): void {
  const credentials = program.command('credentials').description('manage API credentials of backend callers');

  credentials
    .command('create')
    .description('create a credential and print its secret once; only a hash of it is stored')
    .requiredOption('--name <name>', 'a name that says who uses the credential')
    .addOption(new Option('--location <location>', 'where the caller runs').choices(['in-country', 'abroad']).makeOptionMandatory())
    .addOption(new Option('--operation <operation>', 'an allowed operation; repeat for several').choices([...OPERATIONS]).argParser(collect).default([]))
    .option('--record-type <type>', 'an allowed record type; repeat for several', collect, [])
    .action(async (options: { name: string; location: 'in-country' | 'abroad'; operation: Operation[]; recordType: string[] }) => {
      await withStore(async ({ db }) => {
        const { id, secret } = await createCredential(db, {
          name: options.name,
          location: options.location,
          scopes: { operations: options.operation, recordTypes: options.recordType },
        });
        console.log(`credential ${id} created; its secret, shown only now:\n${secret}`);
      });
    });

  credentials
    .command('list')
    .description('list credentials without their secrets')
    .action(async () => {
      await withStore(async ({ db }) => {
        for (const credential of await listCredentials(db)) {
          console.log(JSON.stringify(credential));
        }
      });
    });

  credentials
    .command('revoke')
    .description('revoke a credential by id; calls with it fail from then on')
    .argument('<id>', 'credential id')
    .action(async (id: string) => {
      await withStore(async ({ db }) => {
        await revokeCredential(db, id);
        console.log(`credential ${id} revoked`);
      });
    });
}
