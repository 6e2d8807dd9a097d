/**
 * The core's offload stages over in-memory fakes (issue #11): the flushTx GSO merge rule, the
 * segment stage (virtio header check, TSO super-packet -> contiguous encapsulated datagrams ->
 * one GSO send), the GRO split on receive (every datagram validated; no in-place header over a
 * neighbour's bytes), the coalesce stage, and partial-checksum completion without offloads.
 */
import { describe, expect, it } from 'vitest';
import { TunnelCore } from '../../src/vtep/core.js';
import { newPeerCounters, type PeerCounters } from '../../src/vtep/counters.js';
import { UdpBackend, VxlanBackend } from '../../src/vtep/index.js';
import type { DatagramSlot } from '../../src/tun/types.js';
import { ipv4ToU32 } from '../../src/codec/addr.js';
import { emitVirtio, emitVirtioTcpGso, VirtioFlag, VirtioGso } from '../../src/codec/index.js';
import { FakeIo, ipv4Packet, nullKernel } from './fakes.js';
import { buildPacket, l4Verifies, ipVerifies } from '../codec/offload-helpers.js';

const PEER = ipv4ToU32('198.18.0.2');
const PEER_MAC = '02:00:00:00:00:02';
const A = ipv4ToU32('198.19.1.5');
const B = ipv4ToU32('198.19.2.7');

/** A core whose fromDevice queues a fixed plan of datagrams out of its own buffer. */
class Probe extends TunnelCore {
  readonly big = Buffer.alloc(70_000);
  plan: { off: number; len: number; pc: PeerCounters }[] = [];
  constructor(io: FakeIo) {
    super({ subnet: '198.19.1.0/24', network: '198.19.0.0/16', publicIp: '198.18.0.1', io, kernel: nullKernel }, 'tun', 'probe0', 9999, 28);
  }
  protected fromDevice(): void {
    for (const p of this.plan) this.sendTo(this.big, p.off, p.len, p.pc);
  }
  protected fromNetwork(_s: DatagramSlot): void {}
  protected async configureKernel(): Promise<void> {}
}

async function probe(plan: [number, number, number?][]): Promise<{ sent: { len: number; segSize: number; addr: number }[]; stats: ReturnType<Probe['stats']> }> {
  const io = new FakeIo();
  const p = new Probe(io);
  await p.start();
  const dests = new Map<number, PeerCounters>();
  const dest = (a: number): PeerCounters => { if (!dests.has(a)) dests.set(a, newPeerCounters(a)); return dests.get(a)!; };
  p.plan = plan.map(([off, len, addr]) => ({ off, len, pc: dest(addr ?? PEER) }));
  io.dev!.inject([ipv4Packet('198.19.1.5', '198.19.2.7')]);
  return { sent: io.tr!.sent.map((s) => ({ len: s.data.length, segSize: s.segSize, addr: s.addr })), stats: p.stats() };
}

/** Consecutive [off, len] runs of `lens`, starting at `at`. */
function run(at: number, lens: number[], addr?: number): [number, number, number?][] {
  const out: [number, number, number?][] = [];
  for (const l of lens) { out.push([at, l, addr]); at += l; }
  return out;
}

describe('flushTx GSO merge rule', () => {
  it('merges contiguous equal datagrams to one peer into one segSize view; counters count datagrams', async () => {
    const { sent, stats } = await probe(run(100, [1000, 1000, 1000]));
    expect(sent).toEqual([{ len: 3000, segSize: 1000, addr: PEER }]);
    expect(stats.txPackets).toBe(3);
    expect(stats.txBytes).toBe(3000);
    expect(stats.offload).toMatchObject({ gsoSends: 1, gsoSegments: 3 });
  });
  it('lets only the last be shorter', async () => {
    expect((await probe(run(0, [1000, 1000, 500]))).sent).toEqual([{ len: 2500, segSize: 1000, addr: PEER }]);
    expect((await probe(run(0, [1000, 500, 1000]))).sent.map((s) => [s.len, s.segSize])).toEqual([[1500, 1000], [1000, 0]]);
    expect((await probe(run(0, [500, 1000]))).sent.map((s) => [s.len, s.segSize])).toEqual([[500, 0], [1000, 0]]);
  });
  it('gathers datagrams that are not contiguous (packets read one by one) into one run, in queue order', async () => {
    const r = await probe([[5000, 1000], [0, 1000], [20_000, 700]]);
    expect(r.sent).toEqual([{ len: 2700, segSize: 1000, addr: PEER }]);
    expect(r.stats.offload).toMatchObject({ gsoSends: 1, gsoSegments: 3 });
  });
  it('never merges across another peer, or a single datagram', async () => {
    expect((await probe([[0, 1000], [1000, 1000, ipv4ToU32('198.18.0.3')]])).sent.map((s) => s.segSize)).toEqual([0, 0]);
    expect((await probe([[0, 1000]])).sent).toEqual([{ len: 1000, segSize: 0, addr: PEER }]);
  });
  it('caps a run at 64 datagrams and 65507 bytes', async () => {
    const r = await probe(run(0, new Array<number>(70).fill(100)));
    expect(r.sent.map((s) => [s.len, s.segSize])).toEqual([[6400, 100], [600, 100]]);
    expect(r.stats.txPackets).toBe(70);
    const b = await probe(run(0, new Array<number>(47).fill(1400)));
    expect(b.sent.map((s) => [s.len, s.segSize])).toEqual([[46 * 1400, 1400], [1400, 0]]);
  });
});

const TCP = (seq: number, payload: number, csum: 'full' | 'partial' = 'full', src4 = A, dst4 = B): Buffer => {
  const buf = Buffer.alloc(40 + payload);
  const p = new Uint8Array(payload).map((_, i) => (i * 7 + seq) & 255);
  buildPacket(buf, 0, { v: 4, src4, dst4, seq, payload: p, csum, flags: 0x10 });
  return buf;
};

function vxlanFrame(payload: Buffer): Buffer {
  const h = Buffer.alloc(22);
  h[0] = 0x08; h.writeUIntBE(1, 4, 3);
  Buffer.from([2, 0, 0, 0, 0, 1]).copy(h, 8);
  Buffer.from(PEER_MAC.split(':').map((x) => parseInt(x, 16))).copy(h, 14);
  h.writeUInt16BE(0x0800, 20);
  return Buffer.concat([h, payload]);
}

async function vtep(offload: 'auto' | 'off', io = new FakeIo({ offload: true })) {
  const b = new VxlanBackend({ subnet: '198.19.1.0/24', network: '198.19.0.0/16', publicIp: '198.18.0.1', vtepMac: '02:00:00:00:00:01', io, kernel: nullKernel, offload });
  await b.start();
  b.addPeer({ subnet: '198.19.2.0/24', publicIp: '198.18.0.2', backendType: 'vxlan', vni: 1, vtepMac: PEER_MAC });
  return { b, io, dev: io.dev!, tr: io.tr! };
}

describe('offload option', () => {
  it("'auto' opens the TUN with offloads and asks for GRO; 'off' asks for nothing", async () => {
    const on = await vtep('auto');
    expect(on.io.asked).toEqual({ tun: { offload: true }, transport: expect.objectContaining({ gro: true }) });
    expect(on.b.deviceOffload).toBe(true);
    const off = await vtep('off');
    expect(off.io.asked).toEqual({ tun: undefined, transport: undefined });
    expect(off.b.deviceOffload).toBe(false);
  });
  it('falls back to a plain TUN (logged) when the kernel refuses offloads', async () => {
    const logs: string[] = [];
    const io = new FakeIo({ offload: true, refuseOffload: true });
    const b = new UdpBackend({ subnet: '198.19.1.0/24', network: '198.19.0.0/16', publicIp: '198.18.0.1', io, kernel: nullKernel, offload: 'auto', onLog: (m) => logs.push(m) });
    await b.start();
    expect(b.deviceOffload).toBe(false);
    expect(logs[0]).toMatch(/offloads unavailable/);
  });
  it('logs a GSO fallback of the transport once', async () => {
    const logs: string[] = [];
    const io = new FakeIo({ offload: true });
    const b = new UdpBackend({ subnet: '198.19.1.0/24', network: '198.19.0.0/16', publicIp: '198.18.0.1', io, kernel: nullKernel, offload: 'auto', onLog: (m) => logs.push(m) });
    await b.start();
    const fallback = io.asked.transport!.onGsoFallback!;
    fallback('EIO');
    fallback('EIO');
    expect(logs).toEqual(['UDP GSO refused by the kernel (EIO); datagram runs are split in software']);
  });
  it('L2 mode (TAP) asks for no device offloads, only UDP GRO (and sends gathered GSO runs); offload off: nothing', async () => {
    for (const offload of ['auto', 'off'] as const) {
      const io = new FakeIo({ offload: true });
      const b = new VxlanBackend({ subnet: '198.19.1.0/24', network: '198.19.0.0/16', publicIp: '198.18.0.1', io, kernel: nullKernel, mode: 'l2', offload });
      await b.start();
      if (offload === 'auto') expect(io.asked.transport).toMatchObject({ gro: true });
      else expect(io.asked.transport).toBeUndefined();
      expect(b.deviceOffload).toBe(false);
    }
  });
});

describe('segment stage (offload TUN -> network)', () => {
  it('segments a TSO super-packet into contiguous VXLAN datagrams sent as one GSO run', async () => {
    const { b, dev, tr } = await vtep('auto');
    const sp = TCP(5000, 3 * 1000 - 200, 'partial');
    const h = Buffer.alloc(10);
    emitVirtioTcpGso(h, 0, 4, 20, 40, 1000);
    dev.inject([sp], [h]);
    expect(tr.sent).toHaveLength(1);
    expect(tr.sent[0]!.segSize).toBe(22 + 40 + 1000);
    const d = tr.datagrams();
    expect(d.map((x) => x.length)).toEqual([1062, 1062, 862]);
    d.forEach((x, i) => {
      expect(x.subarray(0, 8).toString('hex')).toBe('0800000000000100');
      expect(x.subarray(8, 22).toString('hex')).toBe('020000000002' + '020000000001' + '0800');
      const ip = x.subarray(22);
      expect(ipVerifies(ip, 0)).toBe(true);
      expect(l4Verifies(ip, 0)).toBe(true);
      expect(ip.readUInt32BE(24)).toBe(5000 + i * 1000);
      expect(ip.subarray(40).equals(sp.subarray(40 + i * 1000, 40 + Math.min((i + 1) * 1000, 2800)))).toBe(true);
    });
    expect(b.stats().offload).toMatchObject({ superPackets: 1, segmentsOut: 3, gsoSends: 1, gsoSegments: 3 });
    expect(b.stats().txPackets).toBe(3);
  });
  it('decides once per super-packet, but a first segment that went to several peers (an FDB entry with two destinations) makes every segment go the same way', async () => {
    const { b, dev, tr } = await vtep('auto');
    b.setFdb(PEER_MAC, ['198.18.0.2', '198.18.0.3']);
    const sp = TCP(7000, 2500, 'partial');
    const h = Buffer.alloc(10);
    emitVirtioTcpGso(h, 0, 4, 20, 40, 1000);
    dev.inject([sp], [h]);
    const to = (a: number): number[] => tr.sent.filter((s) => s.addr === a).flatMap((s) => {
      const out: number[] = [];
      for (let o = 0; o < s.data.length; o += s.segSize || s.data.length) out.push(s.data.readUInt32BE(o + 22 + 24));
      return out;
    });
    expect(to(PEER)).toEqual([7000, 8000, 9000]);
    expect(to(ipv4ToU32('198.18.0.3'))).toEqual([7000, 8000, 9000]);
    expect(b.stats().txPackets).toBe(6);
  });
  it('UDP backend: a USO super-packet becomes bare IPv4 datagrams (TTL decremented) in one GSO run', async () => {
    const io = new FakeIo({ offload: true });
    const b = new UdpBackend({ subnet: '198.19.1.0/24', network: '198.19.0.0/16', publicIp: '198.18.0.1', io, kernel: nullKernel, offload: 'auto' });
    await b.start();
    b.addPeer({ subnet: '198.19.2.0/24', publicIp: '198.18.0.2', backendType: 'udp' });
    const sp = Buffer.alloc(28 + 1200);
    buildPacket(sp, 0, { v: 4, src4: A, dst4: B, proto: 'udp', payload: new Uint8Array(1200).map((_, i) => i & 255), csum: 'partial' });
    const h = Buffer.alloc(10);
    emitVirtio(h, 0, VirtioFlag.NEEDS_CSUM, VirtioGso.UDP_L4, 28, 500, 20, 6);
    io.dev!.inject([sp], [h]);
    expect(io.tr!.sent.map((x) => [x.data.length, x.segSize])).toEqual([[528 + 528 + 228, 528]]);
    const d = io.tr!.datagrams();
    expect(d.map((x) => x.length)).toEqual([528, 528, 228]);
    for (const x of d) {
      expect(x[8]).toBe(63);
      expect(ipVerifies(x, 0)).toBe(true);
      expect(l4Verifies(x, 0)).toBe(true);
    }
    expect(b.stats().peers['198.18.0.2']!.txPackets).toBe(3);
  });
  it('a small-MSS flow (536: more than 64 segments per 64 KB super-packet) is segmented, then sent as several GSO runs', async () => {
    const { b, dev, tr } = await vtep('auto');
    const pay = 536 * 100;
    const sp = TCP(1, pay, 'partial');
    const h = Buffer.alloc(10);
    emitVirtioTcpGso(h, 0, 4, 20, 40, 536);
    dev.inject([sp], [h]);
    expect(b.stats().drops).toEqual({});
    const d = tr.datagrams();
    expect(d).toHaveLength(100);
    d.forEach((x, i) => {
      const ip = x.subarray(22);
      expect(l4Verifies(ip, 0)).toBe(true);
      expect(ip.readUInt32BE(24)).toBe(1 + i * 536);
    });
    expect(tr.sent.length).toBe(2); // 64 + 36: a GSO send never carries more than 64 datagrams
    expect(b.stats().offload).toMatchObject({ superPackets: 1, segmentsOut: 100, gsoSends: 2, gsoSegments: 100 });
  });
  it('finishes a NEEDS_CSUM packet, counts bad headers and unsegmentable super-packets', async () => {
    const { b, dev, tr } = await vtep('auto');
    const p = TCP(1, 100, 'partial');
    const needs = Buffer.alloc(10);
    emitVirtio(needs, 0, VirtioFlag.NEEDS_CSUM, 0, 0, 0, 20, 16);
    const bad = Buffer.from([0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // unknown flag
    const udpAsTcp = Buffer.alloc(10);
    emitVirtio(udpAsTcp, 0, VirtioFlag.NEEDS_CSUM, VirtioGso.TCPV4, 0, 1000, 20, 16);
    dev.inject([p, TCP(2, 100), ipv4Packet('198.19.1.5', '198.19.2.7', { payload: 3000 })], [needs, bad, udpAsTcp]);
    expect(tr.sent).toHaveLength(1);
    expect(l4Verifies(tr.sent[0]!.data.subarray(22), 0)).toBe(true);
    expect(b.stats().drops).toEqual({ tx_bad_virtio: 1, tx_bad_gso: 1 });
  });
});

describe('receive stage: GRO split', () => {
  it('UDP backend: splits a GRO message; each datagram validated; neighbours never overwritten', async () => {
    for (const offload of ['auto', 'off'] as const) {
      const io = new FakeIo({ offload: true });
      const b = new UdpBackend({ subnet: '198.19.1.0/24', network: '198.19.0.0/16', publicIp: '198.18.0.1', io, kernel: nullKernel, offload });
      await b.start();
      b.addPeer({ subnet: '198.19.2.0/24', publicIp: '198.18.0.2', backendType: 'udp' });
      const pk = [0, 1, 2].map((k) => ipv4Packet('198.19.2.7', `198.19.1.${5 + k}`, { payload: k === 2 ? 300 : 500, proto: 47 }));
      const spoofed = ipv4Packet('198.19.3.7', '198.19.1.5', { payload: 500, proto: 47 });
      io.tr!.inject([{ addr: PEER, data: Buffer.concat([pk[0]!, spoofed, pk[1]!, pk[2]!]), segSize: 520 }]);
      const dev = io.dev!;
      const hdr = offload === 'auto' ? 10 : 0;
      expect(dev.written.map((w) => w.subarray(hdr))).toEqual([pk[0], pk[1], pk[2]]);
      if (hdr) for (const w of dev.written) expect(w.subarray(0, 10).equals(Buffer.alloc(10))).toBe(true);
      const s = b.stats();
      expect(s.drops).toEqual({ rx_spoofed_inner_source: 1 });
      expect(s.rxPackets).toBe(3);
      expect(s.offload).toMatchObject({ groMessages: 1, groSegments: 4 });
    }
  });
  it('VXLAN: a GRO message of in-order TCP segments becomes one coalesced GSO write', async () => {
    const { b, tr, dev } = await vtep('auto');
    const segs = [0, 1, 2, 3].map((k) => vxlanFrame(TCP(1000 + k * 1000, 1000, 'partial', B, A)));
    tr.inject([{ addr: PEER, data: Buffer.concat(segs), segSize: segs[0]!.length }]);
    expect(dev.written).toHaveLength(1);
    const w = dev.written[0]!;
    expect(w[0]).toBe(VirtioFlag.NEEDS_CSUM);
    expect(w[1]).toBe(VirtioGso.TCPV4);
    expect(w.readUInt16LE(4)).toBe(1000); // gso_size
    expect(w.length).toBe(10 + 40 + 4000);
    expect(b.stats().offload).toMatchObject({ coalescedWrites: 1, coalescedSegments: 4, groMessages: 1, groSegments: 4 });
    expect(b.stats().rxPackets).toBe(4);
    expect(b.stats().rxBytes).toBe(4 * 1040);
  });
  it('VXLAN: a run with a bad TCP checksum is written packet by packet (zero headers), counted once as a fallback', async () => {
    const { b, tr, dev } = await vtep('auto');
    const inner = [0, 1, 2, 3].map((k) => TCP(1000 + k * 1000, 1000, 'full', B, A));
    inner[2]![40 + 100] ^= 0x40; // corrupt a payload byte: its checksum no longer verifies
    const segs = inner.map(vxlanFrame);
    tr.inject([{ addr: PEER, data: Buffer.concat(segs), segSize: segs[0]!.length }]);
    expect(dev.written.map((w) => w.subarray(10))).toEqual(inner);
    for (const w of dev.written) expect(w.subarray(0, 10).equals(Buffer.alloc(10))).toBe(true);
    const s = b.stats();
    expect(s.offload).toMatchObject({ coalescedWrites: 0, coalesceCsumFallbacks: 1, groSegments: 4 });
    expect(s.rxPackets).toBe(4);
    expect(s.rxBytes).toBe(4 * 1040);
    // the same segments intact are one coalesced write
    inner[2]![40 + 100] ^= 0x40;
    dev.written.length = 0;
    tr.inject([{ addr: PEER, data: Buffer.concat(inner.map(vxlanFrame)), segSize: segs[0]!.length }]);
    expect(dev.written).toHaveLength(1);
    expect(b.stats().offload).toMatchObject({ coalescedWrites: 1, coalescedSegments: 4, coalesceCsumFallbacks: 1 });
  });
  it('VXLAN, a TUN with USO: a GRO message of one UDP flow becomes one GSO_UDP_L4 write; without USO, one write each', async () => {
    for (const uso of [true, false]) {
      const { b, tr, dev } = await vtep('auto', new FakeIo({ offload: true, uso }));
      const inner = [0, 1, 2, 3].map((k) => {
        const x = Buffer.alloc(28 + (k === 3 ? 200 : 1000));
        buildPacket(x, 0, { v: 4, src4: B, dst4: A, proto: 'udp', id: 7 + k, payload: new Uint8Array(x.length - 28).fill(k) });
        return x;
      });
      const frames = inner.map(vxlanFrame);
      tr.inject([{ addr: PEER, data: Buffer.concat(frames), segSize: frames[0]!.length }]);
      const s = b.stats();
      expect(s.rxPackets).toBe(4);
      expect(s.rxBytes).toBe(inner.reduce((a, x) => a + x.length, 0));
      if (!uso) {
        expect(dev.written.map((w) => w.subarray(10))).toEqual(inner);
        continue;
      }
      expect(dev.written).toHaveLength(1);
      const w = dev.written[0]!;
      expect([w[0], w[1], w.readUInt16LE(4)]).toEqual([VirtioFlag.NEEDS_CSUM, VirtioGso.UDP_L4, 1000]);
      expect(w.length).toBe(10 + 28 + 3 * 1000 + 200);
      expect(s.offload).toMatchObject({ coalescedWrites: 1, coalescedSegments: 4 });
    }
  });
  it('VXLAN: a lone partial-checksum packet gets NEEDS_CSUM in place', async () => {
    const { tr, dev } = await vtep('auto');
    tr.inject([{ addr: PEER, data: vxlanFrame(TCP(1, 100, 'partial', B, A)) }]);
    expect(dev.written).toHaveLength(1);
    const w = dev.written[0]!;
    expect([w[0], w[1], w.readUInt16LE(6), w.readUInt16LE(8)]).toEqual([VirtioFlag.NEEDS_CSUM, 0, 20, 16]);
  });
  it('VXLAN: an inner TCP packet over the MTU is written as a GSO super-packet (MTU-sized gso_size)', async () => {
    const { b, tr, dev } = await vtep('auto');
    tr.inject([{ addr: PEER, data: vxlanFrame(TCP(1, 4000, 'partial', B, A)) }]);
    const w = dev.written[0]!;
    expect([w[0], w[1], w.readUInt16LE(4)]).toEqual([VirtioFlag.NEEDS_CSUM, VirtioGso.TCPV4, 1450 - 40]);
    expect(b.stats().offload.rxSuperPackets).toBe(1);
  });
});

describe('no device offloads: partial checksums', () => {
  it('finishes a partial inner TCP checksum before the write; leaves complete ones alone', async () => {
    const { b, tr, dev } = await vtep('off');
    const full = TCP(7, 300, 'full', B, A);
    tr.inject([{ addr: PEER, data: vxlanFrame(TCP(1, 300, 'partial', B, A)) }, { addr: PEER, data: vxlanFrame(full) }]);
    expect(dev.written).toHaveLength(2);
    expect(l4Verifies(dev.written[0]!, 0)).toBe(true);
    expect(dev.written[1]!.equals(full)).toBe(true);
    expect(b.stats().offload.csumFinished).toBe(1);
  });
});
