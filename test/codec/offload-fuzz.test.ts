/**
 * Fuzz the offload code: mutated super-packets and virtio headers into the header check,
 * the segmenter (slots and strided), checksum completion and classification, and mutated
 * segment streams into the coalescer. Nothing may throw or return an unknown result; a
 * second pass wraps inputs in a Proxy that throws on any index outside the array.
 */
import { describe, expect, it } from 'vitest';
import {
  emitVirtio, emitVirtioForInner, finishChecksum, gsoSegment, gsoSegmentStrided, l4ChecksumKind, SegmentInfo, WRITE_BAD_CHECKSUM,
  TcpCoalescer, VirtioFlag, VirtioGso, VirtioNetHdr, type SegmentSlot,
} from '../../src/codec/index.js';
import { buildPacket, layout } from './offload-helpers.js';

let rs = 0x2545f491;
function rnd(): number { rs ^= rs << 13; rs ^= rs >>> 17; rs ^= rs << 5; return rs >>> 0; }
function rint(n: number): number { return rnd() % n; }

const SEG_REASONS = new Set(['not-gso', 'unsupported-gso-type', 'bad-header', 'fragment', 'ipv6-extension', 'not-tcp',
  'not-udp', 'gso-type-mismatch', 'too-many-segments', 'output-too-small']);
const HDR_REASONS = new Set(['ok', 'truncated', 'too-short', 'unknown-flags', 'unknown-gso-type', 'gso-without-size',
  'csum-out-of-range', 'hdr-len-out-of-range']);
const KINDS = new Set(['full', 'partial', 'partial-complement', 'none', 'bad', 'bad-header', 'fragment', 'ipv6-extension',
  'not-tcp-udp', 'other']);

function strict(b: Uint8Array): Uint8Array {
  return new Proxy(b, {
    get(t, p) {
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

/** Seed super-packets with their vnet header at 0. */
function seeds(): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const v of [4, 6] as const) {
    for (const proto of ['tcp', 'udp'] as const) {
      const b = new Uint8Array(3200);
      const p = new Uint8Array(2000 + v * 7).map((_, i) => i * 7);
      const n = buildPacket(b, 10, { v, proto, payload: p, csum: 'partial',
        tcpOpts: proto === 'tcp' ? Uint8Array.from([1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]) : undefined });
      const L = layout(b, 10);
      const gt = proto === 'udp' ? VirtioGso.UDP_L4 : v === 4 ? VirtioGso.TCPV4 : VirtioGso.TCPV6;
      emitVirtio(b, 0, VirtioFlag.NEEDS_CSUM, gt, L.ipHl + (proto === 'udp' ? 8 : 32), 300 + v, L.ipHl, proto === 'udp' ? 6 : 16);
      out.push(b.slice(0, 10 + n));
    }
  }
  return out;
}

function mutate(s: Uint8Array): { b: Uint8Array; len: number } {
  const b = new Uint8Array(s.length + 8);
  b.set(s);
  let len = s.length;
  const k = rint(6);
  for (let j = 0; j < 1 + rint(4); j++) {
    if (k === 0) b[rint(10)] = rnd() & 255; // header byte
    else if (k === 1) b[rint(90)] = rnd() & 255; // IP / L4 header byte
    else if (k === 2) b[rint(len)] ^= 1 << rint(8);
    else if (k === 3) len = rint(len + 1);
    else if (k === 4) len = Math.min(b.length, len + rint(9));
    else b[10 + [2, 3, 4, 5, 0, 12, 20 + 12, 40 + 12, 24, 44][rint(10)]!] = rnd() & 255; // length-ish fields
  }
  return { b, len };
}

const SEEDS = seeds();
const slots: SegmentSlot[] = Array.from({ length: 64 }, () => ({ buf: new Uint8Array(1600), off: 8, len: 0 }));
const strided = new Uint8Array(64 * 1700);
const info = new SegmentInfo();
const hdr = new VirtioNetHdr();
const co = new TcpCoalescer({ maxPackets: 16, maxFlows: 2 });
const out = new Uint8Array(70000);

function one(b: Uint8Array, len: number): void {
  const r = hdr.check(b, 0, len);
  expect(HDR_REASONS.has(r)).toBe(true);
  if (r === 'ok') {
    const n = gsoSegment(b, 10, len - 10, hdr, slots, info);
    expect(typeof n === 'number' ? n >= 1 && n <= 64 : SEG_REASONS.has(n)).toBe(true);
    if (typeof n === 'number') for (let i = 0; i < n; i++) expect(slots[i]!.len).toBeGreaterThan(0);
    const m = gsoSegmentStrided(b, 10, len - 10, hdr, strided, 3, 0, 24, info);
    expect(typeof m === 'number' ? m === info.count && info.total <= strided.length : SEG_REASONS.has(m)).toBe(true);
    expect(finishChecksum(b, 10, len - 10, hdr)).toMatch(/^(ok|csum-out-of-range)$/);
  }
  if (len >= 10) {
    expect(KINDS.has(l4ChecksumKind(b, 10, len - 10))).toBe(true);
    expect(KINDS.has(emitVirtioForInner(b, 10, len - 10, b, 0))).toBe(true);
  }
}

describe('offload fuzz', () => {
  it('segmenter, header check and checksum helpers on 30k mutated super-packets', () => {
    for (let i = 0; i < 30_000; i++) {
      const { b, len } = mutate(SEEDS[i % SEEDS.length]!);
      one(b, len);
    }
  });

  it('random bytes', () => {
    for (let i = 0; i < 20_000; i++) {
      const b = new Uint8Array(rint(200));
      for (let j = 0; j < b.length; j++) b[j] = rnd() & 255;
      if (b.length > 10) b[10] = (rint(2) ? 0x45 : 0x60) | (b[10]! & 15);
      one(b, b.length);
    }
  });

  it('coalescer on 10k batches of mutated segment streams', () => {
    // Segment each seed once to get valid streams, then mutate the segments.
    const streams: Uint8Array[][] = [];
    for (const s of SEEDS) {
      const b = s.slice();
      expect(hdr.check(b, 0, b.length)).toBe('ok');
      const n = gsoSegment(b, 10, b.length - 10, hdr, slots);
      if (typeof n !== 'number') continue;
      streams.push(slots.slice(0, n).map((x) => x.buf.slice(x.off, x.off + x.len)));
    }
    expect(streams.length).toBe(4);
    for (let i = 0; i < 10_000; i++) {
      const st = streams[i % streams.length]!;
      co.reset();
      const useStrict = i % 10 === 0;
      for (let j = 0; j < st.length; j++) {
        const { b, len } = rint(3) === 0 ? mutate(st[j]!) : { b: st[j]!.slice(), len: st[j]!.length };
        const r = co.add(useStrict ? strict(b) : b, 0, len);
        expect(['merged', 'started', 'passthrough', 'full']).toContain(r);
      }
      let segs = 0;
      for (let k = 0; k < co.count; k++) {
        segs += co.segments(k);
        const w = co.write(k, out, 0);
        if (w === WRITE_BAD_CHECKSUM) {
          // a mutated segment failed its checksum: the run's packets are all there, in order
          expect(co.merged(k)).toBe(true);
          let m = 0;
          while (co.runPacket(k, m) >= 0) m++;
          expect(m).toBe(co.segments(k));
          continue;
        }
        expect(w).toBe(co.outputLength(k));
        expect(hdr.check(out, 0, w)).toBe('ok');
      }
      expect(segs).toBe(Math.min(st.length, 16));
    }
  });

  it('strict Proxy pass: no out-of-range index', () => {
    for (let i = 0; i < 4_000; i++) {
      const { b, len } = mutate(SEEDS[i % SEEDS.length]!);
      one(strict(b), len);
    }
  });
});
