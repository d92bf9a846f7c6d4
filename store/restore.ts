import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import type pg from 'pg';
import type { Logger } from 'pino';
import { DomicileError } from '../policy/errors.ts';
import type { KeyProvider } from '../tokenizer/keys/provider.ts';
import {
  BACKUP_MAGIC,
  backupKeyContext,
  decryptFrame,
  frameAad,
  listProjectTables,
  MAX_FRAME_BYTES,
  MAX_HEADER_BYTES,
  quoteIdentifier,
  type BackupHeader,
} from './backup.ts';
import { withTransaction, type Database } from './database.ts';
import type { ErasureLogEntry } from './erasure-log.ts';
import { listMigrations, migrate } from './migrate.ts';
import type { VaultDeps } from './vault-common.ts';
import { eraseSubject } from './vault-update.ts';

const INSERT_BATCH = 500;
/** Rows that `migrate` itself inserts; a database holding only these counts as empty. */
const SEEDED_TABLES = new Set(['audit_head']);

export interface RestoreResult {
  tables: number;
  rows: number;
}

/**
 * Restores a backup written by `writeBackup` into the database, in one
 * transaction. The database is migrated first; it must be empty unless
 * `force` is set, in which case every project table is emptied. A backup
 * whose migrations this code does not know is rejected. `onProgress`
 * receives bytes read and the file size.
 */
export async function restoreBackup(
  db: Database,
  keys: KeyProvider,
  path: string,
  options: { force?: boolean; logger: Logger; onProgress?: (done: number, total: number) => void },
): Promise<RestoreResult> {
  const file = await open(path, 'r');
  try {
    const size = (await file.stat()).size;
    const reader = new ExactReader(file);
    const { header, headerDigest } = await readHeader(reader);
    const known = new Set(listMigrations().map((migration) => migration.version));
    const unknown = header.migrations.filter((version) => !known.has(version));
    if (unknown.length > 0) {
      throw new DomicileError('invalid_request', `backup was written by a newer Domicile (migrations ${unknown.join(', ')}); upgrade before restoring`);
    }
    await migrate(db, options.logger);
    if (options.force !== true) {
      await requireEmpty(db);
    }

    const key = await keys.unwrap({ kekVersion: header.kekVersion, ciphertext: Buffer.from(header.wrappedKey, 'base64') }, backupKeyContext(header.backupId));
    try {
      return await withTransaction(db, async (client) => {
        const tables = await listProjectTables(client);
        await client.query(`TRUNCATE ${tables.map(quoteIdentifier).join(', ')} CASCADE`);
        const loader = new TableLoader(client, new Set(tables));
        let index = 0;
        let final = false;
        while (!final) {
          const frame = await reader.readFrame();
          if (frame === undefined) {
            throw new DomicileError('invalid_request', 'backup file is cut off: its last part is missing');
          }
          final = frame.final;
          const plaintext = decryptFrame(key, frame.body, frameAad(headerDigest, index, frame.final));
          await loader.feed(plaintext);
          index += 1;
          options.onProgress?.(reader.position, size);
        }
        const result = await loader.finish();
        options.logger.info({ event: 'backup.restored', tables: result.tables, rows: result.rows }, 'restored a backup');
        return result;
      });
    } finally {
      key.fill(0);
    }
  } finally {
    await file.close();
  }
}

async function requireEmpty(db: Database): Promise<void> {
  const tables = await listProjectTables(db.pool);
  for (const table of tables) {
    if (SEEDED_TABLES.has(table)) {
      continue;
    }
    const rows = await db.pool.query(`SELECT 1 FROM ${quoteIdentifier(table)} LIMIT 1`);
    if (rows.rows.length > 0) {
      throw new DomicileError('conflict', `database is not empty (table ${table} has rows); restore into an empty database, or pass --force to replace its contents`);
    }
  }
  const head = await db.pool.query<{ seq: string }>('SELECT seq FROM audit_head WHERE id = 1');
  if (Number(head.rows[0]?.seq ?? 0) !== 0) {
    throw new DomicileError('conflict', 'database is not empty (the audit log has entries); restore into an empty database, or pass --force to replace its contents');
  }
}

/** Reads exact byte counts from a file and tracks the position. */
class ExactReader {
  position = 0;
  constructor(private readonly file: FileHandle) {}

  async read(length: number): Promise<Buffer | undefined> {
    const buffer = Buffer.alloc(length);
    let filled = 0;
    while (filled < length) {
      const { bytesRead } = await this.file.read(buffer, filled, length - filled, this.position + filled);
      if (bytesRead === 0) {
        return filled === 0 ? undefined : buffer.subarray(0, filled);
      }
      filled += bytesRead;
    }
    this.position += length;
    return buffer;
  }

  /** Reads one frame and looks ahead one byte to learn whether it is the last. */
  async readFrame(): Promise<{ body: Buffer; final: boolean } | undefined> {
    const length = await this.read(4);
    if (length === undefined || length.length < 4) {
      return undefined;
    }
    const size = length.readUInt32BE();
    if (size > MAX_FRAME_BYTES) {
      throw new DomicileError('invalid_request', 'backup file is damaged: a part is larger than the format allows');
    }
    const body = await this.read(size);
    if (body === undefined || body.length < size) {
      return undefined;
    }
    const probe = Buffer.alloc(1);
    const { bytesRead } = await this.file.read(probe, 0, 1, this.position);
    return { body, final: bytesRead === 0 };
  }
}

async function readHeader(reader: ExactReader): Promise<{ header: BackupHeader; headerDigest: string }> {
  const magic = await reader.read(BACKUP_MAGIC.length + 4);
  if (magic === undefined || magic.length < BACKUP_MAGIC.length + 4 || !magic.subarray(0, BACKUP_MAGIC.length).equals(BACKUP_MAGIC)) {
    throw new DomicileError('invalid_request', 'file is not a Domicile backup');
  }
  const length = magic.readUInt32BE(BACKUP_MAGIC.length);
  const bytes = length > MAX_HEADER_BYTES ? undefined : await reader.read(length);
  if (bytes === undefined || bytes.length < length) {
    throw new DomicileError('invalid_request', 'backup file is damaged: its header is incomplete');
  }
  let header: BackupHeader;
  try {
    header = JSON.parse(bytes.toString('utf8')) as BackupHeader;
  } catch {
    throw new DomicileError('invalid_request', 'backup file is damaged: its header is not JSON');
  }
  if (header.format !== 'domicile-backup' || header.formatVersion !== 1 || !Array.isArray(header.migrations)) {
    throw new DomicileError('invalid_request', 'backup file has an unknown format version');
  }
  return { header, headerDigest: createHash('sha256').update(bytes).digest('hex') };
}

/** Parses the JSON lines of the plaintext and inserts rows in batches. */
class TableLoader {
  private carry = '';
  private table: { name: string; columns: string[] } | undefined;
  private rows: string[] = [];
  private tables = 0;
  private total = 0;

  constructor(
    private readonly client: pg.PoolClient,
    private readonly existing: Set<string>,
  ) {}

  async feed(plaintext: Buffer): Promise<void> {
    const text = this.carry + plaintext.toString('utf8');
    const lines = text.split('\n');
    this.carry = lines.pop() ?? '';
    for (const line of lines) {
      if (line.startsWith('["row",')) {
        // The row object sits between the 7-character prefix and the closing bracket.
        this.rows.push(line.slice(7, -1));
        if (this.rows.length >= INSERT_BATCH) {
          await this.flush();
        }
        continue;
      }
      const parsed = JSON.parse(line) as unknown;
      if (!Array.isArray(parsed) || parsed[0] !== 'table' || typeof parsed[1] !== 'string' || !Array.isArray(parsed[2])) {
        throw new DomicileError('invalid_request', 'backup file contains a line of an unknown kind');
      }
      await this.flush();
      await this.finishTable();
      const name = parsed[1];
      if (!this.existing.has(name)) {
        throw new DomicileError('invalid_request', `backup contains table ${name}, which this database schema lacks`);
      }
      this.table = { name, columns: parsed[2].map(String) };
      this.tables += 1;
    }
  }

  async finish(): Promise<RestoreResult> {
    if (this.carry !== '') {
      throw new DomicileError('invalid_request', 'backup file ends in the middle of a line');
    }
    await this.flush();
    await this.finishTable();
    return { tables: this.tables, rows: this.total };
  }

  private async flush(): Promise<void> {
    if (this.rows.length === 0) {
      return;
    }
    if (this.table === undefined) {
      throw new DomicileError('invalid_request', 'backup file has rows before its first table');
    }
    const table = quoteIdentifier(this.table.name);
    const columns = this.table.columns.map(quoteIdentifier).join(', ');
    await this.client.query(
      `INSERT INTO ${table} (${columns}) OVERRIDING SYSTEM VALUE
       SELECT ${columns} FROM json_populate_recordset(NULL::${table}, $1::json)`,
      [`[${this.rows.join(',')}]`],
    );
    this.total += this.rows.length;
    this.rows = [];
  }

  /** Moves identity and serial sequences past the restored ids. */
  private async finishTable(): Promise<void> {
    if (this.table === undefined) {
      return;
    }
    for (const column of this.table.columns) {
      const sequence = await this.client.query<{ name: string | null }>('SELECT pg_get_serial_sequence($1, $2) AS name', [
        quoteIdentifier(this.table.name),
        column,
      ]);
      const name = sequence.rows[0]?.name;
      if (name !== null && name !== undefined) {
        const column_ = quoteIdentifier(column);
        await this.client.query(
          `SELECT setval($1, COALESCE((SELECT max(${column_}) FROM ${quoteIdentifier(this.table.name)}), 0) + 1, false)`,
          [name],
        );
      }
    }
    this.table = undefined;
  }
}

/**
 * Erases again every subject of the erasure log that the database holds
 * unerased, through the normal erase path (data key deleted, ciphertexts
 * emptied, erase events queued, audited as `system:restore`). `deps` must
 * not write to the erasure log, whose lines already name these subjects.
 * Returns the number of subjects erased.
 */
export async function reapplyErasures(deps: Omit<VaultDeps, 'erasureLog'>, entries: readonly ErasureLogEntry[]): Promise<number> {
  const tokens = [...new Set(entries.map((entry) => entry.subjectToken))];
  let erased = 0;
  for (let start = 0; start < tokens.length; start += INSERT_BATCH) {
    const batch = tokens.slice(start, start + INSERT_BATCH);
    const live = await deps.db.pool.query<{ token: string }>(
      `SELECT s.token FROM subjects s
       WHERE s.token = ANY($1::text[]) AND s.erased_at IS NULL`,
      [batch],
    );
    for (const { token } of live.rows) {
      await eraseSubject(deps, { subjectToken: token, actor: { id: 'system:restore', location: 'in-country' }, purpose: 'system:restore' });
      erased += 1;
    }
  }
  return erased;
}
