/**
 * A stream's info (GET /streams/:bucket/:stream/info, README "Stream info")
 * as the tools print it: `iorio-admin stream info` and ioriocli's `info`.
 * Pure.
 */
import { formatSize } from '../config.js';
import { humanSize } from './admin-format.js';
import { policyText, type PolicyBody } from './policy.js';

/** The route's answer (src/http/routes-streams.ts). */
export interface StreamInfoAnswer {
  readonly bucket: string;
  readonly stream: string;
  readonly partition: number;
  readonly node: string;
  readonly first: number;
  readonly last: number;
  readonly entries: number;
  readonly bytes: number;
  readonly chunks: number;
  readonly last_t: number;
  readonly deleted_at: number;
  readonly policy: PolicyBody;
  readonly policy_source: 'stream' | 'bucket' | 'default' | 'none';
  readonly bucket_size_max: number;
}

/** `/streams/<bucket>/<stream>/info`, names encoded. */
export function streamInfoPath(bucket: string, stream: string): string {
  return `/streams/${encodeURIComponent(bucket)}/${encodeURIComponent(stream)}/info`;
}

const policySourceText: Readonly<Record<StreamInfoAnswer['policy_source'], string>> = {
  stream: "the stream's own",
  bucket: "its bucket's",
  default: 'the config default, eviction.stream.*',
  none: 'none',
};

/** Labelled lines, as `nats stream info` prints them. */
export function formatStreamInfo(info: StreamInfoAnswer): string {
  const seqnums = info.entries === 0 ? `none kept (last assigned: ${info.last})` : `${info.first} to ${info.last}`;
  const rows: [string, string][] = [
    ['stream', `${info.bucket}/${info.stream}`],
    ['partition', `${info.partition} on ${info.node}`],
    ['seqnums', seqnums],
    ['first', String(info.first)],
    ['last', String(info.last)],
    ['entries', String(info.entries)],
    ['bytes', `${info.bytes} (${humanSize(info.bytes)})`],
    ['chunks', String(info.chunks)],
    ['last append', info.last_t > 0 ? new Date(info.last_t).toISOString() : 'never'],
    ['deleted up to', info.deleted_at > 0 ? String(info.deleted_at) : 'never deleted'],
    ['policy', info.policy_source === 'none' ? 'none' : `${policyText(info.policy)} (${policySourceText[info.policy_source] ?? info.policy_source})`],
    ['bucket size cap', info.bucket_size_max > 0 ? formatSize(info.bucket_size_max) : 'none'],
  ];
  const width = Math.max(...rows.map(([label]) => label.length)) + 1;
  return rows.map(([label, value]) => `${`${label}:`.padEnd(width)}  ${value}`).join('\n');
}
