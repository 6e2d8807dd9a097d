import { describe, expect, it } from 'vitest';
import {
  ArpOp, ArpPacket, buildArpReply, buildArpRequest, buildIcmpError, buildIcmpFragNeeded, buildIcmpNetUnreachable,
  buildIcmpTimeExceeded, emitEthernet, emitEthernetVlan, emitIpv4, emitIpv6, emitUdp, EtherType, EthernetFrame,
  flannelUdpValidate, icmpErrorAllowed, IcmpPacket, IpProto, ipv4FillChecksum, ipv4ToU32, Ipv4Packet, Ipv6Packet,
  parseIpv6, parseMac, UdpDatagram, ICMP_ERROR_MAX,
} from '../../src/codec/index.js';

describe('Ethernet', () => {
  it('untagged and 802.1Q frames', () => {
    const b = new Uint8Array(64);
    expect(emitEthernet(b, 2, parseMac('ff:ff:ff:ff:ff:ff'), parseMac('02:00:00:00:00:01'), EtherType.ARP)).toBe(16);
    const e = new EthernetFrame();
    expect(e.check(b, 2, 60)).toBe('ok');
    expect([e.dst, e.src, e.etherType, e.hasVlan, e.vlanId, e.headerLen, e.payloadOffset, e.payloadLength])
      .toEqual([0xffffffffffff, 0x020000000001, 0x0806, false, 0, 14, 16, 46]);
    expect(emitEthernetVlan(b, 0, 1, 2, (5 << 13) | 100, EtherType.IPv6)).toBe(18);
    expect(e.check(b, 0, 64)).toBe('ok');
    expect([e.dst, e.src, e.hasVlan, e.vlanId, e.vlanPcp, e.etherType, e.payloadOffset]).toEqual([1, 2, true, 100, 5, 0x86dd, 18]);
    e.etherType = 0x0800; e.vlanTci = 7; e.dst = 9; e.src = 10;
    expect([e.etherType, e.vlanId, e.dst, e.src, b[16], b[17]]).toEqual([0x0800, 7, 9, 10, 8, 0]);
    expect(e.check(b, 0, 17)).toBe('too-short');
    expect(e.check(b, 0, 13)).toBe('too-short');
    expect(e.check(b, 60, 14)).toBe('truncated');
  });
});

describe('ARP', () => {
  it('builds a request, parses it, answers it', () => {
    const me = parseMac('0a:c6:13:01:00:00');
    const peer = parseMac('0a:c6:13:02:00:00');
    const b = new Uint8Array(100);
    expect(buildArpRequest(b, 0, peer, ipv4ToU32('198.19.2.0'), ipv4ToU32('198.19.1.0'))).toBe(42);
    const e = new EthernetFrame();
    const a = new ArpPacket();
    expect(e.check(b, 0, 42)).toBe('ok');
    expect([e.dst, e.src, e.etherType]).toEqual([0xffffffffffff, peer, EtherType.ARP]);
    expect(a.check(b, e.payloadOffset, e.payloadLength)).toBe('ok');
    expect([a.op, a.sha, a.spa, a.tha, a.tpa]).toEqual([ArpOp.REQUEST, peer, ipv4ToU32('198.19.2.0'), 0, ipv4ToU32('198.19.1.0')]);
    // Byte-exact against the RFC 826 layout.
    expect(Buffer.from(b.subarray(14, 42)).toString('hex')).toBe('0001080006040001' + '0ac613020000' + 'c6130200' + '000000000000' + 'c6130100');
    const out = new Uint8Array(60);
    expect(buildArpReply(out, 0, a, me)).toBe(42);
    expect(e.check(out, 0, 42)).toBe('ok');
    expect([e.dst, e.src]).toEqual([peer, me]);
    expect(a.check(out, 14, 28)).toBe('ok');
    expect([a.op, a.sha, a.spa, a.tha, a.tpa]).toEqual([ArpOp.REPLY, me, ipv4ToU32('198.19.1.0'), peer, ipv4ToU32('198.19.2.0')]);
    a.op = 1; a.sha = 5; a.spa = 6; a.tha = 7; a.tpa = 8;
    expect([a.op, a.sha, a.spa, a.tha, a.tpa]).toEqual([1, 5, 6, 7, 8]);
  });
  it('rejects non-Ethernet/IPv4 ARP and bad opcodes', () => {
    const b = new Uint8Array(42);
    buildArpRequest(b, 0, 1, 2, 3);
    const a = new ArpPacket();
    expect(a.check(b, 14, 27)).toBe('too-short');
    expect(a.check(b, 15, 28)).toBe('truncated');
    b[15] = 6; expect(a.check(b, 14, 28)).toBe('bad-hardware'); b[15] = 1;
    b[18] = 5; expect(a.check(b, 14, 28)).toBe('bad-hardware'); b[18] = 6;
    b[16] = 0x86; expect(a.check(b, 14, 28)).toBe('bad-protocol'); b[16] = 0x08;
    b[21] = 3; expect(a.check(b, 14, 28)).toBe('bad-op');
  });
});

describe('IPv6 and UDP views', () => {
  it('IPv6 base header fields', () => {
    const b = new Uint8Array(100);
    const s = parseIpv6('fd00::1');
    const d = parseIpv6('fd00::2');
    expect(emitIpv6(b, 0, 0xb8, 0xabcde, 20, IpProto.UDP, 7, s, 0, d, 0)).toBe(40);
    const p = new Ipv6Packet();
    expect(p.check(b, 0, 60)).toBe('ok');
    expect([p.version, p.trafficClass, p.flowLabel, p.payloadLength, p.nextHeader, p.hopLimit, p.srcOffset, p.dstOffset, p.payloadOffset])
      .toEqual([6, 0xb8, 0xabcde, 20, 17, 7, 8, 24, 40]);
    const o = new Uint8Array(16);
    p.copySrc(o); expect([...o]).toEqual([...s]);
    p.copyDst(o); expect([...o]).toEqual([...d]);
    p.trafficClass = 0x12; p.flowLabel = 0x54321; p.hopLimit = 1; p.nextHeader = 6; p.payloadLength = 2;
    expect([p.version, p.trafficClass, p.flowLabel, p.hopLimit, p.nextHeader, p.payloadLength]).toEqual([6, 0x12, 0x54321, 1, 6, 2]);
    expect(p.check(b, 0, 39)).toBe('too-short');
    p.payloadLength = 61;
    expect(p.check(b, 0, 100)).toBe('bad-total-length');
    b[0] = 0x40;
    expect(p.check(b, 0, 100)).toBe('bad-version');
  });
  it('UDP header fields and length checks', () => {
    const b = new Uint8Array(30);
    expect(emitUdp(b, 2, 40000, 8472, 20)).toBe(10);
    const u = new UdpDatagram();
    expect(u.check(b, 2, 28)).toBe('ok');
    expect([u.srcPort, u.dstPort, u.length, u.checksum, u.payloadOffset, u.payloadLength]).toEqual([40000, 8472, 20, 0, 10, 12]);
    u.fillChecksum4(1, 2);
    expect(u.verifyChecksum4(1, 2)).toBe(true);
    expect(u.verifyChecksum4(1, 3)).toBe(false);
    expect(u.check(b, 2, 19)).toBe('bad-length');
    expect(u.check(b, 2, 7)).toBe('too-short');
    u.length = 7;
    expect(u.check(b, 2, 28)).toBe('bad-length');
  });
});

describe('ICMPv4 errors (RFC 792 / RFC 1812)', () => {
  const router = ipv4ToU32('198.19.1.0');
  function udpPacket(opts = 0, payload = 100, fragWord = 0x4000, src = '198.19.1.5', dst = '198.19.9.9'): Uint8Array {
    const hl = 20 + opts;
    const b = new Uint8Array(hl + 8 + payload);
    emitIpv4(b, 0, 0, b.length, 0x1234, fragWord, 1, IpProto.UDP, ipv4ToU32(src), ipv4ToU32(dst));
    b[0] = 0x40 | (hl >>> 2);
    for (let i = 20; i < hl; i++) b[i] = 1; // NOP options
    ipv4FillChecksum(b, 0);
    emitUdp(b, hl, 5000, 53, 8 + payload);
    for (let i = hl + 8; i < b.length; i++) b[i] = i & 255;
    return b;
  }
  function parse(out: Uint8Array, n: number): { ip: Ipv4Packet; icmp: IcmpPacket } {
    const ip = new Ipv4Packet();
    const icmp = new IcmpPacket();
    expect(ip.check(out, 0, n)).toBe('ok');
    expect(icmp.check(out, ip.payloadOffset, ip.payloadLength)).toBe('ok');
    return { ip, icmp };
  }
  it('network unreachable quotes the IP header + 8 bytes', () => {
    const pkt = udpPacket();
    const out = new Uint8Array(ICMP_ERROR_MAX);
    const n = buildIcmpNetUnreachable(out, 0, pkt, 0, pkt.length, router);
    expect(n).toBe(20 + 8 + 28);
    const { ip, icmp } = parse(out, n);
    expect([ip.src, ip.dst, ip.protocol, ip.ttl, ip.tos, ip.totalLength]).toEqual([router, ipv4ToU32('198.19.1.5'), 1, 64, 0xc0, n]);
    expect([icmp.type, icmp.code, icmp.restOfHeader, icmp.isError]).toEqual([3, 0, 0, true]);
    expect([...out.subarray(28, n)]).toEqual([...pkt.subarray(0, 28)]);
  });
  it('fragmentation needed carries the next-hop MTU; options are quoted in full', () => {
    const pkt = udpPacket(12);
    const out = new Uint8Array(ICMP_ERROR_MAX);
    const n = buildIcmpFragNeeded(out, 0, pkt, 0, pkt.length, router, 1450);
    expect(n).toBe(20 + 8 + 32 + 8);
    const { icmp } = parse(out, n);
    expect([icmp.type, icmp.code, icmp.nextHopMtu, icmp.restOfHeader]).toEqual([3, 4, 1450, 1450]);
    expect([...out.subarray(28, n)]).toEqual([...pkt.subarray(0, 40)]);
  });
  it('time exceeded; short packets quote what they have', () => {
    const pkt = udpPacket(0, 0); // 28 bytes total
    const out = new Uint8Array(ICMP_ERROR_MAX);
    const n = buildIcmpTimeExceeded(out, 0, pkt, 0, pkt.length, router);
    expect(n).toBe(56);
    const { icmp } = parse(out, n);
    expect([icmp.type, icmp.code]).toEqual([11, 0]);
    const tiny = new Uint8Array(24);
    emitIpv4(tiny, 0, 0, 24, 0, 0, 1, IpProto.UDP, ipv4ToU32('198.19.1.5'), ipv4ToU32('198.19.9.9'));
    const n2 = buildIcmpTimeExceeded(out, 0, tiny, 0, 24, router);
    expect(n2).toBe(28 + 24);
  });
  it('is never sent about ICMP errors, non-first fragments, broadcast/multicast or non-host sources', () => {
    const out = new Uint8Array(ICMP_ERROR_MAX);
    // An ICMP error about an ICMP error.
    const pkt = udpPacket();
    const n = buildIcmpNetUnreachable(out, 0, pkt, 0, pkt.length, router);
    const err = Uint8Array.from(out.subarray(0, n));
    expect(icmpErrorAllowed(err, 0, n)).toBe('icmp-error');
    expect(buildIcmpTimeExceeded(out, 0, err, 0, n, router)).toBe(0);
    // ICMP echo request is fine.
    const echo = new Uint8Array(28);
    emitIpv4(echo, 0, 0, 28, 0, 0, 1, IpProto.ICMP, ipv4ToU32('198.19.1.5'), ipv4ToU32('198.19.9.9'));
    echo[20] = 8;
    expect(icmpErrorAllowed(echo, 0, 28)).toBe('ok');
    // Fragments: first is fine, later ones are not.
    expect(icmpErrorAllowed(udpPacket(0, 100, 0x2000), 0, 128)).toBe('ok');
    expect(icmpErrorAllowed(udpPacket(0, 100, 0x2000 | 10), 0, 128)).toBe('non-first-fragment');
    expect(icmpErrorAllowed(udpPacket(0, 100, 10), 0, 128)).toBe('non-first-fragment');
    expect(icmpErrorAllowed(udpPacket(0, 100, 0, '198.19.1.5', '224.0.0.1'), 0, 128)).toBe('multicast');
    expect(icmpErrorAllowed(udpPacket(0, 100, 0, '198.19.1.5', '255.255.255.255'), 0, 128)).toBe('multicast');
    expect(icmpErrorAllowed(udpPacket(0, 100, 0, '0.0.0.0'), 0, 128)).toBe('bad-source');
    expect(icmpErrorAllowed(udpPacket(0, 100, 0, '127.0.0.1'), 0, 128)).toBe('bad-source');
    expect(icmpErrorAllowed(udpPacket(0, 100, 0, '240.0.0.1'), 0, 128)).toBe('bad-source');
    expect(icmpErrorAllowed(pkt, 0, 19)).toBe('too-short');
  });
});

describe('flannel UDP mode validation', () => {
  it('accepts a bare IPv4 packet whose total length fits the datagram', () => {
    const b = new Uint8Array(200);
    emitIpv4(b, 10, 0, 84, 1, 0x4000, 64, IpProto.ICMP, ipv4ToU32('198.19.1.5'), ipv4ToU32('198.19.2.5'));
    expect(flannelUdpValidate(b, 10, 84)).toBe('ok');
    expect(flannelUdpValidate(b, 10, 100)).toBe('ok'); // trailing bytes are not part of the packet
    expect(flannelUdpValidate(b, 10, 83)).toBe('bad-total-length');
    expect(flannelUdpValidate(b, 10, 19)).toBe('too-short');
    expect(flannelUdpValidate(b, 190, 84)).toBe('truncated');
    expect(flannelUdpValidate(b, 10, 84, true)).toBe('ok');
    b[10 + 8] ^= 1;
    expect(flannelUdpValidate(b, 10, 84, true)).toBe('bad-checksum');
    b[10] = 0x60;
    expect(flannelUdpValidate(b, 10, 84)).toBe('bad-version');
    b[10] = 0x43;
    expect(flannelUdpValidate(b, 10, 84)).toBe('bad-header-length');
  });
});
