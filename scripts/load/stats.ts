// Latency figures: nearest-rank percentiles over every sample (a run holds at most a few hundred
// thousand numbers, so sorting them all is cheaper than getting a histogram's bucket edges right).

export interface Percentiles {
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

const round = (x: number) => Math.round(x * 10) / 10;

/** Nearest-rank percentile of an ascending array; 0 for no samples. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

export function summarize(samples: number[]): Percentiles {
  const s = Float64Array.from(samples).sort();
  return {
    p50: round(percentile(s, 50)),
    p95: round(percentile(s, 95)),
    p99: round(percentile(s, 99)),
    max: round(s.length ? s[s.length - 1]! : 0),
  };
}

/** Events per second over a window; 0 when the window is empty. */
export function perSecond(count: number, ms: number): number {
  return ms > 0 ? round((count * 1000) / ms) : 0;
}
