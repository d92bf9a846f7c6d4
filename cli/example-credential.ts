import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { createCredential, verifyCredential } from '../store/credentials.ts';
import type { Database } from '../store/database.ts';

/** File in the data folder that keeps the example app's API secret between starts. */
const FILE_NAME = 'example-app-credential.json';

/**
 * Returns the example app's API secret, creating the credential on first start.
 * The credential is abroad, like a real AWS backend: it may create records and
 * widget sessions and read records in the forms the policy allows abroad.
 */
export async function ensureExampleCredential(db: Database, dataDir: string, recordTypes: string[], logger: Logger): Promise<string> {
  const file = path.join(dataDir, FILE_NAME);
  const existing = await readSecret(file);
  if (existing !== undefined && (await verifyCredential(db, existing)) !== undefined) {
    return existing;
  }

  const { id, secret } = await createCredential(db, {
    name: 'example-app',
    location: 'abroad',
    scopes: {
      operations: ['widget-sessions:create', 'records:create', 'records:read', 'records:erase'],
      recordTypes,
    },
  });
  await mkdir(dataDir, { recursive: true });
  await writeFile(file, JSON.stringify({ id, secret }), { mode: 0o600 });
  logger.info({ event: 'credential.created', credentialId: id, file }, 'created the example app API credential');
  return secret;
}

async function readSecret(file: string): Promise<string | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    return undefined;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    // A damaged file is replaced by a new credential, as if it were missing.
    return undefined;
  }
  if (typeof parsed === 'object' && parsed !== null && 'secret' in parsed && typeof parsed.secret === 'string') {
    return parsed.secret;
  }
  return undefined;
}
