/**
 * The one error catalogue. Every operating error Iorio reports has a code
 * (the `type` of the HTTP error body), an HTTP status and a retriable flag.
 * Bugs are not in here: they are assertion failures and crash the process.
 */

export const ErrorCode = {
  invalidBody: 'invalid-body',
  invalidName: 'invalid-name',
  invalidParam: 'invalid-param',
  unauthorized: 'unauthorized',
  noPerm: 'no-perm',
  notFound: 'not-found',
  conflict: 'conflict',
  tooLarge: 'too-large',
  rateLimited: 'rate-limited',
  unavailable: 'unavailable',
  insufficientStorage: 'insufficient-storage',
  internal: 'internal-error',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

interface ErrorSpec {
  readonly status: number;
  readonly message: string;
  readonly retriable: boolean;
}

export const errorCatalogue: Readonly<Record<ErrorCode, ErrorSpec>> = {
  'invalid-body': { status: 400, message: 'the request body is not valid', retriable: false },
  'invalid-name': { status: 400, message: 'a bucket, stream or user name is not valid', retriable: false },
  'invalid-param': { status: 400, message: 'a parameter is not valid', retriable: false },
  unauthorized: { status: 401, message: 'missing, invalid or expired credentials', retriable: false },
  'no-perm': { status: 403, message: 'not allowed', retriable: false },
  'not-found': { status: 404, message: 'not found', retriable: false },
  conflict: { status: 409, message: 'conflict', retriable: false },
  'too-large': { status: 413, message: 'the request is too large', retriable: false },
  'rate-limited': { status: 429, message: 'too many requests', retriable: true },
  unavailable: { status: 503, message: 'unavailable', retriable: true },
  'insufficient-storage': { status: 507, message: 'the node is out of disk space', retriable: true },
  'internal-error': { status: 500, message: 'internal error', retriable: false },
};

/** An operating error: thrown anywhere, mapped to `{type, reason}` by the HTTP error handler. */
export class IorioError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly retriable: boolean;
  /** Extra fields merged into the HTTP error body (e.g. expected/got for a conflict). */
  readonly details: Readonly<Record<string, unknown>> | undefined;

  constructor(code: ErrorCode, reason?: string, details?: Record<string, unknown>) {
    const spec = errorCatalogue[code];
    super(reason ?? spec.message);
    this.name = 'IorioError';
    this.code = code;
    this.status = spec.status;
    this.retriable = spec.retriable;
    this.details = details;
  }

  toBody(): Record<string, unknown> {
    return { type: this.code, reason: this.message, ...(this.details ?? {}) };
  }
}

export function isIorioError(error: unknown): error is IorioError {
  return error instanceof IorioError;
}

/**
 * A node that must not start (its data folder is locked, unwritable or
 * damaged; its port is taken): one line for the operator, naming the folder,
 * file or port and what to do. The CLI prints the message alone and exits 1.
 */
export class StartupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StartupError';
  }
}

/** A programmer error: the process must not limp on. */
export class AssertionError extends Error {
  constructor(message: string) {
    super(`assertion failed: ${message}`);
    this.name = 'AssertionError';
  }
}

export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new AssertionError(message);
}
