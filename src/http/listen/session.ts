import type { Auth } from '../../auth/types.js';
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
  constructor(
    private readonly auth: Auth,
    readonly username: string,
    /** undefined: the anonymous user, whose session never ends. */
    private readonly token: string | undefined,
  ) {}

  /** Why the session no longer holds ('session expired', ...), or undefined while it does. */
  endedBecause(): string | undefined {
    if (this.token === undefined) return undefined;
    try {
      this.auth.verifyToken(this.token);
      return undefined;
    } catch (error) {
      if (isIorioError(error)) return error.message;
      throw error;
    }
  }

  mayGet(ref: StreamRef): boolean {
    return this.auth.can(this.username, 'get', ref.bucket, ref.stream);
  }

  /** The reason given to a listener that lost a stream. */
  revokedReason(ref: StreamRef): string {
    return `${this.username} may no longer get ${ref.bucket}/${ref.stream}`;
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
