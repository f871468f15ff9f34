import { pino, type DestinationStream, type Logger } from 'pino';
import type { Config } from './config.js';

/**
 * The one root logger of a node: JSON lines (to stdout unless a destination
 * is given), at `log.level`, each line carrying the node's name. Modules get
 * a `logger.child({ component })` of it, never a logger of their own.
 */
export function createLogger(config: Config, destination?: DestinationStream): Logger {
  return pino(
    {
      level: config['log.level'],
      base: { pid: process.pid, node: config.nodename },
    },
    destination,
  );
}
