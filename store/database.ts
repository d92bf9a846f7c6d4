import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, isAbsolute, join, resolve } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';
import pg from 'pg';
import type { Logger } from 'pino';
import { DomicileError } from '../policy/errors.ts';
import { acquireLockFile, type LockFile } from './lock-file.ts';

export interface Database {
  pool: pg.Pool;
  kind: 'postgres' | 'pglite';
  close(): Promise<void>;
}

export interface OpenDatabaseOptions {
  /** Connection string of a real Postgres. Without it, the embedded PGlite is used. */
  databaseUrl?: string;
  /** Data folder. PGlite keeps its files in `<dataDir>/pgdata`. */
  dataDir: string;
  logger: Logger;
  /** Pool size on real Postgres (default 10). PGlite always uses one connection. */
  poolMax?: number;
}

/**
 * pglite-socket runs every connection in ONE Postgres session and lets only
 * one transaction run at a time, so a second pooled connection would see the
 * first one's open transaction as its own. One pooled connection makes every
 * caller wait for the pool instead. The socket server accepts a few more than
 * one so that a replacement connection is not rejected while the server is
 * still tearing down the old one.
 */
const PGLITE_POOL_MAX = 1;
const PGLITE_SOCKET_MAX_CONNECTIONS = 4;

/**
 * The socket server requires no password, so it listens on a Unix socket in a
 * new folder that only this user can enter, not on a loopback port that any
 * local user could connect to. node-pg finds the socket as
 * `<folder>/.s.PGSQL.<port>`.
 */
const PGLITE_SOCKET_PORT = 5432;
/** Maximum socket path length in bytes that fits `sun_path` on Linux (108 with the final NUL) and macOS (104). */
const MAX_SOCKET_PATH = 103;

/** File in the data folder that names the socket folder of the process holding the lock. */
const SOCKET_RECORD = 'pglite.socket';

/**
 * Removes the socket folder that a process killed before its close left
 * behind, as named in SOCKET_RECORD. Runs under the lock, so no live process
 * uses it. Only a folder of this user named like the ones this code creates
 * is removed.
 */
function removeStaleSocketFolder(dataDir: string): void {
  let recorded: string;
  try {
    recorded = readFileSync(join(dataDir, SOCKET_RECORD), 'utf8').trim();
  } catch {
    return;
  }
  try {
    const folder = statSync(recorded);
    if (isAbsolute(recorded) && basename(recorded).startsWith('domicile-pglite-') && folder.isDirectory() && folder.uid === process.getuid?.()) {
      rmSync(recorded, { recursive: true, force: true });
    }
  } catch {
    // Already gone.
  }
}

/** Creates the private socket folder; throws when its path is too long for a Unix socket. */
function privateSocketFolder(): { folder: string; path: string } {
  // node-pg takes a host without a leading slash for a host name, so a relative TMPDIR is made absolute.
  const folder = mkdtempSync(join(resolve(tmpdir()), 'domicile-pglite-'));
  const path = join(folder, `.s.PGSQL.${PGLITE_SOCKET_PORT}`);
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH) {
    rmSync(folder, { recursive: true, force: true });
    throw new DomicileError('unavailable', `the temporary folder ${tmpdir()} has too long a path for the embedded database's Unix socket; set TMPDIR to a shorter one`);
  }
  // mkdtemp creates the folder with mode 0700 already; this states it.
  chmodSync(folder, 0o700);
  return { folder, path };
}

/** Opens the database: real Postgres when `databaseUrl` is given, else PGlite in the data folder. */
export async function openDatabase(options: OpenDatabaseOptions): Promise<Database> {
  if (options.databaseUrl !== undefined && options.databaseUrl !== '') {
    return openPostgres(options.databaseUrl, options);
  }
  return openPglite(options);
}

async function openPostgres(databaseUrl: string, options: OpenDatabaseOptions): Promise<Database> {
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    max: options.poolMax ?? 10,
    application_name: 'domicile',
  });
  watchPool(pool, options.logger);

  try {
    const client = await pool.connect();
    client.release();
  } catch (cause) {
    await pool.end();
    throw new DomicileError('unavailable', 'cannot connect to Postgres at the configured database URL', { cause });
  }

  options.logger.info({ event: 'database.opened', kind: 'postgres' }, 'connected to Postgres');
  return {
    pool,
    kind: 'postgres',
    close: async () => {
      await pool.end();
      options.logger.info({ event: 'database.closed', kind: 'postgres' }, 'closed the Postgres pool');
    },
  };
}

async function openPglite(options: OpenDatabaseOptions): Promise<Database> {
  mkdirSync(options.dataDir, { recursive: true, mode: 0o700 });
  const lock = acquireLockFile(join(options.dataDir, 'pglite.lock'));

  let pglite: PGlite | undefined;
  let server: PGLiteSocketServer | undefined;
  let socket: { folder: string; path: string } | undefined;
  try {
    // NOTE: PGlite 0.5 runs with fsync=off, and its Node file system has no
    // fsync either. A commit is written to the WAL before it is acknowledged,
    // so it survives a killed process, but not a power loss or an OS crash.
    // PGlite creates its files readable and writable by everyone (mode 0666
    // under umask 0), so its folder is closed to other users even when the
    // data folder existed before with a wider mode.
    const pgdata = join(options.dataDir, 'pgdata');
    mkdirSync(pgdata, { recursive: true, mode: 0o700 });
    chmodSync(pgdata, 0o700);
    pglite = await PGlite.create({ dataDir: pgdata });
    removeStaleSocketFolder(options.dataDir);
    socket = privateSocketFolder();
    writeFileSync(join(options.dataDir, SOCKET_RECORD), `${socket.folder}\n`, { mode: 0o600 });
    server = new PGLiteSocketServer({ db: pglite, path: socket.path, maxConnections: PGLITE_SOCKET_MAX_CONNECTIONS });
    await server.start();
    chmodSync(socket.path, 0o600);
  } catch (cause) {
    await server?.stop().catch(() => undefined);
    await pglite?.close().catch(() => undefined);
    if (socket !== undefined) rmSync(socket.folder, { recursive: true, force: true });
    lock.release();
    if (cause instanceof DomicileError) throw cause;
    throw new DomicileError('unavailable', `cannot open the embedded database in ${options.dataDir}`, { cause });
  }

  const socketFolder = socket.folder;
  const pool = new pg.Pool({
    host: socketFolder,
    port: PGLITE_SOCKET_PORT,
    user: 'postgres',
    database: 'postgres',
    max: PGLITE_POOL_MAX,
    // Reconnecting costs little, but an idle timeout would only churn the one connection.
    idleTimeoutMillis: 0,
    // PGlite serves every connection from its one session, so statements that
    // an earlier connection prepared are still there. node-pg prepares named
    // statements again on a new connection, which would fail, so a new
    // connection drops them before the pool hands it out.
    onConnect: async (client) => {
      await client.query('DEALLOCATE ALL');
    },
  });
  watchPool(pool, options.logger);
  options.logger.info({ event: 'database.opened', kind: 'pglite' }, 'opened the embedded database (PGlite)');
  return {
    pool,
    kind: 'pglite',
    close: closeOnce(() => closePglite(pool, server, pglite, lock, options.dataDir, socketFolder, options.logger)),
  };
}

async function closePglite(
  pool: pg.Pool,
  server: PGLiteSocketServer,
  pglite: PGlite,
  lock: LockFile,
  dataDir: string,
  socketFolder: string,
  logger: Logger,
): Promise<void> {
  try {
    await pool.end();
    await server.stop();
    // close() shuts Postgres down cleanly, which writes a checkpoint to the data folder.
    await pglite.close();
  } finally {
    rmSync(socketFolder, { recursive: true, force: true });
    rmSync(join(dataDir, SOCKET_RECORD), { force: true });
    lock.release();
  }
  logger.info({ event: 'database.closed', kind: 'pglite' }, 'closed the embedded database');
}

function closeOnce(close: () => Promise<void>): () => Promise<void> {
  let closing: Promise<void> | undefined;
  return () => {
    closing ??= close();
    return closing;
  };
}

/** Logs errors of idle clients (server restart, network), which would crash the process without a listener. */
function watchPool(pool: pg.Pool, logger: Logger): void {
  pool.on('error', (error: Error & { code?: string }) => {
    logger.error({ event: 'database.idle_client_error', code: error.code ?? 'unknown' }, 'an idle database connection failed');
  });
}

/**
 * Runs `fn` with one pooled client. When `fn` throws, the client's open
 * transaction is rolled back before the client goes back to the pool, and a
 * client that cannot roll back is discarded instead.
 */
export async function withClient<T>(db: Database, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await db.pool.connect();
  const connectionError = catchConnectionError(client);
  let broken: Error | undefined;
  try {
    return await fn(client);
  } catch (error) {
    try {
      await client.query('ROLLBACK');
    } catch (rollbackError) {
      broken = rollbackError as Error;
    }
    throw error;
  } finally {
    broken ??= connectionError();
    client.release(broken);
  }
}

/**
 * Listens for the `error` event of a checked-out client until the returned
 * function is called, which returns the error, if any, for `release`. pg-pool
 * listens only on idle clients, and an `error` event without a listener ends
 * the process: a connection that the server ends between two queries of a
 * checked-out client (a restart, `pg_terminate_backend`) would do so.
 */
export function catchConnectionError(client: pg.PoolClient): () => Error | undefined {
  let failed: Error | undefined;
  const listener = (error: Error): void => {
    failed ??= error;
  };
  client.on('error', listener);
  return () => {
    client.off('error', listener);
    return failed;
  };
}

/**
 * Runs `fn` in one transaction on one pooled client: COMMIT when it resolves,
 * ROLLBACK when it throws. Inside `fn`, use only `client`: against PGlite the
 * pool has one connection, so a query on `db.pool` would wait forever. With
 * `snapshot`, the transaction reads one REPEATABLE READ snapshot and writes
 * nothing.
 */
export async function withTransaction<T>(db: Database, fn: (client: pg.PoolClient) => Promise<T>, options: { snapshot?: boolean } = {}): Promise<T> {
  const transaction: OpenTransaction = { hooks: new Map(), states: new Map() };
  const result = await withClient(db, async (client) => {
    await client.query(options.snapshot === true ? 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY' : 'BEGIN');
    openTransactions.set(client, transaction);
    try {
      const value = await fn(client);
      await client.query('COMMIT');
      return value;
    } finally {
      openTransactions.delete(client);
    }
  });
  // After the release: with PGlite the pool has one connection, which a hook needs.
  for (const hook of transaction.hooks.values()) {
    await hook(db);
  }
  return result;
}

/**
 * Work that must follow a commit, such as sealing the audit entries the
 * transaction wrote. A hook must not throw: the transaction has committed,
 * and its caller must learn that it succeeded.
 */
export type CommitHook = (db: Database) => Promise<void>;

/** The hooks and state that `afterCommit` and `transactionState` keep for a transaction of `withTransaction`. */
interface OpenTransaction {
  hooks: Map<string, CommitHook>;
  states: Map<string, unknown>;
}

const openTransactions = new WeakMap<object, OpenTransaction>();

/**
 * Runs `hook` once after the transaction of `client` commits, when `client`
 * is inside `withTransaction`. A hook registered again under the same `key`
 * in one transaction runs once. Returns false, and registers nothing, for a
 * client outside `withTransaction`, such as the pool itself.
 */
export function afterCommit(client: Queryable, key: string, hook: CommitHook): boolean {
  const transaction = openTransactions.get(client);
  if (transaction === undefined) {
    return false;
  }
  transaction.hooks.set(key, hook);
  return true;
}

/**
 * Returns the value stored under `key` for the transaction of `client`,
 * made by `create` on first use, so that several calls inside one
 * transaction share it and the next transaction on the same client starts
 * without it. Returns undefined for a client outside `withTransaction`.
 */
export function transactionState<T>(client: Queryable, key: string, create: () => T): T | undefined {
  const states = openTransactions.get(client)?.states;
  if (states === undefined) {
    return undefined;
  }
  if (!states.has(key)) {
    states.set(key, create());
  }
  return states.get(key) as T;
}

/** Anything that runs a query: the pool or a client inside a transaction. */
export type Queryable = Pick<pg.Pool, 'query'> | Pick<pg.PoolClient, 'query'>;
