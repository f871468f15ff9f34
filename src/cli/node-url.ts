/**
 * Where a running node answers: one rule for every tool that talks to a node
 * (iorio ping/status, iorio-admin, ioriocli, apitest), first match wins:
 *
 *   1. `--url <url>`;
 *   2. an explicit address flag: `--http.host` / `--http.port` (iorio,
 *      iorio-admin), `-H` / `-P` (ioriocli, apitest), the other half from
 *      the configuration;
 *   3. the URL the node running on the data folder recorded in
 *      `<paths.data>/iorio.url` when it started listening (right even with
 *      http.port = 0); only while a node holds the folder's lock, so a file
 *      left by a killed node is never followed;
 *   4. the configured `http.host:http.port` (config file, IORIO_HTTP_HOST /
 *      IORIO_HTTP_PORT, default 127.0.0.1:8080).
 *
 * The data folder is the configuration's paths.data (`-c`, `--paths.data`,
 * IORIO_PATHS_DATA, default ./data); ioriocli and apitest, which read no
 * config file, take it from IORIO_PATHS_DATA or ./data.
 */
import { readFileSync } from 'node:fs';
import { join, resolve as resolvePath } from 'node:path';
import type { Config } from '../config.js';
import { lockHolder } from '../store/data-folder.js';

export function urlFileOf(config: Pick<Config, 'paths.data'>): string {
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

/** `http://host:port` of a configured address; a node listening on every interface is reached on loopback. */
export function configuredUrlOf(host: string, port: number | string): string {
  const reachable = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
  return `http://${reachable.includes(':') ? `[${reachable}]` : reachable}:${port}`;
}

/** The URL the node running on this data folder recorded, if one runs there and recorded it. */
export function recordedUrlOf(config: Pick<Config, 'paths.data'>): string | undefined {
  if (lockHolder(config['paths.data']) === undefined) return undefined;
  const recorded = readText(urlFileOf(config));
  return recorded === undefined || recorded === '' ? undefined : recorded;
}

export interface NodeUrlChoice {
  /** `--url`, if given. */
  readonly url?: string | undefined;
  /** Whether the address was given by a flag (--http.host/--http.port, -H/-P): it wins over iorio.url. */
  readonly explicitAddress?: boolean;
}

/** The node's URL by the rule above, for a tool that has loaded the configuration. */
export function nodeUrlOf(config: Pick<Config, 'paths.data' | 'http.host' | 'http.port'>, choice: NodeUrlChoice = {}): string {
  if (choice.url !== undefined) return choice.url;
  const configured = configuredUrlOf(config['http.host'], config['http.port']);
  if (choice.explicitAddress === true) return configured;
  return recordedUrlOf(config) ?? configured;
}

/** Whether flags given to iorio or iorio-admin name the node's address. */
export function flagsNameAddress(flags: Readonly<Record<string, string>>): boolean {
  return flags['http.host'] !== undefined || flags['http.port'] !== undefined;
}

/**
 * The same rule for ioriocli and apitest, which read no config file: the
 * data folder and the configured address come from IORIO_PATHS_DATA,
 * IORIO_HTTP_HOST and IORIO_HTTP_PORT, else the defaults.
 */
export function toolNodeUrlOf(
  flags: { readonly url?: string | undefined; readonly host?: string | undefined; readonly port?: string | number | undefined },
  env: Readonly<Record<string, string | undefined>>,
  cwd: string = process.cwd(),
): string {
  const nonEmpty = (name: string) => (env[name] === undefined || env[name] === '' ? undefined : env[name]);
  const config = {
    'paths.data': resolvePath(cwd, nonEmpty('IORIO_PATHS_DATA') ?? './data'),
    'http.host': flags.host ?? nonEmpty('IORIO_HTTP_HOST') ?? '127.0.0.1',
    'http.port': Number(flags.port ?? nonEmpty('IORIO_HTTP_PORT') ?? 8080),
  };
  return nodeUrlOf(config, { url: flags.url, explicitAddress: flags.host !== undefined || flags.port !== undefined });
}
