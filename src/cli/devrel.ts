/**
 * `npm run devrel -- <count> [--base-port P] [--force] [--dir <folder>]`:
 * IorioDB's (and Riak's) devrel. Makes dev/dev1..dev<count>, each a node
 * of a local cluster with its own config, data folder and scripts:
 *
 *   dev/devN/iorio.conf      config/iorio.conf with this node's name, ports and data folder
 *   dev/devN/data/           its data (paths.data, absolute)
 *   dev/devN/bin/iorio       exec <repo>/rel/bin/iorio -c dev/devN/iorio.conf "$@"
 *   dev/devN/bin/iorio-admin exec <repo>/rel/bin/iorio-admin -c dev/devN/iorio.conf "$@"
 *
 * Names and ports are IorioDB's, so its walkthroughs and `apitest -P 8098`
 * work as written: devN is iorioN@127.0.0.1, HTTP 8088 + 10N (dev1 = 8098),
 * HTTPS 8528 + 10N, cluster 10009 + 10N. `--base-port P` makes dev1's HTTP
 * port P and shifts every port by P - 8098. IorioDB's devN also had MQTT on
 * 11883 + 10N; Iorio has no MQTT, and the table says so.
 *
 * A devN whose data folder holds anything is left alone unless --force;
 * --force rewrites its config and scripts and never deletes or changes its
 * data. The rest of this file is pure (plans, texts, the table) but
 * runDevrel, which writes the files.
 */
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve as resolvePath } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseConfigText } from '../config.js';
import { ringMembersMax } from '../core/limits.js';

export const usage = `usage: npm run devrel -- <count> [--base-port <port>] [--force] [--dir <folder>]

Makes <folder>/dev1 .. dev<count> (default folder: the repository's dev/), each
a node of a local cluster: iorio.conf, data/, bin/iorio and bin/iorio-admin.
devN is iorioN@127.0.0.1 with HTTP port 8088 + 10N (dev1 = 8098), HTTPS
8528 + 10N and cluster port 10009 + 10N.

  --base-port <port>  dev1's HTTP port; every port moves by <port> - 8098 (default 8098)
  --force             also rewrite the config and scripts of a devN that holds data
                      (its data folder is never deleted or changed)
  --dir <folder>      make the devN folders in <folder> instead of dev/`;

/** IorioDB's devrel: dev1's HTTP port, and each port as a base plus 10 per node. */
export const defaultBasePort = 8098;
const portStepPerNode = 10;
const httpPortBase = 8088;
const httpsPortBase = 8528;
const clusterPortBase = 10009;
const mqttPortBase = 11883;
const portMax = 65535;
const devHost = '127.0.0.1';

export class DevrelUsageError extends Error {}

export interface DevrelOptions {
  readonly count: number;
  readonly basePort: number;
  readonly force: boolean;
  /** The folder the devN folders go in; undefined: <repo>/dev. */
  readonly dir: string | undefined;
}

/** `<count> [--base-port P] [--force] [--dir folder]` -> options. Pure; throws DevrelUsageError. */
export function parseDevrelArguments(argv: readonly string[]): DevrelOptions {
  let count: number | undefined;
  let basePort = defaultBasePort;
  let force = false;
  let dir: string | undefined;
  for (let index = 0; index < argv.length; index++) {
    const argument = argv[index]!;
    const [name, inline] = argument.startsWith('--') && argument.includes('=') ? [argument.slice(0, argument.indexOf('=')), argument.slice(argument.indexOf('=') + 1)] : [argument, undefined];
    const value = (): string => {
      if (inline !== undefined) return inline;
      const next = argv[index + 1];
      if (next === undefined) throw new DevrelUsageError(`${name} needs a value`);
      index += 1;
      return next;
    };
    if (name === '--force' && inline === undefined) force = true;
    else if (name === '--base-port') basePort = integerOf(value(), '--base-port', 1, portMax);
    else if (name === '--dir') dir = value();
    else if (name.startsWith('-')) throw new DevrelUsageError(`unknown option "${argument}"`);
    else if (count === undefined) count = integerOf(name, 'the node count', 1, ringMembersMax);
    else throw new DevrelUsageError(`unexpected argument "${argument}"`);
  }
  if (count === undefined) throw new DevrelUsageError('how many nodes? e.g. npm run devrel -- 4');
  return { count, basePort, force, dir };
}

function integerOf(text: string, what: string, min: number, max: number): number {
  const value = /^\d{1,6}$/.test(text) ? Number(text) : Number.NaN;
  if (!(value >= min && value <= max)) throw new DevrelUsageError(`${what} must be an integer from ${min} to ${max}, not "${text}"`);
  return value;
}

/** One node of the devrel. */
export interface DevNode {
  readonly index: number;
  /** dev1, dev2 ... */
  readonly id: string;
  readonly name: string;
  readonly httpPort: number;
  readonly httpsPort: number;
  readonly clusterPort: number;
  /** IorioDB's MQTT port for this devN: shown as "-", Iorio has no MQTT. */
  readonly mqttPort: number;
  readonly folder: string;
  readonly data: string;
  readonly conf: string;
}

/** The nodes of a devrel of `count` in `devDir` (absolute). Pure; throws DevrelUsageError when a port would leave 1..65535. */
export function devNodes(count: number, basePort: number, devDir: string): DevNode[] {
  const shift = basePort - defaultBasePort;
  const nodes: DevNode[] = [];
  for (let index = 1; index <= count; index++) {
    const port = (base: number) => base + portStepPerNode * index + shift;
    const folder = join(devDir, `dev${index}`);
    nodes.push({
      index,
      id: `dev${index}`,
      name: `iorio${index}@${devHost}`,
      httpPort: port(httpPortBase),
      httpsPort: port(httpsPortBase),
      clusterPort: port(clusterPortBase),
      mqttPort: port(mqttPortBase),
      folder,
      data: join(folder, 'data'),
      conf: join(folder, 'iorio.conf'),
    });
  }
  const highest = Math.max(...nodes.map((node) => node.clusterPort));
  if (highest > portMax) throw new DevrelUsageError(`--base-port ${basePort} puts dev${count}'s cluster port at ${highest}, past ${portMax}`);
  return nodes;
}

/** The keys devrel sets in each node's copy of config/iorio.conf, and their values. */
export function devSettings(node: DevNode): ReadonlyMap<string, string> {
  return new Map([
    ['nodename', node.name],
    ['paths.data', node.data],
    ['http.port', String(node.httpPort)],
    ['https.port', String(node.httpsPort)],
    ['cluster.host', devHost],
    ['cluster.port', String(node.clusterPort)],
  ]);
}

/**
 * config/iorio.conf with devrel's keys set for this node: each such line's
 * value replaced in place (its documentation kept), keys the template lacks
 * appended. Pure; the template must parse (a bad one is a ConfigError).
 */
export function devConfText(template: string, templateName: string, node: DevNode): string {
  parseConfigText(template, templateName);
  const settings = devSettings(node);
  const written = new Set<string>();
  const lines = template.split('\n').map((line) => {
    const match = /^(\s*)([A-Za-z0-9_.-]+)(\s*=\s*)(.*)$/.exec(line);
    const key = match?.[2];
    if (match === null || key === undefined || !settings.has(key)) return line;
    written.add(key);
    return `${match[1]}${key}${match[3]}${settings.get(key)}`;
  });
  while (lines.length > 0 && lines[lines.length - 1]!.trim() === '') lines.pop();
  const missing = [...settings].filter(([key]) => !written.has(key));
  const head = [
    `## ${node.id} of the devrel (npm run devrel): ${templateName} with this node's`,
    '## nodename, ports and paths.data. Rewritten by npm run devrel -- --force.',
    '',
  ];
  const tail = missing.length === 0 ? [] : ['', '## devrel', ...missing.map(([key, value]) => `${key} = ${value}`)];
  return [...head, ...lines, ...tail].join('\n').replace(/\n*$/, '\n');
}

/** Single-quoted for sh. */
export function shellQuoted(text: string): string {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

/** A devN's bin/<command>: the repository's rel/bin/<command> with this node's config first (a later -c still wins). */
export function devScriptText(node: DevNode, command: 'iorio' | 'iorio-admin', repoRoot: string): string {
  return [
    '#!/bin/sh',
    `# ${node.name} of the devrel (npm run devrel): the repository's rel/bin/${command}`,
    `# with this node's config. Works from any directory.`,
    `exec ${shellQuoted(join(repoRoot, 'rel', 'bin', command))} -c ${shellQuoted(node.conf)} "$@"`,
    '',
  ].join('\n');
}

/** The table devrel prints, with what each column is and how to start the nodes. */
export function devrelTable(nodes: readonly DevNode[], devDir: string, notes: readonly string[]): string {
  const header = ['node', 'name', 'http', 'https', 'cluster', 'mqtt', 'data'];
  const rows = nodes.map((node) => [node.id, node.name, String(node.httpPort), String(node.httpsPort), String(node.clusterPort), '-', node.data]);
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]!.length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, column) => (column === cells.length - 1 ? cell : cell.padEnd(widths[column]!)))
      .join('  ')
      .trimEnd();
  const first = nodes[0]!;
  return [
    `devrel: ${nodes.length} node${nodes.length === 1 ? '' : 's'} in ${devDir}`,
    '',
    line(header),
    ...rows.map(line),
    '',
    `http: the API (dev1: http://${devHost}:${first.httpPort}); https: served only with https.enabled = yes;`,
    'cluster: node-to-node connections and handoff; mqtt: Iorio has no MQTT',
    `(IorioDB's devN listened on ${mqttPortBase} + 10N${first.mqttPort === mqttPortBase + portStepPerNode ? '' : ', shifted like the others'}: dev1 = ${first.mqttPort}).`,
    ...(notes.length === 0 ? [] : ['', ...notes]),
    '',
    'Each devN has iorio.conf, data/, bin/iorio and bin/iorio-admin (the repository\'s rel/bin scripts',
    'with -c devN/iorio.conf; they work from any directory). Start them all:',
    `  for d in ${devDir}/dev*; do $d/bin/iorio start; done`,
  ].join('\n');
}

/** Whether a folder exists and holds anything. */
function holdsData(folder: string): boolean {
  try {
    return readdirSync(folder).length > 0;
  } catch {
    return false;
  }
}

/** The repository: the nearest folder above this file holding rel/bin/iorio and config/iorio.conf (src/cli/ in tests, dist/src/cli/ built). */
export function repoRootOf(start = dirname(fileURLToPath(import.meta.url))): string {
  for (let folder = start; ; folder = dirname(folder)) {
    if (existsSync(join(folder, 'rel', 'bin', 'iorio')) && existsSync(join(folder, 'config', 'iorio.conf'))) return folder;
    if (dirname(folder) === folder) throw new Error(`no repository (rel/bin/iorio, config/iorio.conf) above ${start}`);
  }
}

export interface DevrelIo {
  stdout(text: string): void;
  stderr(text: string): void;
  /** Where relative --dir paths resolve; process.cwd() by default. */
  cwd?: string;
  /** The repository whose rel/bin and config/iorio.conf the nodes use; found from this file by default. */
  repoRoot?: string;
}

/** Runs devrel; resolves to the exit code (0 done, 1 refused to touch a devN holding data, 2 usage). */
export function runDevrel(argv: readonly string[], io: DevrelIo): number {
  let options: DevrelOptions;
  let nodes: DevNode[];
  const repoRoot = io.repoRoot ?? repoRootOf();
  const cwd = io.cwd ?? process.cwd();
  let folder: string;
  try {
    options = parseDevrelArguments(argv);
    folder = options.dir === undefined ? join(repoRoot, 'dev') : resolvePath(cwd, options.dir);
    nodes = devNodes(options.count, options.basePort, folder);
  } catch (error) {
    if (!(error instanceof DevrelUsageError)) throw error;
    io.stderr(`devrel: ${error.message}\n${usage}\n`);
    return 2;
  }
  const holding = nodes.filter((node) => holdsData(node.data));
  if (holding.length > 0 && !options.force) {
    const names = holding.map((node) => node.folder).join(', ');
    io.stderr(`devrel: ${names} already hold${holding.length === 1 ? 's' : ''} data: nothing was changed.\n`);
    io.stderr('devrel: --force rewrites their config and scripts and keeps their data; to start afresh, stop the nodes and remove the folders.\n');
    return 1;
  }
  const templateFile = join(repoRoot, 'config', 'iorio.conf');
  const template = readFileSync(templateFile, 'utf8');
  for (const node of nodes) writeNode(node, template, repoRoot);
  const notes = holding.map((node) => `${node.id}: config and scripts rewritten; its data in ${node.data} was kept as it was.`);
  io.stdout(`${devrelTable(nodes, folder, notes)}\n`);
  return 0;
}

function writeNode(node: DevNode, template: string, repoRoot: string): void {
  mkdirSync(join(node.folder, 'bin'), { recursive: true });
  mkdirSync(node.data, { recursive: true });
  writeFileSync(node.conf, devConfText(template, 'config/iorio.conf', node));
  for (const command of ['iorio', 'iorio-admin'] as const) {
    const script = join(node.folder, 'bin', command);
    writeFileSync(script, devScriptText(node, command, repoRoot));
    chmodSync(script, 0o755);
  }
}
