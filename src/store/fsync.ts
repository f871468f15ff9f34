/** fsync for folders: a new or renamed file survives an OS crash only once its folder is synced. */
import fs from 'node:fs';
import path from 'node:path';

export function fsyncDirectorySync(directory: string): void {
  const fd = fs.openSync(directory, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** fsyncs the folders that gained files, and their parent and grandparent (a stream's folder may be new too), a few at a time. */
export async function fsyncDirectories(directories: readonly string[]): Promise<void> {
  const targets = new Set<string>();
  for (const directory of directories) {
    targets.add(directory);
    targets.add(path.dirname(directory));
    targets.add(path.dirname(path.dirname(directory)));
  }
  const list = [...targets];
  let next = 0;
  const worker = async () => {
    while (next < list.length) {
      const target = list[next++]!;
      let handle: fs.promises.FileHandle | undefined;
      try {
        handle = await fs.promises.open(target, 'r');
        await handle.sync();
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      } finally {
        await handle?.close();
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(8, list.length) }, worker));
}
