/**
 * `--pcap` without help from the dataplane: the backends open their device and socket
 * through a replaceable {@link DataplaneIo}; wrapping it lets overlayd see every batch
 * that crosses the tunnel device (inner packets) and the UDP socket (outer datagrams)
 * and hand each packet to a {@link PacketTap} before the dataplane touches it (device
 * reads, socket receives) or after the kernel took it (device writes, socket sends).
 *
 * Only used with --pcap; without it the backends get the plain default I/O.
 */
import type { BatchHandler, DatagramSlot, PacketDevice, PacketSlot, ReadErrorListener, UdpTransport } from '../tun/types.js';
import { AddrError, parseIp } from '../codec/addr.js';
import type { DataplaneIo } from '../vtep/index.js';
import type { PacketTap } from './pcap.js';

/** Parse a dotted quad to the uint32 form of DatagramSlot.addr (0 when not IPv4). */
/** An IPv4 address as uint32 (0 when absent or not IPv4). */
function u32(ip: string | undefined): number {
  const a = parseIp(ip ?? '', { family: 4 });
  return a instanceof AddrError ? 0 : a.v4;
}

class TappedDevice implements PacketDevice {
  constructor(private readonly dev: PacketDevice, private readonly tap: PacketTap) {}
  get name(): string {
    return this.dev.name;
  }
  /** The wrapped device's offload layout (the tap then sees super-packets, without their virtio header). */
  get offload(): boolean {
    return this.dev.offload === true;
  }
  /** The wrapped device's read errors (see PacketDevice). */
  get readErrorCounts(): Readonly<Record<string, number>> | undefined {
    return this.dev.readErrorCounts;
  }
  onReadError(listener: ReadErrorListener): () => void {
    return this.dev.onReadError?.(listener) ?? ((): void => undefined);
  }
  onBatch(handler: BatchHandler<PacketSlot>): void {
    const tap = this.tap;
    this.dev.onBatch((slots, count) => {
      for (let i = 0; i < count; i++) { const s = slots[i]!; tap.inner('out', s.buf, s.off, s.len); }
      handler(slots, count);
    });
  }
  writeBatch(slots: readonly PacketSlot[], count: number): number {
    const n = this.dev.writeBatch(slots, count);
    for (let i = 0; i < n; i++) { const s = slots[i]!; this.tap.inner('in', s.buf, s.off, s.len); }
    return n;
  }
  setPersist(on: boolean): void {
    this.dev.setPersist?.(on);
  }
  close(): void {
    this.dev.close();
  }
}

class TappedTransport implements UdpTransport {
  private local = 0;
  constructor(private readonly t: UdpTransport, private readonly tap: PacketTap, localIp: string) {
    this.local = u32(localIp);
  }
  get kind(): 'dgram' | 'mmsg' {
    return this.t.kind;
  }
  async bind(port: number, address?: string): Promise<void> {
    await this.t.bind(port, address);
    if (address && address !== '0.0.0.0') this.local = u32(address);
  }
  localPort(): number {
    return this.t.localPort();
  }
  onBatch(handler: BatchHandler<DatagramSlot>): void {
    const tap = this.tap;
    this.t.onBatch((slots, count) => {
      const lp = this.t.localPort();
      for (let i = 0; i < count; i++) {
        const s = slots[i]!;
        if (s.family === 4) this.outer('in', s, lp);
      }
      handler(slots, count);
    });
  }
  sendError(index: number): number {
    return this.t.sendError(index);
  }

  sendBatch(slots: readonly DatagramSlot[], count: number): number {
    const n = this.t.sendBatch(slots, count);
    const lp = this.t.localPort();
    for (let i = 0; i < n; i++) {
      const s = slots[i]!;
      if (s.family === 4) this.outer('out', s, lp);
    }
    return n;
  }
  /** Show one slot to the tap: a GSO/GRO run (segSize > 0) as the datagrams it stands for. */
  private outer(dir: 'in' | 'out', s: DatagramSlot, lp: number): void {
    const seg = s.segSize ?? 0;
    const step = seg > 0 ? seg : s.len;
    for (let o = 0; o < s.len; o += step) {
      this.tap.outer(dir, s.buf, s.off + o, Math.min(step, s.len - o), this.local, lp, s.addr, s.port);
    }
  }
  close(): void {
    this.t.close();
  }
}

/** Wrap `io` so every packet crossing the tunnel device or UDP socket is shown to `tap`. `localIp` is the underlay address (for the synthesized outer headers). */
export function tapIo(io: DataplaneIo, tap: PacketTap, localIp: string): DataplaneIo {
  return {
    async openTun(name, opts) {
      return new TappedDevice(await io.openTun(name, opts), tap);
    },
    async openTap(name) {
      return new TappedDevice(await io.openTap(name), tap);
    },
    createTransport(kind, opts) {
      return new TappedTransport(io.createTransport(kind, opts), tap, localIp);
    },
  };
}
