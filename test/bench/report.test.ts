import { describe, expect, it } from 'vitest';
import { buildReport, checkGoals, renderMarkdown, renderSvg, renderTable, type RawRun, type RunMeta } from '../../bench/lib/report.js';
import { percentile, summarize } from '../../bench/lib/stats.js';
import { parseIperf } from '../../bench/lib/iperf.js';
import { parsePingTimes } from '../../bench/lib/ping.js';
import { parseFastPing, parseRr } from '../../bench/lib/lat.js';
import { summarizeProfile } from '../../bench/lib/cpuprof.js';
import { parseBenchArgs } from '../../bench/lib/args.js';
import { xmlProblem } from './xml.js';

const meta: RunMeta = {
  startedAt: '2026-01-01T00:00:00.000Z',
  finishedAt: '2026-01-01T00:10:00.000Z',
  command: 'npm run bench -- --paths hostgw,kernel-vxlan,udp-mmsg & <test>',
  machine: { cpuModel: 'Test CPU', cpus: 2, kernel: '6.1.0', node: 'v20.0.0', iperf3: 'iperf 3.12', memTotalMiB: 1024 },
  options: { reps: 3, durationS: 5, pingCount: 300, quick: false, mtu: 1500, cpuProf: false, sequential: false, paths: ['hostgw', 'kernel-vxlan', 'udp-mmsg'] },
  cpuAccounting: { irqTimeAccounting: false, formula: 'test formula' },
  notes: ['a note'],
};

/** Fixed inputs: kernel is the baseline; udp-mmsg has one failed repetition (NaN). */
function fixture(): RawRun {
  return {
    meta,
    paths: [
      { id: 'hostgw', samples: { tcp1: [20, 22, 21], rttP50: [40, 40, 40], cpuPerPkt64: [2, 2, 2] } },
      { id: 'kernel-vxlan', samples: { tcp1: [10, 8, 12], tcp4: [16, 16, 16], rttP50: [50, 60, 55], rttP99: [100, 100, 100], cpuPerPkt64: [4, 4, 4], udp64loss: [1, 1, 1] } },
      { id: 'udp-mmsg', samples: { tcp1: [4, NaN, 6], tcp4: [7, 8, 6], rttP50: [200, 150, 100], rttP99: [400, 400, 400], cpuPerPkt64: [8, 16, 12], udp64loss: [10, 20, 30], rssPeak: [50, 60, 55] } },
      { id: 'vxlan-dgram', samples: {}, error: 'overlayd exited | code 2' },
    ],
  };
}

describe('bench stats', () => {
  it('median, min, max over repetitions, ignoring failed ones', () => {
    expect(summarize([3, 1, 2])).toEqual({ median: 2, min: 1, max: 3, n: 3, values: [3, 1, 2] });
    expect(summarize([4, NaN, 1, 2, 3])?.median).toBe(2.5);
    expect(summarize([NaN])).toBeNull();
    expect(summarize([])).toBeNull();
  });
  it('nearest-rank percentiles', () => {
    const s = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(s, 50)).toBe(50);
    expect(percentile(s, 99)).toBe(99);
    expect(percentile([5], 99)).toBe(5);
    expect(Number.isNaN(percentile([], 50))).toBe(true);
  });
});

describe('bench report', () => {
  const r = buildReport(fixture());
  const fig = (id: string, k: 'tcp1' | 'tcp4' | 'rttP50' | 'rttP99' | 'cpuPerPkt64' | 'udp64loss' | 'rssPeak') => r.paths.find((p) => p.id === id)?.figures[k];

  it('ratios are medians over the baseline median of the same run', () => {
    expect(r.baseline).toBe('kernel-vxlan');
    expect(fig('kernel-vxlan', 'tcp1')?.ratio).toBe(1);
    expect(fig('hostgw', 'tcp1')).toMatchObject({ median: 21, min: 20, max: 22 });
    expect(fig('hostgw', 'tcp1')?.ratio).toBeCloseTo(2.1);
    expect(fig('udp-mmsg', 'tcp1')).toMatchObject({ median: 5, min: 4, max: 6, n: 2 });
    expect(fig('udp-mmsg', 'tcp1')?.ratio).toBeCloseTo(0.5);
    expect(fig('udp-mmsg', 'tcp1')?.ratioRange?.[0]).toBeCloseTo(0.4);
    expect(fig('udp-mmsg', 'tcp1')?.ratioRange?.[1]).toBeCloseTo(0.6);
    expect(fig('udp-mmsg', 'rttP50')?.ratio).toBeCloseTo(150 / 55);
    expect(fig('udp-mmsg', 'cpuPerPkt64')?.ratio).toBe(3);
  });

  it('no ratio for loss percentages and RSS, nor without a baseline figure', () => {
    expect(fig('udp-mmsg', 'udp64loss')).toMatchObject({ median: 20, ratio: null });
    expect(fig('udp-mmsg', 'rssPeak')).toMatchObject({ median: 55, ratio: null });
    expect(fig('hostgw', 'tcp4')).toBeUndefined();
    const noBase = buildReport({ meta, paths: [fixture().paths[0]] });
    expect(noBase.baseline).toBeNull();
    expect(noBase.paths[0].figures.tcp1?.ratio).toBeNull();
  });

  it('checks the latency goals of issue #12 on the latency section', () => {
    const lat = buildReport({
      meta,
      paths: [
        { id: 'kernel-vxlan', samples: { rttLoadP50: [20, 20, 20], rttLoadP99: [100, 100, 100], rrRate: [100000, 100000, 100000] } },
        { id: 'udp-mmsg', samples: { rttLoadP50: [30, 30, 30], rttLoadP99: [300, 300, 300], rrRate: [80000, 60000, 70000], rttIdleP999: [500, 500, 500] } },
      ],
    });
    const g = (goal: RegExp) => lat.goals.find((x) => x.path === 'udp-mmsg' && goal.test(x.goal));
    expect(g(/p50 under TCP load.*#12/)).toMatchObject({ met: true, value: 1.5, target: '≤ 1.50' });
    expect(g(/p99 under TCP load.*#12/)).toMatchObject({ met: false, value: 3 });
    expect(g(/request\/response rate.*#12/)).toMatchObject({ met: true, value: 0.7, target: '≥ 0.70' });
    const p = lat.paths[1];
    expect(p.figures.rttIdleP999?.ratio).toBeNull();
    expect(p.figures.rrRate?.median).toBe(70000);
    expect(renderTable(lat)).toMatch(/TCP request\/response rate \(trans\/s\)\s+100000 \[100000-100000\] x1\.00\s+70000 \[60000-80000\] x0\.70/);
    expect(renderMarkdown(lat)).toContain('| RTT p99 under TCP load (µs, lower is better) | **100** (100–100) ×1.00 | **300** (300–300) ×3.00 |');
    expect(xmlProblem(renderSvg(lat))).toBeNull();
  });

  it('checks the goals of issue #7', () => {
    const g = (goal: RegExp) => r.goals.find((x) => x.path === 'udp-mmsg' && goal.test(x.goal));
    expect(g(/half.*TCP 1/)).toMatchObject({ met: true, value: 0.5 });
    expect(g(/half.*TCP 4/)?.met).toBe(false);
    expect(g(/0\.6.*TCP 1/)?.met).toBe(false);
    expect(g(/added RTT/)?.value).toBeCloseTo((150 - 40) / (55 - 40));
    expect(g(/RTT within.*p99/)).toMatchObject({ met: false, value: 4 });
    expect(g(/CPU.*64/)).toMatchObject({ met: true, value: 3 });
    expect(r.goals.some((x) => x.path === 'hostgw' || x.path === 'kernel-vxlan')).toBe(false);
    expect(checkGoals([])).toEqual([]);
  });

  it('renders a terminal table and markdown with median (min-max) and ratios', () => {
    const t = renderTable(r);
    expect(t).toMatch(/TCP 1 stream \(Gbit\/s\)\s+21\.0 \[20\.0-22\.0\] x2\.10\s+10\.0 \[8\.00-12\.0\] x1\.00\s+5\.00 \[4\.00-6\.00\] x0\.50/);
    expect(t).toMatch(/vxlan-dgram: NOT MEASURED: overlayd exited/);
    const md = renderMarkdown(r);
    const rows = md.split('\n').filter((l) => l.startsWith('| TCP 1 stream'));
    expect(rows).toHaveLength(1);
    expect(rows[0]).toBe('| TCP 1 stream (Gbit/s, higher is better) | **21.0** (20.0–22.0) ×2.10 | **10.0** (8.00–12.0) ×1.00 | **5.00** (4.00–6.00) ×0.50 | – |');
    // Every table row has as many cells as the header.
    const header = md.split('\n').find((l) => l.startsWith('| metric |')) ?? '';
    const cells = (l: string) => l.replace(/\\\|/g, '').split('|').length;
    for (const l of md.split('\n').filter((x) => x.startsWith('| ') && !x.startsWith('| goal') && !/\| (yes|no|\?) \|$/.test(x))) expect(cells(l)).toBe(cells(header));
    expect(md).toContain('overlayd exited \\| code 2');
    expect(md).toContain('test formula');
  });

  it('renders a well-formed SVG with one bar per charted ratio', () => {
    const svg = renderSvg(r);
    expect(xmlProblem(svg)).toBeNull();
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg).toContain('&amp; &lt;test&gt;');
    // Charted ratios in the fixture: hostgw tcp1, rttP50, cpu64; udp-mmsg tcp1, tcp4, rttP50, rttP99, cpu64.
    expect((svg.match(/<rect [^>]*><title>/g) ?? []).length).toBe(8);
    expect(svg).toContain('0.50×');
    expect(svg).toContain('2.10×');
    const noBase = renderSvg(buildReport({ meta, paths: [fixture().paths[0]] }));
    expect(xmlProblem(noBase)).toBeNull();
    expect(noBase).toContain('no ratios');
  });

  it('the XML checker catches broken markup', () => {
    expect(xmlProblem('<svg><g></svg>')).not.toBeNull();
    expect(xmlProblem('<svg><text>a & b</text></svg>')).not.toBeNull();
    expect(xmlProblem('<svg a=b></svg>')).not.toBeNull();
    expect(xmlProblem('<svg><a x="1"/></svg>')).toBeNull();
  });
});

describe('bench parsers', () => {
  it('iperf3 UDP: received = bytes / payload length, loss from the receiver', () => {
    const json = JSON.stringify({ end: { sum_received: { seconds: 2, bytes: 6400, bits_per_second: 25600, packets: 150, lost_packets: 50 } } });
    expect(parseIperf(json, { proto: 'udp', streams: 1, len: 64, seconds: 2 })).toEqual({ bitsPerSecond: 25600, packets: 100, lost: 50, lossPercent: 100 * 50 / 150, seconds: 2 });
    expect(parseIperf(JSON.stringify({ end: { sum_received: { seconds: 5, bits_per_second: 1e10 } } }), { proto: 'tcp', streams: 1, seconds: 5 }).bitsPerSecond).toBe(1e10);
    expect(() => parseIperf(JSON.stringify({ error: 'unable to connect' }), { proto: 'tcp', streams: 1, seconds: 5 })).toThrow(/unable to connect/);
  });

  it('ping per-packet times in microseconds', () => {
    const out = '64 bytes from 198.19.2.1: icmp_seq=1 ttl=64 time=0.045 ms\n64 bytes from 198.19.2.1: icmp_seq=2 ttl=64 time=1.20 ms\n';
    expect(parsePingTimes(out)).toEqual([45, 1200]);
  });

  it('latency tool output: request/response and fast ping', () => {
    expect(parseRr('{"transactions":20000,"seconds":2.000000,"size":1,"p50":40.5,"p99":90.25,"p999":300.125}\n')).toEqual({ transactions: 20000, seconds: 2, tps: 10000, p50: 40.5, p99: 90.25, p999: 300.125 });
    expect(() => parseRr('lat: connect: Connection refused')).toThrow(/no "transactions"/);
    expect(parseFastPing('{"sent":3000,"received":2999,"seconds":2.999,"p50":12.0,"p99":40.0,"p999":95.5}')).toEqual({ sent: 3000, received: 2999, seconds: 2.999, p50: 12, p99: 40, p999: 95.5 });
    expect(() => parseFastPing('{"sent":10,"received":0,"seconds":0.009}')).toThrow(/no replies \(0\/10\)/);
  });

  it('cpuprofile self time by function', () => {
    const prof = {
      nodes: [
        { id: 1, callFrame: { functionName: '(root)', url: '', lineNumber: -1, columnNumber: -1 }, children: [2, 3] },
        { id: 2, callFrame: { functionName: 'encap', url: 'file:///x/src/vtep/vxlan.ts', lineNumber: 9, columnNumber: 0 }, children: [4] },
        { id: 3, callFrame: { functionName: 'sendBatch', url: 'file:///x/src/tun/io.ts', lineNumber: 1, columnNumber: 0 } },
        { id: 4, callFrame: { functionName: 'encap', url: 'file:///x/src/vtep/vxlan.ts', lineNumber: 9, columnNumber: 0 } },
      ],
      startTime: 0,
      endTime: 1000,
      samples: [2, 3, 4, 2],
      timeDeltas: [0, 100, 400, 200],
    };
    const s = summarizeProfile(prof, 'p.cpuprofile', 5);
    // Sample i lasts until sample i+1: 2 -> 100, 3 -> 400, 4 -> 200, 2 -> 0 (last).
    expect(s.totalMs).toBeCloseTo(0.7);
    expect(s.top[0]).toMatchObject({ name: 'sendBatch', location: 'src/tun/io.ts:2:1' });
    expect(s.top[1]).toMatchObject({ name: 'encap', location: 'src/vtep/vxlan.ts:10:1' });
    expect(s.top[1].percent).toBeCloseTo(300 / 7);
  });

  it('command line', () => {
    expect(parseBenchArgs(['--quick'])).toMatchObject({ reps: 1, duration: 2, pingCount: 100, fastPings: 1000, comparison: true });
    expect(parseBenchArgs([])).toMatchObject({ reps: 3, fastPings: 3000 });
    expect(parseBenchArgs(['--fast-pings', '5000']).fastPings).toBe(5000);
    expect(() => parseBenchArgs(['--fast-pings', '70000'])).toThrow(/at most 65536/);
    expect(parseBenchArgs(['--paths', 'kernel-vxlan,hostgw']).paths).toEqual(['hostgw', 'kernel-vxlan']);
    expect(parseBenchArgs(['--micro']).comparison).toBe(false);
    expect(parseBenchArgs(['--micro', '--paths', 'hostgw']).comparison).toBe(true);
    expect(() => parseBenchArgs(['--paths', 'bogus'])).toThrow(/unknown path/);
  });
});

describe('bench overlayd launcher', () => {
  it('writes flannel net-conf.json and finds the daemon', async () => {
    const { netConf, findOverlayd } = await import('../../bench/paths/overlayd.js');
    expect(JSON.parse(netConf('198.19.0.0/16', 'vxlan'))).toEqual({ Network: '198.19.0.0/16', SubnetLen: 24, Backend: { Type: 'vxlan', VNI: 1, Port: 8472 } });
    expect(JSON.parse(netConf('198.19.0.0/16', 'udp'))).toEqual({ Network: '198.19.0.0/16', SubnetLen: 24, Backend: { Type: 'udp', Port: 8285 } });
    const e = findOverlayd();
    expect(e).not.toBeNull();
    expect(e?.script).toMatch(/(src\/overlayd\/main\.ts|dist\/overlayd\/main\.js)$/);
    if (e?.kind === 'tsx') expect(e.nodeArgs).toEqual(['--import', 'tsx']);
    expect(findOverlayd('/nonexistent')).toBeNull();
  });
});

describe('bench rounds', () => {
  it('merges rounds of one path; in error only when no round measured it', async () => {
    const { mergeResults } = await import('../../bench/lib/runner.js');
    const m = mergeResults([
      { id: 'udp-mmsg', samples: { tcp1: [1] }, tests: [{ test: 'tcp1', rep: 0, ok: true, values: { gbps: 1 } }], config: ['c1'] },
      { id: 'udp-mmsg', samples: {}, error: 'daemon failed' },
      { id: 'udp-mmsg', samples: { tcp1: [3], rssPeak: [50] }, config: ['c3'] },
    ]);
    expect(m.samples).toEqual({ tcp1: [1, 3], rssPeak: [50] });
    expect(m.error).toBeUndefined();
    expect(m.config).toEqual(['c1']);
    expect(m.tests?.map((t) => t.test)).toEqual(['tcp1', 'setup']);
    expect(mergeResults([{ id: 'hostgw', samples: {}, error: 'x' }]).error).toBe('x');
  });
});
