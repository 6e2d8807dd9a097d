/**
 * Private fallback UDP transport over node:dgram, used only when src/tun does not
 * (yet) export `createTransport`. Received datagrams are copied into preallocated
 * slots and delivered in batches (one per event-loop turn); sends copy into a fresh
 * Buffer because node:dgram may queue the send past the caller's slot reuse.
 */
import { createSocket, type Socket } from 'node:dgram';
import { allocDatagramSlots, HEADROOM, type BatchHandler, type DatagramSlot, type UdpTransport } from '../tun/types.js';
import { ipv4ToU32, u32ToIpv4 } from '../codec/addr.js';

/** node:dgram transport (fallback). */
export class FallbackDgramTransport implements UdpTransport {
  readonly kind = 'dgram' as const;
  private readonly sock: Socket = createSocket({ type: 'udp4', recvBufferSize: 4 << 20, sendBufferSize: 4 << 20 });
  private readonly slots = allocDatagramSlots(64);
  private n = 0;
  private scheduled = false;
  private handler: BatchHandler<DatagramSlot> | undefined;
  private readonly addrCache = new Map<number, string>();
  private port = 0;
  private closed = false;

  bind(port: number, address?: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.sock.once('error', reject);
      this.sock.bind(port, address ?? '0.0.0.0', () => {
        this.sock.off('error', reject);
        this.sock.on('error', () => undefined);
        this.port = this.sock.address().port;
        try { this.sock.setRecvBufferSize(4 << 20); this.sock.setSendBufferSize(4 << 20); } catch { /* best effort */ }
        resolve();
      });
    });
  }

  localPort(): number {
    return this.port;
  }

  onBatch(handler: BatchHandler<DatagramSlot>): void {
    this.handler = handler;
    this.sock.on('message', (msg, rinfo) => {
      if (this.closed) return;
      const s = this.slots[this.n]!;
      const len = Math.min(msg.length, s.buf.length - HEADROOM);
      msg.copy(s.buf, HEADROOM, 0, len);
      s.off = HEADROOM;
      s.len = len;
      s.family = 4;
      s.addr = rinfo.family === 'IPv4' ? ipv4ToU32(rinfo.address) : 0;
      if (rinfo.family !== 'IPv4') s.family = 6;
      s.port = rinfo.port;
      this.n++;
      if (this.n === this.slots.length) this.flush();
      else if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(this.flush);
      }
    });
  }

  private readonly flush = (): void => {
    this.scheduled = false;
    const n = this.n;
    this.n = 0;
    if (n > 0 && this.handler) this.handler(this.slots, n);
  };

  sendBatch(slots: readonly DatagramSlot[], count: number): number {
    if (this.closed) return 0;
    for (let i = 0; i < count; i++) {
      const s = slots[i]!;
      let a = this.addrCache.get(s.addr);
      if (a === undefined) {
        a = u32ToIpv4(s.addr);
        if (this.addrCache.size > 1024) this.addrCache.clear();
        this.addrCache.set(s.addr, a);
      }
      this.sock.send(Buffer.from(s.buf.subarray(s.off, s.off + s.len)), s.port, a);
    }
    return count;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try { this.sock.close(); } catch { /* closed */ }
  }
}
