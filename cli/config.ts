import path from 'node:path';
import { z } from 'zod';
import { DomicileError, jsonPath } from '../policy/index.ts';

/**
 * Runtime settings, read from environment variables. Every setting has a
 * default, so `npm start` runs the whole flow on one machine; each default that
 * is unsafe in production is reported by `productionWarnings`.
 */
const port = z.coerce.number().int().min(0).max(65_535);

const environmentSchema = z.object({
  DOMICILE_DATA_DIR: z.string().min(1).default('data'),
  DOMICILE_POLICY: z.string().min(1).default('examples/policy.yaml'),
  DATABASE_URL: z.string().min(1).optional(),
  DOMICILE_HOST: z.string().min(1).default('127.0.0.1'),
  DOMICILE_APP_PORT: port.default(8080),
  DOMICILE_GATEWAY_PORT: port.default(8081),
  DOMICILE_UPSTREAM: z.url().optional(),
  DOMICILE_APP_ORIGIN: z.url().optional(),
  DOMICILE_GATEWAY_ORIGIN: z.url().optional(),
  DOMICILE_KEY_FILE: z.string().min(1).optional(),
  DOMICILE_KEY_PROVIDER: z.enum(['local', 'aws-kms']).default('local'),
  DOMICILE_SECONDARY_KEY_PROVIDER: z.enum(['local', 'aws-kms']).optional(),
  DOMICILE_KMS_KEY_ID: z.string().min(1).optional(),
  DOMICILE_KMS_REGION: z.string().min(1).optional(),
  DOMICILE_KMS_ENDPOINT: z.url().optional(),
  AWS_REGION: z.string().min(1).optional(),
  DOMICILE_EXAMPLE_PORT: port.default(0),
  DOMICILE_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  DOMICILE_REPLICATION_POLL_MS: z.coerce.number().int().min(10).max(60_000).default(200),
  DOMICILE_REQUIRE_IF_MATCH: z.enum(['true', 'false']).default('false'),
}).superRefine((settings, context) => {
  if (settings.DOMICILE_SECONDARY_KEY_PROVIDER === settings.DOMICILE_KEY_PROVIDER) {
    context.addIssue({ code: 'custom', path: ['DOMICILE_SECONDARY_KEY_PROVIDER'], message: 'must differ from DOMICILE_KEY_PROVIDER' });
  }
  const setting = kmsSettingName(settings);
  if (setting === undefined) {
    return;
  }
  if (settings.DOMICILE_KMS_KEY_ID === undefined) {
    context.addIssue({ code: 'custom', path: ['DOMICILE_KMS_KEY_ID'], message: `is required when ${setting} is aws-kms` });
  }
  if (settings.DOMICILE_KMS_REGION === undefined && settings.AWS_REGION === undefined) {
    context.addIssue({ code: 'custom', path: ['DOMICILE_KMS_REGION'], message: `is required when ${setting} is aws-kms and AWS_REGION is not set` });
  }
});

/** Returns the name of the provider setting that is aws-kms, or undefined when neither is. */
function kmsSettingName(settings: { DOMICILE_KEY_PROVIDER: string; DOMICILE_SECONDARY_KEY_PROVIDER?: string | undefined }): string | undefined {
  if (settings.DOMICILE_KEY_PROVIDER === 'aws-kms') {
    return 'DOMICILE_KEY_PROVIDER';
  }
  return settings.DOMICILE_SECONDARY_KEY_PROVIDER === 'aws-kms' ? 'DOMICILE_SECONDARY_KEY_PROVIDER' : undefined;
}

/** Settings of the AWS KMS key provider. */
export interface KmsConfig {
  keyId: string;
  region: string;
  /** A KMS-compatible endpoint, such as one inside the country; the AWS endpoint of the region when undefined. */
  endpoint: string | undefined;
}

export interface Config {
  dataDir: string;
  policyFile: string;
  databaseUrl: string | undefined;
  host: string;
  appPort: number;
  gatewayPort: number;
  /** Upstream web app; when undefined, the example app is started and used. */
  upstream: string | undefined;
  appOrigin: string;
  gatewayOrigin: string;
  keyFile: string;
  /** Provider that wraps new keys, unless a migration (`domicile keys migrate`) moved them to the secondary. */
  keyProvider: 'local' | 'aws-kms';
  /**
   * A second provider, opened beside the first during a migration between the
   * two: it unwraps the keys it wrapped and is the target of `keys migrate`.
   */
  secondaryKeyProvider: 'local' | 'aws-kms' | undefined;
  /** Set when keyProvider or secondaryKeyProvider is aws-kms. */
  kms: KmsConfig | undefined;
  examplePort: number;
  logLevel: string;
  replicationPollMs: number;
  /** Whether record updates must name the version they change in `If-Match`. */
  requireIfMatch: boolean;
}

/** Reads the configuration from `env`; invalid settings fail with the variable's name and the problem. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const result = environmentSchema.safeParse(env);
  if (!result.success) {
    const issues = result.error.issues.map((issue) => ({
      path: jsonPath(issue.path).replace(/^\$\./, ''),
      message: issue.message,
    }));
    const summary = issues.map((issue) => `${issue.path} ${issue.message}`).join('; ');
    throw new DomicileError('invalid_request', `invalid configuration: ${summary}`, { issues });
  }
  const settings = result.data;
  const dataDir = path.resolve(settings.DOMICILE_DATA_DIR);

  return {
    dataDir,
    policyFile: path.resolve(settings.DOMICILE_POLICY),
    databaseUrl: settings.DATABASE_URL,
    host: settings.DOMICILE_HOST,
    appPort: settings.DOMICILE_APP_PORT,
    gatewayPort: settings.DOMICILE_GATEWAY_PORT,
    upstream: settings.DOMICILE_UPSTREAM,
    appOrigin: originOf(settings.DOMICILE_APP_ORIGIN ?? `http://localhost:${settings.DOMICILE_APP_PORT}`),
    gatewayOrigin: originOf(settings.DOMICILE_GATEWAY_ORIGIN ?? `http://localhost:${settings.DOMICILE_GATEWAY_PORT}`),
    keyFile: path.resolve(settings.DOMICILE_KEY_FILE ?? path.join(dataDir, 'kek.json')),
    keyProvider: settings.DOMICILE_KEY_PROVIDER,
    secondaryKeyProvider: settings.DOMICILE_SECONDARY_KEY_PROVIDER,
    kms: kmsConfig(settings),
    examplePort: settings.DOMICILE_EXAMPLE_PORT,
    logLevel: settings.DOMICILE_LOG_LEVEL,
    replicationPollMs: settings.DOMICILE_REPLICATION_POLL_MS,
    requireIfMatch: settings.DOMICILE_REQUIRE_IF_MATCH === 'true',
  };
}

function kmsConfig(settings: z.infer<typeof environmentSchema>): KmsConfig | undefined {
  const keyId = settings.DOMICILE_KMS_KEY_ID;
  const region = settings.DOMICILE_KMS_REGION ?? settings.AWS_REGION;
  if (kmsSettingName(settings) === undefined || keyId === undefined || region === undefined) {
    return undefined;
  }
  return { keyId, region, endpoint: settings.DOMICILE_KMS_ENDPOINT };
}

function originOf(url: string): string {
  return new URL(url).origin;
}

/** Defaults that are fine for evaluation but not for personal data in production. */
export function productionWarnings(config: Config): string[] {
  const warnings: string[] = [];
  if (config.databaseUrl === undefined) {
    warnings.push(
      `the embedded database (PGlite) in ${path.join(config.dataDir, 'pgdata')} is for evaluation: ` +
        'it does not fsync, so a power loss can lose acknowledged writes. Set DATABASE_URL to a managed PostgreSQL ' +
        'for production, and until then back up that folder while Domicile is stopped',
    );
  }
  if (config.keyProvider === 'local') {
    warnings.push(
      `the key encryption key is a local file, ${config.keyFile}: every record is unreadable without it, ` +
        'so back it up apart from the database (domicile keys export), and use a KMS for production',
    );
  }
  if (config.secondaryKeyProvider !== undefined) {
    warnings.push(
      `DOMICILE_SECONDARY_KEY_PROVIDER is ${config.secondaryKeyProvider}: finish the migration with domicile keys migrate, ` +
        'then remove the provider that domicile keys status shows wrapping no key',
    );
  }
  if (config.upstream === undefined) {
    warnings.push('no DOMICILE_UPSTREAM is set: the app listener proxies to the built-in example app');
  }
  return warnings;
}
