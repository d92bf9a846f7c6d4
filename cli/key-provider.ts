import { DomicileError } from '../policy/index.ts';
import { AwsKmsKeyProvider } from '../tokenizer/keys/aws-kms.ts';
import { openLocalKeyFile } from '../tokenizer/keys/local-file.ts';
import type { KeyProvider } from '../tokenizer/keys/provider.ts';
import type { Config } from './config.ts';

/** A key provider, and whether opening it generated a new KEK (only the local key file does). */
export type OpenedKeyProvider = KeyProvider & { readonly created: boolean };

/**
 * Opens the configured KEK provider: the local key file (created on first use),
 * or AWS KMS or a KMS-compatible endpoint. AWS credentials come from the
 * default AWS chain (environment, profile, instance or task role).
 */
export async function openKeyProvider(config: Config): Promise<OpenedKeyProvider> {
  if (config.keyProvider === 'local') {
    return openLocalKeyFile(config.keyFile);
  }
  if (config.kms === undefined) {
    throw new DomicileError('invalid_request', 'DOMICILE_KMS_KEY_ID and DOMICILE_KMS_REGION are required when DOMICILE_KEY_PROVIDER is aws-kms');
  }
  const { keyId, region, endpoint } = config.kms;
  return new AwsKmsKeyProvider({ keyId, region, ...(endpoint === undefined ? {} : { endpoint }) });
}
