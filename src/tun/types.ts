/**
 * Shared batch I/O contracts between devices, transports and dataplanes.
 *
 * A packet lives in a preallocated slot: `buf` has room for `HEADROOM` bytes in
 * front of the payload so a tunnel header can be written in place (as
 * wireguard-go's tun.Device does with its offset). Slots are owned by whoever
 * allocated the batch and are reused for every read; consumers must not keep
 * references to a slot's bytes after the callback returns.
 */
import type { OsError } from './errors.js';

/** Bytes reserved in front of every received payload: outer Ethernet(14) + IPv6(40) + UDP(8) + VXLAN(8) + inner Ethernet(14) = 84, rounded up. */
export const HEADROOM = 96;

/** Default per-slot capacity: headroom + a 9000-byte jumbo frame + tail room. */
export const SLOT_SIZE = 9216 + HEADROOM;

/** One packet in a batch: the bytes are `buf[off, off + len)`. */
export interface PacketSlot {
  /** Backing storage, fixed for the life of the slot. */
  readonly buf: Buffer;
  /** Start of the packet inside `buf`. Readers set it to HEADROOM; encapsulation moves it down. */
  off: number;
  /** Packet length in bytes. */
  len: number;
}

/** A datagram slot: a packet plus its peer (source on receive, destination on send). */
export interface DatagramSlot extends PacketSlot {
  /** Address family of `addr`. */
  family: 4 | 6;
  /** IPv4 peer as an unsigned 32-bit integer (host order of the dotted quad, a.b.c.d = a<<24|...); valid when family is 4. */
  addr: number;
  /** IPv6 peer (16 bytes, preallocated); valid when family is 6. */
  readonly addr6: Uint8Array;
  /** UDP port of the peer. */
  port: number;
}

/** Allocate `n` packet slots of `size` bytes each with `off` preset to HEADROOM. */
export function allocSlots(n: number, size: number = SLOT_SIZE): PacketSlot[] {
  const out: PacketSlot[] = [];
  for (let i = 0; i < n; i++) out.push({ buf: Buffer.allocUnsafe(size), off: HEADROOM, len: 0 });
  return out;
}

/** Allocate `n` datagram slots of `size` bytes each with `off` preset to HEADROOM. */
export function allocDatagramSlots(n: number, size: number = SLOT_SIZE): DatagramSlot[] {
  const out: DatagramSlot[] = [];
  for (let i = 0; i < n; i++) {
    out.push({ buf: Buffer.allocUnsafe(size), off: HEADROOM, len: 0, family: 4, addr: 0, addr6: new Uint8Array(16), port: 0 });
  }
  return out;
}

/**
 * Called with a batch of received packets: `slots[0..count)` are filled.
 * The slots are reused after the callback returns.
 */
export type BatchHandler<S extends PacketSlot> = (slots: S[], count: number) => void;

/** Called with each receive error of a device (an OsError: `code` is the errno name). */
export type ReadErrorListener = (err: OsError) => void;

/** A packet device (TUN or TAP) read and written in batches. */
export interface PacketDevice {
  /** Kernel interface name. */
  readonly name: string;
  /**
   * Receive errors so far, by errno name (e.g. `{ EIO: 2 }`), for a dataplane's stats()/metrics.
   * Optional so that test doubles need not implement it; src/tun's devices do.
   */
  readonly readErrorCounts?: Readonly<Record<string, number>>;
  /** Subscribe to receive errors; returns the unsubscribe function. Optional as above. */
  onReadError?(listener: ReadErrorListener): () => void;
  /** Install the batch receive handler and start reading (readiness from the event loop). */
  onBatch(handler: BatchHandler<PacketSlot>): void;
  /** Write `slots[0..count)`; returns how many were written (the rest were dropped: queue full). */
  writeBatch(slots: readonly PacketSlot[], count: number): number;
  /** Stop reading and close the device. Idempotent. */
  close(): void;
}

/** A UDP transport moving batches of datagrams: node:dgram or the recvmmsg/sendmmsg socket. */
export interface UdpTransport {
  /** Short name for counters and the benchmark: 'dgram' or 'mmsg'. */
  readonly kind: 'dgram' | 'mmsg';
  /** Bind to a local address and port (port 0: ephemeral). Resolves once bound. */
  bind(port: number, address?: string): Promise<void>;
  /** The bound local port. */
  localPort(): number;
  /** Install the batch receive handler and start receiving. */
  onBatch(handler: BatchHandler<DatagramSlot>): void;
  /** Send `slots[0..count)` each to its own `addr`/`port`; returns how many were handed to the kernel. */
  sendBatch(slots: readonly DatagramSlot[], count: number): number;
  /** Close the socket. Idempotent. */
  close(): void;
}

