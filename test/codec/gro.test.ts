/** TcpCoalescer: what merges and every case that must not. */
import { describe, expect, it } from 'vitest';
import { csumFold, finishChecksum, onesSumSimple, TcpCoalescer, TcpFlag, VirtioNetHdr, WRITE_BAD_CHECKSUM } from '../../src/codec/index.js';
import { buildPacket, l4Verifies, pseudoOf, type TcpSpec } from './offload-helpers.js';

const MSS = 1000;
const OFF = 30;

interface Pkt { buf: Buffer; len: number }

/** Segment `i` of a flow: seq = 1000 + i*MSS, payload MSS bytes unless overridden. */
function seg(i: number, o: Partial<TcpSpec> = {}, size = MSS): Pkt {
  const buf = Buffer.alloc(OFF + 1600);
  const p = new Uint8Array(size);
  for (let k = 0; k < size; k++) p[k] = (i * 31 + k) & 255;
  const len = buildPacket(buf, OFF, { v: 4, seq: 1000 + i * MSS, payload: p, ...o });
  return { buf, len };
}

function fixIp(p: Pkt): Pkt {
  p.buf[OFF + 10] = 0; p.buf[OFF + 11] = 0;
  const c = ~onesSumSimple(p.buf, OFF, (p.buf[OFF]! & 15) * 4) & 0xffff;
  p.buf[OFF + 10] = c >>> 8; p.buf[OFF + 11] = c & 255;
  return p;
}

const co = new TcpCoalescer({ maxPackets: 128, maxFlows: 4 });

/** Segments per output after adding `pkts`. */
function run(pkts: Pkt[]): number[] {
  co.reset();
  for (const p of pkts) expect(co.add(p.buf, OFF, p.len)).not.toBe('full');
  return Array.from({ length: co.count }, (_, i) => co.segments(i));
}

describe('TcpCoalescer merges', () => {
  it('in-order segments of one flow, IPv4 and IPv6', () => {
    expect(run([seg(0), seg(1), seg(2)])).toEqual([3]);
    expect(run([seg(0, { v: 6 }), seg(1, { v: 6 }), seg(2, { v: 6 })])).toEqual([3]);
  });
  it('interleaved flows separately, keeping per-flow order', () => {
    const b = { sport: 40001 };
    expect(run([seg(0), seg(0, b), seg(1), seg(1, b), seg(2)])).toEqual([3, 2]);
  });
  it('a smaller last segment, a PSH last segment', () => {
    expect(run([seg(0), seg(1), seg(2, {}, 10)])).toEqual([3]);
    expect(run([seg(0), seg(1, { flags: TcpFlag.ACK | TcpFlag.PSH }), seg(2)])).toEqual([2, 1]);
    co.reset();
    co.add(seg(0).buf, OFF, seg(0).len);
    const p = seg(1, { flags: TcpFlag.ACK | TcpFlag.PSH });
    co.add(p.buf, OFF, p.len);
    const out = Buffer.alloc(70000);
    co.write(0, out, 0);
    expect(out[10 + 20 + 13]).toBe(TcpFlag.ACK | TcpFlag.PSH);
  });
  it('partial (pseudo-header) checksums, and the output completes to a valid packet', () => {
    const c = { csum: 'partial' as const };
    expect(run([seg(0, c), seg(1, c), seg(2, c)])).toEqual([3]);
    const out = Buffer.alloc(70000);
    const n = co.write(0, out, 0);
    const h = new VirtioNetHdr();
    expect(h.check(out, 0, n)).toBe('ok');
    expect(finishChecksum(out, 10, n - 10, h)).toBe('ok');
    expect(l4Verifies(out, 10)).toBe(true);
  });
});

describe('TcpCoalescer refuses', () => {
  const cases: [string, Pkt[], number[]][] = [
    ['out of order', [seg(0), seg(2), seg(1)], [1, 1, 1]],
    ['a gap', [seg(0), seg(2), seg(3)], [1, 2]],
    ['a duplicate', [seg(0), seg(1), seg(1)], [2, 1]],
    ['SYN', [seg(0), seg(1, { flags: TcpFlag.ACK | TcpFlag.SYN }), seg(2)], [1, 1, 1]],
    ['FIN', [seg(0), seg(1, { flags: TcpFlag.ACK | TcpFlag.FIN }), seg(2)], [1, 1, 1]],
    ['RST', [seg(0), seg(1, { flags: TcpFlag.ACK | TcpFlag.RST }), seg(2)], [1, 1, 1]],
    ['URG', [seg(0), seg(1, { flags: TcpFlag.ACK | TcpFlag.URG, urg: 5 }), seg(2)], [1, 1, 1]],
    ['CWR/ECE', [seg(0), seg(1, { flags: TcpFlag.ACK | TcpFlag.CWR }), seg(2, { flags: TcpFlag.ACK | TcpFlag.ECE })], [1, 1, 1]],
    ['no ACK', [seg(0), seg(1, { flags: 0 }), seg(2)], [1, 1, 1]],
    ['PSH mid-run (ends the run)', [seg(0, { flags: TcpFlag.ACK | TcpFlag.PSH }), seg(1)], [1, 1]],
    ['IPv4 options', [seg(0, { ipOpts: Uint8Array.from([1, 1, 1, 0]) }), seg(1, { ipOpts: Uint8Array.from([1, 1, 1, 0]) })], [1, 1]],
    ['fragments', [fixIp(((p) => { p.buf[OFF + 6] |= 0x20; return p; })(seg(0))), seg(1)], [1, 1]],
    ['different TTL', [seg(0), seg(1, { ttl: 63 })], [1, 1]],
    ['different ToS', [seg(0), seg(1, { tos: 4 })], [1, 1]],
    ['different DF', [seg(0), seg(1, { df: false })], [1, 1]],
    ['different IPv6 traffic class', [seg(0, { v: 6 }), seg(1, { v: 6, tos: 8 })], [1, 1]],
    ['different IPv6 flow label', [seg(0, { v: 6 }), seg(1, { v: 6, flowLabel: 7 })], [1, 1]],
    ['different hop limit', [seg(0, { v: 6 }), seg(1, { v: 6, ttl: 1 })], [1, 1]],
    ['mixed flows (ports)', [seg(0), seg(1, { dport: 1 })], [1, 1]],
    ['mixed flows (addresses)', [seg(0), seg(1, { src4: 0x0a000009 })], [1, 1]],
    ['mixed families', [seg(0), seg(1, { v: 6 })], [1, 1]],
    ['different ACK', [seg(0), seg(1, { ack: 78 })], [1, 1]],
    ['different window', [seg(0), seg(1, { win: 513 })], [1, 1]],
    ['different options', [seg(0, { tcpOpts: Uint8Array.from([1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]) }),
      seg(1, { tcpOpts: Uint8Array.from([1, 1, 8, 10, 0, 0, 0, 2, 0, 0, 0, 2]) })], [1, 1]],
    ['options vs none', [seg(0, { tcpOpts: Uint8Array.from([1, 1, 1, 1]) }), seg(1)], [1, 1]],
    ['a bad IPv4 header checksum', [seg(0), ((p) => { p.buf[OFF + 10] ^= 1; return p; })(seg(1))], [1, 1]],
    ['a larger segment after the first', [seg(0, {}, 500), seg(0.5, {}, 1000)], [1, 1]],
    ['anything after a smaller segment', [seg(0), seg(1, {}, 500), seg(1.5)], [2, 1]],
    ['pure ACKs', [seg(0, {}, 0), seg(0, {}, 0)], [1, 1]],
    ['UDP', [seg(0, { proto: 'udp' }), seg(1, { proto: 'udp' })], [1, 1]],
  ];
  for (const [name, pkts, want] of cases) {
    it(name, () => {
      expect(run(pkts)).toEqual(want);
      for (let i = 0; i < co.count; i++) if (!co.merged(i)) expect(co.outputLength(i)).toBe(10 + co.packetLen(i));
    });
  }

  it('more than 64 KB or 64 segments: the run is cut', () => {
    const big = Array.from({ length: 50 }, (_, i) => seg(i, { seq: 1000 + i * 1400 }, 1400));
    expect(run(big)).toEqual([46, 4]);
    for (let i = 0; i < co.count; i++) expect(co.outputLength(i)).toBeLessThanOrEqual(10 + 65535);
    expect(co.outputLength(0)).toBe(10 + 40 + 46 * 1400);
    const small = Array.from({ length: 70 }, (_, i) => seg(i, { seq: 1000 + i * 100 }, 100));
    expect(run(small)).toEqual([64, 6]);
  });

  for (const at of [0, 1, 3]) {
    it(`a bad TCP checksum (segment ${at} of 4): write refuses the run, runPacket gives its packets unchanged`, () => {
      const pk = [seg(0), seg(1), seg(2), seg(3)];
      pk[at]!.buf[OFF + 40 + 7] ^= 1;
      const before = pk.map((p) => Buffer.from(p.buf.subarray(OFF, OFF + p.len)));
      expect(run(pk)).toEqual([4]);
      expect(co.write(0, Buffer.alloc(5000), 0)).toBe(WRITE_BAD_CHECKSUM);
      const got: Buffer[] = [];
      for (let k = 0, p = co.runPacket(0, 0); p >= 0; p = co.runPacket(0, ++k)) {
        got.push(Buffer.from(co.pktBuf(p).subarray(co.pktOff(p), co.pktOff(p) + co.pktLen(p))));
      }
      expect(got).toEqual(before);
      // the same run with every checksum intact is written
      pk[at]!.buf[OFF + 40 + 7] ^= 1;
      run(pk);
      expect(co.write(0, Buffer.alloc(5000), 0)).toBe(co.outputLength(0));
    });
  }

  it('a partial checksum in a run is not verified (NEEDS_CSUM: the kernel finishes it)', () => {
    expect(run([seg(0), seg(1, { csum: 'partial' }), seg(2)])).toEqual([3]);
    expect(co.write(0, Buffer.alloc(5000), 0)).toBe(co.outputLength(0));
  });

  it('pass-through keeps the bytes; zero header, or NEEDS_CSUM for a partial checksum', () => {
    const bad = seg(1, { sport: 999 }); // its own flow: a one-packet output, never verified here
    bad.buf[OFF + 40 + 9] ^= 0x55;
    const syn = seg(5, { flags: TcpFlag.SYN, csum: 'partial' });
    run([seg(0), bad, syn]);
    const out = Buffer.alloc(3000);
    const h = new VirtioNetHdr();
    const n1 = co.write(1, out, 0);
    expect(out.subarray(0, 10).every((x) => x === 0)).toBe(true);
    expect(out.subarray(10, n1).equals(bad.buf.subarray(OFF, OFF + bad.len))).toBe(true);
    const n2 = co.write(2, out, 0);
    expect(h.check(out, 0, n2)).toBe('ok');
    expect([h.flags, h.gsoType, h.csumStart, h.csumOffset]).toEqual([1, 0, 20, 16]);
    // In place: header in front of the input.
    expect(co.emitHeader(2, syn.buf, OFF - 10)).toBe(OFF);
    expect(syn.buf.subarray(OFF - 10, OFF).equals(out.subarray(0, 10))).toBe(true);
    expect(co.write(0, new Uint8Array(100), 0)).toBe(-1);
  });

  it('reports full and accepts again after reset', () => {
    const c = new TcpCoalescer({ maxPackets: 2 });
    const a = seg(0);
    expect(c.add(a.buf, OFF, a.len)).toBe('started');
    const b = seg(1);
    expect(c.add(b.buf, OFF, b.len)).toBe('merged');
    expect(c.add(b.buf, OFF, b.len)).toBe('full');
    c.reset();
    expect(c.add(b.buf, OFF, b.len)).toBe('started');
  });

  it('more open flows than maxFlows: the oldest run is closed, nothing lost', () => {
    const pk: Pkt[] = [];
    for (let r = 0; r < 3; r++) for (let f = 0; f < 6; f++) pk.push(seg(r, { sport: 1000 + f }));
    const got = run(pk);
    expect(got.reduce((a, b) => a + b, 0)).toBe(18);
  });
});

describe('TcpCoalescer, UDP (udp on: the device takes USO)', () => {
  const u = (i: number, o: Partial<TcpSpec> = {}, size = MSS): Pkt => seg(i, { proto: 'udp', ...o }, size);
  const runU = (pkts: Pkt[]): number[] => {
    co.udp = true;
    try {
      return run(pkts);
    } finally {
      co.udp = false;
    }
  };
  const cases: [string, Pkt[], number[]][] = [
    ['equal datagrams of one flow merge', [u(0), u(1), u(2), u(3)], [4]],
    ['a shorter datagram ends the run', [u(0), u(1, {}, 500), u(2)], [2, 1]],
    ['a larger datagram after the first starts a new run', [u(0, {}, 500), u(1)], [1, 1]],
    ['another port: another flow', [u(0), u(1, { sport: 999 }), u(2)], [2, 1]],
    ['another TTL or ToS', [u(0), u(1, { ttl: 9 }), u(2, { tos: 4 })], [1, 1, 1]],
    ['TCP and UDP on the same ports never merge', [u(0), seg(1), u(2)], [2, 1]],
    ['no checksum (zero) and partial checksums merge', [u(0, { csum: 'zero' }), u(1, { csum: 'partial' }), u(2)], [3]],
    ['IPv4 options: passed through', [u(0, { ipOpts: Uint8Array.from([1, 1, 1, 0]) }), u(1, { ipOpts: Uint8Array.from([1, 1, 1, 0]) })], [1, 1]],
  ];
  for (const [name, pkts, want] of cases) it(name, () => expect(runU(pkts)).toEqual(want));

  for (const proto of ['udp', 'tcp'] as const) {
    it(`a complete ${proto} checksum that equals the complement of the pseudo-header sum by chance is left untouched and merged`, () => {
      // make the checksum field equal ~P: move the payload's sum so that header + payload sum to zero
      const mk = (i: number): Pkt => {
        const p = seg(i, { proto });
        const l4 = OFF + 20;
        const co = proto === 'udp' ? 6 : 16;
        const P = csumFold(pseudoOf(p.buf, OFF, p.len - 20));
        p.buf[l4 + co] = 0; p.buf[l4 + co + 1] = 0;
        const S = onesSumSimple(p.buf, l4, p.len - 20);
        // add (0xffff - S) to the last payload word (ones complement): then header + payload = 0xffff
        const w = (p.buf[OFF + p.len - 2]! << 8) | p.buf[OFF + p.len - 1]!;
        const nw = csumFold(w + ((0xffff - S) & 0xffff));
        p.buf[OFF + p.len - 2] = nw >>> 8; p.buf[OFF + p.len - 1] = nw & 255;
        const c = ~P & 0xffff;
        p.buf[l4 + co] = c >>> 8; p.buf[l4 + co + 1] = c & 255;
        expect(l4Verifies(p.buf, OFF)).toBe(true);
        return p;
      };
      const pk = [mk(0), mk(1)];
      const before = pk.map((x) => Buffer.from(x.buf));
      expect(runU(pk)).toEqual([2]);
      expect(pk.map((x) => Buffer.from(x.buf))).toEqual(before);
      expect(co.write(0, Buffer.alloc(5000), 0)).toBe(co.outputLength(0));
    });
  }

  it('udp off (the default): every datagram passes through', () => {
    expect(run([u(0), u(1), u(2)])).toEqual([1, 1, 1]);
  });

  it('a merged run: GSO_UDP_L4 header, UDP length = total, checksum field = pseudo-header sum; a bad checksum refuses the write', () => {
    const pk = [u(0), u(1), u(2, {}, 300)];
    expect(runU(pk)).toEqual([3]);
    const out = Buffer.alloc(5000);
    const n = co.write(0, out, 0);
    expect(n).toBe(10 + 20 + 8 + 2 * MSS + 300);
    const h = new VirtioNetHdr();
    expect(h.check(out, 0, n)).toBe('ok');
    expect([h.flags, h.gsoType, h.gsoSize, h.hdrLen, h.csumStart, h.csumOffset]).toEqual([1, 5, MSS, 28, 20, 6]);
    expect(out.readUInt16BE(10 + 20 + 4)).toBe(8 + 2 * MSS + 300);
    expect(finishChecksum(out, 10, n - 10, h)).toBe('ok');
    expect(l4Verifies(out, 10)).toBe(true);
    pk[1]!.buf[OFF + 28 + 5] ^= 1;
    runU(pk);
    expect(co.write(0, out, 0)).toBe(WRITE_BAD_CHECKSUM);
  });
});
