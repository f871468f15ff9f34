/**
 * Where a node that is not (yet) in our ring listens: what Erlang's epmd
 * answers for riak_core. `cluster join iorio1@127.0.0.1` names a node, not
 * a port. Each running node records itself in a per-host folder
 * (`<tmpdir>/iorio-nodes/<name>.json`, removed when it stops); a node not
 * found there is looked for at its name's host on this node's own
 * cluster.port (production clusters use one port everywhere, as Riak's
 * handoff port).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Address, MemberInfo } from '../core/ring.js';

export const registryFolder = path.join(os.tmpdir(), 'iorio-nodes');

interface RegistryEntry {
  readonly name: string;
  readonly cluster: Address;
  readonly http: Address;
  readonly pid: number;
}

function entryFile(name: string): string {
  return path.join(registryFolder, `${encodeURIComponent(name)}.json`);
}

/** Records this node (best effort: a read-only tmpdir only costs the lookup). */
export function registerNode(member: MemberInfo): () => void {
  const file = entryFile(member.name);
  try {
    fs.mkdirSync(registryFolder, { recursive: true, mode: 0o1777 });
    const entry: RegistryEntry = { name: member.name, cluster: member.cluster, http: member.http, pid: process.pid };
    fs.writeFileSync(`${file}.${process.pid}`, JSON.stringify(entry));
    fs.renameSync(`${file}.${process.pid}`, file);
  } catch {
    return () => undefined;
  }
  return () => {
    try {
      const entry = JSON.parse(fs.readFileSync(file, 'utf8')) as RegistryEntry;
      if (entry.pid === process.pid) fs.rmSync(file, { force: true });
    } catch {
      // gone already
    }
  };
}

/** A running node's addresses as it recorded them, if it runs on this host. */
export function lookupNode(name: string): { cluster: Address; http: Address } | undefined {
  try {
    const entry = JSON.parse(fs.readFileSync(entryFile(name), 'utf8')) as RegistryEntry;
    if (entry.name !== name || !isAlive(entry.pid)) return undefined;
    return { cluster: entry.cluster, http: entry.http };
  } catch {
    return undefined;
  }
}

/** The host part of `name@host`. */
export function hostOfNode(name: string): string {
  return name.slice(name.indexOf('@') + 1);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
