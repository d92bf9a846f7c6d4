import { createCipheriv, createDecipheriv, createHash, randomBytes, randomUUID } from 'node:crypto';
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import type pg from 'pg';
import { DomicileError } from '../policy/errors.ts';
import type { EncryptionContext, KeyProvider } from '../tokenizer/keys/provider.ts';
import { catchConnectionError, type Database } from './database.ts';

/**
 * Encrypted logical backups of the project's tables, for real Postgres and
 * PGlite alike. File layout (never change the meaning of a field):
 *
 *   "DMCBAK01" | uint32 BE header length | header JSON (UTF-8)
 *   frames: uint32 BE length | 12-byte nonce | AES-256-GCM ciphertext | 16-byte tag
 *
 * The header contains the backup key wrapped by the KEK (context
 * `{ purpose: 'backup', backup: <id> }`), so restoring needs the same key
 * provider. Each frame's AAD is `<sha256 hex of the header>:<index>:<more|final>`,
 * so frames cannot be reordered, dropped, cut off at the end or moved to
 * another file. The plaintext is JSON lines: `["table", name, columns]`,
 * then `["row", row_to_json]` for each row of that table.
 */
export const BACKUP_MAGIC = Buffer.from('DMCBAK01', 'ascii');
const FRAME_PLAINTEXT_BYTES = 64 * 1024;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const FETCH_ROWS = 500;
export const MAX_HEADER_BYTES = 1024 * 1024;
export const MAX_FRAME_BYTES = FRAME_PLAINTEXT_BYTES * 4;

export interface BackupHeader {
  format: 'domicile-backup';
  formatVersion: 1;
  backupId: string;
  createdAt: string;
  databaseKind: Database['kind'];
  /** Migration versions applied to the backed-up database. */
  migrations: number[];
  /** Tables in restore order (referenced tables first) and their row counts at the snapshot. */
  tables: Array<{ name: string; rows: number }>;
  kekVersion: string;
  /** Base64 of the wrapped 32-byte backup key. */
  wrappedKey: string;
}

/** Encryption context of a backup key. Stored backups depend on it: never change it. */
export function backupKeyContext(backupId: string): EncryptionContext {
  return { purpose: 'backup', backup: backupId };
}

export function frameAad(headerDigest: string, index: number, final: boolean): Buffer {
  return Buffer.from(`${headerDigest}:${index}:${final ? 'final' : 'more'}`, 'utf8');
}

export function quoteIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/**
 * Lists the base tables of the current schema except `schema_migrations`,
 * ordered so that every table comes after the tables it references.
 */
export async function listProjectTables(client: Pick<pg.PoolClient, 'query'>): Promise<string[]> {
  const tables = await client.query<{ name: string }>(
    `SELECT table_name AS name FROM information_schema.tables
     WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' AND table_name <> 'schema_migrations'
     ORDER BY table_name`,
  );
  const edges = await client.query<{ child: string; parent: string }>(
    `SELECT cc.relname AS child, pc.relname AS parent
     FROM pg_constraint c
     JOIN pg_class cc ON cc.oid = c.conrelid
     JOIN pg_class pc ON pc.oid = c.confrelid
     JOIN pg_namespace n ON n.oid = c.connamespace
     WHERE c.contype = 'f' AND n.nspname = current_schema()`,
  );
  const parents = new Map<string, Set<string>>(tables.rows.map((row) => [row.name, new Set<string>()]));
  for (const edge of edges.rows) {
    if (edge.child !== edge.parent) {
      parents.get(edge.child)?.add(edge.parent);
    }
  }

  const ordered: string[] = [];
  const placed = new Set<string>();
  while (ordered.length < parents.size) {
    const ready = [...parents].find(([name, needs]) => !placed.has(name) && [...needs].every((parent) => placed.has(parent) || !parents.has(parent)));
    if (ready === undefined) {
      throw new DomicileError('internal', 'tables reference each other in a cycle; cannot order them for a backup');
    }
    ordered.push(ready[0]);
    placed.add(ready[0]);
  }
  return ordered;
}

/** Writes frames of at most FRAME_PLAINTEXT_BYTES, each encrypted on its own. */
class FrameWriter {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private index = 0;

  constructor(
    private readonly file: FileHandle,
    private readonly key: Buffer,
    private readonly headerDigest: string,
  ) {}

  async push(text: string): Promise<void> {
    const bytes = Buffer.from(text, 'utf8');
    this.pending.push(bytes);
    this.pendingBytes += bytes.length;
    while (this.pendingBytes >= FRAME_PLAINTEXT_BYTES) {
      const all = Buffer.concat(this.pending);
      await this.writeFrame(all.subarray(0, FRAME_PLAINTEXT_BYTES), false);
      const rest = all.subarray(FRAME_PLAINTEXT_BYTES);
      this.pending = [rest];
      this.pendingBytes = rest.length;
    }
  }

  async finish(): Promise<void> {
    await this.writeFrame(Buffer.concat(this.pending), true);
    this.pending = [];
    this.pendingBytes = 0;
  }

  private async writeFrame(plaintext: Buffer, final: boolean): Promise<void> {
    const nonce = randomBytes(NONCE_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.key, nonce, { authTagLength: TAG_BYTES });
    cipher.setAAD(frameAad(this.headerDigest, this.index, final));
    const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    const length = Buffer.alloc(4);
    length.writeUInt32BE(NONCE_BYTES + body.length + TAG_BYTES);
    await this.file.write(Buffer.concat([length, nonce, body, cipher.getAuthTag()]));
    this.index += 1;
  }
}

/** Decrypts one frame; every failure gives the same message, so the error is no oracle. */
export function decryptFrame(key: Buffer, frame: Buffer, aad: Buffer): Buffer {
  try {
    if (frame.length < NONCE_BYTES + TAG_BYTES) {
      throw new Error('short frame');
    }
    const decipher = createDecipheriv('aes-256-gcm', key, frame.subarray(0, NONCE_BYTES), { authTagLength: TAG_BYTES });
    decipher.setAAD(aad);
    decipher.setAuthTag(frame.subarray(frame.length - TAG_BYTES));
    return Buffer.concat([decipher.update(frame.subarray(NONCE_BYTES, frame.length - TAG_BYTES)), decipher.final()]);
  } catch {
    throw new DomicileError('invalid_request', 'backup file is damaged or was not written with this key provider');
  }
}

export interface BackupResult {
  path: string;
  tables: number;
  rows: number;
}

/**
 * Writes an encrypted backup of every project table to `path`, from one
 * REPEATABLE READ snapshot, streaming rows through a cursor. The file is
 * written under a temporary name, synced, then renamed, so `path` never holds
 * a partial backup. `onProgress` receives rows written so far and the total.
 * NOTE: on PGlite the snapshot holds the one pooled connection, so other
 * requests wait until the backup ends.
 */
export async function writeBackup(
  db: Database,
  keys: KeyProvider,
  path: string,
  options: { onProgress?: (done: number, total: number) => void } = {},
): Promise<BackupResult> {
  const backupId = randomUUID();
  const key = randomBytes(32);
  const temporary = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const client = await db.pool.connect();
  const connectionError = catchConnectionError(client);
  let file: FileHandle | undefined;
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const tables = await listProjectTables(client);
    const counted: BackupHeader['tables'] = [];
    for (const name of tables) {
      const count = await client.query<{ count: string }>(`SELECT count(*) AS count FROM ${quoteIdentifier(name)}`);
      counted.push({ name, rows: Number(count.rows[0]?.count ?? 0) });
    }
    const migrations = await client.query<{ version: number }>('SELECT version FROM schema_migrations ORDER BY version');
    const wrapped = await keys.wrap(key, backupKeyContext(backupId));
    const header: BackupHeader = {
      format: 'domicile-backup',
      formatVersion: 1,
      backupId,
      createdAt: new Date().toISOString(),
      databaseKind: db.kind,
      migrations: migrations.rows.map((row) => row.version),
      tables: counted,
      kekVersion: wrapped.kekVersion,
      wrappedKey: wrapped.ciphertext.toString('base64'),
    };

    const headerBytes = Buffer.from(JSON.stringify(header), 'utf8');
    const headerLength = Buffer.alloc(4);
    headerLength.writeUInt32BE(headerBytes.length);
    file = await open(temporary, 'wx', 0o600);
    await file.write(Buffer.concat([BACKUP_MAGIC, headerLength, headerBytes]));

    const frames = new FrameWriter(file, key, createHash('sha256').update(headerBytes).digest('hex'));
    const total = counted.reduce((sum, table) => sum + table.rows, 0);
    let done = 0;
    for (const table of counted) {
      const columns = await client.query<{ column_name: string }>(
        `SELECT column_name FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position`,
        [table.name],
      );
      await frames.push(`${JSON.stringify(['table', table.name, columns.rows.map((row) => row.column_name)])}\n`);
      done = await dumpRows(client, table.name, frames, done, (rows) => options.onProgress?.(rows, total));
    }
    await frames.finish();
    await client.query('COMMIT');
    await file.sync();
    await file.close();
    file = undefined;
    await rename(temporary, path);
    options.onProgress?.(done, total);
    return { path, tables: counted.length, rows: done };
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    if (file !== undefined) {
      await file.close().catch(() => undefined);
      await rm(temporary, { force: true });
    }
    throw error;
  } finally {
    key.fill(0);
    client.release(connectionError());
  }
}

async function dumpRows(
  client: pg.PoolClient,
  table: string,
  frames: FrameWriter,
  doneBefore: number,
  onRows: (done: number) => void,
): Promise<number> {
  let done = doneBefore;
  const cursor = `backup_${table.replaceAll(/[^a-z0-9_]/gi, '_')}`;
  await client.query(`DECLARE ${cursor} NO SCROLL CURSOR FOR SELECT row_to_json(t)::text AS row FROM ${quoteIdentifier(table)} t`);
  for (;;) {
    const batch = await client.query<{ row: string }>(`FETCH ${FETCH_ROWS} FROM ${cursor}`);
    for (const { row } of batch.rows) {
      await frames.push(`["row",${row}]\n`);
    }
    done += batch.rows.length;
    onRows(done);
    if (batch.rows.length < FETCH_ROWS) {
      break;
    }
  }
  await client.query(`CLOSE ${cursor}`);
  return done;
}
