// Per-minute figures for the dashboard and `scripts/tasks.ts stats`: one Redis hash per minute
// (lib/keys.ts `minute`, kept 2 h) with finish counters and latency histogram buckets. Workers add
// to it in batches (lib/ops/recorder.ts), so reading the last hour costs 60 HGETALLs whatever the
// number of tasks, and writing costs a few HINCRBYs per worker every couple of seconds, not one
// command per task.
import type { Keys } from "../keys.ts";
import { send, type Redis } from "../scripts.ts";
import { hashOf } from "../tenancy/scripts.ts";

/** Upper bounds (ms) of the latency buckets; a last bucket holds everything above. */
export const BUCKETS_MS = [50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 120_000, 300_000, 600_000] as const;
/** How long a minute's hash is kept (s): the dashboard shows one hour. */
export const MINUTE_TTL_SECONDS = 2 * 3600;

/** Histograms kept: end to end (request message born -> finished) and run (received -> finished). */
export type Histogram = "e2e" | "run";

/** The bucket index of a latency: the first bound it does not exceed, or the overflow bucket. */
export function bucketOf(ms: number): number {
  const i = BUCKETS_MS.findIndex((b) => ms <= b);
  return i < 0 ? BUCKETS_MS.length : i;
}

/** Field names in a minute's hash. */
export const field = {
  count: (status: "done" | "failed" | "retry") => status,
  bucket: (h: Histogram, i: number) => `${h}_b${i}`,
};

export const epochMinute = (ms = Date.now()) => Math.floor(ms / 60_000);

/** The last bucket's upper bound (ms): a latency in the overflow bucket is only known to be more than this. */
export const OVERFLOW_MS: number = BUCKETS_MS[BUCKETS_MS.length - 1]!;

/**
 * The q-quantile (0..1) of a histogram, as the upper bound of the bucket it falls in (null: no data).
 * Infinity when it falls in the overflow bucket, which has no upper bound: returning the last bound
 * there read as "≤ 600 s" for latencies of any length above it.
 */
export function quantile(counts: number[], q: number): number | null {
  const total = counts.reduce((a, b) => a + b, 0);
  if (total === 0) return null;
  const rank = Math.ceil(q * total);
  let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    seen += counts[i]!;
    if (seen >= rank) return i < BUCKETS_MS.length ? BUCKETS_MS[i]! : Infinity;
  }
  return null;
}

export type Percentile = "p50" | "p95" | "p99";

/**
 * p50 / p95 / p99 (ms, bucket upper bounds; null without data), in a form JSON carries: a percentile
 * that fell in the overflow bucket is OVERFLOW_MS and is named in `over`, meaning "more than that"
 * (JSON has no Infinity; null already means no data). Shown to people by latencyText().
 */
export interface Percentiles {
  p50: number | null;
  p95: number | null;
  p99: number | null;
  /** the percentiles above the last bucket bound (their value is OVERFLOW_MS, a lower bound); absent: none */
  over?: Percentile[];
}

export function percentiles(counts: number[]): Percentiles {
  const out: Percentiles = { p50: null, p95: null, p99: null };
  const above: Percentile[] = [];
  for (const [k, q] of [["p50", 0.5], ["p95", 0.95], ["p99", 0.99]] as const) {
    const v = quantile(counts, q);
    if (v === Infinity) above.push(k);
    out[k] = v === Infinity ? OVERFLOW_MS : v;
  }
  if (above.length) out.over = above;
  return out;
}

/** Whether percentile `k` of `p` is above the last bucket bound (its value a lower bound). */
export const over = (p: Percentiles, k: Percentile) => p.over?.includes(k) ?? false;

/** A percentile for people: "≤ 250 ms", "≤ 2.5 s", "> 600 s", "-" without data (`le`/`gt`: the signs to use). */
export function latencyText(p: Percentiles, k: Percentile, signs = { le: "≤ ", gt: "> " }): string {
  const v = p[k];
  if (v === null) return "-";
  const amount = v >= 1000 ? `${v / 1000} s` : `${v} ms`;
  return `${over(p, k) ? signs.gt : signs.le}${amount}`;
}

/** One minute: its finish counts and its end-to-end percentiles. */
export interface MinutePoint extends Percentiles {
  /** start of the minute (ms since the epoch) */
  t: number;
  done: number;
  failed: number;
  retry: number;
}

export interface Window {
  minutes: MinutePoint[];
  done: number;
  failed: number;
  retry: number;
  /** over the whole window */
  e2e: Percentiles;
  run: Percentiles;
}

/** The last `n` minutes (this one included), oldest first. */
export async function readWindow(redis: Redis, keys: Keys, n = 60, now = Date.now()): Promise<Window> {
  const last = epochMinute(now);
  const ms = Array.from({ length: n }, (_, i) => last - n + 1 + i);
  const hashes = await Promise.all(ms.map((m) => send<unknown>(redis, keys.minute(m), ["HGETALL", keys.minute(m)])));
  const total = { e2e: new Array<number>(BUCKETS_MS.length + 1).fill(0), run: new Array<number>(BUCKETS_MS.length + 1).fill(0) };
  const sums = { done: 0, failed: 0, retry: 0 };
  const minutes = hashes.map((reply, i): MinutePoint => {
    const h = hashOf(reply);
    const num = (f: string) => Number(h[f] ?? 0) || 0;
    const e2e = BUCKETS_MS.map((_, b) => num(field.bucket("e2e", b))).concat(num(field.bucket("e2e", BUCKETS_MS.length)));
    e2e.forEach((c, b) => (total.e2e[b]! += c));
    for (let b = 0; b <= BUCKETS_MS.length; b++) total.run[b]! += num(field.bucket("run", b));
    const p = { done: num("done"), failed: num("failed"), retry: num("retry") };
    sums.done += p.done;
    sums.failed += p.failed;
    sums.retry += p.retry;
    return { t: ms[i]! * 60_000, ...p, ...percentiles(e2e) };
  });
  return { minutes, ...sums, e2e: percentiles(total.e2e), run: percentiles(total.run) };
}
