import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import type { Logger } from 'pino';
import { DomicileError } from '../policy/errors.ts';
import { catchConnectionError, type Database } from './database.ts';

const MIGRATIONS_DIR = fileURLToPath(new URL('./migrations/', import.meta.url));

/** Advisory lock key that serializes migrations across processes: ASCII "dmcmigr" as a number. */
const MIGRATION_LOCK_KEY = 0x646d636d696772n;

interface Migration {
  version: number;
  name: string;
  sql: string;
  checksum: string;
}

/** Reads `migrations/NNN_name.sql`, ordered by number. */
export function listMigrations(): Migration[] {
  const migrations: Migration[] = [];
  for (const file of readdirSync(MIGRATIONS_DIR).sort()) {
    const match = /^(\d{3})_([a-z0-9_]+)\.sql$/.exec(file);
    if (match === null) {
      continue;
    }
    const sql = readFileSync(`${MIGRATIONS_DIR}${file}`, 'utf8');
    migrations.push({
      version: Number(match[1]),
      name: match[2] ?? '',
      sql,
      checksum: createHash('sha256').update(sql).digest('hex'),
    });
  }
  return migrations;
}

/**
 * Applies the migrations that the database lacks, each in its own transaction.
 * Idempotent. On real Postgres a session advisory lock makes a second process
 * wait until the first has finished, then find nothing left to do. PGlite has
 * one session for every connection, so its pool of one already serializes.
 * Returns the versions applied by this call.
 */
export async function migrate(db: Database, logger: Logger): Promise<number[]> {
  const client = await db.pool.connect();
  const connectionError = catchConnectionError(client);
  let locked = false;
  try {
    if (db.kind === 'postgres') {
      await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY.toString()]);
      locked = true;
    }
    return await applyPending(client, logger);
  } finally {
    if (locked) {
      await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY.toString()]).catch(() => undefined);
    }
    client.release(connectionError());
  }
}

async function applyPending(client: pg.PoolClient, logger: Logger): Promise<number[]> {
  await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
  )`);
  const applied = await client.query<{ version: number; checksum: string }>('SELECT version, checksum FROM schema_migrations');
  const appliedByVersion = new Map(applied.rows.map((row) => [row.version, row.checksum]));

  const done: number[] = [];
  for (const migration of listMigrations()) {
    const checksum = appliedByVersion.get(migration.version);
    if (checksum !== undefined) {
      if (checksum !== migration.checksum) {
        throw new DomicileError(
          'internal',
          `migration ${migration.version}_${migration.name} differs from the one applied to this database; applied migrations must not change`,
        );
      }
      continue;
    }

    await client.query('BEGIN');
    try {
      await client.query(migration.sql);
      await client.query('INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)', [
        migration.version,
        migration.name,
        migration.checksum,
      ]);
      await client.query('COMMIT');
    } catch (cause) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw new DomicileError('internal', `migration ${migration.version}_${migration.name} failed`, { cause });
    }
    logger.info({ event: 'migration.applied', version: migration.version, name: migration.name }, 'applied a migration');
    done.push(migration.version);
  }
  return done;
}
