/**
 * Zero allocation for the offload hot paths: segmenting a super-packet (slots and strided),
 * and coalescing its segments back (add + write) must not grow V8's new space.
 */
import { describe, expect, it } from 'vitest';
import {
  emitVirtio, gsoSegment, gsoSegmentStrided, SegmentInfo, TcpCoalescer, VirtioFlag, VirtioGso, VirtioNetHdr,
  type SegmentSlot,
} from '../../src/codec/index.js';
import { buildPacket, layout } from './offload-helpers.js';
import { youngAllocation } from '../helpers/alloc.js';

/** No young-generation allocation over `n` runs of `body` after warming up (see test/helpers/alloc.ts); also prints ns/op. */
async function expectNoAllocation(name: string, n: number, body: (n: number) => number): Promise<void> {
  let r = 0;
  let ns = 0;
  const a = await youngAllocation(() => {
    const t = process.hrtime.bigint();
    r = body(n);
    ns = Number(process.hrtime.bigint() - t) / n;
  }, () => { r = body(n >> 2); });
  expect(r).not.toBe(0.5);
  console.log(`${name}: ${ns.toFixed(0)} ns/op`);
  expect(a.scavenges, `scavenges in the warm-up rounds: ${a.warmUp.join(' ')}`).toBe(0);
  if (a.growth !== undefined) expect(a.growth).toBeLessThan(64 * 1024);
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

  it(`segment a ${plen}-byte TCP super-packet into MSS 1448 slots`, async () => {
    await expectNoAllocation('gsoSegment 9000B/1448', 20_000, (k) => {
      let s = 0;
      for (let i = 0; i < k; i++) {
        src[10 + 52 + (i & 1023)] = i & 255;
        const r = gsoSegment(src, 10, n, hdr, slots, info);
        if (typeof r === 'number') s = (s + r) | 0;
      }
      return s;
    });
  });

  it('segment strided for UDP GSO', async () => {
    await expectNoAllocation('gsoSegmentStrided 9000B/1448', 20_000, (k) => {
      let s = 0;
      for (let i = 0; i < k; i++) {
        const r = gsoSegmentStrided(src, 10, n, hdr, strided, 0, 0, 50, info);
        if (typeof r === 'number') s = (s + info.total) | 0;
      }
      return s;
    });
  });

  it('coalesce the segments back (add + write)', async () => {
    const cnt = gsoSegment(src, 10, n, hdr, slots, info) as number;
    expect(cnt).toBe(7);
    await expectNoAllocation('coalesce 7 segs + write', 20_000, (k) => {
      let s = 0;
      for (let i = 0; i < k; i++) {
        co.reset();
        for (let j = 0; j < cnt; j++) co.add(slots[j]!.buf, slots[j]!.off, slots[j]!.len);
        for (let j = 0; j < co.count; j++) s = (s + co.write(j, out, 0)) | 0;
      }
      return s;
    });
    expect(co.count).toBe(1);
  });
});
