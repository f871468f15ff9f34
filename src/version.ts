/**
 * Iorio's version: package.json's, read once from the package root (the
 * nearest package.json above this module, from src/ under tsx as from
 * dist/src/ once built), so there is one place to bump it.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Folders climbed at most looking for package.json (dist/src/ is two below the root). */
const climbMax = 4;

function readVersion(): string {
  let folder = dirname(fileURLToPath(import.meta.url));
  for (let step = 0; step <= climbMax; step += 1) {
    try {
      const manifest = JSON.parse(readFileSync(join(folder, 'package.json'), 'utf8')) as { name?: unknown; version?: unknown };
      if (manifest.name === 'iorio' && typeof manifest.version === 'string') return manifest.version;
    } catch {
      // not here: climb
    }
    folder = dirname(folder);
  }
  return 'unknown';
}

export const version: string = readVersion();

/** What every binary prints for `--version` / `version`: `<binary> <version> (node <version>)`. */
export function versionLine(binary: string): string {
  return `${binary} ${version} (node ${process.versions.node})`;
}
