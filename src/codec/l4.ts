/**
 * IP + TCP/UDP layout parsing shared by the offload code (segmentation, coalescing) and
 * L4 checksum classification: full, partial (CHECKSUM_PARTIAL: the field holds only the
 * pseudo-header sum), none, bad.
 */
import { csumFold, onesSum, pseudoSum4, pseudoSum6 } from './checksum.js';
import { IPV6_HLEN, IpProto } from './constants.js';
import { ipv4Check, ipv6Check } from './ip.js';
import { emitVirtioNeedsCsum, emitVirtioNone } from './virtio.js';
import { inBounds } from './util.js';

/** Why an IP packet could not be parsed down to its TCP/UDP header. */
export type L4ParseReason = 'bad-header' | 'fragment' | 'ipv6-extension' | 'not-tcp-udp';

/** Layout of an IP + TCP/UDP packet (a reusable result object; offsets relative to the packet start). */
export class L4Layout {
  /** 4 or 6. */
  version = 0;
  /** IP header length (IPv4 IHL * 4, IPv6 40). */
  ipHl = 0;
  /** IP packet length from its length field (may be less than the bytes given). */
  ipLen = 0;
  /** IpProto.TCP or IpProto.UDP. */
  proto = 0;
  /** L4 header length (TCP data offset * 4, UDP 8). */
  l4Hl = 0;
  /** L4 length covered by the checksum: ipLen - ipHl for TCP, the UDP length field for UDP. */
  l4Len = 0;
  /** Offset of the checksum field relative to the L4 header (16 TCP, 6 UDP). */
  csumOff = 0;
  /** Unfolded pseudo-header sum without the length (add `l4Len`). */
  pseudoBase = 0;
}

/**
 * Parse `buf[off..off+len)` as IPv4 (no fragment; options allowed) or IPv6 (TCP/UDP as
 * the first next header) carrying TCP or UDP with a structurally valid header.
 * No checksum is verified. Allocation-free.
 */
export function parseL4(buf: Uint8Array, off: number, len: number, out: L4Layout): 'ok' | L4ParseReason {
  if (!inBounds(buf, off, len) || len < 1) return 'bad-header';
  const v = buf[off]! >>> 4;
  let proto: number;
  if (v === 4) {
    if (ipv4Check(buf, off, len) !== 'ok') return 'bad-header';
    if (((buf[off + 6]! & 0x3f) | buf[off + 7]!) !== 0) return 'fragment';
    out.ipHl = (buf[off]! & 15) << 2;
    out.ipLen = (buf[off + 2]! << 8) | buf[off + 3]!;
    proto = buf[off + 9]!;
    if (proto !== IpProto.TCP && proto !== IpProto.UDP) return 'not-tcp-udp';
    // addresses as int32 (small integers): a uint32 >= 2^31 would be boxed at a non-inlined call
    out.pseudoBase = pseudoSum4(
      (buf[off + 12]! << 24) | (buf[off + 13]! << 16) | (buf[off + 14]! << 8) | buf[off + 15]!,
      (buf[off + 16]! << 24) | (buf[off + 17]! << 16) | (buf[off + 18]! << 8) | buf[off + 19]!, proto, 0);
  } else if (v === 6) {
    if (ipv6Check(buf, off, len) !== 'ok') return 'bad-header';
    out.ipHl = IPV6_HLEN;
    out.ipLen = IPV6_HLEN + ((buf[off + 4]! << 8) | buf[off + 5]!);
    proto = buf[off + 6]!;
    if (proto !== IpProto.TCP && proto !== IpProto.UDP) {
      return proto === IpProto.HOPOPT || proto === IpProto.IPV6_ROUTE || proto === IpProto.IPV6_FRAG ||
        proto === IpProto.IPV6_OPTS ? 'ipv6-extension' : 'not-tcp-udp';
    }
    out.pseudoBase = pseudoSum6(buf, off + 8, off + 24, proto, 0);
  } else {
    return 'bad-header';
  }
  out.version = v;
  out.proto = proto;
  const l4 = off + out.ipHl;
  const avail = out.ipLen - out.ipHl;
  if (proto === IpProto.TCP) {
    if (avail < 20) return 'bad-header';
    const hl = (buf[l4 + 12]! >>> 4) << 2;
    if (hl < 20 || hl > avail) return 'bad-header';
    out.l4Hl = hl;
    out.l4Len = avail;
    out.csumOff = 16;
  } else {
    if (avail < 8) return 'bad-header';
    out.l4Hl = 8;
    out.l4Len = avail;
    out.csumOff = 6;
  }
  return 'ok';
}

/** How an L4 checksum field relates to its packet. */
export type L4ChecksumKind =
  /** Verifies as a complete checksum. */
  | 'full'
  /** Holds the folded pseudo-header sum (CHECKSUM_PARTIAL as Linux leaves it; 0x0000 accepted for 0xffff). */
  | 'partial'
  /** Holds the complement of the folded pseudo-header sum (seen from some senders); normalise before NEEDS_CSUM. */
  | 'partial-complement'
  /** UDP over IPv4 with a zero field: no checksum. */
  | 'none'
  /** None of the above: corrupted (let the kernel drop it). */
  | 'bad';

const scratch = new L4Layout();

/**
 * Classify the TCP/UDP checksum of the IP packet at `buf[off..off+len)`.
 *
 * A receiver of VXLAN from a Linux sender over veth (or any CHECKSUM_PARTIAL path without
 * a NIC) gets inner packets whose checksum field still holds only the pseudo-header sum.
 * Such a packet must reach TUN with NEEDS_CSUM (csum_start = L4 offset, csum_offset 16/6)
 * instead of with a zero header, or the kernel drops it as corrupt.
 *
 * The check is ordered: a field that verifies is 'full'; otherwise it is 'partial' when it
 * equals the folded pseudo-header sum P (either ones-complement zero when P is zero), and
 * 'partial-complement' when it equals ~P. Ambiguity: a corrupted packet whose field happens
 * to equal P or ~P (about 2 in 2^16) is taken as partial and its checksum recomputed by
 * the kernel; that is no weaker than the 16-bit checksum itself, and a genuine full
 * checksum is never misread since it verifies first.
 */
export function l4ChecksumKind(buf: Uint8Array, off: number, len: number, lay: L4Layout = scratch): L4ChecksumKind | L4ParseReason {
  const r = parseL4(buf, off, len, lay);
  if (r !== 'ok') return r;
  const l4 = off + lay.ipHl;
  let l4Len = lay.l4Len;
  const fo = l4 + lay.csumOff;
  const field = (buf[fo]! << 8) | buf[fo + 1]!;
  if (lay.proto === IpProto.UDP) {
    const ul = (buf[l4 + 4]! << 8) | buf[l4 + 5]!;
    if (ul < 8 || ul > l4Len) return 'bad-header';
    l4Len = ul;
    if (field === 0 && lay.version === 4) return 'none';
  }
  const pseudo = lay.pseudoBase + l4Len;
  if (onesSum(buf, l4, l4Len, pseudo) === 0xffff) return 'full';
  return partialKind(field, csumFold(pseudo));
}

/** 'partial' / 'partial-complement' / 'bad' for a field value against the folded pseudo sum `p`. */
export function partialKind(field: number, p: number): 'partial' | 'partial-complement' | 'bad' {
  if (field === p || (p === 0xffff && field === 0) || (p === 0 && field === 0xffff)) return 'partial';
  const q = ~p & 0xffff;
  if (field === q || (q === 0xffff && field === 0) || (q === 0 && field === 0xffff)) return 'partial-complement';
  return 'bad';
}

/** Store the folded pseudo-header sum (the partial form Linux and NEEDS_CSUM expect) in the L4 checksum field. */
export function storePartialChecksum(buf: Uint8Array, off: number, lay: L4Layout, l4Len: number): void {
  const fo = off + lay.ipHl + lay.csumOff;
  const p = csumFold(lay.pseudoBase + l4Len);
  buf[fo] = p >>> 8;
  buf[fo + 1] = p & 255;
}

/**
 * Prepare a received inner IP packet at `buf[off..off+len)` for a TUN write with a vnet
 * header at `hdrBuf[hdrOff..+10)` (usually `buf`, `off - 10`): a partial checksum gets a
 * NEEDS_CSUM header (a complemented partial is normalised in place first); anything else
 * gets the all-zero header. Returns the classification ('other' for non-TCP/UDP packets).
 */
export function emitVirtioForInner(
  buf: Uint8Array, off: number, len: number, hdrBuf: Uint8Array, hdrOff: number,
): L4ChecksumKind | 'other' {
  const k = l4ChecksumKind(buf, off, len, scratch);
  if (k === 'partial' || k === 'partial-complement') {
    if (k === 'partial-complement') {
      const l4 = off + scratch.ipHl;
      const l4Len = scratch.proto === IpProto.UDP ? (buf[l4 + 4]! << 8) | buf[l4 + 5]! : scratch.l4Len;
      storePartialChecksum(buf, off, scratch, l4Len);
    }
    emitVirtioNeedsCsum(hdrBuf, hdrOff, scratch.ipHl, scratch.csumOff);
    return k;
  }
  emitVirtioNone(hdrBuf, hdrOff);
  return k === 'full' || k === 'none' || k === 'bad' ? k : 'other';
}
