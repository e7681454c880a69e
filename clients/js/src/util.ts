// Pure helpers of the client, apart so that they are tested on their own: the backoff delay, a
// JWT's `exp`, herald's offsets, and the URL of a socket that resumes.

/** Backoff settings, in milliseconds. */
export interface Backoff {
  /** Ceiling of the first delay (500). */
  min: number;
  /** Ceiling of any delay (30,000). */
  max: number;
  /** Growth of the ceiling per failed attempt (2). */
  factor: number;
}

/**
 * The delay before reconnect attempt `attempt` (0 for the first): full jitter, uniform in
 * `[0, min(max, min * factor^attempt)]`, plus `floor` (a larger wait herald asked for).
 */
export function backoffDelay(
  attempt: number,
  b: Backoff,
  floor = 0,
  random: () => number = Math.random,
): number {
  return floor + random() * Math.min(b.max, b.min * Math.pow(b.factor, attempt));
}

/** The `exp` claim (seconds since the epoch) of the JWT `token`, read without verifying it. */
export function jwtExp(token: string): number | undefined {
  try {
    const b64 = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const exp = JSON.parse(atob(b64 + '='.repeat(-b64.length & 3))).exp;
    return typeof exp == 'number' ? exp : undefined;
  } catch {
    return undefined;
  }
}

/** An offset `<epoch hex>-<seq>` as `[epoch, seq]`, or undefined if it is not one. */
export function parseOffset(offset: unknown): [string, number] | undefined {
  const m = typeof offset == 'string' && /^([0-9a-f]+)-(\d+)$/.exec(offset);
  return m ? [m[1], +m[2]] : undefined;
}

/**
 * Whether a notification at `offset` was already delivered when `last` was the last one: same
 * epoch and a sequence number not beyond it.
 */
export function seen(last: string | undefined, offset: string): boolean {
  const a = parseOffset(last);
  const b = parseOffset(offset);
  return !!a && !!b && a[0] == b[0] && b[1] <= a[1];
}

/** `url` with `resume=1` in its query: the client will subscribe with an offset. */
export function withResume(url: string): string {
  const hash = url.indexOf('#');
  const [base, fragment] = hash < 0 ? [url, ''] : [url.slice(0, hash), url.slice(hash)];
  if (/[?&]resume=1(&|$)/.test(base)) return url;
  return base + (base.includes('?') ? '&' : '?') + 'resume=1' + fragment;
}
