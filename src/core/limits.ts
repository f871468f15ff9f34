/**
 * Every bound in Iorio, named with its unit last. Configurable values have
 * their defaults in src/config.ts; these are the hard limits and the fixed
 * sizes of formats.
 */

/** Longest bucket, stream or user name, in UTF-8 bytes. */
export const nameBytesMax = 128;
/** Most entries one GET or one listen replay page returns. */
export const readLimitMax = 1000;
/** Most entries in one NDJSON batch append. */
export const batchCountMax = 10_000;
/** Largest payload of one entry (the record's u32 length field allows more). */
export const payloadBytesMax = 16 * 1024 * 1024;
/** Deepest nesting of arrays and objects in any JSON body (appends, PATCH, batches); deeper bodies get 400 invalid-body. */
export const jsonDepthMax = 512;
/** Operations in one JSON Patch: each may splice an array or walk the whole entry. */
export const patchOperationsMax = 10_000;
/** Largest seqnum a client may name; JavaScript numbers are exact up to 2^53. */
export const seqnumMax = Number.MAX_SAFE_INTEGER;
/** Streams a single listen request may subscribe to. */
export const listenStreamsMax = 1000;
/** Longest long-poll timeout a client may ask for. */
export const listenTimeoutMsMax = 300_000;
/** Sparse index: one index point per this many bytes of chunk. */
export const sparseIndexStrideBytes = 64 * 1024;
/** Largest commit-log frame (one atomic batch). */
export const commitLogFrameBytesMax = 256 * 1024 * 1024;
/** Commit-log batches that may wait for their fdatasync at once (pipelined group commit). */
export const commitLogSyncsInflightMax = 2;
/** Idempotency keys remembered per node, and for how long. */
export const idempotencyKeysMax = 100_000;
export const idempotencyWindowMs = 10 * 60 * 1000;
/** Longest idempotency key, in bytes. */
export const idempotencyKeyBytesMax = 256;
/** Longest password, in UTF-8 bytes: bcrypt ignores every byte after the 72nd. */
export const passwordBytesMax = 72;
/**
 * Client connections. When http.connections.max is 0 it is derived from the
 * process's open-file limit: that limit minus storage.files.max minus
 * connectionsReservedFiles (lmdb, commit log, log files, cluster links), and
 * never less than a quarter of the limit.
 */
export const connectionsReservedFiles = 1024;
/** The open-file limit assumed where it cannot be read (no /proc/self/limits: not Linux). */
export const openFilesAssumed = 4096;
/** The open-file limit assumed when it is `unlimited` (Linux's default fs.nr_open). */
export const openFilesUnlimited = 1_048_576;
/** At most one warning per this many ms about refused connections or failed accepts; /stats counts every one. */
export const connectionWarningIntervalMs = 10_000;
/** A request must arrive whole, headers and body, within this (node's own default, which fastify turns off). */
export const requestReceiveMsMax = 300_000;
/** The longest between two checks of connections against http.idle_timeout (node checks every 30 s by default). */
export const idleCheckIntervalMsMax = 1_000;
/** Longest session token (JWT) accepted for verification, in bytes. */
export const sessionTokenBytesMax = 4096;
/** Bytes a listen connection (WebSocket or SSE) may have waiting to be sent; past it the consumer is cut off as slow. */
export const listenBufferedBytesMax = 8 * 1024 * 1024;
/** Above this many bytes waiting to be sent, a listen replay waits for the socket before reading its next page. */
export const listenReplayHighWaterBytes = 1024 * 1024;
/** Live bytes one subscription buffers while it replays; past it the buffer is dropped and re-read from the store. */
export const listenPendingBytesMax = 4 * 1024 * 1024;
/** SSE comment heartbeat and WebSocket ping period; a WebSocket missing two pongs is dropped. */
export const listenHeartbeatMs = 15_000;
/** Largest WebSocket command a listen client may send. */
export const listenCommandBytesMax = 64 * 1024;
/** How long a listen client being closed (slow consumer, shutdown) gets to take its last message before its socket is destroyed. */
export const listenCloseGraceMs = 5_000;
/**
 * A stream's live entries reach its listeners at most once per this many ms:
 * the first entry after a quiet spell goes out at once, entries that follow
 * within the window go out together at its end. This bounds the messages a
 * hot stream costs per listener (1,000 entries/s to 1,000 WebSocket
 * listeners is 50,000 messages/s, not a million) for at most this much delay.
 */
export const listenCoalesceMs = 20;
/** Random bytes of a user's session generation (the `g` claim): a new one ends every earlier session of the user. */
export const sessionGenerationBytes = 12;
/** User names, and separately client addresses, whose failed logins are remembered (least recently used forgotten first). */
export const loginThrottleEntriesMax = 50_000;
/** Retry-After given when a login is refused only because others of the same user or address are still being checked. */
export const loginInFlightRetryMs = 1_000;
/** Worker threads hashing and comparing passwords (bcrypt), at most; fewer on machines with fewer cores. */
export const passwordWorkersMax = 4;
/** Password jobs (logins, password changes) waiting for a worker; past it they are refused with 503 unavailable. */
export const passwordQueueCountMax = 1_000;

/** Partitions in a ring: a power of two in this range, fixed at cluster creation. */
export const ringSizeMin = 8;
export const ringSizeMax = 1024;
/** Members a ring may hold (every status counted): the claim's guarantees are tested over 1..ringMembersMax. */
export const ringMembersMax = 64;
/** Largest target_n_val claim spaces replicas for. */
export const targetNMax = 8;
/** Owner swaps the claim's repair step may make before it gives up on the fast path. */
export const claimRepairSwapsMax = 1024;
/** Candidate swaps the repair step may try and reject before it gives up (each costs one scan of the ring). */
export const claimRepairAttemptsMax = 512;
/** Passes of the claim's polish step (swaps that move fewer partitions without adding violations). */
export const claimPolishPassesMax = 8;
/** Rotations of the striped layout fully matched against the current owners (the best by an upper bound). */
export const claimAlignRotationsMax = 8;
/** Steps of the backtracking search for a striped layout when construction fails (small rings only). */
export const stripedSearchStepsMax = 2_000_000;

// ---------------------------------------------------------------------------
// Cluster transport (src/core/wire.ts, src/cluster/transport.ts)

/** Largest inter-node frame, length prefix included. Handoff batches and forwarded bodies are bounded well below it. */
export const clusterFrameBytesMax = 64 * 1024 * 1024;
/** Largest frame accepted before a connection has authenticated: a stranger never makes a node buffer more. */
export const clusterHandshakeFrameBytesMax = 4 * 1024;
/** Time an inbound connection gets to authenticate itself (outbound dials are bounded by the transport's connectTimeoutMs). */
export const clusterHandshakeTimeoutMs = 5_000;
/** Inbound connections that may be authenticating at once; more are closed as they arrive. */
export const clusterHandshakesPendingMax = 64;
/** Requests to one peer that may await their response at once; more are refused as unavailable. */
export const clusterRequestsPendingMax = 10_000;
/** Requests from one peer connection that may be in its handlers at once; more get an unavailable error response. */
export const clusterRequestsInflightMax = 10_000;
/** Longest node name (`name@host`), in UTF-8 bytes. */
export const nodeNameBytesMax = 255;
/** First and longest wait before a peer that could not be reached is dialled again; requests to it fail fast meanwhile. */
export const clusterReconnectBackoffMsMin = 50;
export const clusterReconnectBackoffMsMax = 2_000;
/** A repeated transport warning (same reason, address and claimed name) is logged at most once per this many ms. */
export const clusterWarningIntervalMs = 60_000;
/** Distinct warnings remembered for that rate limit. */
export const clusterWarningKeysMax = 1_000;
/** How long a closing transport waits for its sockets to flush before destroying them. */
export const clusterCloseGraceMs = 2_000;

// ---------------------------------------------------------------------------
// Handoff (src/cluster/handoff-*.ts)

/** Records one handoff batch carries at most, in bytes (each batch is durable on the target before the next is sent). */
export const handoffBatchBytesMax = 1024 * 1024;
/** Streams of one transfer sent at once (each one batch at a time, acknowledged before the next). */
export const handoffStreamsInFlightMax = 4;
/** A transfer that acknowledged no batch for this long is stalled: it is aborted and tried again. */
export const handoffStallMs = 60_000;
/** A cancelled or failed transfer waits this long before it is tried again. */
export const handoffRetryMs = 5_000;
/** A transfer its target does not know of yet (the committed ring is still on its way) is tried again after this long. */
export const handoffRingLagRetryMs = 200;

/** Distinct (type, key) pairs of user activity a node counts between two metrics intervals ($sys/activity). */
export const activityKeysMax = 10_000;
