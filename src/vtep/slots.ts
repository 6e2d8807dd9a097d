/**
 * Preallocated output views: slot objects whose `buf` is re-pointed at an input
 * slot's buffer, so a batch is forwarded without copying or allocating.
 */
import { HEADROOM } from '../tun/types.js';

/** A PacketSlot whose buffer can be re-pointed. */
export interface MutPacketSlot {
  buf: Buffer;
  off: number;
  len: number;
}

/** A DatagramSlot whose buffer can be re-pointed. */
export interface MutDatagramSlot extends MutPacketSlot {
  family: 4 | 6;
  addr: number;
  readonly addr6: Uint8Array;
  port: number;
}

const EMPTY = Buffer.alloc(0);

/** `n` packet views (initially empty). */
export function newPacketViews(n: number): MutPacketSlot[] {
  return Array.from({ length: n }, () => ({ buf: EMPTY, off: 0, len: 0 }));
}

/** `n` datagram views (initially empty). */
export function newDatagramViews(n: number): MutDatagramSlot[] {
  return Array.from({ length: n }, () => ({ buf: EMPTY, off: 0, len: 0, family: 4 as const, addr: 0, addr6: new Uint8Array(16), port: 0 }));
}

/** `n` slots with their own small buffers, for generated replies (ICMP errors, ARP). */
export function allocReplySlots(n: number, size = 1024): MutPacketSlot[] {
  return Array.from({ length: n }, () => ({ buf: Buffer.alloc(size), off: HEADROOM, len: 0 }));
}
