/**
 * Inner IPv6 (the IPv6 overlay) through both tunnel backends, over in-memory devices and
 * transports: routing by the IPv6 route table, the encapsulation (VXLAN L3: inner Ethernet
 * 0x86DD to the peer's VTEP MAC; UDP: the bare packet, hop limit decremented), ICMPv6 errors
 * (bytes and checksum checked here, independently of the codec), validation of received inner
 * IPv6 with each drop by its reason, NDP for our VTEP address, TSO/GRO of inner TCP/IPv6, and
 * hostile inner IPv6 by the thousand (never a throw, every packet forwarded or counted).
 */
import { describe, expect, it, vi } from 'vitest';
import fc from 'fast-check';
import { UdpBackend, VxlanBackend, DROP_REASONS, type Lease } from '../../src/vtep/index.js';
import { parseIpv6 } from '../../src/codec/addr.js';
import { emitVirtioTcpGso } from '../../src/codec/index.js';
import { FakeIo, ipv4Packet, nullKernel } from './fakes.js';
import { buildPacket } from '../codec/offload-helpers.js';

const MY6 = '2001:2:0:101::';
const BASE = { subnet: '198.19.1.0/24', network: '198.19.0.0/16', ipv6Subnet: `${MY6}/64`, ipv6Network: '2001:2:0:100::/56', kernel: nullKernel };
const MY_MAC = '02:00:00:00:00:01';
const PEER_MAC = '02:00:00:00:00:02';
const A = (s: string): Buffer => Buffer.from(parseIpv6(s));

/** Independent ones-complement checksum over `parts` (concatenated). */
function sum16(...parts: Buffer[]): number {
  const b = Buffer.concat(parts);
  let s = 0;
  for (let i = 0; i + 1 < b.length; i += 2) s += b.readUInt16BE(i);
  if (b.length & 1) s += b[b.length - 1]! << 8;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

/** True when the ICMPv6 message of the IPv6 packet `p` has a correct checksum (RFC 4443 2.3, pseudo-header of RFC 8200 8.1). */
function icmp6ChecksumOk(p: Buffer): boolean {
  const len = p.readUInt16BE(4);
  const pseudo = Buffer.alloc(40);
  p.copy(pseudo, 0, 8, 40);
  pseudo.writeUInt32BE(len, 32);
  pseudo[39] = 58;
  return sum16(pseudo, p.subarray(40, 40 + len)) === 0xffff;
}

/** An IPv6 packet `src` -> `dst`: `ext` extension-header bytes (their chain ending in `nh`), then `payload` bytes of protocol `nh`. */
function ipv6Packet(src: string, dst: string, o: { hop?: number; payload?: number; nh?: number; ext?: Buffer; first?: number; icmpType?: number } = {}): Buffer {
  const ext = o.ext ?? Buffer.alloc(0);
  const body = Buffer.alloc(o.payload ?? 32);
  for (let i = 0; i < body.length; i++) body[i] = i & 0xff;
  if (o.icmpType !== undefined) body[0] = o.icmpType;
  const h = Buffer.alloc(40);
  h[0] = 0x60;
  h.writeUInt16BE(ext.length + body.length, 4);
  h[6] = o.first ?? o.nh ?? 17;
  h[7] = o.hop ?? 64;
  A(src).copy(h, 8);
  A(dst).copy(h, 24);
  return Buffer.concat([h, ext, body]);
}

/** Hop-by-hop (8 bytes, next: dest opts) + destination options (8 bytes, next `nh`). */
function extChain(nh: number): Buffer {
  return Buffer.from([60, 0, 1, 4, 0, 0, 0, 0, nh, 0, 1, 4, 0, 0, 0, 0]);
}

/** A VXLAN datagram carrying `inner` in an Ethernet frame of ethertype `et` to `dstMac`. */
function vxlanDatagram(inner: Buffer, o: { dstMac?: string; et?: string } = {}): Buffer {
  const mac = (m: string): string => m.replace(/:/g, '');
  return Buffer.concat([Buffer.from('0800000000000100' + mac(o.dstMac ?? MY_MAC) + mac(PEER_MAC) + (o.et ?? '86dd'), 'hex'), inner]);
}

/** Check an ICMPv6 error written into the device about `orig`: headers, quote, checksum. */
function expectIcmp6(p: Buffer, orig: Buffer, type: number, code: number, rest: number): void {
  expect(p[0]! >>> 4).toBe(6);
  expect(p[6]).toBe(58);
  expect(p.subarray(8, 24).equals(A(MY6))).toBe(true); // from our device address
  expect(p.subarray(24, 40).equals(orig.subarray(8, 24))).toBe(true); // to the sender
  expect(p.readUInt16BE(4)).toBe(p.length - 40);
  expect([p[40], p[41]]).toEqual([type, code]);
  expect(p.readUInt32BE(44)).toBe(rest);
  const quote = Math.min(orig.length, 1280 - 48);
  expect(p.length).toBe(48 + quote);
  expect(p.subarray(48).equals(orig.subarray(0, quote))).toBe(true);
  expect(icmp6ChecksumOk(p)).toBe(true);
}

for (const under of [{ name: 'IPv4 underlay', me: '198.18.0.1', peer: '198.18.0.2', v: 4 as const }, { name: 'IPv6 underlay', me: '2001:2:0:1::1', peer: '2001:2:0:1::2', v: 6 as const }]) {
  const from = (data: Buffer) => (under.v === 4 ? { addr: 0xc6120002, family: 4 as const, data } : { addr: 0, addr6: parseIpv6(under.peer), data });
  const UDP_PEER: Lease = { subnet: '198.19.2.0/24', publicIp: under.peer, backendType: 'udp', ipv6Subnet: '2001:2:0:102::/64' };
  const VX_PEER: Lease = { subnet: '198.19.2.0/24', publicIp: under.peer, backendType: 'vxlan', vni: 1, vtepMac: PEER_MAC, ipv6Subnet: '2001:2:0:102::/64' };
  const mtu = under.v === 4 ? 1472 : 1452;
  const vmtu = under.v === 4 ? 1450 : 1430;

  async function udp(opts: Record<string, unknown> = {}) {
    const io = new FakeIo();
    const b = new UdpBackend({ ...BASE, publicIp: under.me, io, offload: 'off', ...opts });
    await b.start();
    b.addPeer(UDP_PEER);
    return { b, dev: io.dev!, tr: io.tr! };
  }
  async function vxlan(opts: Record<string, unknown> = {}) {
    const io = new FakeIo({ offload: true });
    const b = new VxlanBackend({ ...BASE, publicIp: under.me, vtepMac: MY_MAC, io, transport: 'mmsg', offload: 'off', ...opts });
    await b.start();
    b.addPeer(VX_PEER);
    return { b, dev: io.dev!, tr: io.tr! };
  }

  describe(`UDP backend, inner IPv6 (${under.name})`, () => {
    it('routes by the IPv6 table: the bare packet to the peer, hop limit decremented; extension headers pass', async () => {
      const { b, dev, tr } = await udp();
      expect(b.localLease().ipv6Subnet).toBe(`${MY6}/64`);
      const p = ipv6Packet('2001:2:0:101::5', '2001:2:0:102::7', { payload: 200 });
      const x = ipv6Packet('2001:2:0:101::5', '2001:2:0:102::7', { first: 0, ext: extChain(6), payload: 40 });
      dev.inject([p, x]);
      expect(tr.sent).toHaveLength(2);
      expect(tr.sent[0]!.family).toBe(under.v);
      expect(tr.sent[0]!.data.length).toBe(p.length);
      expect(tr.sent[0]!.data[7]).toBe(63);
      expect(tr.sent[0]!.data.subarray(8).equals(p.subarray(8))).toBe(true);
      expect(tr.sent[1]!.data.subarray(8).equals(x.subarray(8))).toBe(true);
      expect(dev.written).toHaveLength(0);
      expect(b.stats().txPackets).toBe(2);
    });

    it('answers with ICMPv6: no route (1/0), hop limit (3/0), packet too big (2/0 with the MTU); never about an ICMPv6 error or to multicast', async () => {
      const { b, dev, tr } = await udp();
      const noRoute = ipv6Packet('2001:2:0:101::5', '2001:2:0:177::7');
      const hop1 = ipv6Packet('2001:2:0:101::5', '2001:2:0:102::7', { hop: 1 });
      const big = ipv6Packet('2001:2:0:101::5', '2001:2:0:102::7', { payload: mtu - 40 + 1, nh: 58, icmpType: 128 });
      dev.inject([noRoute, hop1, big]);
      expect(tr.sent).toHaveLength(0);
      expect(dev.written).toHaveLength(3);
      expectIcmp6(dev.written[0]!, noRoute, 1, 0, 0);
      expectIcmp6(dev.written[1]!, hop1, 3, 0, 0);
      expectIcmp6(dev.written[2]!, big, 2, 0, mtu);
      expect(b.stats().drops).toEqual({ tx_no_route: 1, tx_ttl_exceeded: 1, tx_too_big: 1 });
      expect(b.stats().icmpSent).toBe(3);
      // an ICMPv6 error (behind extension headers too), a multicast or link-local destination: no error back
      const err = ipv6Packet('2001:2:0:101::5', '2001:2:0:177::7', { nh: 58, icmpType: 1 });
      const errExt = ipv6Packet('2001:2:0:101::5', '2001:2:0:177::7', { first: 0, ext: extChain(58), icmpType: 3 });
      const mld = ipv6Packet('2001:2:0:101::5', 'ff02::16', { nh: 58, icmpType: 143 });
      const ll = ipv6Packet('fe80::1', 'fe80::2');
      const echoUnroutable = ipv6Packet('2001:2:0:101::5', '2001:2:0:177::7', { first: 0, ext: extChain(58), icmpType: 128 });
      dev.inject([err, errExt, mld, ll, echoUnroutable]);
      expect(dev.written).toHaveLength(4);
      expectIcmp6(dev.written[3]!, echoUnroutable, 1, 0, 0);
      expect(b.stats().drops).toEqual({ tx_no_route: 4, tx_ttl_exceeded: 1, tx_too_big: 1, tx_ipv6_link_scope: 2 });
    });

    it('rate-limits ICMP errors of both families together: a burst of 50, then 1000 per second', async () => {
      const { b, dev } = await udp();
      // the bucket's clock (performance.now) stands still unless the test moves it: exact counts,
      // whatever the machine's load (with the real clock a batch slowed by load earned extra tokens)
      vi.useFakeTimers({ toFake: ['performance'] });
      try {
        const v6 = Array.from({ length: 40 }, () => ipv6Packet('2001:2:0:101::5', '2001:2:0:177::7'));
        const v4 = Array.from({ length: 24 }, () => ipv4Packet('198.19.1.5', '198.19.77.7'));
        dev.inject([...v6, ...v4]);
        const s0 = b.stats();
        expect(s0.icmpSent).toBe(50);
        expect(s0.icmpRateLimited).toBe(14);
        expect(s0.drops.tx_no_route).toBe(64);
        vi.advanceTimersByTime(30); // 30 tokens back
        dev.inject(v6);
        const s = b.stats();
        expect(s.icmpSent - s0.icmpSent).toBe(30);
        expect(s.icmpSent + s.icmpRateLimited).toBe(104);
        vi.advanceTimersByTime(1000); // refilled to the burst, not beyond
        dev.inject(v6);
        dev.inject(v6);
        expect(b.stats().icmpSent - s.icmpSent).toBe(50);
      } finally {
        vi.useRealTimers();
      }
    });

    it('quotes an oversized packet only up to 1280 bytes in all', async () => {
      const { dev } = await udp({ deviceMtu: 1400 });
      const big = ipv6Packet('2001:2:0:101::5', '2001:2:0:102::7', { payload: 1400 });
      dev.inject([big]);
      expect(dev.written[0]!.length).toBe(1280);
      expectIcmp6(dev.written[0]!, big, 2, 0, 1400);
    });

    it('accepts valid inner IPv6 from the peer and drops the rest by reason', async () => {
      const { b, dev, tr } = await udp();
      const good = ipv6Packet('2001:2:0:102::7', '2001:2:0:101::5');
      const withExt = ipv6Packet('2001:2:0:102::7', '2001:2:0:101::5', { first: 0, ext: extChain(17) });
      tr.inject([
        from(good),
        from(withExt),
        from(good.subarray(0, 30)),                                            // truncated header
        from(good.subarray(0, good.length - 1)),                               // payload length past the end
        from(ipv6Packet('2001:2:0:199::7', '2001:2:0:101::5')),                // spoofed source
        from(ipv6Packet('2001:2:0:102::7', '2001:2:0:177::5')),                // not our subnet
      ]);
      expect(dev.written.map((w) => w.toString('hex'))).toEqual([good.toString('hex'), withExt.toString('hex')]);
      expect(b.stats().drops).toEqual({ rx_truncated: 2, rx_spoofed_inner_source: 1, rx_not_our_subnet: 1 });
      expect(b.stats().peers[under.peer]!.rxPackets).toBe(2);
      // the peer's IPv6 route goes with it
      b.removePeer('198.19.2.0/24');
      dev.inject([ipv6Packet('2001:2:0:101::5', '2001:2:0:102::7')]);
      expect(b.stats().drops.tx_no_route).toBe(1);
    });

    it('without ipv6Subnet inner IPv6 is dropped as before; refuses a peer IPv6 subnet outside the network', async () => {
      const io = new FakeIo();
      const b = new UdpBackend({ subnet: '198.19.1.0/24', network: '198.19.0.0/16', publicIp: under.me, io, kernel: nullKernel });
      await b.start();
      b.addPeer(UDP_PEER);
      io.dev!.inject([ipv6Packet('2001:2:0:101::5', '2001:2:0:102::7')]);
      io.tr!.inject([from(ipv6Packet('2001:2:0:102::7', '2001:2:0:101::5'))]);
      expect(b.stats().drops).toEqual({ tx_not_ipv4: 1, rx_not_our_subnet: 1 });
      const { b: b6 } = await udp();
      expect(() => b6.addPeer({ ...UDP_PEER, subnet: '198.19.3.0/24', ipv6Subnet: '2001:2:1::/64' })).toThrow(/not inside the IPv6 network/);
      expect(() => new UdpBackend({ ...BASE, ipv6Network: undefined, publicIp: under.me })).toThrow(/go together/);
    });

    it('never throws on hostile inner IPv6 either way: each packet forwarded or dropped by a known reason', async () => {
      const { b, dev, tr } = await udp();
      const good = ipv6Packet('2001:2:0:102::7', '2001:2:0:101::5', { first: 0, ext: extChain(58), icmpType: 128 });
      const out = ipv6Packet('2001:2:0:101::5', '2001:2:0:102::7', { first: 0, ext: extChain(58), icmpType: 1 });
      const mutate = (base: Buffer) => fc.tuple(fc.array(fc.tuple(fc.nat(base.length - 1), fc.nat(255)), { maxLength: 4 }), fc.nat(base.length))
        .map(([ps, cut]) => { const d = Buffer.from(base); for (const [i, v] of ps) d[i] = v; if (d[0]! >>> 4 !== 6) d[0] = 0x60 | (d[0]! & 15); return d.subarray(0, Math.max(cut, 1)); });
      let rx = 0;
      let txIn = 0;
      fc.assert(fc.property(fc.array(mutate(good), { minLength: 1, maxLength: 16 }), fc.array(mutate(out), { minLength: 1, maxLength: 16 }), (r, t) => {
        tr.inject(r.map(from));
        dev.inject(t);
        rx += r.length;
        txIn += t.length;
      }), { numRuns: 1500 });
      const s = b.stats();
      let rxDrops = 0;
      let txDrops = 0;
      for (const [k, v] of Object.entries(s.drops)) {
        expect(DROP_REASONS).toContain(k);
        if (k.startsWith('rx_')) rxDrops += v; else txDrops += v;
      }
      expect(s.rxPackets + rxDrops).toBe(rx);
      expect(s.txPackets + txDrops).toBe(txIn);
      for (const w of dev.written.slice(s.rxPackets)) expect(w[6] === 58 ? icmp6ChecksumOk(w) : true).toBe(true);
    });
  });

  describe(`VXLAN L3, inner IPv6 (${under.name})`, () => {
    it('encapsulates with an inner Ethernet header 0x86DD to the peer\'s VTEP MAC (no hop limit change)', async () => {
      const { b, dev, tr } = await vxlan();
      const p = ipv6Packet('2001:2:0:101::5', '2001:2:0:102::7', { payload: 100 });
      dev.inject([p]);
      expect(tr.sent).toHaveLength(1);
      const d = tr.sent[0]!.data;
      expect(d.subarray(0, 8).toString('hex')).toBe('0800000000000100');
      expect(d.subarray(8, 22).toString('hex')).toBe('020000000002' + '020000000001' + '86dd');
      expect(d.subarray(22).equals(p)).toBe(true);
      expect(b.localLease().ipv6Subnet).toBe(`${MY6}/64`);
      // a separate IPv6 VTEP MAC (flannel's BackendV6Data) is used for IPv6 only
      b.addPeer({ ...VX_PEER, subnet: '198.19.3.0/24', ipv6Subnet: '2001:2:0:103::/64', publicIp: under.v === 4 ? '198.18.0.3' : '2001:2:0:1::3', vtepMac: '02:00:00:00:00:03', v6VtepMac: '02:00:00:00:00:33' });
      dev.inject([ipv6Packet('2001:2:0:101::5', '2001:2:0:103::7'), ipv4Packet('198.19.1.5', '198.19.3.7')]);
      expect(tr.sent[1]!.data.subarray(8, 14).toString('hex')).toBe('020000000033');
      expect(tr.sent[2]!.data.subarray(8, 14).toString('hex')).toBe('020000000003');
      expect(b.fdbEntries()['02:00:00:00:00:33']).toEqual([under.v === 4 ? '198.18.0.3' : '2001:2:0:1::3']);
      b.removePeer('198.19.3.0/24');
      expect(b.fdbEntries()['02:00:00:00:00:33']).toBeUndefined();
    });

    it('answers no route and packet too big with ICMPv6 (MTU underlay - 50/70)', async () => {
      const { b, dev } = await vxlan();
      const noRoute = ipv6Packet('2001:2:0:101::5', '2001:2:0:177::7');
      const big = ipv6Packet('2001:2:0:101::5', '2001:2:0:102::7', { payload: vmtu - 40 + 1 });
      const fits = ipv6Packet('2001:2:0:101::5', '2001:2:0:102::7', { payload: vmtu - 40 });
      dev.inject([noRoute, big, fits]);
      expect(dev.written).toHaveLength(2);
      expectIcmp6(dev.written[0]!, noRoute, 1, 0, 0);
      expectIcmp6(dev.written[1]!, big, 2, 0, vmtu);
      expect(b.stats().drops).toEqual({ tx_no_route: 1, tx_too_big: 1 });
      expect(b.stats().txPackets).toBe(1);
    });

    it('validates received inner IPv6 and drops by reason', async () => {
      const { b, dev, tr } = await vxlan();
      const good = ipv6Packet('2001:2:0:102::7', '2001:2:0:101::5');
      const v4in6 = ipv4Packet('198.19.2.7', '198.19.1.5');
      tr.inject([
        from(vxlanDatagram(good)),
        from(vxlanDatagram(good.subarray(0, 20))),                              // truncated
        from(vxlanDatagram(v4in6)),                                            // 0x86DD carrying IPv4
        from(vxlanDatagram(ipv6Packet('2001:2:0:177::7', '2001:2:0:101::5'))), // spoofed source
        from(vxlanDatagram(ipv6Packet('2001:2:0:102::7', '2001:2:0:102::5'))), // not ours
        from(vxlanDatagram(ipv6Packet('2001:2:0:102::7', 'ff02::1'), { dstMac: '33:33:00:00:00:01' })), // multicast, not NDP
      ]);
      expect(dev.written.map((w) => w.toString('hex'))).toEqual([good.toString('hex')]);
      expect(b.stats().drops).toEqual({ rx_truncated: 1, rx_bad_ipv6: 1, rx_spoofed_inner_source: 1, rx_not_our_subnet: 2 });
    });

    it('answers a neighbour solicitation for its VTEP IPv6 address through the tunnel', async () => {
      const { b, tr } = await vxlan();
      // NS from 2001:2:0:102:: (the peer's VTEP) to the solicited-node address of 2001:2:0:101::, with a source link-layer option
      const ns = (target: string): Buffer => {
        const icmp = Buffer.alloc(32);
        icmp[0] = 135;
        A(target).copy(icmp, 8);
        icmp[24] = 1; icmp[25] = 1; Buffer.from(PEER_MAC.replace(/:/g, ''), 'hex').copy(icmp, 26);
        const p = ipv6Packet('2001:2:0:102::', 'ff02::1:ff00:0', { nh: 58, hop: 255, payload: 32 });
        icmp.copy(p, 40);
        const pseudo = Buffer.alloc(40); p.copy(pseudo, 0, 8, 40); pseudo.writeUInt32BE(32, 32); pseudo[39] = 58;
        p.writeUInt16BE(~sum16(pseudo, icmp) & 0xffff, 42);
        return p;
      };
      tr.inject([from(vxlanDatagram(ns(MY6), { dstMac: '33:33:ff:00:00:00' })), from(vxlanDatagram(ns('2001:2:0:101::9'), { dstMac: '33:33:ff:00:00:09' }))]);
      expect(b.stats().ndpReplies).toBe(1);
      expect(b.stats().drops).toEqual({ rx_ndp_not_for_us: 1 });
      expect(tr.sent).toHaveLength(1);
      const d = tr.sent[0]!.data;
      expect(tr.sent[0]!.family).toBe(under.v);
      expect(d.subarray(8, 22).toString('hex')).toBe('020000000002' + '020000000001' + '86dd');
      const na = d.subarray(22);
      expect(na.length).toBe(72);
      expect(na.subarray(8, 24).equals(A(MY6))).toBe(true);
      expect(na.subarray(24, 40).equals(A('2001:2:0:102::'))).toBe(true);
      expect([na[6], na[7], na[40], na[41], na[44]]).toEqual([58, 255, 136, 0, 0x60]);
      expect(na.subarray(48, 64).equals(A(MY6))).toBe(true);
      expect(na.subarray(64, 72).toString('hex')).toBe('0201' + '020000000001');
      expect(icmp6ChecksumOk(na)).toBe(true);
    });

    it('segments a GSO_TCPV6 super-packet and coalesces received TCP/IPv6 segments into one', async () => {
      const { b, dev, tr } = await vxlan({ offload: 'auto' });
      expect(b.deviceOffload).toBe(true);
      const MSS = vmtu - 60;
      const SEGS = 10;
      const sp = Buffer.alloc(60 + SEGS * MSS);
      buildPacket(sp, 0, { v: 6, src6: A('2001:2:0:101::5'), dst6: A('2001:2:0:102::7'), payload: new Uint8Array(SEGS * MSS), csum: 'partial' });
      const vnet = Buffer.alloc(10);
      emitVirtioTcpGso(vnet, 0, 6, 40, 60, MSS);
      dev.inject([sp], [vnet]);
      expect(b.stats().offload.superPackets).toBe(1);
      expect(tr.datagrams()).toHaveLength(SEGS);
      for (const g of tr.datagrams()) {
        expect(g.subarray(20, 22).toString('hex')).toBe('86dd');
        expect(g.length).toBe(22 + 60 + MSS);
      }
      // received: 8 in-order segments of one flow -> one GSO_TCPV6 write
      const segs = Array.from({ length: 8 }, (_, k) => {
        const p = Buffer.alloc(60 + MSS);
        buildPacket(p, 0, { v: 6, src6: A('2001:2:0:102::7'), dst6: A('2001:2:0:101::5'), seq: 1 + k * MSS, payload: new Uint8Array(MSS).fill(k) });
        return from(vxlanDatagram(p));
      });
      tr.inject(segs);
      expect(b.stats().drops).toEqual({});
      expect(dev.written).toHaveLength(1);
      expect(dev.written[0]![1]).toBe(4); // virtio gso_type GSO_TCPV6
      expect(dev.written[0]!.length).toBe(10 + 60 + 8 * MSS);
      expect(b.stats().offload.coalescedSegments).toBe(8);
    });
  });
}

describe('inner IPv6 options', () => {
  it('configures the device with the IPv6 address beside the IPv4 one (VXLAN /128, UDP /<network>)', async () => {
    const got: { cidr: string; cidr6?: string }[] = [];
    const routes: string[] = [];
    const kernel = { ...nullKernel, async configureDevice(_d: string, o: { cidr: string; cidr6?: string }) { got.push(o); }, async replaceRoute(dst: string, via: string, dev: string) { routes.push(`${dst} via ${via} dev ${dev}`); } };
    const vx = new VxlanBackend({ ...BASE, publicIp: '198.18.0.1', io: new FakeIo(), kernel });
    vx.addPeer({ subnet: '198.19.2.0/24', publicIp: '198.18.0.2', backendType: 'vxlan', vni: 1, vtepMac: PEER_MAC, ipv6Subnet: '2001:2:0:102::/64' });
    await vx.start();
    const u = new UdpBackend({ ...BASE, publicIp: '198.18.0.1', io: new FakeIo(), kernel });
    await u.start();
    expect(got.map((g) => g.cidr6)).toEqual([`${MY6}/128`, `${MY6}/56`]);
    expect(routes.sort()).toEqual(['198.19.2.0/24 via 198.19.2.0 dev flannel.1', '2001:2:0:102::/64 via 2001:2:0:102:: dev flannel.1']);
    await vx.stop();
    await u.stop();
  });
});
