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
  // IorioDB's user errors (iorio_rest_user.erl:48-82), its access-change error
  // (iorio_rest_access.erl:105-109) and the 415 of a body that is not JSON.
  noUser: 'no-user',
  noPass: 'no-pass',
  noUserAndPass: 'no-user-and-pass',
  userExists: 'user-exists',
  illegalUsername: 'illegal-username',
  invalidField: 'invalid-field',
  unsupportedMediaType: 'unsupported-media-type',
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
  // 401, not 403: IorioDB answers a missing permission with 401 and `www-authenticate: jwt` (iorio_http.erl:13, iorio_rest_stream.erl:297-302).
  'no-perm': { status: 401, message: 'not allowed', retriable: false },
  'no-user': { status: 400, message: 'no username field', retriable: false },
  'no-pass': { status: 400, message: 'no password field', retriable: false },
  'no-user-and-pass': { status: 400, message: 'no username and password fields', retriable: false },
  'user-exists': { status: 400, message: 'user already exists', retriable: false },
  'illegal-username': { status: 400, message: 'illegal username', retriable: false },
  'invalid-field': { status: 400, message: 'a field is missing or not valid', retriable: false },
  'unsupported-media-type': { status: 415, message: 'unsupported content type', retriable: false },
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

  /**
   * `status` overrides the catalogue's only where IorioDB answers a code with
   * another status than its usual one (PATCH of an empty stream: 400
   * not-found, iorio_rest_stream.erl:273; over the rate limit: 400
   * rate-limited, iorio_http.erl:43 answers from malformed_request).
   */
  constructor(code: ErrorCode, reason?: string, details?: Record<string, unknown>, status?: number) {
    const spec = errorCatalogue[code];
    super(reason ?? spec.message);
    this.name = 'IorioError';
    this.code = code;
    this.status = status ?? spec.status;
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
