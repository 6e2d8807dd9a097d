import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  emitEthernet, emitIpv4, emitUdp, emitVxlan, emitVxlanGbp, EtherType, flowSrcPort, innerFlowHash, IpProto,
  Ipv4Packet, Ipv6Packet, udpVerify4, udpVerify6, VxlanDecapResult, vxlanDecapFrame, vxlanDecapOptions, vxlanDecapSocket,
  vxlanEncapFull, vxlanEncapSocket, vxlanEncapSocketGbp, VxlanHeader, vxlanTunnel, VXLAN_IPV4_OVERHEAD,
  VXLAN_IPV6_OVERHEAD, VXLAN_PORT_IANA, VXLAN_PORT_LINUX, EPHEMERAL_PORT_MIN, EPHEMERAL_PORT_MAX, ETH_HLEN,
} from '../../src/codec/index.js';
import { HEADROOM } from '../../src/tun/types.js';

/** A random inner Ethernet frame: random MACs, an EtherType among IPv4/IPv6/ARP/other, random body. */
const innerFrame = fc.record({
  dst: fc.integer({ min: 0, max: 2 ** 48 - 1 }),
  src: fc.integer({ min: 0, max: 2 ** 48 - 1 }),
  et: fc.constantFrom(EtherType.IPv4, EtherType.IPv6, EtherType.ARP, 0x88cc, EtherType.VLAN),
  body: fc.uint8Array({ minLength: 0, maxLength: 1500 }),
}).map(({ dst, src, et, body }) => {
  const f = new Uint8Array(ETH_HLEN + body.length);
  emitEthernet(f, 0, dst, src, et);
  f.set(body, ETH_HLEN);
  if (et === EtherType.IPv4 && body.length >= 20) f[14] = 0x45;
  if (et === EtherType.IPv6 && body.length >= 40) f[14] = 0x60 | (f[14]! & 15);
  return f;
});

const vni = fc.integer({ min: 0, max: 0xffffff });

describe('VXLAN header', () => {
  it('emits RFC 7348 bytes and the GBP extension', () => {
    const b = new Uint8Array(8);
    emitVxlan(b, 0, 0x123456);
    expect(Buffer.from(b).toString('hex')).toBe('0800000012345600');
    emitVxlanGbp(b, 0, 77, 0xbeef, 0x40);
    expect(Buffer.from(b).toString('hex')).toBe('8840beef00004d00');
    const v = new VxlanHeader();
    expect(v.check(b, 0, 8)).toBe('ok');
    expect([v.vni, v.hasGbp, v.gbpId, v.gbpDontLearn, v.gbpApplied, v.flags]).toEqual([77, true, 0xbeef, true, false, 0x88]);
    expect(v.check(b, 0, 8, 78)).toBe('unexpected-vni');
    expect(v.check(b, 0, 7)).toBe('too-short');
    b[0] = 0x80;
    expect(v.check(b, 0, 8)).toBe('bad-flags');
  });
  it('ignores reserved bits on receive', () => {
    const b = Uint8Array.from([0xff & ~0x80, 0xff, 0xff, 0xff, 0, 0, 1, 0xff, ...new Array(14).fill(0)]);
    const r = new VxlanDecapResult();
    expect(vxlanDecapSocket(b, 0, b.length, 1, r)).toBe('ok');
    expect([r.vni, r.gbp, r.off, r.len]).toEqual([1, false, 8, 14]);
    b[0] = 0xff;
    expect(vxlanDecapSocket(b, 0, b.length, 1, r, false)).toBe('ok');
    expect(r.gbp).toBe(false); // G bit is reserved without GBP
    expect(vxlanDecapSocket(b, 0, b.length, 1, r, true)).toBe('ok');
    expect([r.gbp, r.gbpId, r.gbpFlags]).toEqual([true, 0xffff, 0x48]);
  });
});

describe('socket-form encapsulation', () => {
  it('decap(encap(x)) == x (property)', () => {
    const r = new VxlanDecapResult();
    fc.assert(fc.property(innerFrame, vni, fc.boolean(), fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 8, max: HEADROOM }),
      (frame, v, gbp, gid, headroom) => {
        const buf = new Uint8Array(headroom + frame.length + 16).fill(0xa5);
        buf.set(frame, headroom);
        const o = gbp ? vxlanEncapSocketGbp(buf, headroom, v, gid, 0x08) : vxlanEncapSocket(buf, headroom, v);
        expect(o).toBe(headroom - 8);
        expect(buf.subarray(0, o).every((x) => x === 0xa5)).toBe(true);
        expect(vxlanDecapSocket(buf, o, frame.length + 8, v, r, true)).toBe('ok');
        expect([r.off, r.len, r.vni, r.gbp]).toEqual([headroom, frame.length, v, gbp]);
        if (gbp) expect([r.gbpId, r.gbpFlags]).toEqual([gid, 0x08]);
        expect(Buffer.from(buf.subarray(r.off, r.off + r.len)).equals(frame)).toBe(true);
        expect(vxlanDecapSocket(buf, o, frame.length + 8, (v + 1) & 0xffffff, r)).toBe('unexpected-vni');
      }), { numRuns: 2000 });
  });
  it('needs 8 bytes of headroom', () => {
    expect(() => vxlanEncapSocket(new Uint8Array(100), 7, 1)).toThrow(RangeError);
  });
});

describe('full-form encapsulation', () => {
  const tunnelArb = fc.record({
    vni,
    family: fc.constantFrom(4 as const, 6 as const),
    srcMac: fc.integer({ min: 0, max: 2 ** 48 - 1 }),
    dstMac: fc.integer({ min: 0, max: 2 ** 48 - 1 }),
    srcIp: fc.integer({ min: 0, max: 0xffffffff }),
    dstIp: fc.integer({ min: 0, max: 0xffffffff }),
    src6: fc.uint8Array({ minLength: 16, maxLength: 16 }),
    dst6: fc.uint8Array({ minLength: 16, maxLength: 16 }),
    dstPort: fc.oneof(fc.constantFrom(VXLAN_PORT_LINUX, VXLAN_PORT_IANA), fc.integer({ min: 1, max: 0xffff })),
    portMin: fc.integer({ min: 1024, max: 40000 }),
    span: fc.integer({ min: 1, max: 25000 }),
    ttl: fc.integer({ min: 1, max: 255 }),
    tos: fc.integer({ min: 0, max: 255 }),
    ecn: fc.boolean(),
    df: fc.boolean(),
    flowLabel: fc.integer({ min: 0, max: 0xfffff }),
    udpChecksum: fc.boolean(),
    gbp: fc.boolean(),
    gbpId: fc.integer({ min: 0, max: 0xffff }),
    ipId: fc.integer({ min: 0, max: 0xffff }),
  });

  it('decap(encap(x)) == x, checksums verify, every outer field round-trips (property)', () => {
    const r = new VxlanDecapResult();
    const ip4 = new Ipv4Packet();
    const ip6 = new Ipv6Packet();
    fc.assert(fc.property(innerFrame, tunnelArb, fc.nat(16), (frame, p, extraHead) => {
      const t = vxlanTunnel({ ...p, portMax: p.portMin + p.span, gbpFlags: 0 });
      const oh = p.family === 4 ? VXLAN_IPV4_OVERHEAD : VXLAN_IPV6_OVERHEAD;
      const off = oh + extraHead;
      const buf = new Uint8Array(off + frame.length);
      buf.set(frame, off);
      const start = vxlanEncapFull(buf, off, frame.length, t);
      expect(start).toBe(off - oh);
      const len = frame.length + oh;
      expect(t.ipId).toBe(p.family === 4 ? (p.ipId + 1) & 0xffff : p.ipId);
      const opts = vxlanDecapOptions({ vni: p.vni, port: p.dstPort, gbp: p.gbp, allowZeroChecksum6: !p.udpChecksum });
      expect(vxlanDecapFrame(buf, start, len, opts, r)).toBe('ok');
      expect([r.off, r.len, r.vni, r.family]).toEqual([off, frame.length, p.vni, p.family]);
      expect(Buffer.from(buf.subarray(r.off, r.off + r.len)).equals(frame)).toBe(true);
      expect([r.outerSrcMac, r.outerDstMac, r.dstPort, r.ttl]).toEqual([p.srcMac, p.dstMac, p.dstPort, p.ttl]);
      expect(r.srcPort).toBeGreaterThanOrEqual(p.portMin);
      expect(r.srcPort).toBeLessThan(p.portMin + p.span);
      expect(r.srcPort).toBe(flowSrcPort(innerFlowHash(frame, 0, frame.length), p.portMin, p.portMin + p.span));
      expect(r.gbp).toBe(p.gbp && p.gbpId !== 0);
      if (r.gbp) expect(r.gbpId).toBe(p.gbpId);
      const u = start + ETH_HLEN + (p.family === 4 ? 20 : 40);
      const csum = (buf[u + 6]! << 8) | buf[u + 7]!;
      if (p.family === 4) {
        expect(ip4.check(buf, start + ETH_HLEN, len - ETH_HLEN)).toBe('ok');
        expect([ip4.src, ip4.dst, ip4.id, ip4.dontFragment, ip4.ttl, ip4.protocol]).toEqual([p.srcIp, p.dstIp, p.ipId, p.df, p.ttl, 17]);
        expect([r.outerSrcIp, r.outerDstIp]).toEqual([p.srcIp, p.dstIp]);
        if (p.udpChecksum) expect(csum).not.toBe(0);
        else expect(csum).toBe(0);
        expect(udpVerify4(buf, u, p.srcIp, p.dstIp)).toBe(true);
        if (!p.ecn) expect(ip4.tos).toBe(p.tos);
        else expect(ip4.tos >>> 2).toBe(p.tos >>> 2);
      } else {
        expect(ip6.check(buf, start + ETH_HLEN, len - ETH_HLEN)).toBe('ok');
        expect([ip6.hopLimit, ip6.nextHeader, ip6.flowLabel, ip6.payloadLength]).toEqual([p.ttl, 17, p.flowLabel, len - ETH_HLEN - 40]);
        expect(Buffer.from(buf.subarray(r.outerSrc6Off, r.outerSrc6Off + 16)).equals(p.src6)).toBe(true);
        expect(Buffer.from(buf.subarray(r.outerDst6Off, r.outerDst6Off + 16)).equals(p.dst6)).toBe(true);
        expect(udpVerify6(buf, u, buf, ip6.srcOffset, ip6.dstOffset)).toBe(p.udpChecksum);
      }
      // Any change to the inner frame is caught by the UDP checksum when there is one.
      if (p.udpChecksum && frame.length > 0) {
        buf[off + (frame.length >>> 1)] ^= 0x10;
        expect(vxlanDecapFrame(buf, start, len, opts, r)).toBe('bad-udp-checksum');
      }
    }), { numRuns: 2000 });
  });

  it('copies the inner ECN like the kernel (CE becomes ECT(0))', () => {
    const t = vxlanTunnel({ tos: 0xb8 });
    for (const [inner, outer] of [[0, 0xb8], [1, 0xb9], [2, 0xba], [3, 0xba]] as const) {
      const buf = new Uint8Array(200);
      emitEthernet(buf, 96, 1, 2, EtherType.IPv4);
      emitIpv4(buf, 110, inner, 20, 0, 0, 64, 1, 1, 2);
      const s = vxlanEncapFull(buf, 96, 34, t);
      expect(buf[s + 15]).toBe(outer);
    }
  });

  it('needs 50 / 70 bytes of headroom', () => {
    expect(() => vxlanEncapFull(new Uint8Array(200), 49, 20, vxlanTunnel())).toThrow(RangeError);
    expect(() => vxlanEncapFull(new Uint8Array(200), 69, 20, vxlanTunnel({ family: 6 }))).toThrow(RangeError);
  });
});

describe('decapsulation reasons', () => {
  function frame(): { buf: Uint8Array; start: number; len: number } {
    const buf = new Uint8Array(HEADROOM + 100);
    emitEthernet(buf, HEADROOM, 1, 2, 0x0800);
    emitIpv4(buf, HEADROOM + 14, 0, 86, 0, 0, 64, 1, 1, 2);
    const start = vxlanEncapFull(buf, HEADROOM, 100, vxlanTunnel({ srcIp: 0xc6120001, dstIp: 0xc6120002 }));
    return { buf, start, len: HEADROOM + 100 - start };
  }
  const r = new VxlanDecapResult();
  const opts = vxlanDecapOptions({ vni: 1 });
  it('each reason', () => {
    let f = frame();
    expect(vxlanDecapFrame(f.buf, f.start, f.len, opts, r)).toBe('ok');
    expect(vxlanDecapFrame(f.buf, f.start, f.len + 1, opts, r)).toBe('truncated');
    expect(vxlanDecapFrame(f.buf, f.start, 13, opts, r)).toBe('too-short');
    expect(vxlanDecapFrame(f.buf, f.start, 30, opts, r)).toBe('too-short');
    expect(vxlanDecapFrame(f.buf, f.start, f.len - 1, opts, r)).toBe('bad-total-length');
    f.buf[f.start + 13] = 0x06; expect(vxlanDecapFrame(f.buf, f.start, f.len, opts, r)).toBe('bad-ethertype');
    f = frame(); f.buf[f.start + 14] = 0x55; expect(vxlanDecapFrame(f.buf, f.start, f.len, opts, r)).toBe('bad-version');
    f = frame(); f.buf[f.start + 14] = 0x44; expect(vxlanDecapFrame(f.buf, f.start, f.len, opts, r)).toBe('bad-header-length');
    f = frame(); f.buf[f.start + 22] ^= 1; expect(vxlanDecapFrame(f.buf, f.start, f.len, opts, r)).toBe('bad-ip-checksum');
    f = frame(); f.buf[f.start + 20] = 0x20; fixIp(f.buf, f.start + 14); expect(vxlanDecapFrame(f.buf, f.start, f.len, opts, r)).toBe('fragment');
    f = frame(); f.buf[f.start + 23] = 6; fixIp(f.buf, f.start + 14); expect(vxlanDecapFrame(f.buf, f.start, f.len, opts, r)).toBe('not-udp');
    f = frame(); expect(vxlanDecapFrame(f.buf, f.start, f.len, { ...opts, port: 4789 }, r)).toBe('bad-port');
    f = frame(); f.buf[f.start + 39] += 1; expect(vxlanDecapFrame(f.buf, f.start, f.len, opts, r)).toBe('bad-udp-length');
    f = frame(); f.buf[f.start + 34] ^= 1; expect(vxlanDecapFrame(f.buf, f.start, f.len, opts, r)).toBe('bad-udp-checksum');
    expect(vxlanDecapFrame(f.buf, f.start, f.len, { ...opts, verifyUdpChecksum: false }, r)).toBe('ok');
    f = frame(); f.buf[f.start + 42] = 0; f.buf[f.start + 40] = 0; f.buf[f.start + 41] = 0;
    expect(vxlanDecapFrame(f.buf, f.start, f.len, opts, r)).toBe('bad-flags');
    f = frame(); expect(vxlanDecapFrame(f.buf, f.start, f.len, { ...opts, vni: 2 }, r)).toBe('unexpected-vni');
    const s = new Uint8Array(21); emitVxlan(s, 0, 1);
    expect(vxlanDecapSocket(s, 0, 21, 1, r)).toBe('inner-too-short');
    expect(vxlanDecapSocket(s, 0, 7, 1, r)).toBe('too-short');
    expect(vxlanDecapSocket(s, 0, 22, 1, r)).toBe('truncated');
  });
  function fixIp(b: Uint8Array, o: number): void {
    b[o + 10] = 0; b[o + 11] = 0;
    let s = 0;
    for (let i = 0; i < 20; i += 2) s += (b[o + i]! << 8) | b[o + i + 1]!;
    while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
    b[o + 10] = (~s >>> 8) & 255; b[o + 11] = ~s & 255;
  }
  it('accepts an 802.1Q-tagged outer frame and ignores Ethernet padding', () => {
    const f = frame();
    const b = new Uint8Array(f.len + 4 + 10);
    b.set(f.buf.subarray(f.start, f.start + 12), 0);
    b[12] = 0x81; b[13] = 0; b[14] = 0; b[15] = 5;
    b.set(f.buf.subarray(f.start + 12, f.start + f.len), 16);
    expect(vxlanDecapFrame(b, 0, b.length, opts, r)).toBe('ok');
    expect([r.off, r.len]).toEqual([4 + VXLAN_IPV4_OVERHEAD, 100]);
  });
});

describe('flow hash and source port', () => {
  it('flowSrcPort is the kernel udp_flow_src_port() mapping', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 65535 }), fc.integer({ min: 0, max: 65535 }), (h, a, b) => {
      let min = Math.min(a, b);
      let max = Math.max(a, b);
      const p = flowSrcPort(h, min, max);
      if (min >= max) { min = EPHEMERAL_PORT_MIN; max = EPHEMERAL_PORT_MAX; }
      const hh = (BigInt(h) ^ ((BigInt(h) << 16n) & 0xffffffffn));
      expect(p).toBe(Number(((hh * BigInt(max - min)) >> 32n) + BigInt(min)));
      expect(p).toBeGreaterThanOrEqual(min);
      expect(p).toBeLessThan(max);
    }), { numRuns: 5000 });
  });
  it('depends on the L4 ports and addresses, not on the payload; spreads over the range', () => {
    const mk = (sport: number, payloadByte: number, src = 0xc6130105): Uint8Array => {
      const f = new Uint8Array(14 + 20 + 8 + 10);
      emitEthernet(f, 0, 1, 2, EtherType.IPv4);
      emitIpv4(f, 14, 0, 38, 0, 0, 64, IpProto.UDP, src, 0xc6130205);
      emitUdp(f, 34, sport, 53, 18);
      f.fill(payloadByte, 42);
      return f;
    };
    const h = (f: Uint8Array): number => innerFlowHash(f, 0, f.length);
    expect(h(mk(1000, 1))).toBe(h(mk(1000, 2)));
    expect(h(mk(1000, 1))).not.toBe(h(mk(1001, 1)));
    expect(h(mk(1000, 1))).not.toBe(h(mk(1000, 1, 0xc6130106)));
    const seen = new Set<number>();
    for (let p = 0; p < 2000; p++) seen.add(flowSrcPort(h(mk(p, 0))) >> 10);
    expect(seen.size).toBeGreaterThan(20); // 28 buckets of 1024 in 32768..60999
    // Short or odd frames hash without reading past the end.
    for (let n = 0; n < 60; n++) expect(innerFlowHash(mk(1, 1).subarray(0, n), 0, n)).toBeGreaterThan(0);
  });
});
