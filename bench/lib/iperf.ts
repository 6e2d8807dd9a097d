/**
 * iperf3 driving and JSON parsing: TCP throughput (1 and N streams) and UDP
 * received packet rate and loss at a fixed payload size.
 */
import type { ChildProcess } from 'node:child_process';
import type { NsHost } from '../../test/helpers/netns.js';
import { sleep, waitChild } from './exec.js';

/** The fields of iperf3's `-J` output the benchmark reads. */
interface IperfSum {
  seconds?: number;
  bytes?: number;
  bits_per_second?: number;
  packets?: number;
  lost_packets?: number;
  lost_percent?: number;
}
interface IperfJson {
  error?: string;
  end?: { sum_received?: IperfSum; sum_sent?: IperfSum; sum?: IperfSum };
}

/** One iperf3 test. */
export interface IperfTest {
  /** tcp or udp. */
  proto: 'tcp' | 'udp';
  /** Parallel streams (-P). */
  streams: number;
  /** UDP payload bytes (-l). */
  len?: number;
  /** UDP send rate in datagrams per second (-b); unlimited when absent. */
  pps?: number;
  /** Seconds (-t). */
  seconds: number;
}

/** Parsed outcome of one iperf3 run. */
export interface IperfResult {
  /** Received throughput, bits/s. */
  bitsPerSecond: number;
  /** Datagrams received (UDP). */
  packets: number;
  /** Datagrams lost (UDP). */
  lost: number;
  /** Loss percent (UDP). */
  lossPercent: number;
  /** Receiver-side seconds. */
  seconds: number;
}

/** Start `iperf3 -s` bound to `bindIp` in `host`; resolves once it listens. */
export async function startIperfServer(host: NsHost, bindIp: string, port: number): Promise<ChildProcess> {
  const child = host.spawn('iperf3', ['-s', '-B', bindIp, '-p', String(port)], { stdio: ['ignore', 'ignore', 'pipe'] });
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`iperf3 server exited with ${child.exitCode}`);
    try {
      if (host.exec('ss', ['-Hltn', `sport = :${port}`]).includes(`:${port}`)) return child;
    } catch { /* not yet */ }
    await sleep(100);
  }
  child.kill('SIGKILL');
  throw new Error('iperf3 server did not start listening within 10 s');
}

/** Parse iperf3 JSON for a test. Throws on an iperf3 error. */
export function parseIperf(json: string, test: IperfTest): IperfResult {
  const d = JSON.parse(json) as IperfJson;
  if (d.error) throw new Error(`iperf3: ${d.error}`);
  const r = d.end?.sum_received ?? d.end?.sum;
  if (!r || r.bits_per_second === undefined) throw new Error('iperf3: no receiver summary in JSON');
  const seconds = r.seconds ?? test.seconds;
  if (test.proto === 'tcp') return { bitsPerSecond: r.bits_per_second, packets: 0, lost: 0, lossPercent: 0, seconds };
  // Receiver side: `packets` is the highest sequence seen (received + lost); bytes/len is what arrived.
  const len = test.len ?? 0;
  const lost = r.lost_packets ?? 0;
  const received = len > 0 && r.bytes !== undefined ? Math.round(r.bytes / len) : (r.packets ?? 0) - lost;
  const total = received + lost;
  return { bitsPerSecond: r.bits_per_second, packets: received, lost, lossPercent: total > 0 ? (100 * lost) / total : 0, seconds };
}

/**
 * Run an iperf3 client in `host` towards `dst` (bound to `src`). Calls `onStart`
 * right after spawning (for CPU snapshots) and resolves with the parsed result.
 * Retries once when the server is still busy with the previous test.
 */
export async function runIperfClient(host: NsHost, src: string, dst: string, port: number, test: IperfTest, onStart?: (c: ChildProcess) => void): Promise<IperfResult> {
  const args = ['-c', dst, '-B', src, '-p', String(port), '-t', String(test.seconds), '-J', '-P', String(test.streams)];
  if (test.proto === 'udp') {
    const len = test.len ?? 64;
    // iperf3's UDP bitrate counts payload bits.
    args.push('-u', '-b', test.pps ? String(test.pps * len * 8) : '0', '-l', String(len));
  }
  for (let attempt = 0; ; attempt++) {
    const child = host.spawn('iperf3', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    onStart?.(child);
    const r = await waitChild(child, (test.seconds + 25) * 1000);
    if (r.timedOut) throw new Error(`iperf3 client timed out after ${test.seconds + 25} s`);
    try {
      return parseIperf(r.stdout, test);
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      if (attempt === 0 && /busy/i.test(msg)) { await sleep(1000); continue; }
      throw new Error(r.stdout.trim() ? msg : `iperf3 exited ${r.code}: ${r.stderr.trim().slice(0, 300)}`);
    }
  }
}
