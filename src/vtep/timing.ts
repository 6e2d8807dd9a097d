/**
 * Timing mode (issue #12): where a packet's microseconds go inside the dataplane, per batch and
 * per stage, as log-scale histograms. Off by default; with `timing: true` the core stamps every
 * batch (the device and socket stamp their wake-up and read, the socket also the kernel's receive
 * time; the core stamps its own stages) and records each stage's duration here.
 *
 * Device -> network: `tx_read` (wake-up to the read returning), `tx_encap` (read returned to every
 * datagram queued: segmentation, encapsulation), `tx_send` (the send call), `tx_total`.
 * Network -> device: `rx_wakeup` (the kernel received the first datagram to our wake-up: the
 * event loop's latency), `rx_read`, `rx_decap` (validation, decapsulation, coalescing queued),
 * `rx_write` (the device write), `rx_total` (kernel receive to written).
 */

/** The stages timed, in pipeline order. */
export const TIMING_STAGES = ['tx_read', 'tx_encap', 'tx_send', 'tx_total', 'rx_wakeup', 'rx_read', 'rx_decap', 'rx_write', 'rx_total'] as const;

/** One timed stage. */
export type TimingStage = (typeof TIMING_STAGES)[number];

/** Summary of one stage: batches timed and quantiles of their durations, in microseconds. */
export interface StageSummary {
  /** Batches timed. */
  count: number;
  /** Median, µs. */
  p50: number;
  /** 90th percentile, µs. */
  p90: number;
  /** 99th percentile, µs. */
  p99: number;
  /** 99.9th percentile, µs. */
  p999: number;
  /** Largest, µs. */
  max: number;
  /** Mean, µs. */
  mean: number;
}

// Buckets: 8 per power of two from 2^-2 µs to 2^22 µs (about 4 s); values outside clamp to the ends.
const SUB = 8;
const MIN_EXP = -2;
const OCTAVES = 24;
const NBUCKETS = SUB * OCTAVES + 1;

/** Index of `us` in the log-scale buckets. */
function bucketOf(us: number): number {
  if (!(us > 2 ** MIN_EXP)) return 0;
  const b = Math.floor((Math.log2(us) - MIN_EXP) * SUB) + 1;
  return b >= NBUCKETS ? NBUCKETS - 1 : b;
}

/** Upper bound (µs) of bucket `b`. */
function upperOf(b: number): number {
  return 2 ** (MIN_EXP + b / SUB);
}

/** Per-stage histograms of batch durations; allocation-free to record. */
export class StageTimer {
  private readonly counts = new Float64Array(TIMING_STAGES.length * NBUCKETS);
  private readonly n = new Float64Array(TIMING_STAGES.length);
  private readonly sum = new Float64Array(TIMING_STAGES.length);
  private readonly max = new Float64Array(TIMING_STAGES.length);

  /** Record `us` microseconds for stage index `s` (an index into TIMING_STAGES); negative or NaN values are ignored. */
  record(s: number, us: number): void {
    if (!(us >= 0)) return;
    this.counts[s * NBUCKETS + bucketOf(us)]!++;
    this.n[s]!++;
    this.sum[s]! += us;
    if (us > this.max[s]!) this.max[s] = us;
  }

  /** Forget everything recorded. */
  reset(): void {
    this.counts.fill(0);
    this.n.fill(0);
    this.sum.fill(0);
    this.max.fill(0);
  }

  /** Quantile `q` (0..1) of stage index `s`: the upper bound of its bucket (within 9% above the true value), 0 when empty. */
  quantile(s: number, q: number): number {
    const total = this.n[s]!;
    if (total === 0) return 0;
    const want = Math.max(1, Math.ceil(q * total));
    let seen = 0;
    for (let b = 0; b < NBUCKETS; b++) {
      seen += this.counts[s * NBUCKETS + b]!;
      if (seen >= want) return Math.min(upperOf(b), this.max[s]!);
    }
    return this.max[s]!;
  }

  /** Every stage that has samples, summarized. */
  summary(): Partial<Record<TimingStage, StageSummary>> {
    const out: Partial<Record<TimingStage, StageSummary>> = {};
    TIMING_STAGES.forEach((name, s) => {
      const count = this.n[s]!;
      if (count === 0) return;
      const r = (x: number): number => Math.round(x * 10) / 10;
      out[name] = {
        count,
        p50: r(this.quantile(s, 0.5)),
        p90: r(this.quantile(s, 0.9)),
        p99: r(this.quantile(s, 0.99)),
        p999: r(this.quantile(s, 0.999)),
        max: r(this.max[s]!),
        mean: r(this.sum[s]! / count),
      };
    });
    return out;
  }
}
