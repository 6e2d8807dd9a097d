/**
 * Zero allocation for the offload hot paths: segmenting a super-packet (slots and strided),
 * and coalescing its segments back (add + write) must not grow V8's new space.
 */
import v8 from 'node:v8';
import { describe, expect, it } from 'vitest';
import {
  emitVirtio, gsoSegment, gsoSegmentStrided, SegmentInfo, TcpCoalescer, VirtioFlag, VirtioGso, VirtioNetHdr,
  type SegmentSlot,
} from '../../src/codec/index.js';
import { buildPacket, layout } from './offload-helpers.js';

function newSpace(): number {
  return v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')!.space_used_size;
}

/** New-space growth over `n` runs after warming up; also prints ns/op. */
function measure(name: string, n: number, body: (n: number) => number): number {
  body(n >> 2);
  body(n >> 2);
  const a = newSpace();
  const t = process.hrtime.bigint();
  const r = body(n);
  const ns = Number(process.hrtime.bigint() - t) / n;
  const b = newSpace();
  expect(r).not.toBe(0.5);
  console.log(`${name}: ${ns.toFixed(0)} ns/op`);
  return b - a;
}

describe('offload zero allocation', () => {
  const src = Buffer.alloc(70000);
  const plen = 9000;
  const n = buildPacket(src, 10, { v: 4, payload: new Uint8Array(plen).fill(7), csum: 'partial',
    tcpOpts: Uint8Array.from([1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]) });
  const L = layout(src, 10);
  emitVirtio(src, 0, VirtioFlag.NEEDS_CSUM, VirtioGso.TCPV4, L.ipHl + 32, 1448, L.ipHl, 16);
  const hdr = new VirtioNetHdr();
  expect(hdr.check(src, 0, n + 10)).toBe('ok');
  const slots: SegmentSlot[] = Array.from({ length: 64 }, () => ({ buf: Buffer.alloc(2048), off: 96, len: 0 }));
  const info = new SegmentInfo();
  const strided = Buffer.alloc(64 * 1600);
  const co = new TcpCoalescer();
  const out = Buffer.alloc(70000);

  it(`segment a ${plen}-byte TCP super-packet into MSS 1448 slots`, () => {
    const d = measure('gsoSegment 9000B/1448', 20_000, (k) => {
      let s = 0;
      for (let i = 0; i < k; i++) {
        src[10 + 52 + (i & 1023)] = i & 255;
        const r = gsoSegment(src, 10, n, hdr, slots, info);
        if (typeof r === 'number') s = (s + r) | 0;
      }
      return s;
    });
    expect(d).toBeGreaterThanOrEqual(0);
    expect(d).toBeLessThan(64 * 1024);
  });

  it('segment strided for UDP GSO', () => {
    const d = measure('gsoSegmentStrided 9000B/1448', 20_000, (k) => {
      let s = 0;
      for (let i = 0; i < k; i++) {
        const r = gsoSegmentStrided(src, 10, n, hdr, strided, 0, 0, 50, info);
        if (typeof r === 'number') s = (s + info.total) | 0;
      }
      return s;
    });
    expect(d).toBeGreaterThanOrEqual(0);
    expect(d).toBeLessThan(64 * 1024);
  });

  it('coalesce the segments back (add + write)', () => {
    const cnt = gsoSegment(src, 10, n, hdr, slots, info) as number;
    expect(cnt).toBe(7);
    const d = measure('coalesce 7 segs + write', 20_000, (k) => {
      let s = 0;
      for (let i = 0; i < k; i++) {
        co.reset();
        for (let j = 0; j < cnt; j++) co.add(slots[j]!.buf, slots[j]!.off, slots[j]!.len);
        for (let j = 0; j < co.count; j++) s = (s + co.write(j, out, 0)) | 0;
      }
      return s;
    });
    expect(co.count).toBe(1);
    expect(d).toBeGreaterThanOrEqual(0);
    expect(d).toBeLessThan(64 * 1024);
  });
});
