/**
 * The addon's checksum primitives (installed behind src/codec's onesSum/copySum when src/tun
 * loads the addon) agree with the TypeScript versions, for every length, offset and initial
 * value, including odd lengths, unaligned offsets and ranges outside the array.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  copySum, copySumRangesTs, copySumTs, installChecksum, onesSum, onesSumRangesTs, onesSumTs, RANGE_STRIDE,
} from '../../src/codec/checksum.js';
import { native } from '../../src/tun/native.js';

describe('native checksum primitives agree with the TypeScript ones', () => {
  const n = native();
  it('onesSum: same folded sum (property)', () => {
    fc.assert(fc.property(fc.uint8Array({ minLength: 0, maxLength: 70_000 }), fc.nat(), fc.nat(), fc.integer({ min: 0, max: 0x3ffff }), (b, o, l, init) => {
      const off = b.length === 0 ? 0 : o % (b.length + 1);
      const len = (b.length - off) === 0 ? 0 : l % (b.length - off + 1);
      expect(n.csumOnes(b, off, len, init)).toBe(onesSumTs(b, off, len, init));
    }), { numRuns: 400 });
    // all zero stays 0; all ones folds to 0xffff
    expect(n.csumOnes(new Uint8Array(1000), 0, 1000, 0)).toBe(0);
    expect(n.csumOnes(new Uint8Array(1000).fill(255), 0, 1000, 0)).toBe(onesSumTs(new Uint8Array(1000).fill(255), 0, 1000, 0));
  });
  it('copySum: same sum and the same bytes copied (property), from a Buffer view at any byteOffset', () => {
    fc.assert(fc.property(fc.uint8Array({ minLength: 1, maxLength: 20_000 }), fc.nat(7), fc.nat(7), fc.integer({ min: 0, max: 0xffff }), (b, so, dof, init) => {
      const src = Buffer.alloc(b.length + 8).subarray(so);
      src.set(b.subarray(0, src.length));
      const len = Math.min(b.length, src.length);
      const d1 = new Uint8Array(len + 8);
      const d2 = new Uint8Array(len + 8);
      const r1 = n.csumCopy(src, 0, d1, dof, len, init);
      const r2 = copySumTs(src, 0, d2, dof, len, init);
      expect(r1).toBe(r2);
      expect(Buffer.from(d1).equals(Buffer.from(d2))).toBe(true);
    }), { numRuns: 300 });
  });
  it('range lists: the same sums and bytes as the TypeScript versions (property); -1 and nothing written for a range outside', () => {
    const range = fc.record({ so: fc.nat(3000), dof: fc.nat(3000), len: fc.nat(1600), init: fc.integer({ min: 0, max: 0x7fffffff }) });
    fc.assert(fc.property(fc.uint8Array({ minLength: 0, maxLength: 5000 }), fc.array(range, { maxLength: 70 }), fc.boolean(), (b, rs, oob) => {
      const dstLen = 5000;
      const fits = rs.filter((r) => r.so + r.len <= b.length && r.dof + r.len <= dstLen);
      const list = oob && rs.length > fits.length ? rs : fits;
      const mk = (): Int32Array => {
        const d = new Int32Array(list.length * RANGE_STRIDE);
        list.forEach((r, k) => d.set([r.so, r.dof, r.len, r.init], k * RANGE_STRIDE));
        return d;
      };
      const d1 = mk();
      const d2 = mk();
      expect(n.csumOnesRanges(b, d1, list.length)).toBe(onesSumRangesTs(b, d2, list.length));
      expect(d1).toEqual(d2);
      const c1 = mk();
      const c2 = mk();
      const o1 = new Uint8Array(dstLen);
      const o2 = new Uint8Array(dstLen);
      const r1 = n.csumCopyRanges(b, o1, c1, list.length);
      expect(r1).toBe(copySumRangesTs(b, o2, c2, list.length));
      expect(r1).toBe(list === fits ? list.length : -1);
      expect(c1).toEqual(c2);
      expect(Buffer.from(o1).equals(Buffer.from(o2))).toBe(true);
      if (r1 === -1) expect(o1.every((x) => x === 0)).toBe(true);
    }), { numRuns: 300 });
    expect(n.CSUM_RANGE_STRIDE).toBe(RANGE_STRIDE);
    // a range list shorter than n ranges, or not an Int32Array, is refused
    expect(n.csumOnesRanges(new Uint8Array(10), new Int32Array(4), 2)).toBe(-1);
    expect(n.csumOnesRanges(new Uint8Array(10), new Uint32Array(4) as unknown as Int32Array, 1)).toBe(-1);
  });
  it('refuses ranges outside the array (-1) and the dispatcher then uses the TypeScript version', () => {
    const b = new Uint8Array(300);
    expect(n.csumOnes(b, 100, 201, 0)).toBe(-1);
    expect(n.csumCopy(b, 0, new Uint8Array(10), 0, 300, 0)).toBe(-1);
    const prev = installChecksum(undefined);
    try {
      const big = new Uint8Array(5000).map((_, i) => (i * 7) & 255);
      const ts = onesSum(big, 3, 4000, 5);
      installChecksum(prev);
      expect(onesSum(big, 3, 4000, 5)).toBe(ts);
      const d = new Uint8Array(5000);
      expect(copySum(big, 1, d, 2, 4000, 9)).toBe(copySumTs(big, 1, new Uint8Array(5000), 2, 4000, 9));
    } finally {
      installChecksum(prev);
    }
  });
});
