/** Round-trip time with ping: per-packet times, p50 and p99. */
import type { NsHost } from '../../test/helpers/netns.js';
import { percentile } from './stats.js';
import { waitChild } from './exec.js';

/** RTT figures of one ping run, microseconds. */
export interface RttResult {
  p50: number;
  p99: number;
  /** Replies received. */
  received: number;
  /** Requests sent. */
  sent: number;
}

/** Parse `time=0.045 ms` lines into microseconds. */
export function parsePingTimes(out: string): number[] {
  const t: number[] = [];
  for (const m of out.matchAll(/time=([\d.]+) ms/g)) t.push(Number(m[1]) * 1000);
  return t;
}

/** Ping `dst` from `src` every 10 ms, `count` times; RTT p50/p99 in microseconds. */
export async function measureRtt(host: NsHost, src: string, dst: string, count: number): Promise<RttResult> {
  const child = host.spawn('ping', ['-n', '-I', src, '-i', '0.01', '-c', String(count), '-W', '1', dst], { stdio: ['ignore', 'pipe', 'pipe'] });
  const r = await waitChild(child, count * 10 + 15_000);
  const t = parsePingTimes(r.stdout).sort((a, b) => a - b);
  if (t.length === 0) throw new Error(`ping: no replies (${r.stderr.trim() || r.stdout.trim().split('\n').pop() || 'exit ' + String(r.code)})`);
  return { p50: percentile(t, 50), p99: percentile(t, 99), received: t.length, sent: count };
}
