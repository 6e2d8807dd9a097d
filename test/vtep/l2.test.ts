/** Interop: the L2 VTEP over TAP (a bridge-port VTEP) against the kernel vxlan device; ARP resolves through the tunnel. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Testbed, requireNetns, type NsHost } from '../helpers/netns.js';
import { HostProc, kernelAddPeer, kernelVxlan, tcpTransfer } from './harness.js';
import { expectArpAndPings } from './l2-checks.js';

const MB = 1024 * 1024;
const TRANSPORT = (process.env.VTEP_TRANSPORT as 'dgram' | 'mmsg' | undefined) ?? 'mmsg';

describe.runIf(requireNetns())(`L2 VTEP (TAP) <-> kernel vxlan (${TRANSPORT})`, () => {
  const tb = new Testbed('vxl2');
  let a: NsHost, b: NsHost, ours: HostProc;
  beforeAll(async () => {
    a = tb.host('a'); b = tb.host('b');
    tb.link(a, 'u0', '198.18.0.1/24', b, 'u0', '198.18.0.2/24');
    ours = await HostProc.start(tb, a, {
      kind: 'vxlan', mode: 'l2', subnet: '198.19.1.0/24', network: '198.19.0.0/16', publicIp: '198.18.0.1',
      vtepMac: '02:00:00:00:01:01', learning: true, transport: TRANSPORT,
    });
    // L2 (TAP) runs without offloads: the kernel peer's 64 KB veth super-packets would not fit, so TX offload is off there
    const k = kernelVxlan(b, { subnet: '198.19.2.0/24', publicIp: '198.18.0.2', underlay: 'u0', mac: '02:00:00:00:02:02', txOff: true });
    await ours.addPeer(k.lease);
    // no permanent neighbour on the kernel side either: ARP goes through the tunnel; the kernel floods via all-zeros
    kernelAddPeer(b, k.dev, ours.lease, { neigh: false });
    b.exec('bridge', ['fdb', 'append', '00:00:00:00:00:00', 'dev', k.dev, 'dst', '198.18.0.1']);
  });
  afterAll(async () => {
    await ours?.stop().catch(() => undefined);
    tb.destroy();
  });
  it('resolves ARP through the tunnel both ways and pings at sizes up to the MTU', () => {
    expectArpAndPings(a, b, 'flannel.1', [1000, 1422]);
  });
  it('moves 50 MB over TCP with matching SHA-256', async () => {
    const r = await tcpTransfer(tb, b, '198.19.2.0', a, 50 * MB);
    expect(r.server.bytes).toBe(50 * MB);
    expect(r.server.sha256).toBe(r.client.sha256);
    const s = await ours.stats();
    console.log(`vxlan l2 ${TRANSPORT}: 50 MB in ${r.ms} ms; floods ${String(s.stats.floods)}; drops ${JSON.stringify(s.stats.drops)}`);
    expect(Number(s.stats.floods)).toBeGreaterThan(0); // the ARP request(s) were head-end replicated
  });
});
