import { DomicileError } from '../policy/errors.ts';

/** Backoff of failed deliveries, in milliseconds. */
export interface RetryPolicy {
  /** Ceiling of the first retry's delay; it doubles with every further attempt. */
  baseMs: number;
  /** Upper bound of any delay. */
  maxMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { baseMs: 1_000, maxMs: 5 * 60_000 };

/**
 * Returns the delay before the next attempt after `attempts` failed ones (at
 * least 1). The backoff is exponential with "equal jitter": a random point in
 * the upper half of `min(maxMs, baseMs * 2^(attempts - 1))`. The jitter
 * spreads the retries of events that failed together, and the lower half
 * keeps a floor, so a destination that is down is not hammered.
 */
export function retryDelayMs(attempts: number, policy: RetryPolicy, random: () => number = Math.random): number {
  const exponent = Math.min(Math.max(attempts - 1, 0), 30);
  const ceiling = Math.min(policy.maxMs, policy.baseMs * 2 ** exponent);
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

const CODE_PATTERN = /^[A-Za-z][A-Za-z0-9_.-]{0,63}$/;

/**
 * Returns a short, value-free code for an error, fit for a log line and the
 * outbox row: the DomicileError code, a Node system error code (`ECONNREFUSED`,
 * `ENOTDIR`), or the AWS SDK error name (`NoSuchBucket`, `TimeoutError`).
 * Error messages are never used, because a message may quote a key or a body.
 */
export function errorCode(error: unknown): string {
  if (error instanceof DomicileError) {
    return error.code;
  }
  if (!(error instanceof Error)) {
    return 'unknown';
  }
  const code: unknown = (error as { code?: unknown }).code;
  if (typeof code === 'string' && CODE_PATTERN.test(code)) {
    return code;
  }
  if (error.name !== 'Error' && CODE_PATTERN.test(error.name)) {
    return error.name;
  }
  return 'unknown';
}
