/**
 * Inner IPv6 (the IPv6 overlay, 2001:2:0:100::/56 inside the test namespaces) over an IPv6
 * underlay (2001:2:0:1::/64):
 *  - our L3 VTEP against the kernel's VXLAN device set up as flannel sets up flannel-v6.1 for
 *    an IPv6 network (the subnet's address /128 on the device, `<peer IPv6 subnet> via <its
 *    address> onlink`, a permanent neighbour, the FDB entry): IPv6 pings up to the MTU (1430)
 *    both ways, 50 MB SHA-256-checked TCP over IPv6 both ways, IPv4 beside it on the same
 *    device, and the kernel resolving our VTEP IPv6 address by NDP through the tunnel;
 *  - the UDP backend between two hosts with inner IPv6 (MTU 1452): pings, 20 MB both ways.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Testbed, requireNetns, type NsHost } from '../helpers/netns.js';
import { A6, B6, HostProc, kernelAddPeer, kernelVxlan, ping, tcpTransfer, v6Pair } from './harness.js';

const MB = 1024 * 1024;
const NET6 = '2001:2:0:100::/56';
const OURS6 = '2001:2:0:101::';
const KERN6 = '2001:2:0:102::';

describe.runIf(requireNetns())('L3 VTEP <-> kernel flannel-v6.1, inner IPv6 over an IPv6 underlay (mmsg)', () => {
  const tb = new Testbed('vx6o');
  let a: NsHost, b: NsHost, ours: HostProc;
  const dev = 'flannel-v6.1';
  beforeAll(async () => {
    [a, b] = v6Pair(tb);
    ours = await HostProc.start(tb, a, {
      kind: 'vxlan', subnet: '198.19.1.0/24', network: '198.19.0.0/16', ipv6Subnet: `${OURS6}/64`, ipv6Network: NET6,
      publicIp: A6, vtepMac: '02:00:00:00:01:01', transport: 'mmsg',
    });
    const k = kernelVxlan(b, { subnet: '198.19.2.0/24', publicIp: B6, underlay: 'u0', mac: '02:00:00:00:02:02' });
    // flannel's IPv6 side of flannel-v6.1: the subnet's address /128, then per peer route, neighbour, FDB
    b.ip('-6', 'addr', 'add', `${KERN6}/128`, 'dev', dev, 'nodad');
    await ours.addPeer({ ...k.lease, ipv6Subnet: `${KERN6}/64` });
    kernelAddPeer(b, k.dev, ours.lease, { neigh: true });
    b.ip('-6', 'route', 'replace', `${OURS6}/64`, 'via', OURS6, 'dev', dev, 'onlink');
    b.ip('-6', 'neigh', 'replace', OURS6, 'lladdr', '02:00:00:00:01:01', 'dev', dev, 'nud', 'permanent');
  });
  afterAll(async () => {
    await ours?.stop().catch(() => undefined);
    tb.destroy();
  });

  it('configures our device as flannel-v6.1: the IPv6 address /128 and the route to the kernel\'s IPv6 subnet', () => {
    expect(ours.lease.ipv6Subnet).toBe(`${OURS6}/64`);
    expect(a.ip('-6', 'addr', 'show', 'dev', dev)).toContain(`${OURS6}/128`);
    expect(a.ip('-6', 'route', 'show', 'dev', dev)).toMatch(new RegExp(`${KERN6}/64 via ${KERN6} .*onlink`));
    expect(a.ip('addr', 'show', 'dev', dev)).toContain('198.19.1.0/32');
  });

  it('pings over IPv6 both ways at sizes up to the MTU (1430), and IPv4 beside it', () => {
    for (const size of [56, 1000, 1382]) {
      expect(ping(a, KERN6, size), `ours -> kernel, ${size}`).toBe(true);
      expect(ping(b, OURS6, size), `kernel -> ours, ${size}`).toBe(true);
    }
    expect(ping(a, KERN6, 1383)).toBe(false); // over the MTU (the sender's own stack refuses it)
    expect(ping(a, '198.19.2.0', 1402)).toBe(true);
    expect(ping(b, '198.19.1.0', 1402)).toBe(true);
  });

  it('moves 50 MB over TCP/IPv6 ours -> kernel with matching SHA-256', async () => {
    const r = await tcpTransfer(tb, b, KERN6, a, 50 * MB, 5301);
    expect(r.server.bytes).toBe(50 * MB);
    expect(r.server.sha256).toBe(r.client.sha256);
    const s = (await ours.stats()).stats;
    console.log(`inner IPv6 vxlan: 50 MB ours->kernel in ${r.ms} ms (${(50 / (r.ms / 1000)).toFixed(1)} MB/s); drops ${JSON.stringify(s.drops)}; offload ${JSON.stringify(s.offload)}`);
    expect(s.peers[B6]!.txPackets).toBeGreaterThan(10_000);
    expect(s.offload!.superPackets).toBeGreaterThan(0); // GSO_TCPV6 super-packets from the TUN, segmented
  });

  it('moves 50 MB over TCP/IPv6 kernel -> ours with matching SHA-256', async () => {
    const r = await tcpTransfer(tb, a, OURS6, b, 50 * MB, 5302);
    expect(r.server.bytes).toBe(50 * MB);
    expect(r.server.sha256).toBe(r.client.sha256);
    const s = (await ours.stats()).stats;
    console.log(`inner IPv6 vxlan: 50 MB kernel->ours in ${r.ms} ms (${(50 / (r.ms / 1000)).toFixed(1)} MB/s); offload ${JSON.stringify(s.offload)}`);
    expect(s.peers[B6]!.rxPackets).toBeGreaterThan(1000);
    // the kernel's VXLAN over veth hands its TSO super-packets to the socket unsegmented: written to the TUN as GSO_TCPV6
    expect(s.offload!.rxSuperPackets).toBeGreaterThan(0);
  });

  it('lets the kernel resolve our VTEP IPv6 address by NDP through the tunnel', async () => {
    b.ip('-6', 'neigh', 'del', OURS6, 'dev', dev);
    // the kernel sends its solicitation to a multicast MAC: flooded through the all-zeros FDB entry, as flannel's L2 setups do
    b.exec('bridge', ['fdb', 'append', '00:00:00:00:00:00', 'dev', dev, 'dst', A6]);
    const before = Number((await ours.stats()).stats.ndpReplies);
    expect(ping(b, OURS6, 56)).toBe(true);
    expect(b.ip('-6', 'neigh', 'show', 'dev', dev)).toMatch(new RegExp(`${OURS6} lladdr 02:00:00:00:01:01 (REACHABLE|STALE|DELAY|PROBE)`));
    expect(Number((await ours.stats()).stats.ndpReplies)).toBeGreaterThan(before);
  });
});

describe.runIf(requireNetns())('UDP backend, inner IPv6 over an IPv6 underlay, two hosts (mmsg)', () => {
  const tb = new Testbed('ud6o');
  let h: NsHost[] = [];
  let procs: HostProc[] = [];
  const sub6 = [`${OURS6}`, `${KERN6}`];
  beforeAll(async () => {
    h = [...v6Pair(tb)];
    for (let i = 0; i < 2; i++) {
      procs.push(await HostProc.start(tb, h[i]!, {
        kind: 'udp', network: '198.19.0.0/16', subnet: `198.19.${i + 1}.0/24`, ipv6Subnet: `${sub6[i]}/64`, ipv6Network: NET6,
        publicIp: i === 0 ? A6 : B6, transport: 'mmsg',
      }));
    }
    await procs[0]!.addPeer(procs[1]!.lease);
    await procs[1]!.addPeer(procs[0]!.lease);
  });
  afterAll(async () => {
    for (const p of procs) await p.stop().catch(() => undefined);
    procs = [];
    tb.destroy();
  });

  it('puts <IPv6 subnet address>/56 on flannel0 and pings over IPv6 both ways up to the MTU (1452)', () => {
    expect(h[0]!.ip('-6', 'addr', 'show', 'dev', 'flannel0')).toContain(`${OURS6}/56`);
    for (const size of [56, 1404]) {
      expect(ping(h[0]!, KERN6, size), `a -> b ${size}`).toBe(true);
      expect(ping(h[1]!, OURS6, size), `b -> a ${size}`).toBe(true);
    }
    expect(ping(h[0]!, KERN6, 1405)).toBe(false);
  });

  it('moves 20 MB over TCP/IPv6 both ways with matching SHA-256', async () => {
    const r1 = await tcpTransfer(tb, h[1]!, KERN6, h[0]!, 20 * MB, 5311);
    expect(r1.server.bytes).toBe(20 * MB);
    expect(r1.server.sha256).toBe(r1.client.sha256);
    const r2 = await tcpTransfer(tb, h[0]!, OURS6, h[1]!, 20 * MB, 5312);
    expect(r2.server.bytes).toBe(20 * MB);
    expect(r2.server.sha256).toBe(r2.client.sha256);
    const s = (await procs[0]!.stats()).stats;
    console.log(`inner IPv6 udp: 20 MB a->b ${r1.ms} ms, b->a ${r2.ms} ms; drops ${JSON.stringify(s.drops)}; offload ${JSON.stringify(s.offload)}`);
    expect(s.peers[B6]!.txPackets).toBeGreaterThan(5_000);
    expect(s.peers[B6]!.rxPackets).toBeGreaterThan(5_000);
    expect(s.offload!.coalescedWrites).toBeGreaterThan(0); // ours on both ends: TCP/IPv6 segments coalesced into GSO_TCPV6 writes
  });
});
