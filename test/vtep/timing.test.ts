/**
 * Timing mode and busy-poll (issue #12): the stage histograms, the core's stamps over in-memory
 * fakes, and a real TUN + recvmmsg socket against a kernel VXLAN peer, where the device and the
 * socket stamp their wake-ups and the kernel's receive time (SO_TIMESTAMPNS) gives the event
 * loop's latency; with busy-poll, replies are taken by polling.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StageTimer, TIMING_STAGES, VxlanBackend } from '../../src/vtep/index.js';
import { FakeIo, ipv4Packet, nullKernel } from './fakes.js';
import { Testbed, requireNetns, type NsHost } from '../helpers/netns.js';
import { oursAndKernel, ping, type HostProc } from './harness.js';

describe('StageTimer', () => {
  it('gives quantiles within a bucket (+9%) of the true value, the exact max and mean, and ignores negative or NaN samples', () => {
    const t = new StageTimer();
    for (let v = 1; v <= 1000; v++) t.record(2, v);
    t.record(2, -5);
    t.record(2, NaN);
    const s = t.summary()[TIMING_STAGES[2]]!;
    expect(s.count).toBe(1000);
    expect(s.max).toBe(1000);
    expect(s.mean).toBe(500.5);
    for (const [got, want] of [[s.p50, 500], [s.p90, 900], [s.p99, 990], [s.p999, 999]] as const) {
      expect(got).toBeGreaterThanOrEqual(want);
      expect(got).toBeLessThanOrEqual(want * 1.0906);
    }
    expect(Object.keys(t.summary())).toEqual([TIMING_STAGES[2]]); // stages without samples are absent
    t.reset();
    expect(t.summary()).toEqual({});
  });
  it('clamps tiny and huge values to the end buckets without losing them', () => {
    const t = new StageTimer();
    t.record(0, 0);
    t.record(0, 0.01);
    t.record(0, 1e9);
    const s = t.summary().tx_read!;
    expect(s.count).toBe(3);
    expect(s.p50).toBeLessThanOrEqual(0.3); // the first bucket (<= 0.25 µs), rounded to 0.1
    expect(s.max).toBe(1e9);
  });
});

async function vtep(timing: boolean) {
  const io = new FakeIo();
  const b = new VxlanBackend({ subnet: '198.19.1.0/24', network: '198.19.0.0/16', publicIp: '198.18.0.1', vtepMac: '02:00:00:00:00:01', io, kernel: nullKernel, timing });
  await b.start();
  b.addPeer({ subnet: '198.19.2.0/24', publicIp: '198.18.0.2', backendType: 'vxlan', vni: 1, vtepMac: '02:00:00:00:00:02' });
  return { b, dev: io.dev!, tr: io.tr! };
}

describe('core timing stamps (fakes: no device or socket stamps)', () => {
  it('with timing, each device batch and socket batch is timed per stage; without, stats() has no timing', async () => {
    const { b, dev, tr } = await vtep(true);
    for (let i = 0; i < 3; i++) dev.inject([ipv4Packet('198.19.1.5', '198.19.2.7'), ipv4Packet('198.19.1.5', '198.19.2.8')]);
    expect(tr.sent.length).toBeGreaterThan(0);
    tr.inject([{ addr: 0xc6120002, data: tr.sent[0]!.data }]); // a datagram from the peer (not for us: still a timed batch)
    const t = b.stats().timing!;
    for (const s of ['tx_read', 'tx_encap', 'tx_send', 'tx_total'] as const) expect(t[s]?.count, s).toBe(3);
    for (const s of ['rx_read', 'rx_decap', 'rx_write', 'rx_total'] as const) expect(t[s]?.count, s).toBe(1);
    expect(t.rx_wakeup, 'no kernel receive time from a fake socket').toBeUndefined();
    expect(t.tx_total!.max).toBeGreaterThanOrEqual(t.tx_encap!.max);
    expect((await vtep(false)).b.stats().timing).toBeUndefined();
  });
});

describe.runIf(requireNetns())('timing with a real TUN and recvmmsg socket, kernel VXLAN peer', () => {
  const tb = new Testbed('tntm') // 'tn': in .ci/run's cleanup list;
  let a: NsHost, ours: HostProc;
  beforeAll(async () => {
    ({ a, ours } = await oursAndKernel(tb, { timing: true }));
  });
  afterAll(async () => {
    await ours?.stop().catch(() => undefined);
    tb.destroy();
  });
  it('times every ping batch at every stage, the kernel-receive-to-wake-up latency included', async () => {
    expect(ping(a, '198.19.2.0', 56, 20)).toBe(true);
    const t = (await ours.stats()).stats.timing as Record<string, { count: number; p50: number; max: number }>;
    console.log('timing (µs):', Object.entries(t).map(([k, v]) => `${k} p50 ${v.p50} max ${v.max}`).join(', '));
    for (const s of ['tx_read', 'tx_encap', 'tx_send', 'tx_total', 'rx_wakeup', 'rx_read', 'rx_decap', 'rx_write', 'rx_total']) {
      expect(t[s]?.count, s).toBeGreaterThanOrEqual(20);
      expect(t[s]!.p50, s).toBeGreaterThanOrEqual(0);
      expect(t[s]!.max, `${s}: under a second`).toBeLessThan(1_000_000);
    }
    // the socket's stamps are real: reading a datagram takes time, and the total covers its parts
    expect(t.rx_read!.max).toBeGreaterThan(0);
    expect(t.rx_total!.max).toBeGreaterThanOrEqual(t.rx_wakeup!.p50);
  });
});

describe.runIf(requireNetns())('busy-poll with a real TUN and recvmmsg socket, kernel VXLAN peer', () => {
  const tb = new Testbed('tntb'); // 'tn': in .ci/run's cleanup list
  let a: NsHost, ours: HostProc;
  beforeAll(async () => {
    ({ a, ours } = await oursAndKernel(tb, { busyPollUs: 100_000, timing: true }));
  });
  afterAll(async () => {
    await ours?.stop().catch(() => undefined);
    tb.destroy();
  });
  it('a reply that comes within the window is read by polling, and forwarding is unchanged', async () => {
    // ping waits 200 ms between requests: beyond the 100 ms window, so each request wakes us and
    // its reply (well within 100 ms) is polled
    expect(ping(a, '198.19.2.0', 56, 10)).toBe(true);
    expect(ping(a, '198.19.2.0', 1422, 3)).toBe(true);
    const s = (await ours.stats()).stats as { busyPolled?: number; rxPackets: number; timing?: Record<string, { count: number }> };
    expect(s.busyPolled).toBeGreaterThanOrEqual(10);
    expect(s.rxPackets).toBeGreaterThanOrEqual(13);
    expect(s.timing?.rx_total?.count, 'polled batches are timed too').toBeGreaterThanOrEqual(13);
  });
});
