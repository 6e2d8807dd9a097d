/**
 * The benchmark's latency section (issue #12), run per path and repetition right after
 * the 10 ms-spaced RTT, on a path otherwise idle:
 *   - request/response: 1-byte transactions on one TCP connection, one outstanding,
 *     for `rrSeconds`; transactions per second and p50/p99 (`rr*`); it also warms the
 *     path up (JIT, buffers) for the next test;
 *   - idle RTT tail: ping every 1 ms, `fastPings` times; p99.9 (`rttIdleP999`);
 *   - RTT under load: one iperf3 TCP stream through the same path, pings every 1 ms
 *     from 1 s after it started until `fastPings` were sent; p50/p99/p99.9 (`rttLoad*`).
 * Percentiles are over the replies received; lost pings show in the test record only.
 * The pings and the request/response come from bench/lat/lat.c (see why there).
 *
 * Not yet: throughput against worker count. overlayd has no workers; once it has
 * `--workers N`, the runner measures TCP x4 and UDP 64 B per worker count (a path
 * variant per N, like the transports), and this section stays per path.
 */
import type { BedHost } from './testbed.js';
import { sleep } from './exec.js';
import type { MetricKey } from './metrics.js';
import { runIperfClient } from './iperf.js';
import { runFastPing, runRr, type FastPingResult } from './lat.js';
import type { TestRecord } from './report.js';

/** Pings of the fast runs are this many milliseconds apart. */
export const FAST_PING_MS = 1;
/** Seconds the TCP load runs before the pings under load start. */
const LOAD_LEAD_S = 1;
/** Seconds the TCP load outlasts the pings' schedule (the last replies). */
const LOAD_TAIL_S = 1;

/** What the section needs from the runner for one repetition. */
export interface LatencyRun {
  /** Client side (pings, rr client and iperf3 client run here). */
  a: BedHost;
  /** Server side (iperf3 and rr servers listen on its workload address). */
  b: BedHost;
  /** The compiled bench/lat/lat.c. */
  latBin: string;
  /** Port of its request/response server. */
  rrPort: number;
  /** Port of the iperf3 server. */
  iperfPort: number;
  /** Pings per fast run (idle, and under load). */
  fastPings: number;
  /** Seconds of the request/response test. */
  rrSeconds: number;
  /** Repetition index, and its progress tag. */
  rep: number;
  tag: string;
  /** Store one figure (NaN for a failed test). */
  push(key: MetricKey, v: number): void;
  /** Keep a test execution for the JSON file. */
  record(rec: TestRecord): void;
  log(msg: string): void;
}

/** A finished test: the figures it gives, its record values, and a progress line. */
interface Outcome {
  figures: Partial<Record<MetricKey, number>>;
  values: Record<string, number>;
  line: string;
}

/** Run one test: store its figures, or NaN for `keys` when it fails. */
async function step(c: LatencyRun, test: string, keys: readonly MetricKey[], fn: () => Promise<Outcome>): Promise<void> {
  try {
    const o = await fn();
    for (const k of keys) c.push(k, o.figures[k] ?? NaN);
    c.record({ test, rep: c.rep, ok: true, values: o.values });
    c.log(`${c.tag} ${o.line}`);
  } catch (e) {
    for (const k of keys) c.push(k, NaN);
    c.record({ test, rep: c.rep, ok: false, error: (e as Error).message, values: {} });
    c.log(`${c.tag} ${test} FAILED: ${(e as Error).message}`);
  }
}

/** "p50 12.0, p99 40.0, p99.9 95.0 µs" */
function pcts(r: { p50: number; p99: number; p999: number }): string {
  return `p50 ${r.p50.toFixed(1)}, p99 ${r.p99.toFixed(1)}, p99.9 ${r.p999.toFixed(1)} µs`;
}

/** Fast pings from a to b. */
function fastPing(c: LatencyRun): Promise<FastPingResult> {
  return runFastPing(c.a.ns, c.latBin, c.a.workload, c.b.workload, c.fastPings, FAST_PING_MS);
}

/** Run the latency section for one repetition (see the file comment). Never throws. */
export async function measureLatency(c: LatencyRun): Promise<void> {
  await step(c, 'rr', ['rrRate', 'rrP50', 'rrP99'], async () => {
    const r = await runRr(c.a.ns, c.latBin, c.a.workload, c.b.workload, c.rrPort, c.rrSeconds);
    return { figures: { rrRate: r.tps, rrP50: r.p50, rrP99: r.p99 }, values: { ...r }, line: `TCP request/response: ${r.tps.toFixed(0)} trans/s, ${pcts(r)}` };
  });

  await sleep(300);
  await step(c, 'ping-fast', ['rttIdleP999'], async () => {
    const r = await fastPing(c);
    return { figures: { rttIdleP999: r.p999 }, values: { ...r }, line: `RTT idle, ${FAST_PING_MS} ms pings: ${pcts(r)} (${r.received}/${r.sent} replies)` };
  });

  await sleep(300);
  await step(c, 'ping-load', ['rttLoadP50', 'rttLoadP99', 'rttLoadP999'], async () => {
    const seconds = LOAD_LEAD_S + Math.ceil((c.fastPings * FAST_PING_MS) / 1000) + LOAD_TAIL_S;
    const loadEnd = Date.now() + seconds * 1000;
    // Settled either way, so a failed ping still waits for the load to end (the iperf3 server is single-client).
    const load = runIperfClient(c.a.ns, c.a.workload, c.b.workload, c.iperfPort, { proto: 'tcp', streams: 1, seconds }).catch((e: unknown) => (e instanceof Error ? e : new Error(String(e))));
    let r: FastPingResult;
    let pingStart: number;
    try {
      await sleep(LOAD_LEAD_S * 1000);
      pingStart = Date.now();
      r = await fastPing(c);
    } finally {
      await load;
    }
    const l = await load;
    if (l instanceof Error) throw new Error(`TCP load: ${l.message}`);
    if (pingStart + r.seconds * 1000 > loadEnd) throw new Error(`the pings outlasted the ${seconds} s TCP load (${r.seconds.toFixed(1)} s of requests)`);
    const gbps = l.bitsPerSecond / 1e9;
    return { figures: { rttLoadP50: r.p50, rttLoadP99: r.p99, rttLoadP999: r.p999 }, values: { ...r, loadGbps: gbps }, line: `RTT under TCP load (${gbps.toFixed(2)} Gbit/s): ${pcts(r)} (${r.received}/${r.sent} replies)` };
  });
}
