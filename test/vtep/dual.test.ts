/**
 * Dual stack and IPv6-only backends, over in-memory devices, transports and kernels:
 *  - leaseHalves: the halves of dual-stack, IPv4-only, IPv6-only leases, and of one whose IPv6
 *    half is unusable (no v6VtepMac for VXLAN);
 *  - IPv6-only VXLAN and UDP backends: the device address (flannel-v6.<VNI>'s /128; flannel0's
 *    /<network>) and IPv6 routes only, the lease, inner IPv6 both ways, inner IPv4 (and ARP)
 *    dropped by its reason both ways with no ICMP, IPv4 leases refused, bad options refused;
 *  - DualStackBackend over small fakes (pure logic): each half to its backend, a lease losing,
 *    changing and regaining its IPv6 half, removal, one failing half not stopping the other,
 *    stats merged, start failure of the IPv6 half stopping the IPv4 one, stop of both, rebind;
 *    and over two real VXLAN backends: halves in their tables, a failing IPv6 start closes the
 *    IPv4 device;
 *  - host-gw IPv6: dual-stack and IPv6-only routes with the on-segment check, removal.
 */
import { describe, expect, it } from 'vitest';
import {
  DualStackBackend, HostGwBackend, UdpBackend, VxlanBackend, leaseHalves, mergeStats,
  type Backend, type BackendTypeName, type DataplaneStats, type KernelNet, type Lease, type StopOptions,
} from '../../src/vtep/index.js';
import { parseIpv6 } from '../../src/codec/addr.js';
import { FakeIo, ipv4Packet, mainRoute, nullKernel, recordingKernel } from './fakes.js';

const MY6 = '2001:2:0:101::';
const PEER6 = '2001:2:0:102::';
const NET6 = '2001:2:0:100::/56';
const ME = '2001:2:0:1::1';
const PEER = '2001:2:0:1::2';
const MY_MAC = '02:00:00:00:01:06';
const PEER_MAC = '02:00:00:00:02:06';
const A = (s: string): Buffer => Buffer.from(parseIpv6(s));

const DUAL: Lease = {
  subnet: '198.19.2.0/24', publicIp: '198.18.0.2', backendType: 'vxlan', vni: 1, vtepMac: '02:00:00:00:02:02',
  ipv6Subnet: `${PEER6}/64`, publicIpv6: PEER, v6Vni: 1, v6VtepMac: PEER_MAC,
};
const V6_HALF: Lease = { subnet: `${PEER6}/64`, publicIp: PEER, backendType: 'vxlan', vni: 1, vtepMac: PEER_MAC };

/** An IPv6/UDP packet `src` -> `dst` with `payload` bytes. */
function ipv6Packet(src: string, dst: string, payload = 32): Buffer {
  const h = Buffer.alloc(40 + payload);
  h[0] = 0x60;
  h.writeUInt16BE(payload, 4);
  h[6] = 17;
  h[7] = 64;
  A(src).copy(h, 8);
  A(dst).copy(h, 24);
  return h;
}

/** A VXLAN (VNI 1) datagram carrying `inner` in an Ethernet frame of ethertype `et` to `dstMac`. */
function vxlanDatagram(inner: Buffer, et = '86dd', dstMac = MY_MAC): Buffer {
  const mac = (m: string): string => m.replace(/:/g, '');
  return Buffer.concat([Buffer.from('0800000000000100' + mac(dstMac) + mac(PEER_MAC) + et, 'hex'), inner]);
}

describe('leaseHalves', () => {
  it('cuts a dual-stack lease into its IPv4 lease and its IPv6 one (VNI and VTEP MAC from BackendV6Data)', () => {
    expect(leaseHalves(DUAL)).toEqual({
      v4: { subnet: '198.19.2.0/24', publicIp: '198.18.0.2', backendType: 'vxlan', vni: 1, vtepMac: '02:00:00:00:02:02' },
      v6: V6_HALF,
    });
    // no v6Vni: the lease's VNI
    const { v6Vni: _v, ...noV6Vni } = { ...DUAL, vni: 7 };
    expect(leaseHalves(noV6Vni).v6!.vni).toBe(7);
  });

  it('gives an IPv4-only lease as its v4 half, an IPv6-only one as its v6 half, and drops an unusable IPv6 half', () => {
    const v4: Lease = { subnet: '198.19.2.0/24', publicIp: '198.18.0.2', backendType: 'udp' };
    expect(leaseHalves(v4)).toEqual({ v4 });
    expect(leaseHalves(V6_HALF)).toEqual({ v6: V6_HALF });
    // VXLAN without v6VtepMac, or without PublicIPv6: no IPv6 half (the IPv4 one carries no IPv6 fields)
    const { v6VtepMac: _m, ...noMac } = DUAL;
    expect(leaseHalves(noMac)).toEqual({ v4: leaseHalves(DUAL).v4 });
    const { publicIpv6: _p, ...noPub } = DUAL;
    expect(leaseHalves(noPub).v6).toBeUndefined();
    // other types need no MAC
    expect(leaseHalves({ subnet: '198.19.2.0/24', publicIp: '198.18.0.2', backendType: 'udp', ipv6Subnet: `${PEER6}/64`, publicIpv6: PEER }).v6)
      .toEqual({ subnet: `${PEER6}/64`, publicIp: PEER, backendType: 'udp' });
  });
});

describe('IPv6-only VXLAN backend (flannel-v6.<VNI>)', () => {
  async function v6only(o: Record<string, unknown> = {}) {
    const configured: unknown[] = [];
    const routes: string[] = [];
    const kernel: KernelNet = {
      ...nullKernel,
      async configureDevice(_d, c) { configured.push(c); },
      async replaceRoute(dst, via, dev, r) { routes.push(`${dst} via ${via} dev ${dev}${r?.onlink ? ' onlink' : ''}`); },
      async deleteRoute(dst, dev) { routes.push(`delete ${dst} dev ${dev}`); },
    };
    const io = new FakeIo();
    const b = new VxlanBackend({ subnet: `${MY6}/64`, network: NET6, publicIp: ME, vtepMac: MY_MAC, io, kernel, offload: 'off', ...o });
    b.addPeer(V6_HALF);
    await b.start();
    return { b, io, dev: io.dev!, tr: io.tr!, configured, routes };
  }

  it('is flannel-v6.1 with only <subnet address>/128, IPv6 routes only, an IPv6-only socket and an IPv6-only lease', async () => {
    const { b, io, configured, routes } = await v6only();
    expect(io.asked.transport).toEqual({ ipv6Only: true }); // on [::] beside an IPv4 VTEP's 0.0.0.0 on the same port
    expect(b.deviceName).toBe('flannel-v6.1');
    expect(b.ipv4).toBe(false);
    expect(configured).toEqual([expect.objectContaining({ cidr: `${MY6}/128`, cidr6: undefined, mtu: 1430 })]);
    expect(routes).toEqual([`${PEER6}/64 via ${PEER6} dev flannel-v6.1 onlink`]);
    expect(b.localLease()).toEqual({ subnet: `${MY6}/64`, publicIp: ME, backendType: 'vxlan', vni: 1, vtepMac: MY_MAC });
    b.removePeer('198.19.2.0/24'); // the other family: no-op
    b.removePeer(`${PEER6}/64`);
    await b.settled?.();
    expect(routes.at(-1)).toBe(`delete ${PEER6}/64 dev flannel-v6.1`);
    expect(routes.filter((r) => r.startsWith('delete'))).toHaveLength(1);
    await b.stop();
  });

  it('carries inner IPv6 both ways; drops inner IPv4 and ARP by reason, with no ICMP', async () => {
    const { b, dev, tr } = await v6only();
    dev.inject([ipv6Packet(`${MY6}5`, `${PEER6}7`), ipv4Packet('198.19.1.5', '198.19.2.7', { df: true })]);
    expect(tr.sent).toHaveLength(1);
    expect(tr.sent[0]!.family).toBe(6);
    expect(Buffer.from(tr.sent[0]!.addr6).equals(A(PEER))).toBe(true);
    expect(tr.sent[0]!.data.subarray(8, 14).toString('hex')).toBe(PEER_MAC.replace(/:/g, ''));
    expect(tr.sent[0]!.data.readUInt16BE(20)).toBe(0x86dd);
    expect(dev.written).toHaveLength(0); // no ICMP for the IPv4 packet
    const arp = Buffer.from('0001080006040001' + '020000000206' + 'c6130200' + '000000000000' + '00000000', 'hex');
    tr.inject([
      { addr: 0, addr6: parseIpv6(PEER), data: vxlanDatagram(ipv6Packet(`${PEER6}7`, `${MY6}5`)) },
      { addr: 0, addr6: parseIpv6(PEER), data: vxlanDatagram(ipv4Packet('198.19.2.7', '198.19.1.5'), '0800') },
      { addr: 0, addr6: parseIpv6(PEER), data: vxlanDatagram(arp, '0806', 'ff:ff:ff:ff:ff:ff') },
    ]);
    expect(dev.written).toHaveLength(1);
    expect(dev.written[0]![0]! >>> 4).toBe(6);
    expect(tr.sent).toHaveLength(1); // no ARP reply
    expect(b.stats().drops).toEqual({ tx_no_ipv4_overlay: 1, rx_no_ipv4_overlay: 2 });
    await b.stop();
  });

  it('refuses IPv4 leases, mixed-family options and L2 mode with one clear line', async () => {
    const { b } = await v6only();
    expect(() => b.addPeer({ subnet: '198.19.2.0/24', publicIp: PEER, backendType: 'vxlan', vni: 1, vtepMac: PEER_MAC }))
      .toThrow(/lease 198\.19\.2\.0\/24: an IPv4 subnet, but this backend carries IPv6 only/);
    expect(() => b.addPeer({ ...V6_HALF, subnet: '2001:2:9::/64' })).toThrow(/subnet 2001:2:9::\/64 is not inside the IPv6 network 2001:2:0:100::\/56/);
    await b.stop();
    const base = { publicIp: ME, io: new FakeIo(), kernel: nullKernel };
    expect(() => new VxlanBackend({ ...base, subnet: `${MY6}/64`, network: '198.19.0.0/16' })).toThrow(/subnet 2001:2:0:101::\/64 is IPv6 but network 198\.19\.0\.0\/16 is not/);
    expect(() => new VxlanBackend({ ...base, subnet: `${MY6}/64`, network: NET6, ipv6Subnet: `${MY6}/64`, ipv6Network: NET6 })).toThrow(/takes no ipv6Subnet/);
    expect(() => new VxlanBackend({ ...base, subnet: `${MY6}/64`, network: NET6, mode: 'l2' })).toThrow(/L2 mode has no IPv6-only overlay/);
    // and an IPv4 backend refuses an IPv6 lease key
    const v4 = new VxlanBackend({ ...base, subnet: '198.19.1.0/24', network: '198.19.0.0/16', publicIp: '198.18.0.1' });
    expect(() => v4.addPeer(V6_HALF)).toThrow(/an IPv6 subnet, but this backend carries IPv4/);
  });
});

describe('IPv6-only UDP backend', () => {
  it('puts only <IPv6 subnet address>/<network length> on flannel0 and carries inner IPv6 only', async () => {
    const configured: unknown[] = [];
    const io = new FakeIo();
    const b = new UdpBackend({ subnet: `${MY6}/64`, network: NET6, publicIp: ME, io, offload: 'off', kernel: { ...nullKernel, async configureDevice(_d, c) { configured.push(c); } } });
    await b.start();
    b.addPeer({ subnet: `${PEER6}/64`, publicIp: PEER, backendType: 'udp' });
    expect(configured).toEqual([expect.objectContaining({ cidr: `${MY6}/56`, cidr6: undefined, mtu: 1452 })]);
    expect(b.localLease()).toEqual({ subnet: `${MY6}/64`, publicIp: ME, backendType: 'udp' });
    io.dev!.inject([ipv6Packet(`${MY6}5`, `${PEER6}7`), ipv4Packet('198.19.1.5', '198.19.2.7', { df: true })]);
    expect(io.tr!.sent).toHaveLength(1);
    expect(io.tr!.sent[0]!.data[7]).toBe(63); // hop limit
    io.tr!.inject([
      { addr: 0, addr6: parseIpv6(PEER), data: ipv6Packet(`${PEER6}7`, `${MY6}5`) },
      { addr: 0, addr6: parseIpv6(PEER), data: ipv4Packet('198.19.2.7', '198.19.1.5') },
      { addr: 0, addr6: parseIpv6(PEER), data: ipv6Packet('2001:2:0:109::7', `${MY6}5`) }, // spoofed
    ]);
    expect(io.dev!.written).toHaveLength(1);
    expect(b.stats().drops).toEqual({ tx_no_ipv4_overlay: 1, rx_no_ipv4_overlay: 1, rx_spoofed_inner_source: 1 });
    b.removePeer(`${PEER6}/64`);
    io.dev!.inject([ipv6Packet(`${MY6}5`, `${PEER6}7`)]);
    expect(b.stats().drops.tx_no_route).toBe(1);
    await b.stop();
  });
});

/** A Backend that records what it is asked and fails when told to. */
class FakeBackend implements Backend {
  readonly log: string[] = [];
  fail: { add?: boolean; remove?: boolean; start?: boolean; stop?: boolean } = {};
  running = false;
  stats_: DataplaneStats = { txPackets: 0, txBytes: 0, rxPackets: 0, rxBytes: 0, drops: {}, peers: {} };
  constructor(readonly type: BackendTypeName, private readonly lease: Lease) {}
  async start(): Promise<void> {
    this.log.push('start');
    if (this.fail.start) throw new Error('no device');
    this.running = true;
  }
  localLease(): Lease { return { ...this.lease }; }
  addPeer(l: Lease): void {
    this.log.push(`add ${l.subnet} ${l.publicIp} ${l.vtepMac ?? ''}`.trim());
    if (this.fail.add) throw new Error(`refused ${l.subnet}`);
  }
  removePeer(s: string): void {
    this.log.push(`remove ${s}`);
    if (this.fail.remove) throw new Error(`cannot remove ${s}`);
  }
  async settled(): Promise<void> { this.log.push('settled'); }
  async rebind(bind: string | undefined, pub: string): Promise<void> { this.log.push(`rebind ${bind} ${pub}`); }
  stats(): DataplaneStats { return this.stats_; }
  async stop(o?: StopOptions): Promise<void> {
    this.log.push(`stop${o?.keepDevice ? ' keep' : ''}`);
    this.running = false;
    if (this.fail.stop) throw new Error('busy');
  }
}

function fakes(): { v4: FakeBackend; v6: FakeBackend; d: DualStackBackend } {
  const v4 = new FakeBackend('vxlan', { subnet: '198.19.1.0/24', publicIp: '198.18.0.1', backendType: 'vxlan', vni: 1, vtepMac: '02:00:00:00:01:01' });
  const v6 = new FakeBackend('vxlan', { subnet: `${MY6}/64`, publicIp: ME, backendType: 'vxlan', vni: 1, vtepMac: MY_MAC });
  return { v4, v6, d: new DualStackBackend(v4, v6) };
}

describe('DualStackBackend (over fakes: the composition logic)', () => {
  it('is of its halves\' type (refusing two types) and advertises the IPv4 lease with the IPv6 one as its IPv6 half', () => {
    const { d } = fakes();
    expect(d.type).toBe('vxlan');
    expect(d.localLease()).toEqual({
      subnet: '198.19.1.0/24', publicIp: '198.18.0.1', backendType: 'vxlan', vni: 1, vtepMac: '02:00:00:00:01:01',
      ipv6Subnet: `${MY6}/64`, publicIpv6: ME, v6Vni: 1, v6VtepMac: MY_MAC,
    });
    expect(() => new DualStackBackend(new FakeBackend('vxlan', DUAL), new FakeBackend('udp', DUAL))).toThrow(/IPv4 backend is vxlan but the IPv6 one is udp/);
  });

  it('gives each backend its half; follows a lease whose IPv6 half goes, changes and comes back; removes from both', () => {
    const { v4, v6, d } = fakes();
    d.addPeer(DUAL);
    expect(v4.log).toEqual(['add 198.19.2.0/24 198.18.0.2 02:00:00:00:02:02']);
    expect(v6.log).toEqual([`add ${PEER6}/64 ${PEER} ${PEER_MAC}`]);
    // the IPv6 half is gone: the peer leaves the IPv6 backend
    const { v6VtepMac: _m, ...noMac } = DUAL;
    d.addPeer(noMac);
    expect(v6.log.at(-1)).toBe(`remove ${PEER6}/64`);
    // back, then moved to another IPv6 subnet: the old one is removed first
    d.addPeer(DUAL);
    d.addPeer({ ...DUAL, ipv6Subnet: '2001:2:0:103::/64' });
    expect(v6.log.slice(-3)).toEqual([`add ${PEER6}/64 ${PEER} ${PEER_MAC}`, `remove ${PEER6}/64`, `add 2001:2:0:103::/64 ${PEER} ${PEER_MAC}`]);
    d.removePeer('198.19.2.0/24');
    expect(v4.log.at(-1)).toBe('remove 198.19.2.0/24');
    expect(v6.log.at(-1)).toBe('remove 2001:2:0:103::/64');
    // an IPv6-only lease goes to the IPv6 backend alone, and is removed by its own subnet
    const n4 = v4.log.length;
    d.addPeer({ ...V6_HALF, subnet: '2001:2:0:104::/64' });
    d.removePeer('2001:2:0:104::/64');
    expect(v4.log.length).toBe(n4);
    expect(v6.log.slice(-2)).toEqual([`add 2001:2:0:104::/64 ${PEER} ${PEER_MAC}`, 'remove 2001:2:0:104::/64']);
  });

  it('applies the other half when one fails, then throws one error naming the failed half', () => {
    const { v4, v6, d } = fakes();
    v4.fail.add = true;
    expect(() => d.addPeer(DUAL)).toThrow(/^dual stack: lease 198\.19\.2\.0\/24: IPv4: refused 198\.19\.2\.0\/24$/);
    expect(v6.log).toEqual([`add ${PEER6}/64 ${PEER} ${PEER_MAC}`]);
    v4.fail.add = false;
    v6.fail.add = true;
    expect(() => d.addPeer(DUAL)).toThrow(/IPv6: refused 2001:2:0:102::\/64/);
    expect(v4.log.at(-1)).toBe('add 198.19.2.0/24 198.18.0.2 02:00:00:00:02:02');
    v4.fail.remove = true;
    v6.fail.remove = true;
    v6.fail.add = false;
    d.addPeer(DUAL);
    expect(() => d.removePeer('198.19.2.0/24')).toThrow(/IPv4: cannot remove 198\.19\.2\.0\/24; IPv6: cannot remove 2001:2:0:102::\/64/);
  });

  it('merges stats: totals and drops summed, peers by public IP, offload summed, errors merged', () => {
    const { v4, v6, d } = fakes();
    const off = (n: number) => ({ superPackets: n, segmentsOut: n, gsoSends: n, gsoSegments: n, groMessages: n, groSegments: n, coalescedWrites: n, coalescedSegments: n, rxSuperPackets: n, csumFinished: n, coalesceCsumFallbacks: n });
    v4.stats_ = { txPackets: 1, txBytes: 10, rxPackets: 2, rxBytes: 20, drops: { tx_no_route: 1, rx_wrong_vni: 2 }, peers: { '198.18.0.2': { txPackets: 1, txBytes: 10, rxPackets: 2, rxBytes: 20 } }, offload: off(1), errors: { kernel: 1, lastKernel: 'a', send: { EAGAIN: 1 } } };
    v6.stats_ = { txPackets: 3, txBytes: 30, rxPackets: 4, rxBytes: 40, drops: { tx_no_route: 2 }, peers: { [PEER]: { txPackets: 3, txBytes: 30, rxPackets: 4, rxBytes: 40 } }, offload: off(2), errors: { kernel: 2, lastKernel: 'b', send: { EAGAIN: 2, ENOBUFS: 1 } } };
    expect(d.stats()).toEqual({
      txPackets: 4, txBytes: 40, rxPackets: 6, rxBytes: 60, drops: { tx_no_route: 3, rx_wrong_vni: 2 },
      peers: { '198.18.0.2': { txPackets: 1, txBytes: 10, rxPackets: 2, rxBytes: 20 }, [PEER]: { txPackets: 3, txBytes: 30, rxPackets: 4, rxBytes: 40 } },
      offload: off(3), errors: { kernel: 3, lastKernel: 'b', send: { EAGAIN: 3, ENOBUFS: 1 } },
    });
    // the same public IP on both (a host-gw-like pair): one entry, summed
    expect(mergeStats(v4.stats_, { ...v4.stats_, offload: undefined, errors: undefined }).peers['198.18.0.2']).toEqual({ txPackets: 2, txBytes: 20, rxPackets: 4, rxBytes: 40 });
  });

  it('starts IPv4 then IPv6; a failing IPv6 start stops the IPv4 backend and rethrows; stop does both (IPv6 first) and reports both', async () => {
    const { v4, v6, d } = fakes();
    v6.fail.start = true;
    await expect(d.start()).rejects.toThrow(/^no device$/);
    expect(v4.log).toEqual(['start', 'stop']);
    expect(v4.running).toBe(false);
    v6.fail.start = false;
    await d.start();
    const order: string[] = [];
    v4.stop = async () => { order.push('v4'); throw new Error('v4 busy'); };
    v6.stop = async (o) => { order.push(`v6${o?.keepDevice ? ' keep' : ''}`); throw new Error('v6 busy'); };
    await expect(d.stop({ keepDevice: true })).rejects.toThrow(/^dual stack: stop: IPv6: v6 busy; IPv4: v4 busy$/);
    expect(order).toEqual(['v6 keep', 'v4']);
    await d.settled();
    expect([v4.log.at(-1), v6.log.at(-1)]).toEqual(['settled', 'settled']);
  });

  it('rebinds the IPv4 underlay with rebind and the IPv6 one with rebind6', async () => {
    const { v4, v6, d } = fakes();
    await d.rebind(undefined, '198.18.0.9');
    await d.rebind6(ME, ME);
    expect(v4.log).toEqual(['rebind undefined 198.18.0.9']);
    expect(v6.log).toEqual([`rebind ${ME} ${ME}`]);
  });
});

describe('DualStackBackend over two real VXLAN backends', () => {
  it('puts each half in its VTEP\'s tables, and closes the IPv4 device when the IPv6 start fails', async () => {
    const io4 = new FakeIo();
    const io6 = new FakeIo();
    const v4 = new VxlanBackend({ subnet: '198.19.1.0/24', network: '198.19.0.0/16', publicIp: '198.18.0.1', io: io4, kernel: nullKernel, offload: 'off' });
    const v6 = new VxlanBackend({ subnet: `${MY6}/64`, network: NET6, publicIp: ME, vtepMac: MY_MAC, io: io6, kernel: nullKernel, offload: 'off' });
    const d = new DualStackBackend(v4, v6);
    await d.start();
    d.addPeer(DUAL);
    expect(v4.peers()).toEqual([leaseHalves(DUAL).v4]);
    expect(v6.peers()).toEqual([V6_HALF]);
    expect(d.localLease()).toMatchObject({ subnet: '198.19.1.0/24', ipv6Subnet: `${MY6}/64`, publicIpv6: ME, v6VtepMac: MY_MAC });
    io6.dev!.inject([ipv6Packet(`${MY6}5`, `${PEER6}7`)]);
    io4.dev!.inject([ipv4Packet('198.19.1.5', '198.19.2.7')]);
    expect(d.stats()).toMatchObject({ txPackets: 2, peers: { '198.18.0.2': { txPackets: 1 }, [PEER]: { txPackets: 1 } } });
    await d.stop();
    expect([io4.dev!.closed, io6.dev!.closed]).toEqual([true, true]);

    const io4b = new FakeIo();
    const bad = new VxlanBackend({ subnet: `${MY6}/64`, network: NET6, publicIp: ME, io: new FakeIo(), offload: 'off', kernel: { ...nullKernel, async configureDevice() { throw new Error('RTNETLINK: Operation not permitted'); } } });
    const d2 = new DualStackBackend(new VxlanBackend({ subnet: '198.19.1.0/24', network: '198.19.0.0/16', publicIp: '198.18.0.1', io: io4b, kernel: nullKernel, offload: 'off' }), bad);
    await expect(d2.start()).rejects.toThrow(/Operation not permitted/);
    expect(io4b.dev!.closed).toBe(true);
  });
});

describe('host-gw IPv6', () => {
  const view = (): ReturnType<typeof recordingKernel> => recordingKernel(
    [mainRoute('198.18.0.0/24', 2), mainRoute('0.0.0.0/0', 2, '198.18.0.254'), { ...mainRoute('2001:2:0:1::/64', 2), family: 6 }, { ...mainRoute('::/0', 2, '2001:2:0:1::fe'), family: 6 }],
    [['lo', 1], ['eth0', 2]],
  );

  it('dual stack: routes each peer\'s IPv6 subnet via its PublicIPv6 beside the IPv4 route; checks both next hops; removes both', async () => {
    const kernel = view();
    const b = new HostGwBackend({ subnet: '198.19.1.0/24', network: '198.19.0.0/16', publicIp: '198.18.0.1', ipv6Subnet: `${MY6}/64`, ipv6Network: NET6, publicIpv6: ME, underlayIface: 'eth0', kernel });
    await b.start();
    expect(b.localLease()).toEqual({ subnet: '198.19.1.0/24', publicIp: '198.18.0.1', backendType: 'host-gw', ipv6Subnet: `${MY6}/64`, publicIpv6: ME });
    const peer: Lease = { subnet: '198.19.2.0/24', publicIp: '198.18.0.2', backendType: 'host-gw', ipv6Subnet: `${PEER6}/64`, publicIpv6: PEER };
    b.addPeer(peer);
    b.addPeer(peer); // unchanged: nothing sent
    expect(kernel.ops).toEqual(['replace 198.19.2.0/24 via 198.18.0.2 dev eth0', `replace ${PEER6}/64 via ${PEER} dev eth0`]);
    // the IPv6 half goes: its route only
    b.addPeer({ subnet: '198.19.2.0/24', publicIp: '198.18.0.2', backendType: 'host-gw' });
    expect(kernel.ops.slice(2)).toEqual([`delete ${PEER6}/64 dev eth0`]);
    // an IPv6 next hop off the segment refuses the peer
    expect(() => b.addPeer({ ...peer, publicIpv6: '2001:2:9::2' })).toThrow(/host-gw: peer 2001:2:0:102::\/64 \(public IP 2001:2:9::2\) is not on the L2 segment of eth0 \(on-link there: 2001:2:0:1::\/64; the kernel reaches 2001:2:9::2 by default via 2001:2:0:1::fe dev eth0\)/);
    expect(b.peers()).toEqual([]);
    b.addPeer(peer);
    await b.stop();
    expect(kernel.ops.slice(-4)).toEqual(['replace 198.19.2.0/24 via 198.18.0.2 dev eth0', `replace ${PEER6}/64 via ${PEER} dev eth0`, 'delete 198.19.2.0/24 dev eth0', `delete ${PEER6}/64 dev eth0`]);
  });

  it('IPv6 only: IPv6 leases via their IPv6 public IP; bad combinations refused', async () => {
    const kernel = view();
    const b = new HostGwBackend({ subnet: `${MY6}/64`, network: NET6, publicIp: ME, underlayIface: 'eth0', kernel });
    await b.start();
    expect(b.localLease()).toEqual({ subnet: `${MY6}/64`, publicIp: ME, backendType: 'host-gw' });
    b.addPeer({ subnet: `${PEER6}/64`, publicIp: PEER, backendType: 'host-gw' });
    expect(() => b.addPeer({ subnet: '198.19.2.0/24', publicIp: '198.18.0.2', backendType: 'host-gw' })).toThrow(/an IPv4 subnet, but this host's lease is IPv6/);
    b.removePeer('198.19.2.0/24'); // no-op
    b.removePeer(`${PEER6}/64`);
    expect(kernel.ops).toEqual([`replace ${PEER6}/64 via ${PEER} dev eth0`, `delete ${PEER6}/64 dev eth0`]);
    const o = { underlayIface: 'eth0', kernel };
    expect(() => new HostGwBackend({ ...o, subnet: `${MY6}/64`, network: NET6, publicIp: '198.18.0.1' })).toThrow(/public IP "198\.18\.0\.1" is not an IPv6 address/);
    expect(() => new HostGwBackend({ ...o, subnet: '198.19.1.0/24', network: '198.19.0.0/16', publicIp: '198.18.0.1', ipv6Subnet: `${MY6}/64`, ipv6Network: NET6 })).toThrow(/go together/);
    expect(() => new HostGwBackend({ ...o, subnet: `${MY6}/64`, network: NET6, publicIp: ME, ipv6Subnet: `${MY6}/64`, ipv6Network: NET6, publicIpv6: ME })).toThrow(/takes no ipv6Subnet/);
  });
});
