/**
 * Shared batch I/O contracts between devices, transports and dataplanes.
 *
 * A packet lives in a preallocated slot: `buf` has room for `HEADROOM` bytes in
 * front of the payload so a tunnel header can be written in place (as
 * wireguard-go's tun.Device does with its offset).
 *
 * Who owns which buffer, when:
 *  - **Receive slots** ({@link PacketSlot}, {@link DatagramSlot}) belong to the device or
 *    transport that allocated them. Their `buf` never changes. During a batch callback the
 *    handler may read and rewrite the bytes in place (encapsulate into the headroom,
 *    decapsulate by moving `off`), but it must not keep the slot, its `buf` or a subarray
 *    of it after the callback returns: the next read overwrites them.
 *  - **Output views** ({@link PacketView}, {@link DatagramView}) belong to a dataplane.
 *    Their `buf` is re-pointed per packet at the receive slot being forwarded, so a batch
 *    crosses from device to socket (or back) without a copy. A view is valid only until
 *    the batch callback that filled it returns; the dataplane core flushes every view
 *    before returning (src/vtep/core.ts).
 *  - **writeBatch / sendBatch** read the slots or views they are given during the call and
 *    keep nothing: the caller may reuse them as soon as the call returns (a transport that
 *    must send later, like node:dgram, copies).
 */
import type { OsError } from './errors.js';

/** Bytes reserved in front of every received payload: outer Ethernet(14) + IPv6(40) + UDP(8) + VXLAN(8) + inner Ethernet(14) = 84, rounded up. */
export const HEADROOM = 96;

/** Default per-slot capacity: headroom + a 9000-byte jumbo frame + tail room. */
export const SLOT_SIZE = 9216 + HEADROOM;

/**
 * Per-slot capacity for offload I/O (TUN with `offload`, UDP with `gro`): headroom + a 64 KB
 * super-packet / coalesced datagram run + tail room (65792 bytes).
 */
export const OFFLOAD_SLOT_SIZE = HEADROOM + 65535 + 161;

/** One packet in a batch: the bytes are `buf[off, off + len)`. A receive slot: see the ownership rules above. */
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
  /**
   * UDP segment size (offloads). Send: 0/undefined = one datagram; > 0 = the bytes are a run of
   * datagrams of `segSize` bytes each (the last may be shorter), split by the kernel (UDP GSO) or
   * by the transport (fallback). Receive: gso_size of a message coalesced by UDP GRO (all of its
   * datagrams came from the same peer; every one is `segSize` bytes except a shorter last one),
   * 0 for a single datagram. Optional so that plain slot views stay assignable; transports
   * always set it on receive.
   */
  segSize?: number;
  /**
   * Send only, with `segSize` > 0: when above 1, this slot starts a gathered UDP GSO run of
   * `parts` consecutive slots in the batch (this one and the next parts - 1), each exactly
   * `segSize` bytes except a shorter last, sent as one message that gathers their bytes wherever
   * they are (no copy). The transport sends them as plain datagrams when it cannot use GSO.
   */
  parts?: number;
}

/**
 * An output view: a {@link PacketSlot} whose `buf` a dataplane re-points at the slot it
 * forwards. Valid only until the batch callback returns (see the ownership rules above).
 */
export interface PacketView {
  /** The buffer of the packet being forwarded (re-pointed per packet). */
  buf: Buffer;
  /** Start of the packet inside `buf`. */
  off: number;
  /** Packet length in bytes. */
  len: number;
}

/** A {@link DatagramSlot}-shaped output view (see {@link PacketView}). */
export interface DatagramView extends PacketView {
  /** Address family of `addr`. */
  family: 4 | 6;
  /** IPv4 destination as uint32; valid when family is 4. */
  addr: number;
  /** IPv6 destination (16 bytes, preallocated, copied into); valid when family is 6. */
  readonly addr6: Uint8Array;
  /** UDP port. */
  port: number;
  /** UDP segment size of a GSO run (see {@link DatagramSlot.segSize}); 0 = one datagram. */
  segSize?: number;
  /** Slots of a gathered GSO run starting here (see {@link DatagramSlot.parts}); 0 = none. */
  parts?: number;
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
    out.push({ buf: Buffer.allocUnsafe(size), off: HEADROOM, len: 0, family: 4, addr: 0, addr6: new Uint8Array(16), port: 0, segSize: 0 });
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

/** Offloads the kernel accepted with TUNSETOFFLOAD (all false when `offload` is off). */
export interface DeviceOffloads {
  /** TUN_F_CSUM: packets may carry a partial checksum (VIRTIO_NET_HDR_F_NEEDS_CSUM) both ways. */
  readonly csum: boolean;
  /** TUN_F_TSO4: TCP/IPv4 super-packets (GSO_TCPV4) both ways. */
  readonly tso4: boolean;
  /** TUN_F_TSO6: TCP/IPv6 super-packets (GSO_TCPV6) both ways. */
  readonly tso6: boolean;
  /** TUN_F_USO4: UDP/IPv4 super-packets (GSO_UDP_L4) both ways. */
  readonly uso4: boolean;
  /** TUN_F_USO6: UDP/IPv6 super-packets (GSO_UDP_L4) both ways. */
  readonly uso6: boolean;
}

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
  /**
   * True when the device uses the offload layout (TunDevice `offload`): every read slot has a
   * 10-byte virtio_net_hdr at `buf[off - 10, off)` (the packet may be a 64 KB super-packet), and
   * every write sends `buf[off - 10, off + len)`, so the writer puts the header there first.
   * Absent/false: plain packets both ways.
   */
  readonly offload?: boolean;
  /** Which offloads the kernel accepted (TunDevice), when `offload` is on; absent: TSO and checksum only. */
  readonly offloads?: DeviceOffloads;
  /** Install the batch receive handler and start reading (readiness from the event loop). */
  onBatch(handler: BatchHandler<PacketSlot>): void;
  /** Timing mode: fill `stamps` for every batch from now on ({@link BatchStamps}); false when it cannot. Optional. */
  enableStamps?(stamps: BatchStamps): boolean;
  /** Busy-poll: read one batch now without waiting and hand it to the handler, as readiness would; its size (0: none). Optional. */
  pollNow?(): number;
  /** Write `slots[0..count)`; returns how many were written (the rest were dropped: queue full). */
  writeBatch(slots: readonly PacketSlot[], count: number): number;
  /** TUNSETPERSIST on or off: whether the device outlives its last file descriptor. Optional. */
  setPersist?(on: boolean): void;
  /** Stop reading and close the device. Idempotent. */
  close(): void;
}

/**
 * Timing mode: where a device or transport writes, for every batch it hands to its handler,
 * CLOCK_MONOTONIC microseconds of [0] its wake-up (readiness reported), [1] the read returning,
 * [2] the kernel's receive time of the batch's first datagram (sockets; 0 when unknown).
 * {@link stampNow} stamps on the same clock.
 */
export type BatchStamps = Float64Array;

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
  /** Timing mode: fill `stamps` for every batch from now on ({@link BatchStamps}); false when it cannot. Optional. */
  enableStamps?(stamps: BatchStamps): boolean;
  /** Busy-poll: read one batch now without waiting and hand it to the handler, as readiness would; its size (0: none). Optional. */
  pollNow?(): number;
  /**
   * Send `slots[0..count)` each to its own `addr`/`port`. Returns how many were handed to
   * the kernel; when that is fewer than `count`, {@link sendError} tells for each slot
   * whether it went out and, if not, why.
   */
  sendBatch(slots: readonly DatagramSlot[], count: number): number;
  /**
   * Outcome of slot `index` of the last sendBatch: 0 when it was sent, else a positive errno
   * (EAGAIN when the socket buffer was full or the batch stopped before it).
   */
  sendError(index: number): number;
  /** Close the socket. Idempotent. */
  close(): void;
}

