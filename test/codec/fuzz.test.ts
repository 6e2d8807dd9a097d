/**
 * Fuzz: >= 1,000,000 random and mutated buffers (bit flips, byte overwrites, truncation,
 * extension, length-field corruption, odd offsets) through every parser. No parser may
 * throw, return an unknown reason, or expose NaN/undefined in any field after 'ok'.
 *
 * Typed arrays return `undefined` past the end instead of throwing, and bit operations
 * turn that into 0, hiding over-reads. So a second pass runs the parsers over buffers
 * wrapped in a Proxy that throws on any index read outside the array.
 */
import { describe, expect, it } from 'vitest';
import {
  ArpPacket, buildArpRequest, buildIcmpError, buildIcmpNetUnreachable, emitEthernet, emitEthernetVlan, emitIpv4, emitUdp,
  EthernetFrame, flannelUdpValidate, icmpErrorAllowed, IcmpPacket, innerFlowHash, ipv4Check, ipv4DecrementTtl,
  Ipv4Packet, ipv4VerifyChecksum, Ipv6Packet, parseIpv6, UdpDatagram, VxlanDecapResult, vxlanDecapFrame,
  vxlanDecapOptions, vxlanDecapSocket, vxlanEncapFull, vxlanEncapSocket, VxlanHeader, vxlanTunnel, ICMP_ERROR_MAX, IpProto,
  EtherType, ipv6Check, udpCheck, onesSum, onesSumSimple,
} from '../../src/codec/index.js';
import { HEADROOM } from '../../src/tun/types.js';

// ---- deterministic PRNG (xorshift32) ----
let rs = 0x9e3779b9;
function rnd(): number {
  rs ^= rs << 13; rs ^= rs >>> 17; rs ^= rs << 5;
  return rs >>> 0;
}
function rint(n: number): number { return rnd() % n; }

// ---- seed packets ----
function seeds(): { name: string; bytes: Uint8Array; lenFields: number[] }[] {
  const out: { name: string; bytes: Uint8Array; lenFields: number[] }[] = [];
  const innerIp = (buf: Uint8Array, o: number, payload: number): number => {
    emitEthernet(buf, o, 0x0ac613010000, 0x0ac613020000, EtherType.IPv4);
    emitIpv4(buf, o + 14, 0, 28 + payload, 7, 0x4000, 64, IpProto.UDP, 0xc6130105, 0xc6130205);
    emitUdp(buf, o + 34, 40000, 53, 8 + payload);
    for (let i = 0; i < payload; i++) buf[o + 42 + i] = i * 13;
    return 42 + payload;
  };
  for (const family of [4, 6] as const) {
    for (const gbp of [false, true]) {
      const b = new Uint8Array(HEADROOM + 200);
      const n = innerIp(b, HEADROOM, 40 + (gbp ? 3 : 0));
      const t = vxlanTunnel({ family, srcIp: 0xc6120001, dstIp: 0xc6120002, srcMac: 2, dstMac: 3, gbp, gbpId: 0x1234,
        src6: parseIpv6('fd00::1'), dst6: parseIpv6('fd00::2') });
      const s = vxlanEncapFull(b, HEADROOM, n, t);
      const ipOff = 14;
      out.push({ name: `vxlan${family}${gbp ? '-gbp' : ''}`, bytes: b.slice(s, HEADROOM + n),
        lenFields: family === 4 ? [ipOff + 2, ipOff + 20 + 4, 14 + 50 + 2 + 14, ipOff, 50 + 14] : [ipOff + 4, ipOff + 40 + 4, 70 + 14 + 2] });
    }
  }
  { // 802.1Q-tagged outer
    const b = new Uint8Array(HEADROOM + 200);
    const n = innerIp(b, HEADROOM, 20);
    const s = vxlanEncapFull(b, HEADROOM, n, vxlanTunnel({ srcIp: 1, dstIp: 2 }));
    const f = new Uint8Array(HEADROOM + n - s + 4);
    emitEthernetVlan(f, 0, 3, 2, 100, EtherType.IPv4);
    f.set(b.subarray(s + 14, HEADROOM + n), 18);
    out.push({ name: 'vxlan-vlan', bytes: f, lenFields: [18 + 2, 18 + 24, 12] });
  }
  { // socket payload
    const b = new Uint8Array(HEADROOM + 200);
    const n = innerIp(b, HEADROOM, 30);
    const s = vxlanEncapSocket(b, HEADROOM, 4242);
    out.push({ name: 'socket', bytes: b.slice(s, HEADROOM + n), lenFields: [8 + 14 + 2, 8 + 34 + 4] });
  }
  { // ARP
    const b = new Uint8Array(42);
    buildArpRequest(b, 0, 0x0ac613020000, 0xc6130200, 0xc6130100);
    out.push({ name: 'arp', bytes: b, lenFields: [18, 19] });
  }
  { // flannel bare IPv4 with options, ICMP echo
    const b = new Uint8Array(24 + 8 + 56);
    emitIpv4(b, 0, 0, b.length, 1, 0, 64, IpProto.ICMP, 0xc6130105, 0xc6130205);
    b[0] = 0x46; b[20] = 1; b[21] = 1; b[22] = 1; b[23] = 0;
    b[10] = 0; b[11] = 0;
    const c = ~onesSumSimple(b, 0, 24) & 0xffff; b[10] = c >>> 8; b[11] = c & 255;
    b[24] = 8;
    const ic = ~onesSum(b, 24, b.length - 24) & 0xffff; b[26] = ic >>> 8; b[27] = ic & 255;
    out.push({ name: 'flannel-ipv4', bytes: b, lenFields: [0, 2, 3] });
  }
  { // ICMP error packet
    const pkt = new Uint8Array(100);
    emitIpv4(pkt, 0, 0, 100, 1, 0, 1, IpProto.UDP, 0xc6130105, 0xc6130205);
    emitUdp(pkt, 20, 1, 2, 80);
    const b = new Uint8Array(ICMP_ERROR_MAX);
    const n = buildIcmpNetUnreachable(b, 0, pkt, 0, 100, 0xc6130100);
    out.push({ name: 'icmp-error', bytes: b.slice(0, n), lenFields: [2, 28 + 2, 0, 28] });
  }
  return out;
}

// ---- field validation ----
let bad = '';
function num(v: unknown, what: string): void {
  if (typeof v !== 'number' || !Number.isInteger(v)) { if (!bad) bad = `${what} = ${String(v)}`; }
}
function bool(v: unknown, what: string): void {
  if (typeof v !== 'boolean') { if (!bad) bad = `${what} = ${String(v)}`; }
}
function reason(r: string, allowed: ReadonlySet<string>, what: string): void {
  if (!allowed.has(r)) { if (!bad) bad = `${what} returned unknown "${r}"`; }
}
const R_ETH = new Set(['ok', 'too-short', 'truncated']);
const R_ARP = new Set(['ok', 'too-short', 'truncated', 'bad-hardware', 'bad-protocol', 'bad-op']);
const R_IP4 = new Set(['ok', 'too-short', 'truncated', 'bad-version', 'bad-header-length', 'bad-total-length', 'bad-checksum']);
const R_IP6 = new Set(['ok', 'too-short', 'truncated', 'bad-version', 'bad-total-length']);
const R_UDP = new Set(['ok', 'too-short', 'truncated', 'bad-length', 'bad-checksum']);
const R_ICMP = new Set(['ok', 'too-short', 'truncated', 'bad-checksum']);
const R_VX = new Set(['ok', 'too-short', 'truncated', 'bad-flags', 'unexpected-vni']);
const R_DECAP = new Set(['ok', 'too-short', 'truncated', 'bad-ethertype', 'bad-version', 'bad-header-length', 'bad-total-length',
  'bad-ip-checksum', 'fragment', 'not-udp', 'bad-udp-length', 'bad-udp-checksum', 'bad-port', 'bad-flags', 'unexpected-vni', 'inner-too-short']);
const R_SUPP = new Set(['ok', 'too-short', 'truncated', 'bad-version', 'bad-header-length', 'bad-total-length', 'icmp-error',
  'non-first-fragment', 'bad-source', 'multicast']);

const eth = new EthernetFrame();
const arp = new ArpPacket();
const ip4 = new Ipv4Packet();
const ip6 = new Ipv6Packet();
const udp = new UdpDatagram();
const icmp = new IcmpPacket();
const vx = new VxlanHeader();
const res = new VxlanDecapResult();
const icmpOut = new Uint8Array(ICMP_ERROR_MAX);
const ttlScratch = new Uint8Array(2048);
const optsAny = vxlanDecapOptions({ vni: -1, port: -1, gbp: true, verifyUdpChecksum: true, allowZeroChecksum6: false });
const optsStrict = vxlanDecapOptions({ vni: 1, port: 8472, gbp: false });

let lastDecap = '';

function checkDecap(r: string, b: Uint8Array, off: number, len: number, what: string): void {
  reason(r, R_DECAP, what);
  if (r !== 'ok') return;
  for (const k of ['off', 'len', 'vni', 'gbpId', 'gbpFlags', 'family', 'outerSrcMac', 'outerDstMac', 'outerSrcIp', 'outerDstIp',
    'outerSrc6Off', 'outerDst6Off', 'srcPort', 'dstPort', 'ttl', 'tos'] as const) num(res[k], `${what}.${k}`);
  bool(res.gbp, `${what}.gbp`);
  if (res.off < off || res.off + res.len > off + len || res.len < 14) { if (!bad) bad = `${what}: inner frame outside input`; }
}

/** Run every parser over `b[off..off+len)` (and natural sub-offsets). `mutable`: may run in-place mutators. */
function runAll(b: Uint8Array, off: number, len: number, mutable: boolean): void {
  let r: string;
  r = eth.check(b, off, len); reason(r, R_ETH, 'eth');
  if (r === 'ok') {
    num(eth.dst, 'eth.dst'); num(eth.src, 'eth.src'); num(eth.etherType, 'eth.etherType'); num(eth.vlanTci, 'eth.vlanTci');
    num(eth.vlanId, 'eth.vlanId'); num(eth.vlanPcp, 'eth.vlanPcp'); num(eth.payloadOffset, 'eth.payloadOffset');
    num(eth.payloadLength, 'eth.payloadLength'); bool(eth.hasVlan, 'eth.hasVlan');
    const po = eth.payloadOffset;
    const pl = eth.payloadLength;
    r = arp.check(b, po, pl); reason(r, R_ARP, 'arp');
    if (r === 'ok') { num(arp.op, 'arp.op'); num(arp.sha, 'arp.sha'); num(arp.spa, 'arp.spa'); num(arp.tha, 'arp.tha'); num(arp.tpa, 'arp.tpa'); }
    runIp(b, po, pl, mutable);
  }
  runIp(b, off, len, mutable);
  r = vx.check(b, off, len, (len & 1) === 1 ? 1 : -1); reason(r, R_VX, 'vxlan');
  if (r === 'ok') { num(vx.vni, 'vx.vni'); num(vx.flags, 'vx.flags'); num(vx.gbpId, 'vx.gbpId'); bool(vx.hasGbp, 'vx.hasGbp'); bool(vx.gbpDontLearn, 'vx.D'); bool(vx.gbpApplied, 'vx.A'); }
  checkDecap(vxlanDecapSocket(b, off, len, -1, res, true), b, off, len, 'decapSocket');
  lastDecap = vxlanDecapFrame(b, off, len, optsAny, res);
  checkDecap(lastDecap, b, off, len, 'decapFrame');
  if (!mutable) { // extra option variants on the (slower) Proxy pass
    checkDecap(vxlanDecapSocket(b, off, len, 4242, res, false), b, off, len, 'decapSocket4242');
    checkDecap(vxlanDecapFrame(b, off, len, optsStrict, res), b, off, len, 'decapFrameStrict');
  }
  r = flannelUdpValidate(b, off, len, true); reason(r, R_IP4, 'flannel');
  num(innerFlowHash(b, off, len), 'innerFlowHash');
}

function runIp(b: Uint8Array, off: number, len: number, mutable: boolean): void {
  let r: string = ip4.check(b, off, len, false); reason(r, R_IP4, 'ipv4');
  if (r === 'ok') {
    for (const k of ['version', 'headerLen', 'tos', 'dscp', 'ecn', 'totalLength', 'id', 'fragWord', 'fragOffset', 'ttl', 'protocol', 'checksum', 'src', 'dst', 'payloadOffset', 'payloadLength'] as const) num(ip4[k], `ipv4.${k}`);
    for (const k of ['dontFragment', 'moreFragments', 'reservedFlag', 'isFragment'] as const) bool(ip4[k], `ipv4.${k}`);
    bool(ip4.verifyChecksum(), 'ipv4.verifyChecksum');
    const po = ip4.payloadOffset;
    const pl = ip4.payloadLength;
    r = udp.check(b, po, pl); reason(r, R_UDP, 'udp');
    if (r === 'ok') {
      for (const k of ['srcPort', 'dstPort', 'length', 'checksum', 'payloadOffset', 'payloadLength'] as const) num(udp[k], `udp.${k}`);
      bool(udp.verifyChecksum4(ip4.src, ip4.dst), 'udp.verify4');
      r = vx.check(b, udp.payloadOffset, udp.payloadLength); reason(r, R_VX, 'vxlan@udp');
    }
    r = icmp.check(b, po, pl); reason(r, R_ICMP, 'icmp');
    if (r === 'ok') {
      for (const k of ['type', 'code', 'checksum', 'restOfHeader', 'nextHopMtu', 'identifier', 'sequence', 'payloadOffset'] as const) num(icmp[k], `icmp.${k}`);
      bool(icmp.isError, 'icmp.isError');
    }
    r = icmpErrorAllowed(b, off, len); reason(r, R_SUPP, 'icmpErrorAllowed');
    const n = buildIcmpError(icmpOut, 0, b, off, len, 11, 0, 0, 0xc6130100);
    num(n, 'buildIcmpError');
    if ((n === 0) !== (r !== 'ok')) { if (!bad) bad = 'buildIcmpError disagrees with icmpErrorAllowed'; }
    if (n > 0 && (ipv4Check(icmpOut, 0, n) !== 'ok' || !ipv4VerifyChecksum(icmpOut, 0) || icmp.check(icmpOut, 20, n - 20) !== 'ok')) {
      if (!bad) bad = 'built ICMP error does not parse';
    }
    if (mutable && ip4.verifyChecksum() && ip4.totalLength <= ttlScratch.length) {
      const hl = ip4.headerLen;
      for (let i = 0; i < hl; i++) ttlScratch[i] = b[off + i]!;
      const t = ttlScratch[8]!;
      const tr = ipv4DecrementTtl(ttlScratch, 0);
      if (tr === 'ok' ? !ipv4VerifyChecksum(ttlScratch, 0) || ttlScratch[8] !== t - 1 : t > 1) { if (!bad) bad = 'ipv4DecrementTtl broke the checksum'; }
    }
  }
  r = ip6.check(b, off, len); reason(r, R_IP6, 'ipv6');
  if (r === 'ok') {
    for (const k of ['version', 'trafficClass', 'flowLabel', 'payloadLength', 'nextHeader', 'hopLimit', 'srcOffset', 'dstOffset', 'payloadOffset'] as const) num(ip6[k], `ipv6.${k}`);
    r = udpCheck(b, ip6.payloadOffset, ip6.payloadLength); reason(r, R_UDP, 'udp6');
    if (r === 'ok') bool(udp.check(b, ip6.payloadOffset, ip6.payloadLength) === 'ok' && udp.verifyChecksum6(b, ip6.srcOffset, ip6.dstOffset), 'udp.verify6');
  }
  reason(ipv6Check(b, off, len), R_IP6, 'ipv6Check');
}

// ---- mutation ----
const SEEDS = seeds();
const work = new Uint8Array(4096);

/** Produce a mutated or random buffer; returns its exact-size view plus the (off, len) to parse. */
function next(): { b: Uint8Array; off: number; len: number } {
  const mode = rint(16);
  let n: number;
  if (mode === 0) {
    n = rint(200);
    for (let i = 0; i < n; i++) work[i] = rnd() & 255;
  } else {
    const s = SEEDS[rint(SEEDS.length)]!;
    n = s.bytes.length;
    work.set(s.bytes, 0);
    const k = 1 + rint(3);
    for (let j = 0; j < k; j++) {
      const m = rint(7);
      if (m === 0) { const p = rint(n); work[p] = work[p]! ^ (1 << rint(8)); } // bit flip
      else if (m === 1) { work[rint(n)] = rnd() & 255; } // byte overwrite
      else if (m === 2) { n = rint(n + 1); } // truncate
      else if (m === 3) { const add = rint(64); for (let i = 0; i < add; i++) work[n + i] = rnd() & 255; n += add; } // extend
      else if (m === 4 || m === 5) { // corrupt a length/version field
        const f = s.lenFields[rint(s.lenFields.length)]!;
        const v = rint(4) === 0 ? 0 : rint(4) === 0 ? 0xff : rnd() & 255;
        if (f < n) work[f] = v;
        if (rint(2) === 0 && f + 1 < n) work[f + 1] = rnd() & 255;
      } else if (n > 0) { // duplicate a byte run (shifts headers)
        const p = rint(n);
        work.copyWithin(p + 1, p, n);
        n = Math.min(n + 1, work.length);
      }
    }
  }
  const b = work.subarray(0, n);
  let off = 0;
  let len = n;
  const o = rint(32);
  if (o === 0) { off = rint(n + 2); len = n - off; }
  else if (o === 1) { len = n + 1 + rint(8); }
  else if (o === 2) { off = -1 - rint(3); }
  else if (o === 3) { off = 0.5; }
  else if (o === 4) { len = Number.NaN; }
  else if (o === 5) { off = rint(n + 1); len = rint(n + 1); }
  return { b, off, len };
}

/** A Uint8Array view that throws on any out-of-range index read or write. */
function strict(b: Uint8Array): Uint8Array {
  return new Proxy(b, {
    get(t, p, _r) {
      if (typeof p === 'string' && /^-?\d+$/.test(p)) {
        const i = Number(p);
        if (i < 0 || i >= t.length) throw new RangeError(`read past end: [${i}] of ${t.length}`);
        return t[i];
      }
      const v = Reflect.get(t, p, t) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v;
    },
    set(t, p, v) {
      if (typeof p === 'string' && /^-?\d+$/.test(p)) {
        const i = Number(p);
        if (i < 0 || i >= t.length) throw new RangeError(`write past end: [${i}] of ${t.length}`);
        t[i] = v as number;
        return true;
      }
      return Reflect.set(t, p, v, t);
    },
  });
}

describe('fuzz', () => {
  it('seeds are valid packets (the fuzzer starts from real traffic)', () => {
    for (const s of SEEDS) {
      bad = '';
      runAll(s.bytes, 0, s.bytes.length, true);
      expect(bad).toBe('');
    }
    const r = new VxlanDecapResult();
    expect(vxlanDecapFrame(SEEDS[0]!.bytes, 0, SEEDS[0]!.bytes.length, optsStrict, r)).toBe('ok');
    expect(flannelUdpValidate(SEEDS.find((s) => s.name === 'flannel-ipv4')!.bytes, 0, 88, true)).toBe('ok');
  });

  it('1,000,000 random and mutated buffers through every parser: no throw, no NaN/undefined, known reasons', () => {
    const N = 1_000_000;
    bad = '';
    let oks = 0;
    for (let i = 0; i < N; i++) {
      const { b, off, len } = next();
      try {
        runAll(b, off, len, true);
      } catch (e) {
        throw new Error(`iteration ${i}: ${(e as Error).message}; off=${off} len=${len} buf=${Buffer.from(b).toString('hex')}`);
      }
      if (bad) throw new Error(`iteration ${i}: ${bad}; off=${off} len=${len} buf=${Buffer.from(b).toString('hex')}`);
      if (lastDecap === 'ok') oks++;
    }
    // The mutations keep a good share of packets valid, so the post-'ok' paths are exercised.
    expect(oks).toBeGreaterThan(N / 50);
  }, 60_000);

  it('no parser reads or writes outside the array (bounds-trapping Proxy, 25,000 buffers)', () => {
    bad = '';
    for (let i = 0; i < 25_000; i++) {
      const { b, off, len } = next();
      const copy = Uint8Array.from(b);
      try {
        runAll(strict(copy), off, len, false);
      } catch (e) {
        throw new Error(`iteration ${i}: ${(e as Error).message}; off=${off} len=${len} buf=${Buffer.from(b).toString('hex')}`);
      }
      if (bad) throw new Error(`iteration ${i}: ${bad}`);
    }
  }, 60_000);

  it('the Proxy trap does catch an over-read (the test can fail)', () => {
    const b = strict(new Uint8Array(4));
    expect(() => b[4]).toThrow(RangeError);
    expect(() => innerFlowHash(strict(new Uint8Array(14)), 0, 15)).not.toThrow(); // bounds-checked: hashes nothing
  });
});
