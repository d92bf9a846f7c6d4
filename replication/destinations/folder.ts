import { randomBytes } from 'node:crypto';
import { mkdir, open, realpath, rename, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { DomicileError } from '../../policy/errors.ts';
import { validateObjectKey, type Destination } from './destination.ts';

/** Mode of a partial copy: read and write for the owner, read for the group, no access for others. */
const FILE_MODE = 0o640;
const FOLDER_MODE = 0o750;

/**
 * Creates a destination that writes each object as a file under `root`
 * (created if missing). Writes are atomic and durable. The body goes to a
 * temporary dot-file in the target folder, which is flushed and renamed over
 * the target, and then the folder itself is flushed. After a crash a reader
 * finds either the old file or the new one.
 */
export function createFolderDestination(root: string): Destination {
  const absoluteRoot = path.resolve(root);
  let realRoot: Promise<string> | undefined;

  // Resolved lazily and once, so the root may be created after start-up.
  const resolveRoot = async (): Promise<string> => {
    realRoot ??= mkdir(absoluteRoot, { recursive: true, mode: FOLDER_MODE }).then(() => realpath(absoluteRoot));
    try {
      return await realRoot;
    } catch (error) {
      realRoot = undefined;
      throw error;
    }
  };

  return {
    kind: 'folder',

    async put(key: string, body: Buffer): Promise<void> {
      const target = await resolveTarget(await resolveRoot(), key, true);
      const folder = path.dirname(target);
      const temporary = path.join(folder, `.${path.basename(target)}.${randomBytes(8).toString('hex')}.tmp`);

      try {
        await writeAndSync(temporary, body);
        await rename(temporary, target);
      } catch (error) {
        await unlink(temporary).catch(() => undefined);
        throw error;
      }
      await syncFolder(folder);
    },

    async remove(key: string): Promise<void> {
      const target = await resolveTarget(await resolveRoot(), key, false);
      try {
        await unlink(target);
      } catch (error) {
        if (isErrno(error, 'ENOENT')) {
          return;
        }
        throw error;
      }
      await syncFolder(path.dirname(target));
    },

    async close(): Promise<void> {},
  };
}

/**
 * Maps `key` to a path under `realRoot` and checks, after following symbolic
 * links, that its folder still lies inside the root. With `create`, missing
 * folders are created; without it, a missing folder is fine (nothing to remove).
 */
async function resolveTarget(realRoot: string, key: string, create: boolean): Promise<string> {
  validateObjectKey(key);
  const target = path.join(realRoot, ...key.split('/'));
  const folder = path.dirname(target);

  if (create) {
    await mkdir(folder, { recursive: true, mode: FOLDER_MODE });
  }
  let realFolder: string;
  try {
    realFolder = await realpath(folder);
  } catch (error) {
    if (!create && isErrno(error, 'ENOENT')) {
      return target;
    }
    throw error;
  }
  if (!isInside(realRoot, realFolder)) {
    throw new DomicileError('internal', 'object key resolves outside the destination folder');
  }
  return path.join(realFolder, path.basename(target));
}

function isInside(root: string, candidate: string): boolean {
  const relative = path.relative(root, candidate);
  return relative === '' || (!relative.startsWith('..') && !path.isAbsolute(relative));
}

async function writeAndSync(file: string, body: Buffer): Promise<void> {
  // `wx` fails if the name exists, so a stale temporary file is never reused.
  const handle = await open(file, 'wx', FILE_MODE);
  try {
    await handle.writeFile(body);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Flushes a folder's entries, so a rename or unlink survives a power loss. */
async function syncFolder(folder: string): Promise<void> {
  let handle: FileHandle | undefined;
  try {
    handle = await open(folder, 'r');
    await handle.sync();
  } catch (error) {
    // Some platforms (Windows) and file systems cannot fsync a folder; the rename is still atomic there.
    if (!isErrno(error, 'EISDIR') && !isErrno(error, 'EINVAL') && !isErrno(error, 'EPERM')) {
      throw error;
    }
  } finally {
    await handle?.close();
  }
}

function isErrno(error: unknown, code: string): boolean {
  return error instanceof Error && (error as NodeJS.ErrnoException).code === code;
}
