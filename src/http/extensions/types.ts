/**
 * Extension handlers: Iorio's form of IorioDB's `ioriox_*` modules
 * (iorio_rest_custom.erl). A handler named `<name>` serves every method it
 * allows under `/x/<name>/...`; `extension.config.<name>` names a JSON file
 * handed to it as its configuration (IorioDB's key), and
 * `extension.module.<name>` a JavaScript module whose default export is an
 * ExtensionFactory (the built-in `echo` needs none). See README, "Extensions".
 */

/** What a handler is built from, once, when the node starts. */
export interface ExtensionSetup {
  /** The parsed JSON of `extension.config.<name>`; undefined when none is configured. */
  readonly config: unknown;
  /** The handler's own logger (pino child, component `extension`, field `extension`). */
  readonly logger: { info(fields: object, message: string): void; warn(fields: object, message: string): void };
}

/** One request to `/x/<name>/...`. */
export interface ExtensionRequest {
  readonly method: string;
  /** The path below `/x/<name>/`, split at `/` and decoded (IorioDB's path_info). */
  readonly path: readonly string[];
  /** The query parameters (the last value of a repeated one). */
  readonly query: Readonly<Record<string, string>>;
  /** The parsed JSON body; undefined for a request without one. */
  readonly body: unknown;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  /** Who asks: the session's user, `anonymous` without a token. */
  readonly username: string;
  /** The node's streams, acting as `username`: each call is checked against its grants (401 no-perm otherwise). */
  readonly streams: ExtensionStreams;
}

export interface ExtensionStreams {
  append(bucket: string, stream: string, value: unknown): Promise<{ id: number; t: number }>;
  /** Like GET /streams: the last `limit` entries, or `limit` entries from seqnum `from`. */
  read(bucket: string, stream: string, options: { from?: number; limit: number }): Promise<{ meta: { id: number; t: number }; data: unknown }[]>;
}

/** A handler's answer: JSON (200), raw bytes of a content type (200), or an error (400 `{"type":"error","reason"}`, as IorioDB). */
export type ExtensionAnswer =
  | { readonly json: unknown }
  | { readonly raw: string | Buffer; readonly contentType: string }
  | { readonly error: string };

export interface ExtensionHandler {
  /** Methods served (IorioDB's allowed_methods); others get 405. */
  readonly methods: readonly string[];
  /** IorioDB's is_authorized: false gives 401 no-perm. Absent: everyone may call it. */
  isAuthorized?(request: ExtensionRequest): boolean;
  handle(request: ExtensionRequest): ExtensionAnswer | Promise<ExtensionAnswer>;
}

export type ExtensionFactory = (setup: ExtensionSetup) => ExtensionHandler | Promise<ExtensionHandler>;
