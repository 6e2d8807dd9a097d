/**
 * Measures one path: builds a fresh testbed, configures the path, runs every test
 * for the given repetitions (RTT, the latency section, TCP x1, TCP x4, UDP 64 B,
 * UDP 1400 B, UDP 64 B paced), accounts CPU and peak RSS, and always removes the testbed.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { BenchPath, PathInstance } from '../paths/types.js';
import { busyMs, formatProfile, summarizeProfileFile } from './cpuprof.js';
import { sleep } from './exec.js';
import { runIperfClient, startIperfServer, type IperfTest } from './iperf.js';
import { compileLat, startRrServer } from './lat.js';
import { measureLatency } from './latency.js';
import { isOurs, PATH_LABELS, type MetricKey } from './metrics.js';
import { measureRtt } from './ping.js';
import { cpuDelta, readComm, readTreePeakRssKiB, snapshot } from './proc.js';
import type { ProfileSummary, RawPathResult, TestRecord } from './report.js';
import { createBed, type BenchBed } from './testbed.js';

/** Settings of one run. */
export interface RunSettings {
  /** Total repetitions of the run (for progress labels). */
  reps: number;
  /** Which repetitions this call measures (indices into 0..reps-1). */
  repIndices: number[];
  duration: number;
  pingCount: number;
  /** Pings per fast (1 ms) RTT run of the latency section, idle and under load. */
  fastPings: number;
  mtu: number;
  /** Directory for logs and daemon configuration. */
  workDir: string;
  /** Set to profile our daemons. */
  cpuProfDir?: string;
  /** overlayd --offload for our paths. */
  offload?: 'auto' | 'off';
  /** Rate of the paced 64 B UDP test, datagrams per second. */
  pacedPps: number;
  /** CONFIG_IRQ_TIME_ACCOUNTING of this kernel (see proc.ts). */
  irqTime: boolean | null;
  log(msg: string): void;
}

/** Testbeds alive right now (for SIGINT cleanup). */
export const liveBeds = new Set<BenchBed>();

/** Destroy every live testbed (synchronous; safe from signal handlers). */
export function destroyLiveBeds(): void {
  for (const b of liveBeds) b.tb.destroy();
  liveBeds.clear();
}

const IPERF_PORT = 5201;
const RR_PORT = 5301;

/** Push a sample for `key` into the result (NaN marks a failed repetition). */
function push(r: RawPathResult, key: MetricKey, v: number): void {
  (r.samples[key] ??= []).push(v);
}

/**
 * Merge results of the same path measured in several rounds: samples and tests in
 * order; the path is in error only when no round measured it.
 */
export function mergeResults(parts: RawPathResult[]): RawPathResult {
  const first = parts[0];
  const out: RawPathResult = { id: first.id, label: first.label ?? PATH_LABELS[first.id], samples: {}, tests: [] };
  const errors: string[] = [];
  for (const p of parts) {
    for (const [k, v] of Object.entries(p.samples) as [MetricKey, number[]][]) (out.samples[k] ??= []).push(...v);
    out.tests?.push(...(p.tests ?? []));
    if (p.error) {
      errors.push(p.error);
      out.tests?.push({ test: 'setup', rep: -1, ok: false, error: p.error, values: {} });
    }
    if (p.config && !out.config) out.config = p.config;
    if (p.daemonStats) out.daemonStats = p.daemonStats;
    if (p.profiles) out.profiles = p.profiles;
  }
  if (errors.length === parts.length) out.error = errors[errors.length - 1];
  return out;
}

/** Measure one path. Never throws: setup failures land in `error`. */
export async function measurePath(path: BenchPath, s: RunSettings): Promise<RawPathResult> {
  const id = path.id;
  const result: RawPathResult = { id, label: PATH_LABELS[id], samples: {}, tests: [] };
  const tests = result.tests ?? [];
  let bed: BenchBed | undefined;
  let inst: PathInstance | undefined;
  const t0 = Date.now();
  s.log(`== ${id}: ${PATH_LABELS[id]}${s.repIndices.length === 1 ? ` (repetition ${s.repIndices[0] + 1}/${s.reps})` : ''}`);
  try {
    // Set up; one retry on a fresh testbed (a daemon can fail to start for a passing reason).
    for (let attempt = 1; ; attempt++) {
      bed = await createBed(s.mtu);
      liveBeds.add(bed);
      const workDir = join(s.workDir, bed.tb.prefix);
      mkdirSync(workDir, { recursive: true });
      try {
        inst = await path.setup(bed, { workDir, log: s.log, ...(s.cpuProfDir ? { cpuProfDir: s.cpuProfDir } : {}), ...(s.offload ? { offload: s.offload } : {}) });
        break;
      } catch (e) {
        bed.tb.destroy();
        liveBeds.delete(bed);
        bed = undefined;
        if (attempt >= 2) throw e;
        s.log(`  ${id}: setup failed (${(e as Error).message.slice(0, 300)}); retrying once on a fresh testbed`);
        await sleep(2000);
      }
    }
    result.config = inst.config;
    const a = bed.a, b = bed.b;
    const first = await measureRtt(a.ns, a.workload, b.workload, 3).catch((e: Error) => e);
    if (first instanceof Error) throw new Error(`no connectivity over the path: ${first.message}`);

    const server: ChildProcess = await startIperfServer(b.ns, b.workload, IPERF_PORT);
    bed.tb.track(server);
    const serverPid = server.pid ?? 0;
    const comm = readComm(serverPid);
    if (comm !== 'iperf3') s.log(`  warning: iperf3 server pid ${serverPid} is "${comm}" (ip netns exec did not exec in place): its CPU is not counted`);
    const procs = (): Record<string, number> => ({ 'iperf3-server': serverPid, ...inst?.processes() });
    const latBin = compileLat(s.workDir);
    bed.tb.track(await startRrServer(b.ns, latBin, b.workload, RR_PORT));

    const tcp = (streams: number): IperfTest => ({ proto: 'tcp', streams, seconds: s.duration });
    const udp = (len: number): IperfTest => ({ proto: 'udp', streams: 1, len, seconds: s.duration });

    for (const rep of s.repIndices) {
      const tag = `  [${id} ${rep + 1}/${s.reps}]`;
      const record = (rec: TestRecord): void => { tests.push(rec); };

      // RTT first, on an idle path.
      try {
        const r = await measureRtt(a.ns, a.workload, b.workload, s.pingCount);
        push(result, 'rttP50', r.p50);
        push(result, 'rttP99', r.p99);
        record({ test: 'ping', rep, ok: true, values: { p50: r.p50, p99: r.p99, received: r.received, sent: r.sent } });
        s.log(`${tag} RTT p50 ${r.p50.toFixed(1)} µs, p99 ${r.p99.toFixed(1)} µs (${r.received}/${r.sent} replies)`);
      } catch (e) {
        push(result, 'rttP50', NaN);
        push(result, 'rttP99', NaN);
        record({ test: 'ping', rep, ok: false, error: (e as Error).message, values: {} });
        s.log(`${tag} RTT FAILED: ${(e as Error).message}`);
      }

      // The latency section (latency.ts): request/response, fast pings idle, fast pings under TCP load.
      await sleep(300);
      await measureLatency({
        a, b, latBin, rrPort: RR_PORT, iperfPort: IPERF_PORT, fastPings: s.fastPings, rrSeconds: s.duration, rep, tag, log: s.log, record,
        push: (k, v) => push(result, k, v),
      });

      for (const [name, key, t] of [['tcp1', 'tcp1', tcp(1)], ['tcp4', 'tcp4', tcp(4)]] as const) {
        await sleep(300);
        try {
          const before = snapshot(procs());
          const r = await runIperfClient(a.ns, a.workload, b.workload, IPERF_PORT, t);
          await sleep(200); // let the receive side drain before the second snapshot
          const cpu = cpuDelta(before, snapshot(procs()), s.irqTime, 'iperf3-client');
          const gbps = r.bitsPerSecond / 1e9;
          const bytes = (r.bitsPerSecond * r.seconds) / 8;
          const nsPerByte = bytes > 0 ? (cpu.cpuSeconds * 1e9) / bytes : NaN;
          push(result, key, gbps);
          if (key === 'tcp1') push(result, 'cpuPerByteTcp', nsPerByte);
          record({ test: name, rep, ok: true, values: { gbps, seconds: r.seconds, cpuNsPerByte: nsPerByte }, cpu });
          s.log(`${tag} TCP x${t.streams}: ${gbps.toFixed(2)} Gbit/s, CPU ${nsPerByte.toFixed(2)} ns/byte`);
        } catch (e) {
          push(result, key, NaN);
          if (key === 'tcp1') push(result, 'cpuPerByteTcp', NaN);
          record({ test: name, rep, ok: false, error: (e as Error).message, values: {} });
          s.log(`${tag} TCP x${t.streams} FAILED: ${(e as Error).message}`);
        }
      }

      for (const [len, ppsKey, lossKey, cpuKey] of [[64, 'udp64pps', 'udp64loss', 'cpuPerPkt64'], [1400, 'udp1400pps', 'udp1400loss', 'cpuPerPkt1400']] as const) {
        await sleep(300);
        try {
          const before = snapshot(procs());
          const r = await runIperfClient(a.ns, a.workload, b.workload, IPERF_PORT, udp(len));
          await sleep(200); // let the receive side drain before the second snapshot
          const cpu = cpuDelta(before, snapshot(procs()), s.irqTime, 'iperf3-client');
          const kpps = r.packets / r.seconds / 1000;
          const cpuUs = r.packets > 0 ? (cpu.cpuSeconds * 1e6) / r.packets : NaN;
          push(result, ppsKey, kpps);
          push(result, lossKey, r.lossPercent);
          push(result, cpuKey, cpuUs);
          record({ test: `udp${len}`, rep, ok: true, values: { kpps, lossPercent: r.lossPercent, received: r.packets, lost: r.lost, seconds: r.seconds, cpuUsPerPkt: cpuUs, mbps: r.bitsPerSecond / 1e6 }, cpu });
          s.log(`${tag} UDP ${len} B: ${kpps.toFixed(1)} kpps received, loss ${r.lossPercent.toFixed(1)}%, CPU ${cpuUs.toFixed(2)} µs/pkt`);
        } catch (e) {
          push(result, ppsKey, NaN);
          push(result, lossKey, NaN);
          push(result, cpuKey, NaN);
          record({ test: `udp${len}`, rep, ok: false, error: (e as Error).message, values: {} });
          s.log(`${tag} UDP ${len} B FAILED: ${(e as Error).message}`);
        }
      }

      // CPU per packet without overload: 64 B at a fixed rate every path sustains.
      await sleep(300);
      try {
        const before = snapshot(procs());
        const r = await runIperfClient(a.ns, a.workload, b.workload, IPERF_PORT, { ...udp(64), pps: s.pacedPps });
        await sleep(200);
        const cpu = cpuDelta(before, snapshot(procs()), s.irqTime, 'iperf3-client');
        const cpuUs = r.packets > 0 ? (cpu.cpuSeconds * 1e6) / r.packets : NaN;
        const kpps = r.packets / r.seconds / 1000;
        push(result, 'cpuPerPktPaced', cpuUs);
        record({ test: 'udp64paced', rep, ok: true, values: { kpps, targetKpps: s.pacedPps / 1000, lossPercent: r.lossPercent, received: r.packets, lost: r.lost, seconds: r.seconds, cpuUsPerPkt: cpuUs }, cpu });
        s.log(`${tag} UDP 64 B paced at ${(s.pacedPps / 1000).toFixed(0)} kpps: ${kpps.toFixed(1)} kpps received, loss ${r.lossPercent.toFixed(1)}%, CPU ${cpuUs.toFixed(2)} µs/pkt`);
      } catch (e) {
        push(result, 'cpuPerPktPaced', NaN);
        record({ test: 'udp64paced', rep, ok: false, error: (e as Error).message, values: {} });
        s.log(`${tag} UDP 64 B paced FAILED: ${(e as Error).message}`);
      }

      if (isOurs(id)) {
        // Peak RSS since the daemon started (VmHWM, summed over its processes), the larger of the two hosts.
        const peaks = Object.values(inst.daemons()).map((p) => readTreePeakRssKiB(p) ?? NaN).filter(Number.isFinite);
        const mib = peaks.length ? Math.max(...peaks) / 1024 : NaN;
        push(result, 'rssPeak', mib);
        s.log(`${tag} peak RSS ${mib.toFixed(1)} MiB`);
      }
    }
    if (inst.collectStats) result.daemonStats = await inst.collectStats();
  } catch (e) {
    result.error = (e as Error).message;
    s.log(`  ${id}: NOT MEASURED: ${result.error}`);
  } finally {
    if (inst) {
      try { await inst.stop(); } catch (e) { s.log(`  ${id}: stop failed: ${(e as Error).message}`); }
      const profs = inst.profiles();
      if (profs.length) {
        result.profiles = [];
        // Node writes one profile per thread; the busy one (least idle) is the event loop's.
        const byDir = new Map<string, ProfileSummary[]>();
        for (const f of profs) {
          try {
            const sum = summarizeProfileFile(f, 15);
            byDir.set(dirname(f), [...(byDir.get(dirname(f)) ?? []), sum]);
          } catch (e) { s.log(`  profile ${f}: ${(e as Error).message}`); }
        }
        for (const sums of byDir.values()) {
          sums.sort((x, y) => busyMs(y) - busyMs(x));
          result.profiles.push(sums[0]);
          s.log(formatProfile(sums[0]));
        }
      }
    }
    if (bed) {
      bed.tb.destroy();
      liveBeds.delete(bed);
    }
  }
  s.log(`== ${id}: done in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  return result;
}
