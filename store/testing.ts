import { createHash, randomBytes } from 'node:crypto';
import { cp, mkdtemp, readFile, rename, rm, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import pg from 'pg';
import pino, { type Logger } from 'pino';
import type { Policy } from '../policy/schema.ts';
import type { Keyring } from '../tokenizer/keyring.ts';
import { openLocalKeyFile, type LocalKeyProvider } from '../tokenizer/keys/local-file.ts';
import { openDatabase, type Database } from './database.ts';
import { loadKeyring } from './keyring-store.ts';
import { migrate } from './migrate.ts';
import { createVault, type Vault } from './vault.ts';

/**
 * Helpers for tests that need a database. Each `open()` gives a fresh, empty
 * database: PGlite in a new temporary folder, or a new database on the real
 * Postgres of `DATABASE_URL`. `close()` removes it again.
 */
export interface TestDatabase {
  name: 'pglite' | 'postgres';
  open(options?: { migrate?: boolean }): Promise<OpenedTestDatabase>;
}

export interface OpenedTestDatabase extends Database {
  /** Temporary folder of this database, for key files and other test files; removed on close. */
  dataDir: string;
}

export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

/** PGlite always; real Postgres too when `DATABASE_URL` is set. */
export function testDatabases(): TestDatabase[] {
  const databases: TestDatabase[] = [{ name: 'pglite', open: (options) => openTestPglite(options?.migrate ?? true) }];
  const url = process.env['DATABASE_URL'];
  if (url !== undefined && url !== '') {
    databases.push({ name: 'postgres', open: (options) => openTestPostgres(url, options?.migrate ?? true) });
  }
  return databases;
}

/**
 * Returns the folder of an empty PGlite cluster to copy for each test. Creating a
 * cluster runs initdb in WebAssembly, which takes seconds; copying it takes a
 * fraction of that. The template is shared by test processes through the
 * temporary folder, keyed by the PGlite version.
 */
async function pgliteTemplate(): Promise<string> {
  // The package does not export its package.json, so find it from the resolved entry point.
  const entry = createRequire(import.meta.url).resolve('@electric-sql/pglite');
  const packageRoot = entry.slice(0, entry.lastIndexOf('/dist/'));
  const packageJson = await readFile(join(packageRoot, 'package.json'), 'utf8');
  const key = createHash('sha256').update(packageJson).digest('hex').slice(0, 16);
  const template = join(tmpdir(), `domicile-pglite-template-${key}`);
  if (await exists(template)) {
    return template;
  }

  const building = await mkdtemp(join(tmpdir(), 'domicile-pglite-building-'));
  const pglite = await PGlite.create({ dataDir: join(building, 'pgdata') });
  await pglite.close();
  try {
    await rename(join(building, 'pgdata'), template);
  } catch (error) {
    // Another test process finished its template first; both are equal.
    if (!(await exists(template))) {
      throw error;
    }
  }
  await rm(building, { recursive: true, force: true });
  return template;
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

async function openTestPglite(runMigrations: boolean): Promise<OpenedTestDatabase> {
  const dataDir = await mkdtemp(join(tmpdir(), 'domicile-test-'));
  await cp(await pgliteTemplate(), join(dataDir, 'pgdata'), { recursive: true });
  const db = await openDatabase({ dataDir, logger: silentLogger() });
  return asTestDatabase(db, dataDir, runMigrations, async () => {});
}

async function openTestPostgres(adminUrl: string, runMigrations: boolean): Promise<OpenedTestDatabase> {
  const dataDir = await mkdtemp(join(tmpdir(), 'domicile-test-'));
  const scratch = await createScratchDatabase(adminUrl);
  const db = await openDatabase({ databaseUrl: scratch.url, dataDir, logger: silentLogger(), poolMax: 5 });
  return asTestDatabase(db, dataDir, runMigrations, scratch.drop);
}

/**
 * Migrates `db` when asked and wraps it so that `close()` closes it, then runs
 * `dispose` (which drops a scratch database), then removes `dataDir`.
 */
async function asTestDatabase(db: Database, dataDir: string, runMigrations: boolean, dispose: () => Promise<void>): Promise<OpenedTestDatabase> {
  if (runMigrations) {
    await migrate(db, silentLogger());
  }
  return {
    ...db,
    dataDir,
    close: async () => {
      await db.close();
      await dispose();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * Creates an empty database on the server of `adminUrl` for one test and returns
 * its URL and a function that drops it, so tests that start the whole service
 * never share data with an earlier run.
 */
export async function createScratchDatabase(adminUrl: string): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `domicile_test_${randomBytes(6).toString('hex')}`;
  await adminQuery(adminUrl, `CREATE DATABASE ${name}`);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: () => adminQuery(adminUrl, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`),
  };
}

async function adminQuery(url: string, sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

export interface TestVault {
  vault: Vault;
  keys: LocalKeyProvider;
  keyring: Keyring;
}

/** A fresh test database together with the test vault over it. */
export interface OpenedTestVault {
  db: OpenedTestDatabase;
  store: TestVault;
}

/** Opens a local key file in the database's temporary folder, loads the keyring and builds a vault. */
export async function createTestVault(db: OpenedTestDatabase, policy: Policy): Promise<TestVault> {
  const keys = await openLocalKeyFile(join(db.dataDir, 'keys', 'kek.json'));
  const keyring = await loadKeyring(db, keys);
  const vault = createVault({ db, policy, keys, keyring, logger: silentLogger() });
  return { vault, keys, keyring };
}

/** Opens a fresh database of `database`, migrated, and builds a test vault over it. */
export async function openTestVault(database: TestDatabase, policy: Policy): Promise<OpenedTestVault> {
  const db = await database.open();
  const store = await createTestVault(db, policy);
  return { db, store };
}

/** Closes the vault's key provider, which zeroes its KEKs in memory, then closes and removes the database. */
export async function closeTestVault(db: OpenedTestDatabase, store: TestVault): Promise<void> {
  await store.keys.close();
  await db.close();
}

/** Checks out every idle connection of the pool at once (at least one), so a test can act on each. */
export function checkOutIdleClients(db: Database): Promise<pg.PoolClient[]> {
  return Promise.all(Array.from({ length: Math.max(1, db.pool.idleCount) }, () => db.pool.connect()));
}
