import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { DomicileError } from '../policy/errors.ts';

/**
 * An exclusive lock on a data folder: a file created with O_EXCL that contains
 * the owner's process id. PGlite itself does not lock its data folder, and two
 * processes writing the same folder corrupt it.
 */
export interface LockFile {
  readonly path: string;
  release(): void;
}

/**
 * Takes the lock at `path`, or takes over a lock left by a process that no
 * longer runs. Throws DomicileError `unavailable` when a live process owns it.
 */
export function acquireLockFile(path: string): LockFile {
  const pid = String(process.pid);

  for (let attempt = 0; attempt < 3; attempt += 1) {
    if (tryCreate(path, pid)) {
      return { path, release: () => releaseLockFile(path, pid) };
    }

    const holder = readHolder(path);
    if (holder === undefined) {
      // The file vanished between our create and read: try again.
      continue;
    }
    if (holder.pid !== undefined && isAlive(holder.pid)) {
      throw new DomicileError(
        'unavailable',
        `data folder is locked by process ${holder.pid} (lock file ${path}); stop that process or choose another data folder`,
      );
    }
    // NOTE: a short window remains between reading a stale lock and removing
    // it. A process that takes the lock inside that window loses it here.
    removeIfUnchanged(path, holder.text);
  }
  throw new DomicileError('unavailable', `cannot take the lock file ${path}; remove it if no Domicile process uses this data folder`);
}

function tryCreate(path: string, pid: string): boolean {
  let fd: number;
  try {
    fd = openSync(path, 'wx', 0o600);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
      return false;
    }
    throw new DomicileError('unavailable', `cannot create the lock file ${path}`, { cause: error });
  }
  try {
    writeSync(fd, `${pid}\n`);
  } finally {
    closeSync(fd);
  }
  return true;
}

function readHolder(path: string): { text: string; pid: number | undefined } | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      return undefined;
    }
    throw new DomicileError('unavailable', `cannot read the lock file ${path}`, { cause: error });
  }
  const pid = Number.parseInt(text.trim(), 10);
  return { text, pid: Number.isSafeInteger(pid) && pid > 0 ? pid : undefined };
}

/** Signal 0 checks for existence only; EPERM means the process exists under another user. */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function removeIfUnchanged(path: string, expected: string): void {
  const current = readHolder(path);
  if (current === undefined || current.text !== expected) {
    return;
  }
  try {
    unlinkSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new DomicileError('unavailable', `cannot remove the stale lock file ${path}`, { cause: error });
    }
  }
}

/** Removes the lock only while it is still ours, so a late release never frees another owner's lock. */
function releaseLockFile(path: string, pid: string): void {
  const current = readHolder(path);
  if (current?.text.trim() === pid) {
    unlinkSync(path);
  }
}
