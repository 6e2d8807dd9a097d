import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  checksum, csumFold, csumUpdate16, csumUpdate32, emitIpv4, IpProto, ipv4DecrementTtl, ipv4FillChecksum,
  ipv4VerifyChecksum, Ipv4Packet, onesSum, onesSumSimple, pseudoSum4, pseudoSum6, udpFillChecksum4, udpFillChecksum6,
  udpVerify4, udpVerify6, emitUdp, flannelDecrementTtl,
} from '../../src/codec/index.js';

/** Independent reference: RFC 1071 straight from bytes (one byte pair at a time, fold at the end). */
function refSum(bytes: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < bytes.length; i += 2) s += (bytes[i]! << 8) + (i + 1 < bytes.length ? bytes[i + 1]! : 0);
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 65536);
  return s;
}

describe('Internet checksum', () => {
  it('RFC 1071 section 3 example', () => {
    const b = Uint8Array.from([0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]);
    expect(onesSum(b, 0, 8)).toBe(0xddf2);
    expect(checksum(b, 0, 8)).toBe(0x220d);
  });
  it('textbook IPv4 header (checksum 0xb861)', () => {
    const h = Buffer.from('450000730000400040110000c0a80001c0a800c7', 'hex');
    expect(checksum(h, 0, 20)).toBe(0xb861);
    ipv4FillChecksum(h, 0);
    expect(h.readUInt16BE(10)).toBe(0xb861);
    expect(ipv4VerifyChecksum(h, 0)).toBe(true);
  });
  it('word path equals the reference at every alignment, length and sub-buffer offset (property)', () => {
    fc.assert(fc.property(
      fc.uint8Array({ minLength: 0, maxLength: 3000 }), fc.nat(7), fc.nat(7), fc.nat(0x3ffff),
      (data, pad, subStart, initial) => {
        const backing = new Uint8Array(data.length + pad + subStart + 8);
        const view = backing.subarray(subStart);
        view.set(data, pad);
        const want = csumFold(refSum(data) + initial);
        expect(onesSum(view, pad, data.length, initial)).toBe(want);
        expect(onesSumSimple(view, pad, data.length, initial)).toBe(want);
      },
    ), { numRuns: 3000 });
  });
  it('handles all-0xff data and large spans (accumulator folding)', () => {
    const big = new Uint8Array(9 * 1024 * 1024 + 3).fill(0xff);
    expect(onesSum(big, 1, big.length - 1)).toBe(refSum(big.subarray(1)));
    const rnd = new Uint8Array(5 * 1024 * 1024 + 1);
    for (let i = 0; i < rnd.length; i++) rnd[i] = (i * 2654435761) >>> 24;
    expect(onesSum(rnd, 0, rnd.length)).toBe(refSum(rnd));
  });
  it('any single-byte change breaks verification', () => {
    fc.assert(fc.property(fc.uint8Array({ minLength: 2, maxLength: 200 }), fc.nat(), fc.integer({ min: 1, max: 255 }), (d, at, x) => {
      const b = new Uint8Array(d.length + (d.length & 1) + 2);
      b.set(d, 2);
      const c = checksum(b, 0, b.length);
      b[0] = c >>> 8; b[1] = c & 255;
      expect(onesSum(b, 0, b.length)).toBe(0xffff);
      const i = at % b.length;
      b[i] = b[i]! ^ x;
      expect(onesSum(b, 0, b.length)).not.toBe(0xffff);
    }));
  });
});

describe('incremental update (RFC 1624)', () => {
  it('csumUpdate16/32 equal a full recomputation (property)', () => {
    fc.assert(fc.property(fc.uint8Array({ minLength: 20, maxLength: 60 }), fc.nat(), fc.integer({ min: 0, max: 0xffff }), fc.nat(), fc.integer({ min: 0, max: 0xffffffff }),
      (d, wi, nw, di, nd) => {
        const b = Uint8Array.from(d.subarray(0, d.length & ~3));
        b[0] = 0; b[1] = 0;
        let c = checksum(b, 0, b.length);
        b[0] = c >>> 8; b[1] = c & 255;
        // 16-bit word (not the checksum word itself)
        const w = 2 + 2 * (wi % ((b.length - 2) / 2));
        const old = (b[w]! << 8) | b[w + 1]!;
        b[w] = nw >>> 8; b[w + 1] = nw & 255;
        c = csumUpdate16(c, old, nw);
        b[0] = 0; b[1] = 0;
        expect(c).toBe(checksum(b, 0, b.length));
        b[0] = c >>> 8; b[1] = c & 255;
        // 32-bit aligned field
        const q = 4 + 4 * (di % ((b.length - 4) / 4));
        const old32 = ((b[q]! << 24) | (b[q + 1]! << 16) | (b[q + 2]! << 8) | b[q + 3]!) >>> 0;
        b[q] = nd >>> 24; b[q + 1] = (nd >>> 16) & 255; b[q + 2] = (nd >>> 8) & 255; b[q + 3] = nd & 255;
        c = csumUpdate32(c, old32, nd);
        b[0] = 0; b[1] = 0;
        expect(c).toBe(checksum(b, 0, b.length));
      }), { numRuns: 5000 });
  });

  it('TTL decrement equals full recomputation for every checksum value (exhaustive over the ID field)', () => {
    const h = new Uint8Array(20);
    const full = new Uint8Array(20);
    let sawZero = 0;
    let sawFeff = 0;
    for (const ttl of [2, 3, 64, 128, 255]) {
      for (const proto of [1, 17]) {
        for (let id = 0; id < 65536; id++) {
          emitIpv4(h, 0, 0, 84, id, 0x4000, ttl, proto, 0xc6130100, 0xc6130200);
          const before = (h[10]! << 8) | h[11]!;
          if (before === 0xfeff) sawFeff++;
          if (ipv4DecrementTtl(h, 0) !== 'ok') throw new Error(`ttl ${ttl}: not ok`);
          full.set(h);
          ipv4FillChecksum(full, 0);
          if (h[10] !== full[10] || h[11] !== full[11]) {
            throw new Error(`ttl ${ttl} id ${id}: incremental ${h[10]! << 8 | h[11]!} != full ${full[10]! << 8 | full[11]!}`);
          }
          if (h[10] === 0 && h[11] === 0) sawZero++;
          if (h[8] !== ttl - 1) throw new Error('ttl not decremented');
        }
      }
    }
    // The 0xFEFF -> 0x0000 edge (where a naive "+0x100" gives 0xFFFF) was exercised.
    expect(sawFeff).toBeGreaterThan(0);
    expect(sawZero).toBeGreaterThan(0);
  });

  it('TTL decrement of a random valid header (with options) equals full recomputation (property)', () => {
    fc.assert(fc.property(fc.uint8Array({ minLength: 60, maxLength: 60 }), fc.integer({ min: 5, max: 15 }), fc.integer({ min: 0, max: 255 }),
      (d, ihl, ttl) => {
        const h = Uint8Array.from(d);
        const hl = ihl * 4;
        h[0] = 0x40 | ihl;
        h[2] = 0; h[3] = 60;
        h[8] = ttl;
        ipv4FillChecksum(h, 0);
        const copy = Uint8Array.from(h);
        const r = flannelDecrementTtl(h, 0);
        if (ttl <= 1) {
          expect(r).toBe('ttl-exceeded');
          expect([...h]).toEqual([...copy]);
          return;
        }
        expect(r).toBe('ok');
        expect(h[8]).toBe(ttl - 1);
        expect(ipv4VerifyChecksum(h, 0)).toBe(true);
        const full = Uint8Array.from(h);
        ipv4FillChecksum(full, 0);
        expect([...h.subarray(0, hl)]).toEqual([...full.subarray(0, hl)]);
      }), { numRuns: 5000 });
  });

  it('matches the Linux ip_decrease_ttl() formula', () => {
    let bad = 0;
    for (let c = 0; c <= 0xffff; c++) {
      // Linux: check += htons(0x0100); check += (check >= 0xffff)  (in host terms on the BE value)
      let k = c + 0x100;
      k = (k + (k >= 0xffff ? 1 : 0)) & 0xffff;
      // TTL word 0x4011 -> 0x3f11 (any pair differing by 0x100 gives the same update)
      if (c !== 0xffff && csumUpdate16(c, 0x4011, 0x3f11) !== k) bad++;
    }
    expect(bad).toBe(0);
  });
});

describe('UDP pseudo-header checksums', () => {
  /** Independent reference: explicit pseudo-header bytes + datagram. */
  function refUdp4(src: number, dst: number, dgram: Uint8Array): number {
    const ph = [src >>> 24, (src >>> 16) & 255, (src >>> 8) & 255, src & 255, dst >>> 24, (dst >>> 16) & 255, (dst >>> 8) & 255, dst & 255,
      0, 17, dgram.length >>> 8, dgram.length & 255];
    return ~refSum([...ph, ...dgram]) & 0xffff;
  }
  function refUdp6(src: Uint8Array, dst: Uint8Array, dgram: Uint8Array): number {
    const l = dgram.length;
    const ph = [...src, ...dst, (l >>> 24) & 255, (l >>> 16) & 255, (l >>> 8) & 255, l & 255, 0, 0, 0, 17];
    return ~refSum([...ph, ...dgram]) & 0xffff;
  }
  it('IPv4 and IPv6 fill/verify agree with an explicit pseudo-header (property)', () => {
    fc.assert(fc.property(fc.uint8Array({ minLength: 0, maxLength: 1500 }), fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 0xffffffff }),
      fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.nat(3),
      (payload, src, dst, a6, off) => {
        const b = new Uint8Array(off + 8 + payload.length);
        emitUdp(b, off, 1234, 8472, 8 + payload.length);
        b.set(payload, off + 8);
        udpFillChecksum4(b, off, src, dst);
        const c4 = (b[off + 6]! << 8) | b[off + 7]!;
        const r4 = refUdp4(src, dst, Uint8Array.from(b.subarray(off)).fill(0, 6, 8));
        expect(c4).toBe(r4 === 0 ? 0xffff : r4);
        expect(udpVerify4(b, off, src, dst)).toBe(true);
        udpFillChecksum6(b, off, a6, 0, 16);
        const c6 = (b[off + 6]! << 8) | b[off + 7]!;
        const r6 = refUdp6(a6.subarray(0, 16), a6.subarray(16), Uint8Array.from(b.subarray(off)).fill(0, 6, 8));
        expect(c6).toBe(r6 === 0 ? 0xffff : r6);
        expect(udpVerify6(b, off, a6, 0, 16)).toBe(true);
        b[off + 6] = 0; b[off + 7] = 0;
        expect(udpVerify4(b, off, src, dst)).toBe(true); // zero = none over IPv4
        expect(udpVerify6(b, off, a6, 0, 16)).toBe(false); // zero invalid over IPv6
      }), { numRuns: 1000 });
  });
  it('pseudo-header sums equal explicit byte sums', () => {
    const a6 = Uint8Array.from({ length: 32 }, (_, i) => i * 7 + 1);
    const ph6 = [...a6, 0, 1, 0x23, 0x45, 0, 0, 0, 17];
    expect(csumFold(pseudoSum6(a6, 0, 16, IpProto.UDP, 0x12345))).toBe(refSum(ph6));
    expect(csumFold(pseudoSum4(0xc6120001, 0xc6120002, 17, 0x72))).toBe(0x8cab); // seen in kernel captures
  });
});

describe('IPv4 view', () => {
  it('reads and writes every field', () => {
    const b = new Uint8Array(64);
    emitIpv4(b, 4, 0xb9, 60, 0xbeef, 0x2000 | 185, 17, IpProto.TCP, 0xc6130101, 0xc6130201);
    const p = new Ipv4Packet();
    expect(p.check(b, 4, 60)).toBe('ok');
    expect([p.version, p.headerLen, p.tos, p.dscp, p.ecn, p.totalLength, p.id]).toEqual([4, 20, 0xb9, 46, 1, 60, 0xbeef]);
    expect([p.dontFragment, p.moreFragments, p.reservedFlag, p.fragOffset, p.isFragment]).toEqual([false, true, false, 185 * 8, true]);
    expect([p.ttl, p.protocol, p.src, p.dst, p.payloadOffset, p.payloadLength]).toEqual([17, 6, 0xc6130101, 0xc6130201, 24, 40]);
    p.ttl = 9; p.tos = 0; p.id = 1; p.fragWord = 0x4000; p.src = 1; p.dst = 2; p.protocol = 17; p.totalLength = 40;
    expect(p.verifyChecksum()).toBe(false);
    expect(p.check(b, 4, 60)).toBe('bad-checksum');
    p.fillChecksum();
    expect(p.check(b, 4, 60)).toBe('ok');
    expect([p.ttl, p.dontFragment, p.isFragment, p.src, p.dst, p.totalLength]).toEqual([9, true, false, 1, 2, 40]);
    expect(p.decrementTtl()).toBe('ok');
    expect(p.verifyChecksum()).toBe(true);
  });
  it('rejects with typed reasons', () => {
    const p = new Ipv4Packet();
    const b = new Uint8Array(40);
    emitIpv4(b, 0, 0, 40, 0, 0, 64, 17, 1, 2);
    expect(p.check(b, 0, 19)).toBe('too-short');
    expect(p.check(b, 0, 41)).toBe('truncated');
    expect(p.check(b, -1, 20)).toBe('truncated');
    expect(p.check(b, 0, 39)).toBe('bad-total-length');
    b[0] = 0x65; expect(p.check(b, 0, 40)).toBe('bad-version');
    b[0] = 0x44; expect(p.check(b, 0, 40)).toBe('bad-header-length');
    b[0] = 0x4f; expect(p.check(b, 0, 40)).toBe('bad-header-length');
    b[0] = 0x45; b[3] = 19; expect(p.check(b, 0, 40)).toBe('bad-total-length');
    b[3] = 40; b[12] ^= 1; expect(p.check(b, 0, 40)).toBe('bad-checksum');
    expect(p.check(b, 0, 40, false)).toBe('ok');
  });
});
