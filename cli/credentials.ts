import { InvalidArgumentError, Option, type Command } from 'commander';
import {
  CREDENTIAL_OPERATIONS,
  FIELD_FORMS,
  createCredential,
  listCredentials,
  revokeCredential,
  type CredentialOperation,
  type CredentialScopes,
  type FieldForm,
} from '../store/credentials.ts';
import { DomicileError, loadPolicyFile, type Policy } from '../policy/index.ts';
import { loadConfig } from './config.ts';
import { withStore } from './with-store.ts';

type FieldScopes = NonNullable<CredentialScopes['fields']>;

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

const FIELD_GRANT = /^([a-z][a-zA-Z0-9_]{0,62})\.([a-z][a-zA-Z0-9_]{0,62})=([a-z]+)$/;

/** Parses one `--field <recordType>.<field>=<form>` and adds it to the grants so far. */
export function parseFieldGrant(value: string, previous: FieldScopes): FieldScopes {
  const match = FIELD_GRANT.exec(value);
  const form = match?.[3];
  if (match === null || match[1] === undefined || match[2] === undefined || form === undefined) {
    throw new InvalidArgumentError('expected <recordType>.<field>=<form>, such as customer.email=mask');
  }
  if (!(FIELD_FORMS as readonly string[]).includes(form)) {
    throw new InvalidArgumentError(`form must be one of ${FIELD_FORMS.join(', ')}`);
  }
  const recordType = match[1];
  return { ...previous, [recordType]: { ...previous[recordType], [match[2]]: form as FieldForm } };
}

/**
 * Checks the scopes against the data policy, so a typo in a record type or a
 * field name fails instead of silently hiding data from the caller.
 */
export function checkScopesAgainstPolicy(scopes: CredentialScopes, policy: Policy): void {
  const problems: string[] = [];
  for (const recordType of scopes.recordTypes) {
    if (!Object.hasOwn(policy.recordTypes, recordType)) {
      problems.push(`--record-type ${recordType} is not a record type of the data policy`);
    }
  }
  for (const [recordType, grants] of Object.entries(scopes.fields ?? {})) {
    if (!scopes.recordTypes.includes(recordType)) {
      problems.push(`--field ${recordType}.* names a record type that no --record-type allows`);
    }
    const declared = policy.recordTypes[recordType]?.fields ?? {};
    for (const field of Object.keys(grants)) {
      if (!Object.hasOwn(declared, field)) {
        problems.push(`--field ${recordType}.${field} is not a field of the data policy`);
      }
    }
  }
  if (problems.length > 0) {
    throw new DomicileError('invalid_request', `invalid credential scopes: ${problems.join('; ')}`);
  }
}

/** Adds `domicile credentials create|list|revoke`. */
export function registerCredentialCommands(program: Command): void {
  const credentials = program.command('credentials').description('manage API credentials of backend callers');

  credentials
    .command('create')
    .description('create a credential and print its secret once; only a hash of it is stored')
    .requiredOption('--name <name>', 'a name that says who uses the credential')
    .addOption(new Option('--location <location>', 'where the caller runs').choices(['in-country', 'abroad']).makeOptionMandatory())
    .addOption(
      new Option('--operation <operation>', 'an allowed operation; repeat for several').choices([...CREDENTIAL_OPERATIONS]).argParser(collect).default([]),
    )
    .option('--record-type <type>', 'an allowed record type; repeat for several', collect, [])
    .option(
      '--field <recordType.field=form>',
      'grant one field in a form (never, token, mask, generalize, clear); once a record type has a --field, ' +
        'the credential sees only its listed fields; callers abroad never get a form weaker than the egress rule; repeat for several',
      parseFieldGrant,
      {},
    )
    .action(
      async (options: { name: string; location: 'in-country' | 'abroad'; operation: CredentialOperation[]; recordType: string[]; field: FieldScopes }) => {
        const scopes: CredentialScopes = { operations: options.operation, recordTypes: options.recordType };
        if (Object.keys(options.field).length > 0) {
          scopes.fields = options.field;
        }
        checkScopesAgainstPolicy(scopes, loadPolicyFile(loadConfig().policyFile));
        await withStore(async ({ db }) => {
          const { id, secret } = await createCredential(db, { name: options.name, location: options.location, scopes });
          console.log(`credential ${id} created; its secret, shown only now:\n${secret}`);
        });
      },
    );

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
