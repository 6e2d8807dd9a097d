/** In-memory device, transport and kernel for pipeline unit tests. */
import { allocDatagramSlots, allocSlots, HEADROOM, type BatchHandler, type DatagramSlot, type PacketDevice, type PacketSlot, type UdpTransport } from '../../src/tun/types.js';
import type { DataplaneIo, KernelNet } from '../../src/vtep/index.js';
import { OsError } from '../../src/tun/errors.js';
import type { ReadErrorListener } from '../../src/tun/types.js';

export class FakeDevice implements PacketDevice {
  handler: BatchHandler<PacketSlot> | undefined;
  written: Buffer[] = [];
  slots = allocSlots(64);
  closed = false;
  constructor(readonly name: string) {}
  onBatch(h: BatchHandler<PacketSlot>): void { this.handler = h; }
  writeBatch(slots: readonly PacketSlot[], count: number): number {
    for (let i = 0; i < count; i++) this.written.push(Buffer.from(slots[i]!.buf.subarray(slots[i]!.off, slots[i]!.off + slots[i]!.len)));
    return count;
  }
  close(): void { this.closed = true; }
  readErrorCounts: Record<string, number> = {};
  private errListener: ReadErrorListener | undefined;
  onReadError(l: ReadErrorListener): () => void { this.errListener = l; return () => { this.errListener = undefined; }; }
  /** Simulate a read error with errno name `code`. */
  failRead(code: string): void {
    this.readErrorCounts[code] = (this.readErrorCounts[code] ?? 0) + 1;
    this.errListener?.(new OsError(5, `read ${this.name}`));
  }
  /** Deliver packets as one batch read from the device. */
  inject(pkts: Buffer[]): void {
    pkts.forEach((p, i) => { const s = this.slots[i]!; s.off = HEADROOM; p.copy(s.buf, HEADROOM); s.len = p.length; });
    this.handler!(this.slots, pkts.length);
  }
}

export interface Sent { addr: number; port: number; data: Buffer }

export class FakeTransport implements UdpTransport {
  readonly kind = 'dgram' as const;
  handler: BatchHandler<DatagramSlot> | undefined;
  sent: Sent[] = [];
  slots = allocDatagramSlots(64);
  port = 0;
  async bind(port: number): Promise<void> { this.port = port; }
  localPort(): number { return this.port; }
  onBatch(h: BatchHandler<DatagramSlot>): void { this.handler = h; }
  sendError(): number { return 0; }
  sendBatch(slots: readonly DatagramSlot[], count: number): number {
    for (let i = 0; i < count; i++) {
      const s = slots[i]!;
      this.sent.push({ addr: s.addr, port: s.port, data: Buffer.from(s.buf.subarray(s.off, s.off + s.len)) });
    }
    return count;
  }
  close(): void {}
  /** Deliver datagrams as one received batch. */
  inject(dgrams: { addr: number; data: Buffer; family?: 4 | 6 }[]): void {
    dgrams.forEach((d, i) => {
      const s = this.slots[i]!;
      s.off = HEADROOM; d.data.copy(s.buf, HEADROOM); s.len = d.data.length; s.addr = d.addr; s.family = d.family ?? 4; s.port = 40000;
    });
    this.handler!(this.slots, dgrams.length);
  }
}

export class FakeIo implements DataplaneIo {
  dev: FakeDevice | undefined;
  tr: FakeTransport | undefined;
  openTun(name: string): PacketDevice { return (this.dev = new FakeDevice(name)); }
  openTap(name: string): PacketDevice { return (this.dev = new FakeDevice(name)); }
  createTransport(): UdpTransport { return (this.tr = new FakeTransport()); }
}

export const nullKernel: KernelNet = {
  async configureDevice() {},
  async replaceRoute() {},
  async deleteRoute() {},
  async deviceSysctl() {},
  async flush() {},
};

/** Internet checksum. */
export function csum(b: Buffer): number {
  let s = 0;
  for (let i = 0; i + 1 < b.length; i += 2) s += b.readUInt16BE(i);
  if (b.length & 1) s += b[b.length - 1]! << 8;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

function ip4(s: string): number[] { return s.split('.').map(Number); }

/** Build an IPv4/UDP packet with valid header checksum. */
export function ipv4Packet(src: string, dst: string, opts: { ttl?: number; df?: boolean; payload?: number; proto?: number; fragOff?: number } = {}): Buffer {
  const payload = opts.payload ?? 32;
  const b = Buffer.alloc(20 + payload);
  b[0] = 0x45; b.writeUInt16BE(b.length, 2); b.writeUInt16BE(0x1234, 4);
  b.writeUInt16BE((opts.df ? 0x4000 : 0) | (opts.fragOff ?? 0), 6);
  b[8] = opts.ttl ?? 64; b[9] = opts.proto ?? 17;
  Buffer.from(ip4(src)).copy(b, 12); Buffer.from(ip4(dst)).copy(b, 16);
  b.writeUInt16BE(csum(b.subarray(0, 20)), 10);
  for (let i = 20; i < b.length; i++) b[i] = i & 0xff;
  return b;
}
