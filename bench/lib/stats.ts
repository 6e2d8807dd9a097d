/**
 * Small statistics helpers for the benchmark: median with min-max over repetitions,
 * and nearest-rank percentiles for per-packet samples (RTT).
 */

/** Median, min and max of a set of repetitions (NaN/undefined samples are ignored). */
export interface Summary {
  /** Median of the valid samples (mean of the two middle values for an even count). */
  median: number;
  /** Smallest valid sample. */
  min: number;
  /** Largest valid sample. */
  max: number;
  /** Number of valid samples. */
  n: number;
  /** The valid samples, in measurement order. */
  values: number[];
}

/** Summarize repetitions; returns null when no sample is a finite number. */
export function summarize(values: readonly number[]): Summary | null {
  const ok = values.filter((v) => Number.isFinite(v));
  if (ok.length === 0) return null;
  const s = [...ok].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
  return { median, min: s[0], max: s[s.length - 1], n: s.length, values: ok };
}

/**
 * Nearest-rank percentile (p in [0, 100]) of an ascending-sorted array.
 * Returns NaN for an empty array.
 */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  if (p <= 0) return sorted[0];
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}
