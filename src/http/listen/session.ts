import type { Auth } from '../../auth/types.js';
import type { Clock } from '../../core/clock.js';
import { isIorioError } from '../../core/errors.js';
import type { StreamRef } from './events.js';

/** WebSocket close code for a session that ended (expired token, deleted user): 4000 + HTTP 401. */
export const sessionEndedCloseCode = 4401;

/**
 * Who an open listen connection acts as, re-checked while it stays open:
 * a listener must not outlive its token or keep a stream whose `get` grant
 * was revoked. Both checks hit the auth service's caches (a verified-token
 * map and a decision map dropped on every grant change), so they run on
 * every delivery to the connection and on the shared heartbeat timer.
 */
export class ListenSession {
  /** When the token expires (ms), read once from the token verified at connect. */
  private readonly expiresAtMs: number;
  /** The auth generation at which the session was last found to hold, and the streams found allowed then. */
  private heldAtGeneration = -1;
  private readonly allowedAtGeneration = new Map<string, number>();

  constructor(
    private readonly auth: Auth,
    private readonly clock: Clock,
    readonly username: string,
    /** undefined: the anonymous user, whose session never ends. */
    private readonly token: string | undefined,
  ) {
    this.expiresAtMs = token === undefined ? Infinity : tokenExpiryMs(token);
  }

  /**
   * Why the session no longer holds ('session expired', ...), or undefined
   * while it does. Checked on every delivery, so it costs a comparison
   * unless users or grants changed or the token's time ran out.
   */
  endedBecause(): string | undefined {
    if (this.token === undefined) return undefined;
    if (this.heldAtGeneration === this.auth.generation && this.clock.now() < this.expiresAtMs) return undefined;
    try {
      const generation = this.auth.generation;
      this.auth.verifyToken(this.token);
      this.heldAtGeneration = generation;
      return undefined;
    } catch (error) {
      if (isIorioError(error)) return error.message;
      throw error;
    }
  }

  mayGet(ref: StreamRef): boolean {
    const generation = this.auth.generation;
    if (this.allowedAtGeneration.get(ref.key) === generation) return true;
    const allowed = this.auth.can(this.username, 'get', ref.bucket, ref.stream);
    if (allowed) this.allowedAtGeneration.set(ref.key, generation);
    else this.allowedAtGeneration.delete(ref.key);
    return allowed;
  }

  /** The reason given to a listener that lost a stream. */
  revokedReason(ref: StreamRef): string {
    return `${this.username} may no longer get ${ref.bucket}/${ref.stream}`;
  }
}

/** A verified token's `exp` in ms; -Infinity when it cannot be read, so every check re-verifies the token. */
function tokenExpiryMs(token: string): number {
  try {
    const payload = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as { exp?: unknown };
    return typeof payload.exp === 'number' ? payload.exp * 1000 : -Infinity;
  } catch {
    return -Infinity;
  }
}

/** Told to a WebSocket or SSE listener whose stream was taken away (its `get` grant revoked). */
export interface RevokedNotice {
  readonly type: 'unsubscribed';
  readonly bucket: string;
  readonly stream: string;
  readonly reason: string;
}

export function revokedNotice(ref: StreamRef, reason: string): RevokedNotice {
  return { type: 'unsubscribed', bucket: ref.bucket, stream: ref.stream, reason };
}
