/**
 * A bounded pool of open file descriptors, least recently used closed first,
 * so 100,000 streams never mean 100,000 open files. A descriptor in use (an
 * in-flight read or write) is pinned and never closed under its user.
 */
import fs from 'node:fs';

interface PooledFile {
  fd: number;
  pins: number;
  /** Called before the descriptor is closed (flush a write buffer). */
  beforeClose: (() => void) | undefined;
}

export class FilePool {
  private readonly files = new Map<string, PooledFile>();
  /** Descriptors dropped from the pool while pinned: closed when their last user releases them. */
  private readonly doomed = new Map<number, PooledFile>();
  private readonly capacity: number;
  opened = 0;

  constructor(capacity: number) {
    this.capacity = Math.max(2, capacity);
  }

  get size(): number {
    return this.files.size;
  }

  /** Opens (or reuses) `file` for reading and appending, pinned until `release`. */
  acquire(file: string, beforeClose?: () => void): number {
    let entry = this.files.get(file);
    if (entry) {
      this.files.delete(file);
      this.files.set(file, entry);
    } else {
      this.makeRoom();
      entry = { fd: fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_APPEND, 0o644), pins: 0, beforeClose };
      this.opened++;
      this.files.set(file, entry);
    }
    if (beforeClose) entry.beforeClose = beforeClose;
    entry.pins++;
    return entry.fd;
  }

  release(file: string, fd: number): void {
    const entry = this.files.get(file);
    if (entry && entry.fd === fd) {
      if (entry.pins > 0) entry.pins--;
      return;
    }
    const doomed = this.doomed.get(fd);
    if (doomed && --doomed.pins <= 0) {
      this.doomed.delete(fd);
      fs.closeSync(fd);
    }
  }

  /** Runs `use` with the file's descriptor pinned. */
  with<T>(file: string, use: (fd: number) => T, beforeClose?: () => void): T {
    const fd = this.acquire(file, beforeClose);
    try {
      return use(fd);
    } finally {
      this.release(file, fd);
    }
  }

  async withAsync<T>(file: string, use: (fd: number) => Promise<T>): Promise<T> {
    const fd = this.acquire(file);
    try {
      return await use(fd);
    } finally {
      this.release(file, fd);
    }
  }

  /** Closes the file now if it is open (it is being deleted or truncated). */
  close(file: string): void {
    const entry = this.files.get(file);
    if (!entry) return;
    entry.beforeClose?.();
    this.files.delete(file);
    if (entry.pins === 0) fs.closeSync(entry.fd);
    else this.doomed.set(entry.fd, entry);
  }

  private makeRoom(): void {
    if (this.files.size < this.capacity) return;
    for (const [file, entry] of this.files) {
      if (entry.pins > 0) continue;
      entry.beforeClose?.();
      this.files.delete(file);
      fs.closeSync(entry.fd);
      if (this.files.size < this.capacity) return;
    }
    // Every descriptor is pinned: go over the cap rather than fail; pins are short.
  }

  closeAll(): void {
    for (const [file, entry] of this.files) {
      entry.beforeClose?.();
      fs.closeSync(entry.fd);
      this.files.delete(file);
    }
  }
}
