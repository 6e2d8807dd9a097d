/**
 * `struct virtio_net_hdr` (10 bytes) as TUN exchanges it with IFF_VNET_HDR: the offload
 * metadata in front of every packet read from or written to the device.
 *
 *     0       1        2         4          6           8            10
 *     | flags | gso_type | hdr_len | gso_size | csum_start | csum_offset |
 *
 * Multi-byte fields are little-endian (what the kernel uses for TUN on little-endian hosts
 * and with TUNSETVNETLE). `csum_start` is relative to the start of the packet (the byte
 * after this header); with NEEDS_CSUM the checksum over `[csum_start, end)` goes to
 * `csum_start + csum_offset`, and that field holds the pseudo-header sum meanwhile.
 */
import { EMPTY, inBounds } from './util.js';

/** Size of `struct virtio_net_hdr` (without `num_buffers`). */
export const VIRTIO_NET_HDR_LEN = 10;

/** virtio_net_hdr flag bits. */
export const VirtioFlag = {
  /** The L4 checksum is partial: finish it over [csum_start, end) and store at csum_start + csum_offset. */
  NEEDS_CSUM: 1,
  /** The checksum has been validated (receive side). */
  DATA_VALID: 2,
} as const;

/** virtio_net_hdr gso_type values. */
export const VirtioGso = {
  /** Not a GSO packet. */
  NONE: 0,
  /** TCP over IPv4 segmentation (TSO). */
  TCPV4: 1,
  /** UDP fragmentation offload (UFO, IP fragments; legacy). */
  UDP: 3,
  /** TCP over IPv6 segmentation. */
  TCPV6: 4,
  /** UDP segmentation offload (USO: one UDP datagram per segment). */
  UDP_L4: 5,
  /** Modifier bit: the TCP super-packet may carry CWR (ECN). */
  ECN: 0x80,
} as const;

/** Why a virtio_net_hdr (with the packet after it) was rejected. */
export type VirtioReason =
  | 'truncated' | 'too-short' | 'unknown-flags' | 'unknown-gso-type' | 'gso-without-size'
  | 'csum-out-of-range' | 'hdr-len-out-of-range';

/**
 * Checked view of a virtio_net_hdr at `buf[off..off+10)` followed by its packet at
 * `buf[off+10..off+len)`. Reuse one instance; `check()` allocates nothing.
 */
export class VirtioNetHdr {
  /** Backing bytes. */
  buf: Uint8Array = EMPTY;
  /** Header start. */
  off = 0;
  /** Header + packet length given to `check()`. */
  len = 0;

  /**
   * Target and validate against the packet that follows: known flag bits and gso type
   * (ECN only on TCP types), a non-zero gso_size for GSO, with NEEDS_CSUM the checksum
   * field `csum_start + csum_offset + 2` inside the packet, and `hdr_len` <= packet length.
   */
  check(buf: Uint8Array, off: number, len: number): 'ok' | VirtioReason {
    if (!inBounds(buf, off, len)) return 'truncated';
    if (len < VIRTIO_NET_HDR_LEN) return 'too-short';
    const r = virtioCheckFields(buf, off, len - VIRTIO_NET_HDR_LEN);
    if (r !== 'ok') return r;
    this.buf = buf;
    this.off = off;
    this.len = len;
    return 'ok';
  }

  /** Flags byte. */
  get flags(): number { return this.buf[this.off]!; }
  /** True when NEEDS_CSUM is set. */
  get needsCsum(): boolean { return (this.buf[this.off]! & VirtioFlag.NEEDS_CSUM) !== 0; }
  /** Raw gso_type byte (including the ECN bit). */
  get gsoType(): number { return this.buf[this.off + 1]!; }
  /** gso_type without the ECN bit. */
  get gsoBase(): number { return this.buf[this.off + 1]! & 0x7f; }
  /** True when the ECN bit is set. */
  get gsoEcn(): boolean { return (this.buf[this.off + 1]! & VirtioGso.ECN) !== 0; }
  /** hdr_len: length of the headers (a hint; Linux may report the whole linear part). */
  get hdrLen(): number { return le16(this.buf, this.off + 2); }
  /** gso_size: payload bytes per segment. */
  get gsoSize(): number { return le16(this.buf, this.off + 4); }
  /** csum_start, relative to the packet start. */
  get csumStart(): number { return le16(this.buf, this.off + 6); }
  /** csum_offset, relative to csum_start. */
  get csumOffset(): number { return le16(this.buf, this.off + 8); }
  /** Offset of the packet in `buf`. */
  get packetOffset(): number { return this.off + VIRTIO_NET_HDR_LEN; }
  /** Packet length (`len` - 10). */
  get packetLength(): number { return this.len - VIRTIO_NET_HDR_LEN; }
}

/** Validate the header fields at `off` against a packet of `pktLen` bytes (caller checked 10 bytes are there). */
export function virtioCheckFields(buf: Uint8Array, off: number, pktLen: number): 'ok' | VirtioReason {
  const flags = buf[off]!;
  if ((flags & ~(VirtioFlag.NEEDS_CSUM | VirtioFlag.DATA_VALID)) !== 0) return 'unknown-flags';
  const gt = buf[off + 1]!;
  const base = gt & 0x7f;
  if (base !== VirtioGso.NONE && base !== VirtioGso.TCPV4 && base !== VirtioGso.UDP &&
      base !== VirtioGso.TCPV6 && base !== VirtioGso.UDP_L4) return 'unknown-gso-type';
  if ((gt & VirtioGso.ECN) !== 0 && base !== VirtioGso.TCPV4 && base !== VirtioGso.TCPV6) return 'unknown-gso-type';
  if (base !== VirtioGso.NONE && le16(buf, off + 4) === 0) return 'gso-without-size';
  if ((flags & VirtioFlag.NEEDS_CSUM) !== 0 && le16(buf, off + 6) + le16(buf, off + 8) + 2 > pktLen) return 'csum-out-of-range';
  if (le16(buf, off + 2) > pktLen) return 'hdr-len-out-of-range';
  return 'ok';
}

function le16(buf: Uint8Array, o: number): number {
  return buf[o]! | (buf[o + 1]! << 8);
}

function putLe16(buf: Uint8Array, o: number, v: number): void {
  buf[o] = v & 255;
  buf[o + 1] = (v >>> 8) & 255;
}

/** Write a virtio_net_hdr with every field given; returns `off + 10`. */
export function emitVirtio(
  buf: Uint8Array, off: number, flags: number, gsoType: number, hdrLen: number, gsoSize: number,
  csumStart: number, csumOffset: number,
): number {
  buf[off] = flags & 255;
  buf[off + 1] = gsoType & 255;
  putLe16(buf, off + 2, hdrLen);
  putLe16(buf, off + 4, gsoSize);
  putLe16(buf, off + 6, csumStart);
  putLe16(buf, off + 8, csumOffset);
  return off + VIRTIO_NET_HDR_LEN;
}

/** Write an all-zero header (no offload: checksum complete, no GSO); returns `off + 10`. */
export function emitVirtioNone(buf: Uint8Array, off: number): number {
  return emitVirtio(buf, off, 0, 0, 0, 0, 0, 0);
}

/**
 * Write a NEEDS_CSUM header without GSO (the L4 checksum field at `csumStart + csumOffset`
 * must hold the pseudo-header sum); returns `off + 10`. TCP: csumOffset 16, UDP: 6.
 */
export function emitVirtioNeedsCsum(buf: Uint8Array, off: number, csumStart: number, csumOffset: number): number {
  return emitVirtio(buf, off, VirtioFlag.NEEDS_CSUM, VirtioGso.NONE, 0, 0, csumStart, csumOffset);
}

/**
 * Write a TCP GSO header (GSO_TCPV4 or GSO_TCPV6 by `ipVersion`, NEEDS_CSUM, csum_offset 16)
 * for a super-packet whose TCP header starts at `l4Off` (= IP header length) and whose
 * headers end at `hdrLen`; returns `off + 10`.
 */
export function emitVirtioTcpGso(buf: Uint8Array, off: number, ipVersion: 4 | 6, l4Off: number, hdrLen: number, gsoSize: number): number {
  return emitVirtio(buf, off, VirtioFlag.NEEDS_CSUM, ipVersion === 4 ? VirtioGso.TCPV4 : VirtioGso.TCPV6,
    hdrLen, gsoSize, l4Off, 16);
}
