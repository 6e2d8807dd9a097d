/**
 * Interop: our L3 VTEP (TUN, flannel's scheme) against the Linux kernel's vxlan device
 * configured exactly as flannel configures flannel.1.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Testbed, requireNetns, type NsHost } from '../helpers/netns.js';
import { HostProc, kernelAddPeer, kernelVxlan, oursAndKernel, ping, tcpTransfer } from './harness.js';

const MB = 1024 * 1024;
const TRANSPORT = (process.env.VTEP_TRANSPORT as 'dgram' | 'mmsg' | undefined) ?? 'dgram';

function pair(vni: number, port: number, gbp = false, transport: 'dgram' | 'mmsg' = TRANSPORT, gbpPolicy = 0, txOff = false) {
  const tb = new Testbed('vxk');
  let a: NsHost, b: NsHost, ours: HostProc;
  beforeAll(async () => {
    ({ a, b, ours } = await oursAndKernel(tb, { vni, port, gbp, gbpPolicy, transport }, { vni, port, gbp, txOff }));
  });
  afterAll(async () => {
    await ours?.stop().catch(() => undefined);
    tb.destroy();
  });
  return { a: () => a, b: () => b, ours: () => ours, tb };
}

describe.runIf(requireNetns())(`L3 VTEP <-> kernel vxlan (VNI 1, port 8472, ${TRANSPORT})`, () => {
  const t = pair(1, 8472);
  it('pings both ways at sizes up to the MTU (1450)', () => {
    for (const size of [56, 1000, 1422]) {
      expect(ping(t.a(), '198.19.2.0', size), `ours -> kernel, ${size}`).toBe(true);
      expect(ping(t.b(), '198.19.1.0', size), `kernel -> ours, ${size}`).toBe(true);
    }
    expect(ping(t.a(), '198.19.2.0', 1423)).toBe(false); // over the MTU with DF
  });
  it('moves 50 MB over TCP ours -> kernel with matching SHA-256', async () => {
    const r = await tcpTransfer(t.tb, t.b(), '198.19.2.0', t.a(), 50 * MB);
    expect(r.server.bytes).toBe(50 * MB);
    expect(r.server.sha256).toBe(r.client.sha256);
    const s = await t.ours().stats();
    console.log(`vxlan l3 ${TRANSPORT}: 50 MB ours->kernel in ${r.ms} ms (${(50 / (r.ms / 1000)).toFixed(1)} MB/s); tx ${s.stats.txPackets} rx ${s.stats.rxPackets} drops ${JSON.stringify(s.stats.drops)}`);
    expect(s.stats.peers['198.18.0.2']!.txPackets).toBeGreaterThan(30_000);
  });
  it('moves 50 MB over TCP kernel -> ours with matching SHA-256', async () => {
    const r = await tcpTransfer(t.tb, t.a(), '198.19.1.0', t.b(), 50 * MB, 5002);
    expect(r.server.bytes).toBe(50 * MB);
    expect(r.server.sha256).toBe(r.client.sha256);
    console.log(`vxlan l3 ${TRANSPORT}: 50 MB kernel->ours in ${r.ms} ms (${(50 / (r.ms / 1000)).toFixed(1)} MB/s)`);
  });
});

describe.runIf(requireNetns())('L3 VTEP <-> kernel vxlan, VNI 4242 on port 4789 (mmsg transport, kernel TX checksum offload off)', () => {
  const t = pair(4242, 4789, false, 'mmsg', 0, true); // the one kernel peer still run with `ethtool -K tx off`
  it('pings both ways at sizes up to the MTU', () => {
    for (const size of [56, 1422]) {
      expect(ping(t.a(), '198.19.2.0', size)).toBe(true);
      expect(ping(t.b(), '198.19.1.0', size)).toBe(true);
    }
  });
  it('moves 50 MB over TCP kernel -> ours with matching SHA-256', async () => {
    const r = await tcpTransfer(t.tb, t.a(), '198.19.1.0', t.b(), 50 * MB);
    expect(r.server.bytes).toBe(50 * MB);
    expect(r.server.sha256).toBe(r.client.sha256);
  });
});

describe.runIf(requireNetns())('L3 VTEP <-> kernel vxlan with GBP', () => {
  const t = pair(7, 4789, true, TRANSPORT, 0x1234); // we send G + policy 0x1234; Linux sends G only when the skb has a mark
  it('pings both ways', () => {
    expect(ping(t.a(), '198.19.2.0', 1000)).toBe(true);
    expect(ping(t.b(), '198.19.1.0', 1000)).toBe(true);
  });
});

describe.runIf(requireNetns())('three hosts: two of ours and one kernel vxlan', () => {
  const tb = new Testbed('vx3');
  let a: NsHost, b: NsHost, c: NsHost, oa: HostProc, oc: HostProc;
  beforeAll(async () => {
    a = tb.host('a'); b = tb.host('b'); c = tb.host('c');
    tb.lan([{ host: a, dev: 'u0', cidr: '198.18.0.1/24' }, { host: b, dev: 'u0', cidr: '198.18.0.2/24' }, { host: c, dev: 'u0', cidr: '198.18.0.3/24' }]);
    const base = { kind: 'vxlan', mode: 'l3', network: '198.19.0.0/16', transport: TRANSPORT };
    oa = await HostProc.start(tb, a, { ...base, subnet: '198.19.1.0/24', publicIp: '198.18.0.1' });
    oc = await HostProc.start(tb, c, { ...base, subnet: '198.19.3.0/24', publicIp: '198.18.0.3' });
    const k = kernelVxlan(b, { subnet: '198.19.2.0/24', publicIp: '198.18.0.2', underlay: 'u0', mac: '02:00:00:00:02:02' });
    await oa.addPeer(k.lease); await oa.addPeer(oc.lease);
    await oc.addPeer(k.lease); await oc.addPeer(oa.lease);
    kernelAddPeer(b, k.dev, oa.lease); kernelAddPeer(b, k.dev, oc.lease);
  });
  afterAll(async () => {
    await oa?.stop().catch(() => undefined);
    await oc?.stop().catch(() => undefined);
    tb.destroy();
  });
  it('pings every pair both ways at sizes up to the MTU', () => {
    const hosts: [NsHost, string][] = [[a, '198.19.1.0'], [b, '198.19.2.0'], [c, '198.19.3.0']];
    for (const [h, _] of hosts) for (const [, dst] of hosts) {
      if (dst === _) continue;
      expect(ping(h, dst, 1422), `${h.name} -> ${dst}`).toBe(true);
    }
  });
  it('moves 50 MB over TCP ours(c) -> kernel(b) while a <-> b pings', async () => {
    const r = await tcpTransfer(tb, b, '198.19.2.0', c, 50 * MB);
    expect(r.server.bytes).toBe(50 * MB);
    expect(r.server.sha256).toBe(r.client.sha256);
    expect(ping(a, '198.19.2.0', 56)).toBe(true);
    expect(ping(a, '198.19.3.0', 56)).toBe(true);
  });
  it('stops and restarts one dataplane while the others keep forwarding', async () => {
    const restart = oa.cmd({ cmd: 'restart' });
    expect(ping(c, '198.19.2.0', 56, 3)).toBe(true); // c <-> kernel b unaffected
    await restart;
    expect(a.ip('route', 'show', '198.19.2.0/24')).toMatch(/via 198\.19\.2\.0 dev flannel\.1 onlink/);
    expect(ping(a, '198.19.2.0', 1422)).toBe(true);
    expect(ping(b, '198.19.1.0', 1422)).toBe(true);
    expect(ping(c, '198.19.1.0', 1422)).toBe(true);
  });
});
