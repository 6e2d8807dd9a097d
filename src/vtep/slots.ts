/**
 * Preallocated output views (src/tun/types.ts PacketView/DatagramView): slot objects whose
 * `buf` is re-pointed at an input slot's buffer, so a batch is forwarded without copying
 * or allocating. The ownership rules are in src/tun/types.ts.
 */
import { HEADROOM, type DatagramView, type PacketView } from '../tun/types.js';

/** A view whose buffer is re-pointed per packet. */
export type MutPacketSlot = PacketView;

/** A datagram view whose buffer is re-pointed per packet. */
export type MutDatagramSlot = DatagramView;

const EMPTY = Buffer.alloc(0);

/** `n` packet views (initially empty). */
export function newPacketViews(n: number): MutPacketSlot[] {
  return Array.from({ length: n }, () => ({ buf: EMPTY, off: 0, len: 0 }));
}

/** `n` datagram views (initially empty). */
export function newDatagramViews(n: number): MutDatagramSlot[] {
  return Array.from({ length: n }, () => ({ buf: EMPTY, off: 0, len: 0, family: 4 as const, addr: 0, addr6: new Uint8Array(16), port: 0, segSize: 0, parts: 0 }));
}

/** `n` slots with their own small buffers (owned by the dataplane, never re-pointed), for generated replies (ICMP errors). */
export function allocReplySlots(n: number, size = 1024): MutPacketSlot[] {
  return Array.from({ length: n }, () => ({ buf: Buffer.alloc(size), off: HEADROOM, len: 0 }));
}
