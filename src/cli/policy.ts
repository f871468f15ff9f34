/**
 * Eviction policies as the tools write them: `max_count=1000 max_bytes=512MB
 * max_age=7d` <-> the body of PUT /policies/:bucket[/:stream] (DESIGN §4).
 * Shared by iorio-admin and ioriocli. Pure.
 */
import { formatDuration, formatSize, parseDuration, parseSize } from '../config.js';
import { unknownCommandText } from './suggest.js';

/** The body of PUT /policies/...: what the node keeps. */
export interface PolicyBody {
  readonly max_count?: number;
  readonly max_bytes?: number;
  readonly max_age_secs?: number;
}

export const policySettingNames = ['max_count', 'max_bytes', 'max_age'] as const;

/** A setting that cannot be understood; its message says what is expected. */
export class PolicySyntaxError extends Error {}

/** `max_count=1000 max_bytes=512MB max_age=7d` (or max_age_secs=N) -> the PUT body. Throws PolicySyntaxError. */
export function parsePolicySettings(settings: readonly string[]): PolicyBody {
  const policy: { max_count?: number; max_bytes?: number; max_age_secs?: number } = {};
  for (const setting of settings) {
    const equals = setting.indexOf('=');
    const name = equals === -1 ? setting : setting.slice(0, equals);
    const value = equals === -1 ? '' : setting.slice(equals + 1);
    switch (name) {
      case 'max_count':
        if (!/^\d{1,15}$/.test(value)) throw new PolicySyntaxError(`max_count must be a whole number of entries, got "${value}"`);
        policy.max_count = Number(value);
        break;
      case 'max_bytes': {
        const bytes = parseSize(value);
        if (bytes === undefined) throw new PolicySyntaxError(`max_bytes must be a size like 512KB, 2MB, 1GB or a number of bytes, got "${value}"`);
        policy.max_bytes = bytes;
        break;
      }
      case 'max_age':
      case 'max_age_secs': {
        const ms = name === 'max_age_secs' ? (/^\d{1,12}$/.test(value) ? Number(value) * 1000 : undefined) : parseDuration(value);
        if (ms === undefined || ms % 1000 !== 0) {
          throw new PolicySyntaxError(`${name} must be ${name === 'max_age' ? 'a duration of whole seconds like 90s, 12h, 7d' : 'a whole number of seconds'}, got "${value}"`);
        }
        policy.max_age_secs = ms / 1000;
        break;
      }
      default:
        throw new PolicySyntaxError(`${unknownCommandText(name, policySettingNames, 'policy setting')} (settings are written name=value)`);
    }
  }
  return policy;
}

/** `max_count=1000 max_bytes=512MB max_age=7d`, or `none` for {}. */
export function policyText(policy: PolicyBody): string {
  const parts: string[] = [];
  if (policy.max_count !== undefined) parts.push(`max_count=${policy.max_count}`);
  if (policy.max_bytes !== undefined) parts.push(`max_bytes=${formatSize(policy.max_bytes)}`);
  if (policy.max_age_secs !== undefined) parts.push(`max_age=${formatDuration(policy.max_age_secs * 1000)}`);
  return parts.length === 0 ? 'none' : parts.join(' ');
}

/** `/policies/<bucket>[/<stream>]`, names encoded. */
export function policyPath(bucket: string, stream: string | undefined): string {
  return `/policies/${encodeURIComponent(bucket)}${stream === undefined ? '' : `/${encodeURIComponent(stream)}`}`;
}
