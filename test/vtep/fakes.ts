/** In-memory device, transport and kernel for pipeline unit tests. */
import { allocDatagramSlots, allocSlots, HEADROOM, OFFLOAD_SLOT_SIZE, type BatchHandler, type DatagramSlot, type DeviceOffloads, type PacketDevice, type PacketSlot, type UdpTransport } from '../../src/tun/types.js';
import type { DataplaneIo, KernelNet } from '../../src/vtep/index.js';
import { OsError } from '../../src/tun/errors.js';
import type { RouteInfo } from '../../src/tun/index.js';
import type { ReadErrorListener } from '../../src/tun/types.js';

export class FakeDevice implements PacketDevice {
  handler: BatchHandler<PacketSlot> | undefined;
  /** Written packets; with `offload` each starts with its 10-byte virtio_net_hdr. */
  written: Buffer[] = [];
  slots: PacketSlot[];
  closed = false;
  /** offload: the TunDevice offload layout (virtio_net_hdr at off - 10 both ways). */
  /** With `offload`: what the kernel accepted (USO when `uso`). */
  readonly offloads: DeviceOffloads | undefined;
  constructor(readonly name: string, readonly offload = false, uso = false) {
    this.slots = allocSlots(64, offload ? OFFLOAD_SLOT_SIZE : undefined);
    this.offloads = offload ? { csum: true, tso4: true, tso6: true, uso4: uso, uso6: uso } : undefined;
  }
  onBatch(h: BatchHandler<PacketSlot>): void { this.handler = h; }
  writeBatch(slots: readonly PacketSlot[], count: number): number {
    const h = this.offload ? 10 : 0;
    for (let i = 0; i < count; i++) this.written.push(Buffer.from(slots[i]!.buf.subarray(slots[i]!.off - h, slots[i]!.off + slots[i]!.len)));
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
  /** Deliver packets as one batch read from the device (offload: each with its virtio header, default all-zero). */
  inject(pkts: Buffer[], vnet: (Buffer | undefined)[] = []): void {
    pkts.forEach((p, i) => {
      const s = this.slots[i]!;
      s.off = HEADROOM; p.copy(s.buf, HEADROOM); s.len = p.length;
      if (this.offload) (vnet[i] ?? Buffer.alloc(10)).copy(s.buf, HEADROOM - 10);
    });
    this.handler!(this.slots, pkts.length);
  }
}

/** One send view as the transport got it (`segSize` > 0: a GSO run of datagrams). */
export interface Sent { addr: number; port: number; data: Buffer; segSize: number; family: 4 | 6; addr6: Uint8Array }

export class FakeTransport implements UdpTransport {
  readonly kind = 'dgram' as const;
  handler: BatchHandler<DatagramSlot> | undefined;
  sent: Sent[] = [];
  slots = allocDatagramSlots(64);
  port = 0;
  /** Called by bind (FakeIo: tells the bound receive socket from the source-port pool's). */
  onBind: ((t: FakeTransport, port: number) => void) | undefined;
  /** A source-port pool's transport: its sends go to this one's `sent`. */
  main: FakeTransport | undefined;
  async bind(port: number): Promise<void> { this.port = port; this.onBind?.(this, port); }
  localPort(): number { return this.port; }
  onBatch(h: BatchHandler<DatagramSlot>): void { this.handler = h; }
  sendError(): number { return 0; }
  /** Records each message: a gathered run (`parts` > 1) as one entry of its concatenated datagrams. */
  sendBatch(slots: readonly DatagramSlot[], count: number): number {
    for (let i = 0; i < count;) {
      const s = slots[i]!;
      const k = (s.segSize ?? 0) > 0 && (s.parts ?? 0) > 1 ? Math.min(s.parts!, count - i) : 1;
      const data = Buffer.concat(slots.slice(i, i + k).map((x) => x.buf.subarray(x.off, x.off + x.len)));
      (this.main ?? this).sent.push({ addr: s.addr, port: s.port, data, segSize: s.segSize ?? 0, family: s.family, addr6: Uint8Array.from(s.addr6) });
      i += k;
    }
    return count;
  }
  close(): void {}
  /** The datagrams sent, GSO runs split at their segSize. */
  datagrams(): Buffer[] {
    const out: Buffer[] = [];
    for (const s of this.sent) {
      const step = s.segSize > 0 ? s.segSize : s.data.length;
      for (let o = 0; o < s.data.length; o += step) out.push(s.data.subarray(o, Math.min(o + step, s.data.length)));
    }
    return out;
  }
  /** Deliver datagrams as one received batch (`segSize`: a UDP GRO message of several datagrams). */
  inject(dgrams: { addr: number; data: Buffer; family?: 4 | 6; addr6?: Uint8Array; segSize?: number }[]): void {
    dgrams.forEach((d, i) => {
      const s = this.slots[i]!;
      s.off = HEADROOM; d.data.copy(s.buf, HEADROOM); s.len = d.data.length; s.addr = d.addr; s.family = d.family ?? (d.addr6 ? 6 : 4); s.port = 40000;
      if (d.addr6) s.addr6.set(d.addr6);
      s.segSize = d.segSize ?? 0;
    });
    this.handler!(this.slots, dgrams.length);
  }
}

export class FakeIo implements DataplaneIo {
  dev: FakeDevice | undefined;
  tr: FakeTransport | undefined;
  /** Options the dataplane asked for. */
  asked: { tun?: { offload?: boolean }; transport?: { gro?: boolean; onGsoFallback?: (code: string) => void } } = {};
  /**
   * offload: honour `openTun(name, { offload: true })` with an offload-layout device (default:
   * ignore it, like a factory that cannot do offloads); refuseOffload: throw instead (a kernel
   * without TUNSETOFFLOAD).
   */
  constructor(readonly caps: { offload?: boolean; refuseOffload?: boolean; uso?: boolean } = {}) {}
  openTun(name: string, opts?: { offload?: boolean }): PacketDevice {
    this.asked.tun = opts;
    if (opts?.offload && this.caps.refuseOffload) throw new Error('TUNSETOFFLOAD: EINVAL');
    return (this.dev = new FakeDevice(name, opts?.offload === true && this.caps.offload === true, this.caps.uso === true));
  }
  openTap(name: string): PacketDevice { return (this.dev = new FakeDevice(name)); }
  /** The source-port pool's transports (bound to port 0); they record their sends in `tr.sent`, one log of the wire. */
  pool: FakeTransport[] = [];
  createTransport(_kind: 'dgram' | 'mmsg', opts?: { gro?: boolean; onGsoFallback?: (code: string) => void }): UdpTransport {
    this.asked.transport = opts;
    const t = new FakeTransport();
    t.onBind = (x, port) => {
      if (port === 0 && this.tr !== undefined) {
        x.main = this.tr;
        this.pool.push(x);
      } else {
        this.tr = x;
        this.pool = [];
      }
    };
    return t;
  }
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

/** A main-table route as Rtnl reads it (`gateway` absent: directly connected). */
export const mainRoute = (dst: string, oif: number, gateway?: string): RouteInfo =>
  ({ family: 4, dst, oif, table: 254, protocol: 2, scope: gateway ? 0 : 253, type: 1, onlink: false, ...(gateway ? { gateway } : {}) });

/**
 * A KernelNet that records route changes as text (`replace DST via GW dev DEV[ onlink]`,
 * `delete DST dev DEV`) and reads back `routes` and `links` as the main table.
 */
export function recordingKernel(routes: RouteInfo[], links: [string, number][]): KernelNet & { ops: string[] } {
  const ops: string[] = [];
  return {
    ops,
    async configureDevice() {},
    async replaceRoute(dst, via, dev, o) { ops.push(`replace ${dst} via ${via} dev ${dev}${o?.onlink === false ? '' : ' onlink'}`); },
    async deleteRoute(dst, dev) { ops.push(`delete ${dst} dev ${dev}`); },
    async deviceSysctl() {},
    async flush() {},
    async readRoutes() {
      return { routes, links: new Map(links) };
    },
  };
}
