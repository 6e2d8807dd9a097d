/**
 * `npx tsx bench/stages.ts [--pings N] [--interval S] [--path vxlan-mmsg|udp-mmsg] [--out FILE]` (as root):
 * where a ping's round trip goes through overlayd (issue #12). Two namespace hosts, as
 * `npm run bench` builds them; in one run: kernel VXLAN's RTT, the floor forwarder's (TUN + UDP
 * system calls only, bench/floor/forward.c), and overlayd's with `--timing`, whose per-stage
 * histograms (overlayd_stage_latency_microseconds on /metrics) break the time down. Prints a
 * markdown report (also to --out).
 *
 * One ping crosses each daemon twice: the request leaves a through tx_* and enters b through
 * rx_*; the reply leaves b through tx_* and enters a through rx_*. A stage's time is per batch
 * (here one packet). tx_send and rx_write include what the kernel then does inline in the same
 * system call (veth transmit into the other namespace, its VXLAN or ICMP processing).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { measureRtt, type RttResult } from './lib/ping.js';
import { createBed, type BenchBed } from './lib/testbed.js';
import { PATHS } from './paths/index.js';
import type { PathId } from './lib/metrics.js';

const { values } = parseArgs({
  options: {
    pings: { type: 'string', default: '1000' },
    interval: { type: 'string', default: '0.01' },
    path: { type: 'string', default: 'vxlan-mmsg' },
    out: { type: 'string' },
    'busy-poll-us': { type: 'string' },
  },
});
const PINGS = Number(values.pings);
const BUSY = values['busy-poll-us'];
const EXTRA = ['--timing', ...(BUSY ? ['--busy-poll-us', BUSY] : [])];
const OURS = values.path as PathId;
if (!Number.isInteger(PINGS) || PINGS < 10) throw new Error('--pings must be an integer >= 10');
if (OURS !== 'vxlan-mmsg' && OURS !== 'udp-mmsg' && OURS !== 'vxlan-dgram' && OURS !== 'udp-dgram') throw new Error('--path must be one of our paths');
if (values.interval !== '0.01') throw new Error('only --interval 0.01 is supported (measureRtt pings every 10 ms)');

const work = mkdtempSync(join(tmpdir(), 'overlay-stages-'));
const log = (m: string): void => { process.stderr.write(m + '\n'); };

/** Stage quantiles of one daemon, parsed from its /metrics text: stage -> quantile -> µs. */
function parseStages(text: string): Map<string, Map<string, number>> {
  const out = new Map<string, Map<string, number>>();
  for (const m of text.matchAll(/^overlayd_stage_latency_microseconds\{stage="([a-z_]+)",quantile="([\d.]+)"\} ([\d.e+-]+)$/gm)) {
    if (!out.has(m[1]!)) out.set(m[1]!, new Map());
    out.get(m[1]!)!.set(m[2]!, Number(m[3]));
  }
  return out;
}

/** Configure `id` on a fresh bed, ping, and return the RTT (and our daemons' metrics). */
async function measure(id: PathId): Promise<{ rtt: RttResult; metrics: Record<string, string> }> {
  const bed: BenchBed = await createBed(1500, 'obs');
  try {
    const inst = await PATHS[id].setup(bed, { workDir: work, log, extraArgs: EXTRA });
    try {
      await measureRtt(bed.a.ns, bed.a.workload, bed.b.workload, 50); // warm-up
      const rtt = await measureRtt(bed.a.ns, bed.a.workload, bed.b.workload, PINGS);
      const metrics = inst.collectStats ? await inst.collectStats() : {};
      return { rtt, metrics };
    } finally {
      await inst.stop();
    }
  } finally {
    bed.tb.destroy();
  }
}

const rows: string[] = [];
try {
  const res = new Map<PathId, Awaited<ReturnType<typeof measure>>>();
  for (const id of ['kernel-vxlan', 'floor', OURS] as PathId[]) {
    log(`== ${id}`);
    res.set(id, await measure(id));
    const r = res.get(id)!.rtt;
    log(`   RTT p50 ${r.p50.toFixed(0)} µs, p99 ${r.p99.toFixed(0)} µs (${r.received}/${r.sent})`);
  }
  const k = res.get('kernel-vxlan')!.rtt;
  rows.push(`# Where a ping's round trip goes (${new Date().toISOString().slice(0, 10)})`, '');
  rows.push(`Command: \`npx tsx bench/stages.ts --pings ${PINGS} --path ${OURS}${BUSY ? ` --busy-poll-us ${BUSY}` : ''}\` (${PINGS} pings every 10 ms from a's workload to b's, after 50 to warm up; each path on fresh namespaces).`, '');
  rows.push('| path | RTT p50 µs | RTT p99 µs | p50 / kernel |', '|---|---:|---:|---:|');
  for (const [id, r] of res) rows.push(`| ${id} | ${r.rtt.p50.toFixed(0)} | ${r.rtt.p99.toFixed(0)} | ${(r.rtt.p50 / k.p50).toFixed(2)} |`);
  const m = res.get(OURS)!.metrics;
  rows.push('', `overlayd --timing, per batch (one packet here), µs since start (warm-up included):`, '');
  rows.push('| stage | a p50 | a p99 | b p50 | b p99 |', '|---|---:|---:|---:|---:|');
  const sa = parseStages(m['overlayd-a'] ?? '');
  const sb = parseStages(m['overlayd-b'] ?? '');
  const f = (s: Map<string, Map<string, number>>, st: string, q: string): string => {
    const v = s.get(st)?.get(q);
    return v === undefined ? '-' : v.toFixed(1);
  };
  for (const st of ['tx_read', 'tx_encap', 'tx_send', 'tx_total', 'rx_wakeup', 'rx_read', 'rx_decap', 'rx_write', 'rx_total']) {
    rows.push(`| ${st} | ${f(sa, st, '0.5')} | ${f(sa, st, '0.99')} | ${f(sb, st, '0.5')} | ${f(sb, st, '0.99')} |`);
  }
  const text = rows.join('\n') + '\n';
  process.stdout.write(text);
  if (values.out) writeFileSync(values.out, text);
} finally {
  rmSync(work, { recursive: true, force: true });
}
