/**
 * No allocation per packet: pump millions of packets through each hot path with
 * zero-copy in-memory I/O and count the young-generation collections that happened.
 * Allocating even ~16 bytes per packet would cost dozens of scavenges here.
 */
import { describe, expect, it } from 'vitest';
import { allocDatagramSlots, allocSlots, HEADROOM, type BatchHandler, type DatagramSlot, type PacketDevice, type PacketSlot, type UdpTransport } from '../../src/tun/types.js';
import { UdpBackend, VxlanBackend, type DataplaneIo } from '../../src/vtep/index.js';
import { ipv4ToU32, parseIpv6 } from '../../src/codec/addr.js';
import { ipv4Packet, nullKernel } from './fakes.js';
import { emitVirtioTcpGso } from '../../src/codec/index.js';
import { buildPacket } from '../codec/offload-helpers.js';
import { native } from '../../src/tun/native.js';
import { scavengesDuring, warmUp } from '../helpers/alloc.js';

// as in a running daemon: the addon is loaded, so long checksums go through its primitives
native();

class NullDevice implements PacketDevice {
  handler!: BatchHandler<PacketSlot>;
  written = 0;
  constructor(readonly name: string, readonly offload = false) {}
  onBatch(h: BatchHandler<PacketSlot>): void { this.handler = h; }
  writeBatch(_s: readonly PacketSlot[], n: number): number { this.written += n; return n; }
  close(): void {}
}
class NullTransport implements UdpTransport {
  readonly kind = 'dgram' as const;
  handler!: BatchHandler<DatagramSlot>;
  /** Sends are counted in one tally shared by the receive socket and the source-port pool's. */
  constructor(private readonly tally: { sent: number }) {}
  get sent(): number { return this.tally.sent; }
  async bind(): Promise<void> {}
  localPort(): number { return 0; }
  onBatch(h: BatchHandler<DatagramSlot>): void { this.handler = h; }
  sendBatch(_s: readonly DatagramSlot[], n: number): number { this.tally.sent += n; return n; }
  sendError(): number { return 0; }
  close(): void {}
}
/** offload: honour openTun's `offload` request (default: ignore it, plain packets). */
function nullIo(offload = false): DataplaneIo & { dev?: NullDevice; tr?: NullTransport } {
  const tally = { sent: 0 };
  const io: DataplaneIo & { dev?: NullDevice; tr?: NullTransport } = {
    openTun: (n, o) => (io.dev = new NullDevice(n, offload && o?.offload === true)),
    openTap: (n) => (io.dev = new NullDevice(n)),
    // the first transport is the bound (receiving) one; the source-port pool's come after it
    createTransport: () => { const t = new NullTransport(tally); io.tr ??= t; return t; },
  };
  return io;
}

const BATCH = 64;
const ROUNDS = Number(process.env.ALLOC_ROUNDS ?? 30_000); // x 64 = 1.9M packets per path

function fill(slots: PacketSlot[], pkt: Buffer, at = HEADROOM): void {
  for (const s of slots) { pkt.copy(s.buf, at); s.off = at; s.len = pkt.length; }
}

/** Underlay addresses of us and the peer over IPv4 or IPv6, and how to mark received slots as the peer's. */
function underlay(v6: boolean): { me: string; peer: string; from: (slots: DatagramSlot[]) => void; name: string } {
  const peer = v6 ? '2001:2:0:1::2' : '198.18.0.2';
  return {
    me: v6 ? '2001:2:0:1::1' : '198.18.0.1',
    peer,
    name: v6 ? 'IPv6 underlay' : 'IPv4 underlay',
    from: (slots) => {
      for (const s of slots) {
        if (v6) { s.family = 6; s.addr6.set(parseIpv6(peer)); } else { s.family = 4; s.addr = ipv4ToU32(peer); }
      }
    },
  };
}

describe('no allocation per packet', () => {
  for (const u of [underlay(false), underlay(true)]) it(`UDP backend: TUN -> socket and socket -> TUN (${u.name})`, async () => {
    const io = nullIo();
    const b = new UdpBackend({ subnet: '198.19.1.0/24', network: '198.19.0.0/16', publicIp: u.me, io, kernel: nullKernel });
    await b.start();
    b.addPeer({ subnet: '198.19.2.0/24', publicIp: u.peer, backendType: 'udp' });
    const tx = allocSlots(BATCH, 2048);
    const txPkt = ipv4Packet('198.19.1.5', '198.19.2.7', { payload: 1000, ttl: 255 });
    fill(tx, txPkt);
    const ttl = txPkt[8]!, c0 = txPkt[10]!, c1 = txPkt[11]!;
    const rx = allocDatagramSlots(BATCH, 2048);
    fill(rx, ipv4Packet('198.19.2.7', '198.19.1.5', { payload: 1000 }));
    u.from(rx);
    const run = (): void => {
      for (let r = 0; r < ROUNDS; r++) {
        // TTL is decremented in place: restore TTL and header checksum byte by byte
        // (Buffer#copy would allocate a view per call and be charged to the dataplane)
        if ((r & 127) === 0) for (let i = 0; i < BATCH; i++) { const o = tx[i]!.buf; o[HEADROOM + 8] = ttl; o[HEADROOM + 10] = c0; o[HEADROOM + 11] = c1; }
        io.dev!.handler(tx, BATCH);
        io.tr!.handler(rx, BATCH);
      }
    };
    await warmUp(run);
    const sent0 = io.tr!.sent, written0 = io.dev!.written;
    const n = await scavengesDuring(run);
    expect(io.tr!.sent - sent0).toBe(ROUNDS * BATCH);
    expect(io.dev!.written - written0).toBe(ROUNDS * BATCH);
    expect(n).toBeLessThanOrEqual(2);
  });

  it('VXLAN L3: encapsulate and decapsulate', async () => {
    const io = nullIo();
    const b = new VxlanBackend({ subnet: '198.19.1.0/24', network: '198.19.0.0/16', publicIp: '198.18.0.1', vtepMac: '02:00:00:00:00:01', io, kernel: nullKernel });
    await b.start();
    b.addPeer({ subnet: '198.19.2.0/24', publicIp: '198.18.0.2', backendType: 'vxlan', vni: 1, vtepMac: '02:00:00:00:00:02' });
    const tx = allocSlots(BATCH, 2048);
    fill(tx, ipv4Packet('198.19.1.5', '198.19.2.7', { payload: 1000 }));
    const rx = allocDatagramSlots(BATCH, 2048);
    const inner = ipv4Packet('198.19.2.7', '198.19.1.5', { payload: 1000 });
    const frame = Buffer.concat([Buffer.from('0800000000000100' + '020000000001' + '020000000002' + '0800', 'hex'), inner]);
    fill(rx, frame);
    for (const s of rx) s.addr = ipv4ToU32('198.18.0.2');
    const run = (): void => {
      for (let r = 0; r < ROUNDS; r++) {
        io.dev!.handler(tx, BATCH);
        io.tr!.handler(rx, BATCH);
      }
    };
    await warmUp(run);
    const sent0 = io.tr!.sent, written0 = io.dev!.written;
    const n = await scavengesDuring(run);
    expect(io.tr!.sent - sent0).toBe(ROUNDS * BATCH);
    expect(io.dev!.written - written0).toBe(ROUNDS * BATCH);
    expect(n).toBeLessThanOrEqual(2);
  });

  it('VXLAN L2: flood to two peers (head-end replication) and learn on receive', async () => {
    const io = nullIo();
    const b = new VxlanBackend({ mode: 'l2', learning: true, subnet: '198.19.1.0/24', network: '198.19.0.0/16', publicIp: '198.18.0.1', vtepMac: '02:00:00:00:00:01', io, kernel: nullKernel });
    await b.start();
    b.addPeer({ subnet: '198.19.2.0/24', publicIp: '198.18.0.2', backendType: 'vxlan', vni: 1, vtepMac: '02:00:00:00:00:02' });
    b.addPeer({ subnet: '198.19.3.0/24', publicIp: '198.18.0.3', backendType: 'vxlan', vni: 1, vtepMac: '02:00:00:00:00:03' });
    const tx = allocSlots(BATCH, 2048);
    fill(tx, Buffer.concat([Buffer.from('ffffffffffff' + '020000000001' + '0800', 'hex'), Buffer.alloc(500)]));
    const rx = allocDatagramSlots(BATCH, 2048);
    fill(rx, Buffer.concat([Buffer.from('0800000000000100' + '020000000001' + '020000000002' + '0800', 'hex'), Buffer.alloc(500)]));
    for (const s of rx) s.addr = ipv4ToU32('198.18.0.2');
    const run = (): void => {
      for (let r = 0; r < ROUNDS; r++) {
        io.dev!.handler(tx, BATCH);
        io.tr!.handler(rx, BATCH);
      }
    };
    await warmUp(run);
    const sent0 = io.tr!.sent;
    const n = await scavengesDuring(run);
    expect(io.tr!.sent - sent0).toBe(2 * ROUNDS * BATCH);
    expect(n).toBeLessThanOrEqual(2);
  });

  // inner IPv4 over both underlays, and inner IPv6 (GSO_TCPV6, TCP/IPv6 coalescing) over IPv6
  for (const [u, v] of [[underlay(false), 4], [underlay(true), 4], [underlay(true), 6]] as const) it(`VXLAN L3 with offloads: segment + GSO merge, GRO split + coalesce (${u.name}, inner IPv${v})`, async () => {
    const io = nullIo(true);
    const b = new VxlanBackend({ subnet: '198.19.1.0/24', network: '198.19.0.0/16', ipv6Subnet: '2001:2:0:101::/64', ipv6Network: '2001:2:0:100::/56', publicIp: u.me, vtepMac: '02:00:00:00:00:01', io, kernel: nullKernel, offload: 'auto' });
    await b.start();
    expect(b.deviceOffload).toBe(true);
    b.addPeer({ subnet: '198.19.2.0/24', ipv6Subnet: '2001:2:0:102::/64', publicIp: u.peer, backendType: 'vxlan', vni: 1, vtepMac: '02:00:00:00:00:02' });
    const H = v === 4 ? 40 : 60; // IP + TCP headers
    const SP = 8, SEGS = 20, MSS = (u.peer.includes(':') ? 1420 : 1440) - H; // segments fit the device MTU (1430 over IPv6)
    const addrs = (src: string, dst: string) => (v === 4 ? { v, src4: ipv4ToU32(`198.19.${src}`), dst4: ipv4ToU32(`198.19.${dst}`) } : { v, src6: parseIpv6(`2001:2:0:10${src.split('.')[0]}::${src.split('.')[1]}`), dst6: parseIpv6(`2001:2:0:10${dst.split('.')[0]}::${dst.split('.')[1]}`) });
    const tx = allocSlots(SP, 65_792);
    const sp = Buffer.alloc(H + SEGS * MSS);
    buildPacket(sp, 0, { ...addrs('1.5', '2.7'), payload: new Uint8Array(SEGS * MSS), csum: 'partial' });
    fill(tx, sp);
    for (const s of tx) emitVirtioTcpGso(s.buf, HEADROOM - 10, v, H - 20, H, MSS);
    const GRO = 16;
    const rx = allocDatagramSlots(SP, 65_792);
    const frames: Buffer[] = [];
    for (let k = 0; k < GRO; k++) {
      const inner = Buffer.alloc(H + MSS);
      buildPacket(inner, 0, { ...addrs('2.7', '1.5'), seq: 1 + k * MSS, payload: new Uint8Array(MSS) });
      frames.push(Buffer.concat([Buffer.from('0800000000000100' + '020000000001' + '020000000002' + (v === 4 ? '0800' : '86dd'), 'hex'), inner]));
    }
    fill(rx, Buffer.concat(frames));
    u.from(rx);
    for (const s of rx) s.segSize = frames[0]!.length;
    const rounds = Math.ceil(ROUNDS / 4);
    const run = (): void => {
      for (let r = 0; r < rounds; r++) {
        io.dev!.handler(tx, SP);
        io.tr!.handler(rx, SP);
      }
    };
    await warmUp(run);
    const before = b.stats();
    const n = await scavengesDuring(run);
    const after = b.stats();
    expect(after.drops).toEqual({});
    expect(after.txPackets - before.txPackets).toBe(rounds * SP * SEGS);
    expect(after.rxPackets - before.rxPackets).toBe(rounds * SP * GRO);
    // the batch's 160 equal datagrams to one peer go out as gathered runs of at most 65507 bytes
    const perRun = Math.floor(65_507 / (22 + H + MSS));
    expect(after.offload.gsoSends - before.offload.gsoSends).toBe(rounds * Math.ceil((SP * SEGS) / perRun));
    expect(after.offload.coalescedWrites - before.offload.coalescedWrites).toBe(rounds * SP);
    expect(n).toBeLessThanOrEqual(2);
  });
  it('inner IPv6, UDP backend: TUN -> socket (hop limit) and socket -> TUN, and ICMPv6 errors', async () => {
    const io = nullIo();
    const b = new UdpBackend({ subnet: '198.19.1.0/24', network: '198.19.0.0/16', ipv6Subnet: '2001:2:0:101::/64', ipv6Network: '2001:2:0:100::/56', publicIp: '2001:2:0:1::1', io, kernel: nullKernel });
    await b.start();
    b.addPeer({ subnet: '198.19.2.0/24', ipv6Subnet: '2001:2:0:102::/64', publicIp: '2001:2:0:1::2', backendType: 'udp' });
    const v6 = (src: string, dst: string): Buffer => {
      const p = Buffer.alloc(40 + 60);
      buildPacket(p, 0, { v: 6, src6: parseIpv6(src), dst6: parseIpv6(dst), payload: new Uint8Array(40) });
      return p;
    };
    const tx = allocSlots(BATCH, 2048);
    fill(tx, v6('2001:2:0:101::5', '2001:2:0:102::7'));
    fill(tx.slice(BATCH - 4), v6('2001:2:0:101::5', '2001:2:0:177::7')); // no route: ICMPv6 errors
    for (const s of tx) s.buf[HEADROOM + 7] = 255;
    const rx = allocDatagramSlots(BATCH, 2048);
    fill(rx, v6('2001:2:0:102::7', '2001:2:0:101::5'));
    underlay(true).from(rx);
    const run = (): void => {
      for (let r = 0; r < ROUNDS; r++) {
        if ((r & 127) === 0) for (let i = 0; i < BATCH; i++) tx[i]!.buf[HEADROOM + 7] = 255; // the hop limit, decremented in place
        io.dev!.handler(tx, BATCH);
        io.tr!.handler(rx, BATCH);
      }
    };
    await warmUp(run);
    const sent0 = io.tr!.sent, written0 = io.dev!.written, icmp0 = b.stats();
    const n = await scavengesDuring(run);
    const icmp = b.stats();
    expect(io.tr!.sent - sent0).toBe(ROUNDS * (BATCH - 4));
    // the ICMPv6 errors over the rate limit are counted, not written
    expect(icmp.icmpSent - icmp0.icmpSent + icmp.icmpRateLimited - icmp0.icmpRateLimited).toBe(ROUNDS * 4);
    expect(icmp.icmpSent - icmp0.icmpSent).toBeGreaterThan(0);
    expect(io.dev!.written - written0).toBe(ROUNDS * BATCH + icmp.icmpSent - icmp0.icmpSent);
    expect(n).toBeLessThanOrEqual(2);
  });
});
