import type { Logger } from 'pino';
import type { Policy } from '../policy/index.ts';
import type { Database } from '../store/database.ts';
import type { ExportInput, SubjectExport } from '../store/subject-export.ts';
import type { Vault } from '../store/vault.ts';
import type { Keyring } from '../tokenizer/keyring.ts';

/** The part of the store's vault that the gateway calls. */
export type GatewayVault = Pick<Vault, 'create' | 'read' | 'update' | 'erase' | 'lookup' | 'versions' | 'createMany' | 'tokens'>;

export interface GatewayDeps {
  vault: GatewayVault;
  db: Database;
  policy: Policy;
  keyring: Keyring;
  logger: Logger;
  /** Origins of the web app (the app listener) that may frame the widgets. */
  appOrigins: string[];
  /** Public origin of the gateway listener, such as `https://pii.example.com`. */
  gatewayOrigin: string;
  /**
   * HS256 key, at least 32 bytes, that signs widget sessions. Without it the
   * key is derived from the tokenization keyring, which every replica shares.
   */
  sessionKey?: Buffer;
  /** Reports whether the database is reachable; backs `/readyz`. */
  ready: () => Promise<boolean>;
  /** Reports whether the process is shutting down, so `/readyz` returns 503 during the shutdown grace period. */
  stopping?: () => boolean;
  /**
   * Serves `/metrics` without a credential. Scrapers often scrape anonymously
   * on an internal network; otherwise a credential with `metrics:read` is
   * required. Defaults to `DOMICILE_METRICS_PUBLIC=true` in the environment.
   */
  metricsPublic?: boolean;
  /**
   * Whether `PATCH /api/v1/records/{subjectToken}` must carry `If-Match` with
   * a version; without it, an update applies to the current version.
   */
  requireIfMatch?: boolean;
  /** Builds a subject access export; without it the export route answers 503. */
  subjectExport?: (input: ExportInput) => Promise<SubjectExport>;
}
