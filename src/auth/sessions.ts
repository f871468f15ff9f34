import { createSecretKey, randomBytes as cryptoRandomBytes, type KeyObject } from 'node:crypto';
import jwt from 'jsonwebtoken';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { IorioError } from '../core/errors.js';
import { sessionTokenBytesMax } from '../core/limits.js';
import { sessionSecretSettingKey, type MetaStore } from '../store/meta.js';

export { sessionSecretSettingKey };
/** Bytes of a generated secret: enough for HS512 (RFC 7518 §3.2 asks for at least the hash size). */
export const generatedSecretBytes = 64;

export type SessionAlgorithm = Config['auth.algorithm'];

export interface SessionClaims {
  readonly username: string;
  /** The user's session generation when the token was issued (claim `g`): the token holds while it is still the user's. */
  readonly generation: string;
  /** Issued at, seconds since the epoch. */
  readonly issuedAtSec: number;
  /** Expires at, seconds since the epoch. */
  readonly expiresAtSec: number;
}

/**
 * The secret tokens are signed with: `auth.secret` when set, else one
 * generated on first start and kept in meta.settings, so sessions survive
 * restarts.
 */
export async function loadSessionSecret(
  meta: MetaStore,
  config: Config,
  logger: Logger,
  randomBytes: (size: number) => Buffer = cryptoRandomBytes,
): Promise<string> {
  if (config['auth.secret'] !== '') return config['auth.secret'];
  const stored: unknown = meta.settings.get(sessionSecretSettingKey);
  if (typeof stored === 'string' && stored.length > 0) return stored;
  const generated = randomBytes(generatedSecretBytes).toString('base64url');
  await meta.root.transaction(() => {
    if (meta.settings.get(sessionSecretSettingKey) === undefined) meta.settings.putSync(sessionSecretSettingKey, generated);
  });
  const kept: unknown = meta.settings.get(sessionSecretSettingKey);
  if (typeof kept !== 'string' || kept.length === 0) throw new Error('assertion failed: the session secret was not stored');
  if (kept === generated) logger.info('generated a session secret (kept in the metadata store)');
  return kept;
}

/**
 * JWT sessions `{u, g, iat, exp}`, signed and verified with the configured
 * HMAC algorithm only: a token with `alg: none` or any other algorithm is
 * refused. Times come from the caller (the injected clock). `g` is the
 * user's session generation (see UserRecord): whether it is still current is
 * the auth service's question, since `iat` (whole seconds) cannot tell a
 * token issued just before a password change from one issued just after.
 */
export class Sessions {
  /** A KeyObject made once: given a string, jsonwebtoken builds one per call, which is 50 times slower. */
  private key: KeyObject;

  constructor(
    secret: string,
    private readonly algorithm: SessionAlgorithm,
    private readonly durationMs: number,
  ) {
    this.key = createSecretKey(Buffer.from(secret, 'utf8'));
  }

  /** The cluster's secret replaced this node's (tokens signed with the old one stop verifying). */
  replaceSecret(secret: string): void {
    this.key = createSecretKey(Buffer.from(secret, 'utf8'));
  }

  sign(username: string, generation: string, nowMs: number): string {
    if (generation === '') throw new Error('assertion failed: a session is signed with the user\'s session generation');
    const issuedAtSec = Math.floor(nowMs / 1000);
    const durationSec = Math.max(1, Math.floor(this.durationMs / 1000));
    return jwt.sign({ u: username, g: generation, iat: issuedAtSec, exp: issuedAtSec + durationSec }, this.key, { algorithm: this.algorithm });
  }

  /** The claims of a valid token; throws `unauthorized` for an expired, tampered, malformed or foreign one. */
  verify(token: unknown, nowMs: number): SessionClaims {
    if (typeof token !== 'string' || token.length === 0) throw new IorioError('unauthorized', 'missing session token');
    if (token.length > sessionTokenBytesMax) throw new IorioError('unauthorized', 'invalid session token');
    let payload: unknown;
    try {
      payload = jwt.verify(token, this.key, { algorithms: [this.algorithm], clockTimestamp: Math.floor(nowMs / 1000) });
    } catch (error) {
      if (error instanceof jwt.TokenExpiredError) throw new IorioError('unauthorized', 'session expired');
      throw new IorioError('unauthorized', 'invalid session token');
    }
    return claimsOf(payload);
  }
}

function claimsOf(payload: unknown): SessionClaims {
  if (payload === null || typeof payload !== 'object') throw new IorioError('unauthorized', 'invalid session token');
  const { u, g, iat, exp } = payload as Record<string, unknown>;
  if (typeof u !== 'string' || typeof iat !== 'number' || typeof exp !== 'number') {
    throw new IorioError('unauthorized', 'invalid session token');
  }
  // Tokens from before sessions could be ended carry no generation: accepting them would keep them unrevocable.
  if (typeof g !== 'string' || g === '') throw new IorioError('unauthorized', 'session token of an older format: log in again');
  return { username: u, generation: g, issuedAtSec: iat, expiresAtSec: exp };
}
