/** TUN offloads: virtio_net_hdr, segmentation (TSO/USO), coalescing (GRO), partial checksums. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  copySum, emitVirtio, emitVirtioNone, emitVirtioTcpGso, emitVirtioForInner, finishChecksum, gsoSegment, gsoSegmentStrided,
  l4ChecksumKind, onesSumSimple, SegmentInfo, TcpCoalescer, TcpFlag, VirtioFlag, VirtioGso, VirtioNetHdr,
  VIRTIO_NET_HDR_LEN, type SegmentSlot,
} from '../../src/codec/index.js';
import { buildPacket, ipVerifies, l4Verifies, layout, normalised, rd16, rd32, type TcpSpec } from './offload-helpers.js';

const SLOTS: SegmentSlot[] = Array.from({ length: 70 }, () => ({ buf: Buffer.alloc(2100), off: 0, len: 0 }));
const SLOTS2: SegmentSlot[] = Array.from({ length: 70 }, () => ({ buf: Buffer.alloc(2100), off: 0, len: 0 }));

/** Build a super-packet with its vnet header at `buf[0..10)`, packet at 10. */
function superPacket(buf: Uint8Array, s: TcpSpec, mss: number, gsoType?: number): { hdr: VirtioNetHdr; len: number } {
  const n = buildPacket(buf, VIRTIO_NET_HDR_LEN, { ...s, csum: 'partial' });
  const L = layout(buf, VIRTIO_NET_HDR_LEN);
  const udp = s.proto === 'udp';
  const gt = gsoType ?? (udp ? VirtioGso.UDP_L4 : s.v === 4 ? VirtioGso.TCPV4 : VirtioGso.TCPV6);
  const l4Hl = udp ? 8 : (buf[L.l4 + 12]! >>> 4) * 4;
  emitVirtio(buf, 0, VirtioFlag.NEEDS_CSUM, gt, L.ipHl + l4Hl, mss, L.ipHl, udp ? 6 : 16);
  const hdr = new VirtioNetHdr();
  expect(hdr.check(buf, 0, n + VIRTIO_NET_HDR_LEN)).toBe('ok');
  return { hdr, len: n };
}

function payload(n: number, seed: number): Uint8Array {
  const p = new Uint8Array(n);
  let x = seed | 1;
  for (let i = 0; i < n; i++) { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; p[i] = x & 255; }
  return p;
}

const tcpOptsArb = fc.constantFrom(
  new Uint8Array(0),
  Uint8Array.from([1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]), // NOP NOP timestamps
  Uint8Array.from([1, 1, 5, 10, 0, 0, 1, 0, 0, 0, 2, 0, 1, 1, 1, 1]), // SACK block + padding
);

describe('copySum', () => {
  it('copies exactly and sums like onesSum, any alignments, same or separate buffers', () => {
    fc.assert(fc.property(
      fc.integer({ min: 0, max: 7 }), fc.integer({ min: 0, max: 7 }), fc.integer({ min: 0, max: 3000 }),
      fc.boolean(), fc.integer({ min: 0, max: 0xfffff }),
      (so, dof, len, sameBuf, init) => {
        const src = Buffer.from(payload(len + 16, len + so));
        const big = new Uint8Array(2 * (len + 16) + 32);
        const dst = sameBuf ? big.subarray(len + 17) : new Uint8Array(len + 16);
        if (sameBuf) big.set(src.subarray(0, len + 16), 0);
        const s = sameBuf ? big.subarray(1, len + 17) : src;
        const want = onesSumSimple(s, so, len, init);
        const got = copySum(s, so, dst, dof, len, init);
        expect(got).toBe(want);
        expect(Buffer.from(dst.subarray(dof, dof + len)).equals(Buffer.from(s.subarray(so, so + len)))).toBe(true);
      }), { numRuns: 400 });
  });
});

describe('virtio_net_hdr', () => {
  const h = new VirtioNetHdr();
  const b = new Uint8Array(100);
  it('reads little-endian fields and round-trips emit', () => {
    emitVirtio(b, 0, 1, VirtioGso.TCPV4 | VirtioGso.ECN, 0x0134, 1448, 20, 16);
    expect(b.subarray(0, 10)).toEqual(Uint8Array.from([1, 0x81, 0x34, 1, 0xa8, 5, 20, 0, 16, 0]));
    expect(h.check(b, 0, 100)).toBe('hdr-len-out-of-range');
    b[3] = 0;
    expect(h.check(b, 0, 100)).toBe('ok');
    expect([h.needsCsum, h.gsoBase, h.gsoEcn, h.hdrLen, h.gsoSize, h.csumStart, h.csumOffset, h.packetOffset, h.packetLength])
      .toEqual([true, 1, true, 0x34, 1448, 20, 16, 10, 90]);
  });
  it('rejects with typed reasons', () => {
    emitVirtioNone(b, 0);
    expect(h.check(b, 0, 9)).toBe('too-short');
    expect(h.check(b, 95, 10)).toBe('truncated');
    expect(h.check(b, 0, 10)).toBe('ok');
    b[0] = 4; expect(h.check(b, 0, 50)).toBe('unknown-flags');
    emitVirtio(b, 0, 0, 2, 0, 0, 0, 0); expect(h.check(b, 0, 50)).toBe('unknown-gso-type');
    emitVirtio(b, 0, 0, 0x85, 0, 10, 0, 0); expect(h.check(b, 0, 50)).toBe('unknown-gso-type');
    emitVirtio(b, 0, 0, 0x80, 0, 0, 0, 0); expect(h.check(b, 0, 50)).toBe('unknown-gso-type');
    emitVirtio(b, 0, 1, 1, 40, 0, 20, 16); expect(h.check(b, 0, 100)).toBe('gso-without-size');
    emitVirtio(b, 0, 1, 0, 0, 0, 20, 16); expect(h.check(b, 0, 10 + 37)).toBe('csum-out-of-range');
    expect(h.check(b, 0, 10 + 38)).toBe('ok');
    emitVirtioTcpGso(b, 0, 6, 40, 60, 1440);
    expect(b[1]).toBe(VirtioGso.TCPV6);
    expect(h.check(b, 0, 70)).toBe('ok');
  });
});

describe('segmentation', () => {
  const src = Buffer.alloc(70000);

  it('TCP super-packets: each segment verifies; seq, ID, flags as Linux TSO; coalescing gives the super-packet back', () => {
    const co = new TcpCoalescer();
    const out = Buffer.alloc(70000);
    fc.assert(fc.property(
      fc.constantFrom<4 | 6>(4, 6), tcpOptsArb, fc.integer({ min: 1, max: 1460 }), fc.integer({ min: 0, max: 64 }),
      fc.integer({ min: -1, max: 1 }), fc.boolean(), fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 0xffff }),
      (v, opts, mss, k, delta, psh, seq, id) => {
        // k segments of mss plus delta (exact multiples, one byte over/under); at least 1 byte.
        let plen = Math.max(1, k * mss + delta);
        const hdrs = (v === 4 ? 20 : 40) + 20 + opts.length;
        if (plen + hdrs > 65535) plen = 65535 - hdrs;
        if (Math.ceil(plen / mss) > 64) plen = 64 * mss;
        const flags = TcpFlag.ACK | (psh ? TcpFlag.PSH : 0);
        const { hdr, len } = superPacket(src, { v, tcpOpts: opts, seq, id, flags, payload: payload(plen, seq) }, mss);
        const orig = normalised(src, 10);
        const n = gsoSegment(src, 10, len, hdr, SLOTS);
        expect(n).toBe(Math.ceil(plen / mss));
        if (typeof n !== 'number') return;
        co.reset();
        for (let i = 0; i < n; i++) {
          const s = SLOTS[i]!;
          const L = layout(s.buf, s.off);
          expect(L.ipLen).toBe(s.len);
          expect(ipVerifies(s.buf, s.off)).toBe(true);
          expect(l4Verifies(s.buf, s.off)).toBe(true);
          expect(rd32(s.buf, L.l4 + 4)).toBe((seq + i * mss) >>> 0);
          if (v === 4) expect(rd16(s.buf, s.off + 4)).toBe((id + i) & 0xffff);
          expect(s.buf[L.l4 + 13]).toBe(i === n - 1 ? flags : TcpFlag.ACK);
          expect(s.len - hdrs).toBe(i === n - 1 ? plen - (n - 1) * mss : mss);
          co.add(s.buf, s.off, s.len);
        }
        expect(co.count).toBe(1);
        const w = co.write(0, out, 0);
        expect(w).toBe(10 + len);
        const back = normalised(out, 10);
        expect(Buffer.from(back).equals(Buffer.from(orig))).toBe(true);
        if (n > 1) {
          const g = new VirtioNetHdr();
          expect(g.check(out, 0, w)).toBe('ok');
          expect([g.flags, g.gsoType, g.gsoSize, g.csumStart, g.csumOffset, g.hdrLen])
            .toEqual([VirtioFlag.NEEDS_CSUM, v === 4 ? VirtioGso.TCPV4 : VirtioGso.TCPV6, mss, hdrs - 20 - opts.length, 16, hdrs]);
          // The checksum field holds exactly the partial form already.
          expect(Buffer.from(out.subarray(10, 10 + len)).equals(Buffer.from(orig))).toBe(true);
          // And NEEDS_CSUM completion over it gives a verifying packet.
          expect(finishChecksum(out, 10, len, g)).toBe('ok');
          expect(l4Verifies(out, 10)).toBe(true);
        }
      }), { numRuns: 300 });
  });

  it('CWR only on the first segment, FIN and PSH only on the last; IPv4 options copied', () => {
    const flags = TcpFlag.ACK | TcpFlag.CWR | TcpFlag.FIN | TcpFlag.PSH;
    const { hdr, len } = superPacket(src, {
      v: 4, flags, payload: payload(3000, 5), ipOpts: Uint8Array.from([1, 1, 1, 0]),
    }, 1000, VirtioGso.TCPV4 | VirtioGso.ECN);
    expect(gsoSegment(src, 10, len, hdr, SLOTS)).toBe(3);
    const f = SLOTS.slice(0, 3).map((s) => s.buf[s.off + 24 + 13]);
    expect(f).toEqual([TcpFlag.ACK | TcpFlag.CWR, TcpFlag.ACK, TcpFlag.ACK | TcpFlag.FIN | TcpFlag.PSH]);
    for (const s of SLOTS.slice(0, 3)) {
      expect(s.buf[s.off]).toBe(0x46);
      expect(ipVerifies(s.buf, s.off) && l4Verifies(s.buf, s.off)).toBe(true);
    }
  });

  it('UDP USO: every datagram verifies and carries its length; strided layout for UDP GSO', () => {
    const info = new SegmentInfo();
    const out = Buffer.alloc(70000);
    fc.assert(fc.property(fc.constantFrom<4 | 6>(4, 6), fc.integer({ min: 1, max: 1400 }), fc.integer({ min: 1, max: 20000 }),
      fc.integer({ min: 0, max: 60 }), fc.integer({ min: 0, max: 3 }),
      (v, mss, plen, prefix, base) => {
        if (Math.ceil(plen / mss) > 64) plen = 64 * mss;
        const { hdr, len } = superPacket(src, { v, proto: 'udp', payload: payload(plen, mss) }, mss);
        const n = gsoSegmentStrided(src, 10, len, hdr, out, base, 0, prefix, info);
        expect(n).toBe(Math.ceil(plen / mss));
        const hl = (v === 4 ? 20 : 40) + 8;
        expect(info.stride).toBe(prefix + hl + Math.min(mss, plen));
        expect(info.total).toBe((info.count - 1) * info.stride + prefix + info.lastLen);
        const got = new Uint8Array(plen);
        let at = 0;
        for (let i = 0; i < info.count; i++) {
          const o = base + i * info.stride + prefix;
          const L = layout(out, o);
          expect(rd16(out, L.l4 + 4)).toBe(L.l4Len);
          expect(ipVerifies(out, o) && l4Verifies(out, o)).toBe(true);
          expect(L.ipLen).toBe(i === info.count - 1 ? info.lastLen : info.segLen);
          got.set(out.subarray(L.l4 + 8, L.l4 + L.l4Len), at);
          at += L.l4Len - 8;
        }
        expect(Buffer.from(got).equals(Buffer.from(src.subarray(10 + hl, 10 + len)))).toBe(true);
      }), { numRuns: 150 });
  });

  it('UDP: segment a USO super-packet, coalesce the datagrams (udp on): the same super-packet, GSO_UDP_L4 + NEEDS_CSUM', () => {
    const co = new TcpCoalescer();
    co.udp = true;
    const out = Buffer.alloc(70000);
    fc.assert(fc.property(fc.constantFrom<4 | 6>(4, 6), fc.integer({ min: 1, max: 1400 }), fc.integer({ min: 1, max: 30000 }),
      fc.integer({ min: 0, max: 0xffff }), (v, mss, plen, id) => {
        if (Math.ceil(plen / mss) > 64) plen = 64 * mss;
        const { hdr, len } = superPacket(src, { v, proto: 'udp', id, payload: payload(plen, mss) }, mss);
        const orig = normalised(src, 10);
        const n = gsoSegment(src, 10, len, hdr, SLOTS);
        expect(n).toBe(Math.ceil(plen / mss));
        if (typeof n !== 'number') return;
        co.reset();
        for (let i = 0; i < n; i++) co.add(SLOTS[i]!.buf, SLOTS[i]!.off, SLOTS[i]!.len);
        expect(co.count).toBe(1);
        expect(co.segments(0)).toBe(n);
        const w = co.write(0, out, 0);
        expect(w).toBe(10 + len);
        expect(Buffer.from(normalised(out, 10)).equals(Buffer.from(orig))).toBe(true);
        if (n > 1) {
          const g = new VirtioNetHdr();
          expect(g.check(out, 0, w)).toBe('ok');
          const hl = v === 4 ? 20 : 40;
          expect([g.flags, g.gsoType, g.gsoSize, g.csumStart, g.csumOffset, g.hdrLen]).toEqual([VirtioFlag.NEEDS_CSUM, VirtioGso.UDP_L4, mss, hl, 6, hl + 8]);
          // what the kernel does with it: split at gso_size again gives the same datagrams
          const again = gsoSegment(out, 10, len, g, SLOTS2);
          expect(again).toBe(n);
          for (let i = 0; i < n; i++) {
            const a = SLOTS[i]!;
            const b = SLOTS2[i]!;
            expect(Buffer.from(b.buf.subarray(b.off, b.off + b.len)).equals(Buffer.from(a.buf.subarray(a.off, a.off + a.len)))).toBe(true);
          }
        }
      }), { numRuns: 200 });
  });

  it('typed reasons', () => {
    const { hdr, len } = superPacket(src, { v: 4, payload: payload(1025 * 10, 1) }, 10); // SEGMENT_MAX_SEGMENTS + 1
    expect(gsoSegment(src, 10, len, hdr, SLOTS)).toBe('too-many-segments');
    const b = superPacket(src, { v: 4, payload: payload(5000, 1) }, 1000);
    expect(gsoSegment(src, 10, b.len, b.hdr, SLOTS.slice(0, 4))).toBe('output-too-small');
    expect(gsoSegment(src, 10, b.len, b.hdr, [{ buf: new Uint8Array(500), off: 0, len: 0 }, ...SLOTS])).toBe('output-too-small');
    const info = new SegmentInfo();
    expect(gsoSegmentStrided(src, 10, b.len, b.hdr, new Uint8Array(5000), 0, 0, 0, info)).toBe('output-too-small');
    expect(gsoSegmentStrided(src, 10, b.len, b.hdr, new Uint8Array(9000), 0, 500, 0, info)).toBe('output-too-small');
    expect(gsoSegment(src, 10, b.len - 1, b.hdr, SLOTS)).toBe('bad-header');
    const c = superPacket(src, { v: 4, payload: payload(5000, 1) }, 1000, VirtioGso.TCPV6);
    expect(gsoSegment(src, 10, c.len, c.hdr, SLOTS)).toBe('gso-type-mismatch');
    const d = superPacket(src, { v: 4, proto: 'udp', payload: payload(5000, 1) }, 1000, VirtioGso.TCPV4);
    expect(gsoSegment(src, 10, d.len, d.hdr, SLOTS)).toBe('not-tcp');
    const e = superPacket(src, { v: 6, payload: payload(5000, 1) }, 1000, VirtioGso.UDP_L4);
    expect(gsoSegment(src, 10, e.len, e.hdr, SLOTS)).toBe('not-udp');
    const f = superPacket(src, { v: 6, payload: payload(5000, 1) }, 1000, VirtioGso.UDP);
    expect(gsoSegment(src, 10, f.len, f.hdr, SLOTS)).toBe('unsupported-gso-type');
    const g = superPacket(src, { v: 4, df: false, payload: payload(5000, 1) }, 1000);
    src[10 + 6] |= 0x20; // MF
    expect(gsoSegment(src, 10, g.len, g.hdr, SLOTS)).toBe('fragment');
    emitVirtio(src, 0, 1, 0, 0, 0, 20, 16);
    const h = new VirtioNetHdr();
    expect(h.check(src, 0, g.len + 10)).toBe('ok');
    expect(gsoSegment(src, 10, g.len, h, SLOTS)).toBe('not-gso');
  });

  it('finishes a NEEDS_CSUM checksum in place (TCP, UDP, generic)', () => {
    const h = new VirtioNetHdr();
    for (const proto of ['tcp', 'udp'] as const) {
      for (const v of [4, 6] as const) {
        const n = buildPacket(src, 10, { v, proto, payload: payload(777, v), csum: 'partial' });
        const ipHl = v === 4 ? 20 : 40;
        emitVirtio(src, 0, 1, 0, 0, 0, ipHl, proto === 'tcp' ? 16 : 6);
        expect(h.check(src, 0, n + 10)).toBe('ok');
        expect(l4Verifies(src, 10)).toBe(false);
        expect(finishChecksum(src, 10, n, h)).toBe('ok');
        expect(l4Verifies(src, 10)).toBe(true);
      }
    }
    // Generic: ICMP-like payload at csum_start 20, offset 2, field holding 0.
    const n = buildPacket(src, 10, { v: 4, proto: 'udp', payload: payload(100, 3) });
    src[10 + 9] = 1; // not TCP/UDP any more
    emitVirtio(src, 0, 1, 0, 0, 0, 20, 2);
    src[10 + 22] = 0; src[10 + 23] = 0;
    expect(h.check(src, 0, n + 10)).toBe('ok');
    expect(finishChecksum(src, 10, n, h)).toBe('ok');
    expect(onesSumSimple(src, 30, n - 20)).toBe(0xffff);
  });
});

describe('partial checksum detection', () => {
  const b = Buffer.alloc(3000);
  it('full, partial, complemented partial, none, bad', () => {
    for (const v of [4, 6] as const) {
      for (const proto of ['tcp', 'udp'] as const) {
        const n = buildPacket(b, 20, { v, proto, payload: payload(500, 9) });
        expect(l4ChecksumKind(b, 20, n)).toBe('full');
        buildPacket(b, 20, { v, proto, payload: payload(500, 9), csum: 'partial' });
        expect(l4ChecksumKind(b, 20, n)).toBe('partial');
        const fo = 20 + (v === 4 ? 20 : 40) + (proto === 'tcp' ? 16 : 6);
        b[fo] ^= 0xff; b[fo + 1] ^= 0xff;
        expect(l4ChecksumKind(b, 20, n)).toBe('partial-complement');
        expect(emitVirtioForInner(b, 20, n, b, 10)).toBe('partial-complement');
        expect(l4ChecksumKind(b, 20, n)).toBe('partial'); // normalised in place
        const h = new VirtioNetHdr();
        expect(h.check(b, 10, n + 10)).toBe('ok');
        expect([h.flags, h.csumStart, h.csumOffset]).toEqual([1, v === 4 ? 20 : 40, proto === 'tcp' ? 16 : 6]);
        expect(finishChecksum(b, 20, n, h)).toBe('ok');
        expect(l4ChecksumKind(b, 20, n)).toBe('full');
        b[fo + 1] ^= 1;
        const k = l4ChecksumKind(b, 20, n);
        expect(k === 'bad').toBe(true);
        expect(emitVirtioForInner(b, 20, n, b, 10)).toBe('bad');
        expect(b.subarray(10, 20).every((x) => x === 0)).toBe(true);
      }
    }
    const n = buildPacket(b, 20, { v: 4, proto: 'udp', payload: payload(50, 9), csum: 'zero' });
    expect(l4ChecksumKind(b, 20, n)).toBe('none');
  });
});

