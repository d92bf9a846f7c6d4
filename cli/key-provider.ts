import { stat } from 'node:fs/promises';
import { DomicileError } from '../policy/index.ts';
import type { Database } from '../store/database.ts';
import { latestRewrapJob } from '../store/kek-rotation.ts';
import { storedKekVersions } from '../store/kek-migration.ts';
import { AwsKmsKeyProvider } from '../tokenizer/keys/aws-kms.ts';
import { openLocalKeyFile } from '../tokenizer/keys/local-file.ts';
import type { KeyProvider } from '../tokenizer/keys/provider.ts';
import { providerKindOf, RoutingKeyProvider, type KeyProviderKind } from '../tokenizer/keys/routing.ts';
import type { Config } from './config.ts';

/** The configured key providers, and whether opening them generated a new KEK (only the local key file does). */
export type OpenedKeyProvider = RoutingKeyProvider;

/**
 * Opens the configured KEK providers: the one of DOMICILE_KEY_PROVIDER (a
 * local key file is created on first use) and the one of
 * DOMICILE_SECONDARY_KEY_PROVIDER. A secondary local key file is opened only
 * when it exists, unless `createLocalKeyFile` is set (`keys migrate --to
 * local`), so no process ever makes a second, different KEK of the same
 * version. AWS credentials come from the default AWS chain (environment,
 * profile, instance or task role).
 */
export async function openKeyProvider(config: Config, options: { createLocalKeyFile?: boolean } = {}): Promise<OpenedKeyProvider> {
  const primary = await openMember(config, config.keyProvider, true);
  if (primary === undefined) {
    throw new DomicileError('internal', `the ${config.keyProvider} key provider could not be opened`);
  }
  try {
    const secondaryKind = config.secondaryKeyProvider;
    const secondary = secondaryKind === undefined ? undefined : await openMember(config, secondaryKind, options.createLocalKeyFile ?? false);
    return new RoutingKeyProvider(primary, secondary);
  } catch (error) {
    await primary.close();
    throw error;
  }
}

/** Opens one provider; a local key file that does not exist is created only with `create`, otherwise the result is undefined. */
async function openMember(config: Config, kind: KeyProviderKind, create: boolean): Promise<(KeyProvider & { created: boolean }) | undefined> {
  if (kind === 'local') {
    if (!create && !(await fileExists(config.keyFile))) {
      return undefined;
    }
    return openLocalKeyFile(config.keyFile);
  }
  if (config.kms === undefined) {
    throw new DomicileError('invalid_request', 'DOMICILE_KMS_KEY_ID and DOMICILE_KMS_REGION are required when a key provider setting is aws-kms');
  }
  const { keyId, region, endpoint } = config.kms;
  return new AwsKmsKeyProvider({ keyId, region, ...(endpoint === undefined ? {} : { endpoint }) });
}

async function fileExists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      return false;
    }
    throw error;
  }
}

/**
 * Makes `keys` wrap new keys with the target version of the newest rewrap or
 * migration job when one of its members wraps with it, as running processes
 * do after each maintenance interval. Returns the version it wraps with.
 */
export async function useNewestJobVersion(db: Database, keys: RoutingKeyProvider): Promise<string> {
  const job = await latestRewrapJob(db);
  const target = job?.params['targetKekVersion'];
  if (typeof target === 'string') {
    keys.useVersion(target);
  }
  return keys.currentVersion();
}

/**
 * Rejects a start when a data key or tokenization secret in the database is
 * wrapped by a KEK version that no configured provider can unwrap. The error
 * names the setting to fix, so a provider cannot be dropped from the
 * configuration while it still wraps keys.
 */
export async function checkStoredKekVersions(db: Database, keys: RoutingKeyProvider, config: Config): Promise<void> {
  for (const stored of await storedKekVersions(db)) {
    if (keys.canUnwrap(stored.kekVersion)) {
      continue;
    }
    const wraps = `${stored.dataKeys} data keys and ${stored.tokenizationSecrets} tokenization secrets are wrapped by KEK version ${stored.kekVersion}`;
    throw new DomicileError('invalid_request', `invalid configuration: ${wraps}, ${missingProviderFix(stored.kekVersion, keys, config)}`);
  }
}

function missingProviderFix(kekVersion: string, keys: RoutingKeyProvider, config: Config): string {
  const until = 'until domicile keys migrate has moved every key away from it (domicile keys status)';
  const kind = providerKindOf(kekVersion);
  if (kind === 'aws-kms') {
    return `but no key provider setting is aws-kms: set DOMICILE_SECONDARY_KEY_PROVIDER=aws-kms with DOMICILE_KMS_KEY_ID and DOMICILE_KMS_REGION ${until}`;
  }
  if (kind === 'local' && keys.member('local') !== undefined) {
    return `which the local key file ${config.keyFile} (DOMICILE_KEY_FILE) does not contain: restore the key file that has it (domicile keys import)`;
  }
  if (kind === 'local' && config.secondaryKeyProvider === 'local') {
    return `but the local key file ${config.keyFile} (DOMICILE_KEY_FILE) does not exist: copy it there or set DOMICILE_KEY_FILE to its path`;
  }
  if (kind === 'local') {
    return `but no key provider setting is local: set DOMICILE_SECONDARY_KEY_PROVIDER=local, with DOMICILE_KEY_FILE naming the key file, ${until}`;
  }
  return 'which belongs to no known key provider';
}
