import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative as relativePath } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DomicileError } from '../policy/errors.ts';
import { openDatabase, withClient, withTransaction } from './database.ts';
import { listMigrations, migrate } from './migrate.ts';
import { silentLogger, testDatabases, type OpenedTestDatabase } from './testing.ts';

const logger = silentLogger();

describe('embedded database lock', () => {
  let dataDir: string;

  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'domicile-lock-'));
  });
  after(async () => {
    await rm(dataDir, { recursive: true, force: true });
  });

  test('lock file stops a second opener', async () => {
    const first = await openDatabase({ dataDir, logger });
    try {
      assert.equal((await readFile(join(dataDir, 'pglite.lock'), 'utf8')).trim(), String(process.pid));
      await assert.rejects(openDatabase({ dataDir, logger }), (error: unknown) => {
        assert.ok(error instanceof DomicileError);
        assert.equal(error.code, 'unavailable');
        assert.match(error.message, /locked by process \d+/);
        return true;
      });
    } finally {
      await first.close();
    }
    await assert.rejects(readFile(join(dataDir, 'pglite.lock')), { code: 'ENOENT' });
  });

  test('the embedded database listens only on a Unix socket in a private folder', async () => {
    const db = await openDatabase({ dataDir, logger });
    let folder: string;
    try {
      // node-pg takes a host that starts with a slash as the folder of a Unix socket.
      folder = String(db.pool.options.host);
      assert.ok(folder.startsWith('/'), 'pool connects through a Unix socket, not a TCP port');
      assert.equal((await stat(folder)).mode & 0o777, 0o700);
      const socket = join(folder, `.s.PGSQL.${String(db.pool.options.port)}`);
      assert.ok((await stat(socket)).isSocket());
      assert.equal((await stat(socket)).mode & 0o777, 0o600);
      const result = await db.pool.query<{ answer: number }>('SELECT 42 AS answer');
      assert.equal(result.rows[0]?.answer, 42);
    } finally {
      await db.close();
    }
    await assert.rejects(stat(folder), { code: 'ENOENT' });
  });

  test('the embedded database folder is closed to other users', async () => {
    const shared = await mkdtemp(join(tmpdir(), 'domicile-shared-'));
    try {
      await chmod(shared, 0o755);
      await mkdir(join(shared, 'pgdata'), { mode: 0o755 });
      await chmod(join(shared, 'pgdata'), 0o755);
      const db = await openDatabase({ dataDir: shared, logger });
      await db.close();
      assert.equal((await stat(join(shared, 'pgdata'))).mode & 0o777, 0o700);
    } finally {
      await rm(shared, { recursive: true, force: true });
    }
  });

  test('a relative TMPDIR still gives a Unix socket', async () => {
    const previous = process.env['TMPDIR'];
    const relative = relativePath(process.cwd(), await mkdtemp(join(tmpdir(), 'domicile-tmpdir-')));
    process.env['TMPDIR'] = relative;
    try {
      const db = await openDatabase({ dataDir, logger });
      try {
        assert.ok(String(db.pool.options.host).startsWith('/'));
        assert.equal((await db.pool.query<{ answer: number }>('SELECT 42 AS answer')).rows[0]?.answer, 42);
      } finally {
        await db.close();
      }
    } finally {
      if (previous === undefined) delete process.env['TMPDIR'];
      else process.env['TMPDIR'] = previous;
      await rm(relative, { recursive: true, force: true });
    }
  });

  test('socket folder of a killed process is removed', async () => {
    const stale = await mkdtemp(join(tmpdir(), 'domicile-pglite-'));
    await writeFile(join(dataDir, 'pglite.socket'), `${stale}\n`);
    await writeFile(join(dataDir, 'pglite.lock'), '99999999\n');
    const db = await openDatabase({ dataDir, logger });
    try {
      await assert.rejects(stat(stale), { code: 'ENOENT' });
    } finally {
      await db.close();
    }
    await assert.rejects(stat(join(dataDir, 'pglite.socket')), { code: 'ENOENT' });
  });

  test('stale lock of a dead process is taken over', async () => {
    // Above the Linux maximum pid (2^22), so no process can have it.
    await writeFile(join(dataDir, 'pglite.lock'), '99999999\n');
    const db = await openDatabase({ dataDir, logger });
    try {
      assert.equal((await readFile(join(dataDir, 'pglite.lock'), 'utf8')).trim(), String(process.pid));
      const result = await db.pool.query<{ answer: number }>('SELECT 42 AS answer');
      assert.equal(result.rows[0]?.answer, 42);
    } finally {
      await db.close();
    }
  });

  test('data survives close and reopen', async () => {
    const first = await openDatabase({ dataDir, logger });
    await first.pool.query('CREATE TABLE IF NOT EXISTS kept (n integer)');
    await first.pool.query('INSERT INTO kept VALUES (7)');
    await first.close();

    const second = await openDatabase({ dataDir, logger });
    try {
      const result = await second.pool.query<{ n: number }>('SELECT n FROM kept');
      assert.deepEqual(result.rows, [{ n: 7 }]);
    } finally {
      await second.close();
    }
  });
});

for (const database of testDatabases()) {
  describe(`database on ${database.name}`, () => {
    let db: OpenedTestDatabase;

    before(async () => {
      db = await database.open({ migrate: false });
    });
    after(async () => {
      await db.close();
    });

    test('migrate applies every migration once', async () => {
      const all = listMigrations().map((migration) => migration.version);
      assert.deepEqual(await migrate(db, logger), all);
      assert.deepEqual(await migrate(db, logger), []);
      const applied = await db.pool.query<{ version: number }>('SELECT version FROM schema_migrations ORDER BY version');
      assert.deepEqual(applied.rows.map((row) => row.version), all);
    });

    test('transaction rolls back when the function throws', async () => {
      await db.pool.query('CREATE TABLE IF NOT EXISTS rollback_probe (n integer)');
      await assert.rejects(
        withTransaction(db, async (client) => {
          await client.query('INSERT INTO rollback_probe VALUES (1)');
          throw new Error('planned failure');
        }),
        /planned failure/,
      );
      const result = await db.pool.query('SELECT 1 FROM rollback_probe');
      assert.equal(result.rowCount, 0);
    });

    test('concurrent transactions do not interleave', async () => {
      await db.pool.query('CREATE TABLE IF NOT EXISTS counter (n integer)');
      await db.pool.query('INSERT INTO counter VALUES (0)');
      await Promise.all(
        Array.from({ length: 8 }, () =>
          withTransaction(db, async (client) => {
            const current = await client.query<{ n: number }>('SELECT n FROM counter FOR UPDATE');
            await client.query('UPDATE counter SET n = $1', [(current.rows[0]?.n ?? 0) + 1]);
          }),
        ),
      );
      const result = await db.pool.query<{ n: number }>('SELECT n FROM counter');
      assert.equal(result.rows[0]?.n, 8);
    });
  });
}

const databaseUrl = process.env['DATABASE_URL'];
if (databaseUrl !== undefined && databaseUrl !== '') {
  describe('migrations on real Postgres', () => {
    test('two processes migrating at once both succeed', async () => {
      const [postgres] = testDatabases().filter((database) => database.name === 'postgres');
      assert.ok(postgres !== undefined);
      const target = await postgres.open({ migrate: false });
      const second = await openDatabase({ databaseUrl: databaseUrlOf(target), dataDir: target.dataDir, logger });
      try {
        const [a, b] = await Promise.all([migrate(target, logger), migrate(second, logger)]);
        assert.deepEqual([...a, ...b].sort(), listMigrations().map((migration) => migration.version));
      } finally {
        await second.close();
        await target.close();
      }
    });

    test('server-ended connection spares the process', async () => {
      const [postgres] = testDatabases().filter((database) => database.name === 'postgres');
      assert.ok(postgres !== undefined);
      const target = await postgres.open({ migrate: false });
      try {
        await assert.rejects(
          withClient(target, async (client) => {
            const pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid;
            // Another connection ends this one between two of its queries, as a restart would.
            await target.pool.query('SELECT pg_terminate_backend($1)', [pid]);
            await new Promise((resolve) => setTimeout(resolve, 200));
            await client.query('SELECT 1');
          }),
        );
        const after = await target.pool.query<{ answer: number }>('SELECT 42 AS answer');
        assert.equal(after.rows[0]?.answer, 42);
      } finally {
        await target.close();
      }
    });
  });
}

/** Reads the connection string of a test database from its pool settings. */
function databaseUrlOf(db: OpenedTestDatabase): string {
  const options = (db.pool as unknown as { options: { connectionString: string } }).options;
  return options.connectionString;
}
