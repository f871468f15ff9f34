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
/** Idempotency keys remembered per node, and for how long. */
export const idempotencyKeysMax = 100_000;
export const idempotencyWindowMs = 10 * 60 * 1000;
/** Longest idempotency key, in bytes. */
export const idempotencyKeyBytesMax = 256;
