/**
 * Both tunnel backends over an IPv6 underlay, over in-memory devices and transports: peers with
 * IPv6 public IPs, what goes to the socket (family, address, GSO runs), the validation of received
 * datagrams (the same checks as over IPv4, each drop by its reason), and malformed or hostile
 * IPv6 datagrams by the hundred thousand (fast-check): never a throw, every one delivered or
 * counted by a known reason.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { UdpBackend, VxlanBackend, DROP_REASONS, lookupBackend, type Lease } from '../../src/vtep/index.js';
import { parseIpv6 } from '../../src/codec/addr.js';
import { FakeIo, ipv4Packet, nullKernel } from './fakes.js';

const ME = '2001:2:0:1::1';
const PEER = '2001:2:0:1::2';
const PEER6 = parseIpv6(PEER);
const OTHER6 = parseIpv6('2001:2:0:1::99');
const MAPPED6 = parseIpv6('::ffff:198.18.0.2');
const MY_MAC = '02:00:00:00:00:01';
const PEER_MAC = '02:00:00:00:00:02';
const BASE = { subnet: '198.19.1.0/24', network: '198.19.0.0/16', publicIp: ME, kernel: nullKernel };
const VX_PEER: Lease = { subnet: '198.19.2.0/24', publicIp: PEER, backendType: 'vxlan', vni: 1, vtepMac: PEER_MAC };

/** A VXLAN datagram (VNI `vni`, flags `flags`) carrying `inner` (IPv4) in an Ethernet frame to `dstMac`. */
function vxlanDatagram(inner: Buffer, o: { vni?: number; flags?: number; dstMac?: string; srcMac?: string } = {}): Buffer {
  const h = Buffer.alloc(8);
  h[0] = o.flags ?? 0x08;
  h.writeUIntBE(o.vni ?? 1, 4, 3);
  const mac = (m: string): string => m.replace(/:/g, '');
  return Buffer.concat([h, Buffer.from(mac(o.dstMac ?? MY_MAC) + mac(o.srcMac ?? PEER_MAC) + '0800', 'hex'), inner]);
}

async function vxlan(opts: Record<string, unknown> = {}) {
  const io = new FakeIo({ offload: true });
  const b = new VxlanBackend({ ...BASE, vtepMac: MY_MAC, io, transport: 'mmsg', ...opts });
  await b.start();
  b.addPeer(VX_PEER);
  return { b, io, dev: io.dev!, tr: io.tr! };
}

async function udp(opts: Record<string, unknown> = {}) {
  const io = new FakeIo();
  const b = new UdpBackend({ ...BASE, io, ...opts });
  await b.start();
  b.addPeer({ subnet: '198.19.2.0/24', publicIp: PEER, backendType: 'udp' });
  return { b, io, dev: io.dev!, tr: io.tr! };
}

describe('VXLAN over an IPv6 underlay', () => {
  it('is flannel-v6.<VNI> with MTU underlay - 70, and leases carry the IPv6 public IP', async () => {
    const { b } = await vxlan();
    expect(b.deviceName).toBe('flannel-v6.1');
    expect(b.deviceMtu).toBe(1500 - 70);
    expect(b.family).toBe(6);
    expect(b.localLease().publicIp).toBe(ME);
    expect(b.peers()[0]!.publicIp).toBe(PEER);
    expect(b.fdbEntries()).toEqual({ [PEER_MAC]: [PEER] });
    expect(b.showTables().fdb).toContain(`${PEER_MAC} dev flannel-v6.1 dst ${PEER} self permanent`);
    expect(lookupBackend('vxlan')!.mtuOverheadV6).toBe(70);
    expect(lookupBackend('udp')!.mtuOverheadV6).toBe(48);
  });

  it('refuses a lease of the other family, an IPv4-mapped one, and a bind address of the other family', async () => {
    const { b } = await vxlan();
    expect(() => b.addPeer({ ...VX_PEER, subnet: '198.19.3.0/24', publicIp: '198.18.0.3' }))
      .toThrow('lease 198.19.3.0/24: public IP 198.18.0.3 is IPv4 but this backend\'s underlay is IPv6');
    expect(() => b.addPeer({ ...VX_PEER, subnet: '198.19.3.0/24', publicIp: '::ffff:198.18.0.3' })).toThrow(/IPv4-mapped/);
    expect(b.peers()).toHaveLength(1);
    expect(() => new VxlanBackend({ ...BASE, bindAddress: '198.18.0.1' })).toThrow(/bindAddress: public IP 198.18.0.1 is IPv4/);
    expect(() => new VxlanBackend({ ...BASE, publicIp: '2001:2::zz' })).toThrow(/invalid public IP/);
  });

  it('sends the encapsulated packet to the peer\'s IPv6 address on 8472', async () => {
    const { b, dev, tr } = await vxlan({ offload: 'off' });
    dev.inject([ipv4Packet('198.19.1.5', '198.19.2.7', { payload: 100 })]);
    expect(tr.sent).toHaveLength(1);
    const d = tr.sent[0]!;
    expect(d.family).toBe(6);
    expect(Buffer.from(d.addr6).equals(Buffer.from(PEER6))).toBe(true);
    expect(d.port).toBe(8472);
    expect(d.data.subarray(0, 8).toString('hex')).toBe('0800000000000100');
    expect(d.data.subarray(8, 22).toString('hex')).toBe('020000000002' + '020000000001' + '0800');
    expect(b.stats().peers[PEER]!.txPackets).toBe(1);
  });

  it('sends equal datagrams to one IPv6 peer as one UDP GSO run', async () => {
    const { b, dev, tr } = await vxlan({ offload: 'auto' });
    expect(b.deviceOffload).toBe(true);
    const pkts = Array.from({ length: 10 }, () => ipv4Packet('198.19.1.5', '198.19.2.7', { payload: 1380 }));
    dev.inject(pkts);
    expect(tr.sent).toHaveLength(1);
    expect(tr.sent[0]!.segSize).toBe(22 + 1400);
    expect(tr.sent[0]!.family).toBe(6);
    expect(tr.datagrams()).toHaveLength(10);
    expect(b.stats().offload.gsoSends).toBe(1);
    expect(b.stats().offload.gsoSegments).toBe(10);
  });

  it('rebinds to another IPv6 address, never to the other family', async () => {
    const { b, io } = await vxlan({ offload: 'off' });
    await expect(b.rebind('198.18.0.1', '198.18.0.1')).rejects.toThrow(/is IPv4 but this backend's underlay is IPv6/);
    await b.rebind(undefined, '2001:2:0:1::7');
    expect(b.localLease().publicIp).toBe('2001:2:0:1::7');
    io.dev!.inject([ipv4Packet('198.19.1.5', '198.19.2.7')]);
    expect(io.tr!.sent.at(-1)!.family).toBe(6);
  });

  it('picks per-flow source ports from the pool for IPv6 peers too', async () => {
    const { b, io } = await vxlan({ offload: 'off', sourcePorts: 4 });
    expect(io.pool).toHaveLength(4);
    io.dev!.inject([ipv4Packet('198.19.1.5', '198.19.2.7'), ipv4Packet('198.19.1.6', '198.19.2.8')]);
    expect(io.tr!.sent.every((s) => s.family === 6)).toBe(true);
    expect(b.stats().txPackets).toBe(2);
  });

  it('accepts a valid datagram from the known IPv6 peer and drops the rest by reason', async () => {
    const { b, dev, tr } = await vxlan({ offload: 'off' });
    const good = ipv4Packet('198.19.2.7', '198.19.1.5');
    const badCsum = ipv4Packet('198.19.2.7', '198.19.1.5'); badCsum[10]! ^= 1;
    tr.inject([
      { addr: 0, addr6: PEER6, data: vxlanDatagram(good) },
      { addr: 0, addr6: OTHER6, data: vxlanDatagram(good) },                                  // unknown peer
      { addr: 0, addr6: MAPPED6, data: vxlanDatagram(good) },                                 // IPv4-mapped sender
      { addr: 0xc6120002, family: 4, data: vxlanDatagram(good) },                             // IPv4 on an IPv6 VTEP
      { addr: 0, addr6: PEER6, data: vxlanDatagram(good).subarray(0, 12) },                   // truncated
      { addr: 0, addr6: PEER6, data: vxlanDatagram(good, { flags: 0x0c }) },                  // bad flags
      { addr: 0, addr6: PEER6, data: vxlanDatagram(good, { vni: 2 }) },                       // wrong VNI
      { addr: 0, addr6: PEER6, data: vxlanDatagram(good, { dstMac: '02:00:00:00:00:77' }) },  // not our MAC
      { addr: 0, addr6: PEER6, data: vxlanDatagram(badCsum) },                                // bad inner IPv4
      { addr: 0, addr6: PEER6, data: vxlanDatagram(ipv4Packet('198.19.2.7', '198.19.5.5')) }, // not our subnet
      { addr: 0, addr6: PEER6, data: vxlanDatagram(ipv4Packet('198.19.9.7', '198.19.1.5')) }, // spoofed inner source
    ]);
    expect(dev.written).toHaveLength(1);
    expect(dev.written[0]!.equals(good)).toBe(true);
    expect(b.stats().drops).toEqual({
      rx_unknown_peer: 1, rx_ipv4_mapped_source: 1, rx_ipv4_underlay: 1, rx_truncated: 1, rx_bad_vxlan_flags: 1,
      rx_wrong_vni: 1, rx_not_our_mac: 1, rx_bad_ipv4: 1, rx_not_our_subnet: 1, rx_spoofed_inner_source: 1,
    });
    expect(b.stats().peers[PEER]!.rxPackets).toBe(1);
  });

  it('answers ARP for its VTEP address back to the IPv6 sender', async () => {
    const { b, tr } = await vxlan({ offload: 'off' });
    const arp = Buffer.from('0001080006040001' + '020000000002' + 'c6130200' + '000000000000' + 'c6130100', 'hex');
    const h = Buffer.from('0800000000000100' + 'ffffffffffff' + '020000000002' + '0806', 'hex');
    tr.inject([{ addr: 0, addr6: PEER6, data: Buffer.concat([h, arp]) }]);
    expect(b.stats().arpReplies).toBe(1);
    expect(tr.sent).toHaveLength(1);
    expect(tr.sent[0]!.family).toBe(6);
    expect(Buffer.from(tr.sent[0]!.addr6).equals(Buffer.from(PEER6))).toBe(true);
  });

  it('L2 mode floods to IPv6 peers', async () => {
    const io = new FakeIo();
    const b = new VxlanBackend({ ...BASE, mode: 'l2', vtepMac: MY_MAC, io });
    await b.start();
    b.addPeer(VX_PEER);
    b.addPeer({ ...VX_PEER, subnet: '198.19.3.0/24', publicIp: '2001:2:0:1::3', vtepMac: '02:00:00:00:00:03' });
    io.dev!.inject([Buffer.concat([Buffer.from('ffffffffffff' + '020000000001' + '0800', 'hex'), ipv4Packet('198.19.1.5', '198.19.2.7')])]);
    expect(io.tr!.sent.map((s) => s.family)).toEqual([6, 6]);
    expect(b.fdbEntries()['00:00:00:00:00:00']).toEqual([PEER, '2001:2:0:1::3']);
    io.tr!.inject([{ addr: 0, addr6: PEER6, data: vxlanDatagram(ipv4Packet('198.19.2.7', '198.19.1.5')) }]);
    expect(io.dev!.written).toHaveLength(1);
    b.removePeer('198.19.3.0/24');
    expect(b.fdbEntries()['00:00:00:00:00:00']).toEqual([PEER]);
  });

  it('never throws on hostile IPv6 datagrams: each is delivered or dropped by a known reason', async () => {
    const { b, tr, dev } = await vxlan({ offload: 'off' });
    const good = vxlanDatagram(ipv4Packet('198.19.2.7', '198.19.1.5'));
    const senders = [PEER6, OTHER6, MAPPED6, parseIpv6('::'), parseIpv6('ff02::1')];
    const datagram = fc.oneof(
      fc.uint8Array({ maxLength: 300 }).map((u) => Buffer.from(u)),
      fc.tuple(fc.nat(good.length - 1), fc.nat(255), fc.nat(good.length)).map(([i, v, cut]) => {
        const d = Buffer.from(good); d[i] = v; return d.subarray(0, Math.max(cut, 1));
      }),
    );
    let n = 0;
    fc.assert(fc.property(fc.array(fc.record({ s: fc.nat(senders.length - 1), v4: fc.boolean(), data: datagram }), { minLength: 1, maxLength: 32 }), (ds) => {
      tr.inject(ds.map((d) => (d.v4 ? { addr: 0xc6120002, family: 4 as const, data: d.data } : { addr: 0, addr6: senders[d.s]!, data: d.data })));
      n += ds.length;
    }), { numRuns: 4000 });
    const s = b.stats();
    const dropped = Object.entries(s.drops).reduce((a, [k, v]) => { expect(DROP_REASONS).toContain(k); return a + v; }, 0);
    expect(s.rxPackets + dropped + s.arpReplies).toBe(n);
    expect(dev.written.length).toBe(s.rxPackets);
  });
});

describe('UDP backend over an IPv6 underlay', () => {
  it('has MTU underlay - 48 and sends the bare IPv4 packet to the peer\'s IPv6 address', async () => {
    const { b, dev, tr } = await udp();
    expect(b.deviceMtu).toBe(1500 - 48);
    expect(b.deviceName).toBe('flannel0');
    dev.inject([ipv4Packet('198.19.1.5', '198.19.2.7', { ttl: 64 })]);
    expect(tr.sent).toHaveLength(1);
    expect(tr.sent[0]!.family).toBe(6);
    expect(Buffer.from(tr.sent[0]!.addr6).equals(Buffer.from(PEER6))).toBe(true);
    expect(tr.sent[0]!.port).toBe(8285);
    expect(tr.sent[0]!.data[8]).toBe(63);
    // fragmentation needed at 1452
    dev.inject([ipv4Packet('198.19.1.5', '198.19.2.7', { df: true, payload: 1500 })]);
    expect(dev.written[0]!.readUInt16BE(26)).toBe(1452);
  });

  it('accepts only valid IPv4 from the known IPv6 peer', async () => {
    const { b, dev, tr } = await udp();
    const good = ipv4Packet('198.19.2.7', '198.19.1.5');
    tr.inject([
      { addr: 0, addr6: PEER6, data: good },
      { addr: 0, addr6: OTHER6, data: good },
      { addr: 0, addr6: MAPPED6, data: good },
      { addr: 0xc6120002, family: 4, data: good },
      { addr: 0, addr6: PEER6, data: good.subarray(0, 10) },
      { addr: 0, addr6: PEER6, data: ipv4Packet('198.19.9.7', '198.19.1.5') },
    ]);
    expect(dev.written).toHaveLength(1);
    expect(b.stats().drops).toEqual({ rx_unknown_peer: 1, rx_ipv4_mapped_source: 1, rx_ipv4_underlay: 1, rx_truncated: 1, rx_spoofed_inner_source: 1 });
    b.removePeer('198.19.2.0/24');
    tr.inject([{ addr: 0, addr6: PEER6, data: good }]);
    expect(b.stats().drops.rx_unknown_peer).toBe(2);
  });

  it('an IPv4 backend still drops IPv6 datagrams as rx_ipv6_underlay', async () => {
    const io = new FakeIo();
    const b = new UdpBackend({ ...BASE, publicIp: '198.18.0.1', io });
    await b.start();
    expect(b.deviceMtu).toBe(1472);
    expect(() => b.addPeer({ subnet: '198.19.2.0/24', publicIp: PEER, backendType: 'udp' })).toThrow(/is IPv6 but this backend's underlay is IPv4/);
    io.tr!.inject([{ addr: 0, addr6: PEER6, data: ipv4Packet('198.19.2.7', '198.19.1.5') }]);
    expect(b.stats().drops).toEqual({ rx_ipv6_underlay: 1 });
  });
});
