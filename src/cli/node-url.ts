/**
 * Where a running node answers, for the commands that talk to it (iorio
 * ping/status, iorio-admin): the URL the node wrote to `<data>/iorio.url`
 * when it started listening (right even with http.port = 0), else the
 * configured address.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from '../config.js';

export function urlFileOf(config: Config): string {
  return join(config['paths.data'], 'iorio.url');
}

/** A small file's text, trimmed; undefined when it cannot be read. */
export function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return undefined;
  }
}

export function nodeUrlOf(config: Config): string {
  const recorded = readText(urlFileOf(config));
  if (recorded !== undefined && recorded !== '') return recorded;
  const configured = config['http.host'];
  // A node listening on every interface is reached on loopback.
  const host = configured === '0.0.0.0' ? '127.0.0.1' : configured === '::' ? '::1' : configured;
  return `http://${host.includes(':') ? `[${host}]` : host}:${config['http.port']}`;
}
