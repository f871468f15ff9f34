/**
 * The data folder as a whole, before anything in it is read: it must be
 * writable, it is locked for the life of the process (one node per folder),
 * and its metadata store must be whole before lmdb maps it.
 *
 * Every check fails with a StartupError: one line naming the folder or file
 * and what to do, never a stack trace and never a repair that loses data.
 */
import fs from 'node:fs';
import path from 'node:path';
import { flockSync } from 'fs-ext';
import { StartupError } from '../core/errors.js';
import { lmdbFileProblem } from './meta.js';

/** The lock file: `flock`ed exclusively by the running node, holding its pid. */
export const lockFileName = 'LOCK';

export interface DataLock {
  readonly file: string;
  /** Releases the lock (also released by the kernel when the process dies, however it dies). */
  release(): void;
}

/**
 * Creates a folder and its missing parents, one mkdir each. Not
 * `mkdirSync(..., { recursive: true })`: on Node 20 that loops forever where
 * mkdir answers ENOENT for a parent that exists (under /proc, for one).
 */
export function makeFolder(folder: string): void {
  const missing: string[] = [];
  for (let current = path.resolve(folder); !fs.existsSync(current); current = path.dirname(current)) {
    missing.unshift(current);
    if (path.dirname(current) === current) break;
  }
  for (const each of missing) {
    try {
      fs.mkdirSync(each);
    } catch (error) {
      if (codeOf(error) !== 'EEXIST') throw error;
    }
  }
}

/** Creates the folder if needed and checks that the node can write in it. */
export function prepareDataFolder(dataDir: string): void {
  try {
    makeFolder(dataDir);
  } catch (error) {
    throw new StartupError(`cannot create the data folder ${dataDir} (${codeOf(error)}); create it with the right owner or choose another with paths.data`);
  }
  try {
    fs.accessSync(dataDir, fs.constants.R_OK | fs.constants.W_OK | fs.constants.X_OK);
  } catch (error) {
    throw new StartupError(`the data folder ${dataDir} is not writable (${codeOf(error)}); fix its owner or mode, or choose another with paths.data`);
  }
}

/**
 * Takes the folder's exclusive lock: an OS file lock (flock) on `<data>/LOCK`,
 * held until the process exits. A second node on the same folder is refused
 * at once, naming the pid that holds it. A lock is never stale: the kernel
 * drops it with the process, so a restart right after `kill -9` just works.
 */
export function acquireDataLock(dataDir: string): DataLock {
  const file = path.join(dataDir, lockFileName);
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o644);
  } catch (error) {
    throw new StartupError(`cannot open the lock file ${file} (${codeOf(error)}); check the data folder's owner and mode`);
  }
  try {
    flockSync(fd, 'exnb');
  } catch (error) {
    fs.closeSync(fd);
    if (!isWouldBlock(error)) throw new StartupError(`cannot lock ${file} (${codeOf(error)})`);
    const holder = readHolderPid(file);
    throw new StartupError(`the data folder ${dataDir} is in use by another node${holder === undefined ? '' : ` (pid ${holder})`}; stop it first, or choose another folder with paths.data`);
  }
  // Fixed width, written in place: no truncation, so no new block is needed even on a full disk.
  const pid = Buffer.from(`${String(process.pid).padEnd(20)}\n`);
  fs.writeSync(fd, pid, 0, pid.length, 0);
  let released = false;
  return {
    file,
    release() {
      if (released) return;
      released = true;
      // Closing the descriptor drops the flock.
      fs.closeSync(fd);
    },
  };
}

/**
 * Whether a live process holds the folder's lock, and its pid (unknown for
 * the instant between its lock and its pid being written).
 */
export function lockHolder(dataDir: string): { pid: number | undefined } | undefined {
  const file = path.join(dataDir, lockFileName);
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch {
    return undefined;
  }
  try {
    flockSync(fd, 'shnb');
    return undefined;
  } catch (error) {
    return isWouldBlock(error) ? { pid: readPid(file) } : undefined;
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Checks `<data>/meta` before lmdb maps it: a truncated or foreign data.mdb
 * would crash the process with SIGBUS. And a folder whose streams outlived
 * their metadata (meta/ deleted or emptied) is not started as if new: users,
 * grants, policies and the session secret would silently reset.
 */
export function checkMetaFolder(dataDir: string, allowRecreate: boolean): void {
  const metaDir = path.join(dataDir, 'meta');
  const dataFile = path.join(metaDir, 'data.mdb');
  const size = fileSize(dataFile);
  if (size > 0) {
    const problem = lmdbFileProblem(dataFile);
    if (problem !== undefined) {
      throw new StartupError(`the metadata file ${dataFile} is damaged (${problem}); restore ${metaDir} from a backup (the node will not map a damaged file)`);
    }
    return;
  }
  if (!allowRecreate && holdsStreamData(dataDir)) {
    throw new StartupError(
      `${path.join(dataDir, 'vnodes')} holds stream data but ${metaDir} is missing or empty (users, grants, policies and the session secret would be reset); restore it from a backup, or start once with --storage.meta.recreate yes to rebuild it from defaults`,
    );
  }
}

/** Whether the folder holds streams or an unreplayed commit log (cheap: stops at the first one found). */
export function holdsStreamData(dataDir: string): boolean {
  const vnodes = path.join(dataDir, 'vnodes');
  for (const partition of readdirOrEmpty(vnodes)) {
    if (readdirOrEmpty(path.join(vnodes, partition)).length > 0) return true;
  }
  return readdirOrEmpty(path.join(dataDir, 'commitlog')).some((name) => /^\d{20}\.log$/.test(name) && fileSize(path.join(dataDir, 'commitlog', name)) > 0);
}

function readdirOrEmpty(directory: string): string[] {
  try {
    return fs.readdirSync(directory);
  } catch {
    return [];
  }
}

function fileSize(file: string): number {
  try {
    return fs.statSync(file).size;
  } catch {
    return 0;
  }
}

/** The holder's pid, waiting a moment for it: the holder writes it just after it takes the lock. */
function readHolderPid(file: string): number | undefined {
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (let attempt = 0; attempt < 20; attempt++) {
    const pid = readPid(file);
    if (pid !== undefined) return pid;
    Atomics.wait(pause, 0, 0, 5);
  }
  return undefined;
}

function readPid(file: string): number | undefined {
  try {
    const pid = Number(fs.readFileSync(file, 'utf8').trim());
    return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function isWouldBlock(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException).code;
  return code === 'EAGAIN' || code === 'EWOULDBLOCK';
}

function codeOf(error: unknown): string {
  return (error as NodeJS.ErrnoException).code ?? (error as Error).message;
}
