/**
 * Software segmentation of TUN offload super-packets (TSO/USO split) and completion of
 * NEEDS_CSUM checksums, as Linux `tcp_gso_segment` / `__udp_gso_segment` would do it.
 *
 * A super-packet read from TUN (IFF_VNET_HDR + TUNSETOFFLOAD) is one IP packet up to 64 KB
 * whose payload is cut into `gso_size` pieces. Each segment gets a copy of the headers with
 * IPv4 total length / ID (+i) / header checksum, IPv6 payload length, TCP sequence number
 * (+i * gso_size), TCP flags (CWR on the first only, FIN and PSH on the last only) or UDP
 * length, and a full L4 checksum computed from scratch (the super-packet's partial field is
 * ignored). Payload bytes are copied and summed in one pass. Nothing allocates.
 */
import { copyBytes, copySum, copySumRanges, csumFold, onesSum, onesSumSimple, RANGE_DST, RANGE_LEN, RANGE_STRIDE, RANGE_SUM } from './checksum.js';
import { IpProto } from './constants.js';
import { ipv4FillChecksum } from './ip.js';
import { L4Layout, parseL4 } from './l4.js';
import { VirtioGso, type VirtioNetHdr } from './virtio.js';
import { inBounds } from './util.js';

/** Most segments one super-packet may produce. */
export const GSO_MAX_SEGMENTS = 64;

/**
 * Most segments the segmenter cuts one super-packet into: a 64 KB TSO packet at Linux's
 * smallest MSS (88) is 745 segments. Larger than {@link GSO_MAX_SEGMENTS}, which bounds one UDP
 * GSO send and one coalesced run: a flow with a small MSS (536, or clamped) still gets its
 * 64 KB super-packets from the TUN, and the sender splits the segments over several GSO sends.
 */
export const SEGMENT_MAX_SEGMENTS = 1024;

/** TCP flag bits (byte 13 of the header). */
export const TcpFlag = {
  FIN: 0x01, SYN: 0x02, RST: 0x04, PSH: 0x08, ACK: 0x10, URG: 0x20, ECE: 0x40, CWR: 0x80,
} as const;

/** Why a super-packet was not segmented. */
export type SegmentReason =
  /** gso_type NONE: not a super-packet (use {@link finishChecksum} if NEEDS_CSUM). */
  | 'not-gso'
  /** GSO_UDP (UFO, IP fragmentation) is not supported. */
  | 'unsupported-gso-type'
  /** Malformed IP or L4 header, or lengths outside the buffer. */
  | 'bad-header'
  /** An IPv4 fragment. */
  | 'fragment'
  /** IPv6 with extension headers before TCP/UDP. */
  | 'ipv6-extension'
  /** TCP GSO type but the packet is not TCP. */
  | 'not-tcp'
  /** UDP_L4 GSO type but the packet is not UDP. */
  | 'not-udp'
  /** GSO_TCPV4 on IPv6 or GSO_TCPV6 on IPv4. */
  | 'gso-type-mismatch'
  /** More than {@link SEGMENT_MAX_SEGMENTS} segments. */
  | 'too-many-segments'
  /** Not enough output slots, or a slot / the strided buffer is too small. */
  | 'output-too-small';

/** One output packet: the segment is written at `buf[off..)` and `len` is set. Preallocate and reuse. */
export interface SegmentSlot {
  /** Destination bytes. */
  readonly buf: Uint8Array;
  /** Where the segment starts (the caller keeps its headroom before it). */
  off: number;
  /** Set to the segment length. */
  len: number;
}

/** Sizes of the last segmentation (a reusable result object). */
export class SegmentInfo {
  /** Number of segments. */
  count = 0;
  /** Length of every segment but the last (headers + gso_size). */
  segLen = 0;
  /** Length of the last segment. */
  lastLen = 0;
  /** Strided layout: distance between segment starts. */
  stride = 0;
  /** Strided layout: bytes from `base` to the end of the last segment (send length). */
  total = 0;
}

// Module scratch: the super-packet being segmented.
const lay = new L4Layout();
let sBuf: Uint8Array = new Uint8Array(0);
let sOff = 0;
let sHdr = 0; // ipHl + l4Hl
let sPay = 0; // total payload bytes
let sMss = 0;
let sCount = 0;
let sSeq = 0;
let sId = 0;
let sFlags = 0;
/**
 * Sums of segment 0's headers without the words that differ between segments, set by
 * writeHeaders(0) (segments are always written 0, 1, ... n-1): IPv4 without total length, ID and
 * checksum; TCP (with the pseudo-header base) without sequence number, flags word, checksum and
 * length. A later segment adds its own few words instead of summing whole headers again.
 */
let sIpInv = 0;
let sTcpInv = 0;

/** Parse and size the super-packet into the module scratch; returns 'ok' or why not. */
function prepare(buf: Uint8Array, off: number, len: number, hdr: VirtioNetHdr): 'ok' | SegmentReason {
  const base = hdr.gsoBase;
  if (base === VirtioGso.NONE) return 'not-gso';
  if (base !== VirtioGso.TCPV4 && base !== VirtioGso.TCPV6 && base !== VirtioGso.UDP_L4) return 'unsupported-gso-type';
  const r = parseL4(buf, off, len, lay);
  if (r === 'not-tcp-udp') return base === VirtioGso.UDP_L4 ? 'not-udp' : 'not-tcp';
  if (r !== 'ok') return r;
  if (base === VirtioGso.UDP_L4) {
    if (lay.proto !== IpProto.UDP) return 'not-udp';
  } else {
    if (lay.proto !== IpProto.TCP) return 'not-tcp';
    if ((base === VirtioGso.TCPV4) !== (lay.version === 4)) return 'gso-type-mismatch';
  }
  const mss = hdr.gsoSize;
  if (mss === 0) return 'bad-header';
  sHdr = lay.ipHl + lay.l4Hl;
  sPay = lay.ipLen - sHdr;
  sMss = mss;
  sCount = sPay <= mss ? 1 : Math.ceil(sPay / mss);
  if (sCount > SEGMENT_MAX_SEGMENTS) return 'too-many-segments';
  sBuf = buf;
  sOff = off;
  const l4 = off + lay.ipHl;
  sSeq = lay.proto === IpProto.TCP
    ? ((buf[l4 + 4]! << 24) | (buf[l4 + 5]! << 16) | (buf[l4 + 6]! << 8) | buf[l4 + 7]!) >>> 0 : 0;
  sFlags = lay.proto === IpProto.TCP ? buf[l4 + 13]! : 0;
  sId = lay.version === 4 ? (buf[off + 4]! << 8) | buf[off + 5]! : 0;
  return 'ok';
}

/** Length of segment `i` of the prepared super-packet. */
function segLength(i: number): number {
  return sHdr + (i === sCount - 1 ? sPay - i * sMss : sMss);
}

/** Payload bytes of segment `i` of the prepared super-packet. */
function segPayload(i: number): number {
  return i === sCount - 1 ? sPay - i * sMss : sMss;
}

/**
 * Write the headers of segment `i` of the prepared super-packet at `dst[d..)` (everything but
 * the payload and the L4 checksum) and return the sum its L4 checksum starts from: pseudo-header
 * plus L4 header (checksum field zero).
 */
function writeHeaders(i: number, dst: Uint8Array, d: number, prev: number): number {
  const last = i === sCount - 1;
  const pay = segPayload(i);
  const ipHl = lay.ipHl;
  // from the previous segment's headers in the same buffer when there is one (a memmove, not a loop)
  if (prev >= 0) dst.copyWithin(d, prev, prev + sHdr);
  else copyBytes(sBuf, sOff, dst, d, sHdr);
  if (lay.version === 4) {
    const tl = sHdr + pay;
    dst[d + 2] = tl >>> 8;
    dst[d + 3] = tl & 255;
    const id = (sId + i) & 0xffff;
    dst[d + 4] = id >>> 8;
    dst[d + 5] = id & 255;
    if (i === 0) {
      ipv4FillChecksum(dst, d);
      // congruent modulo 0xffff to the header sum without tl, id and the checksum; kept positive
      sIpInv = csumFold(onesSumSimple(dst, d, ipHl) + 3 * 0xffff - tl - id - ((dst[d + 10]! << 8) | dst[d + 11]!));
    } else {
      const c = ~csumFold(sIpInv + tl + id) & 0xffff;
      dst[d + 10] = c >>> 8;
      dst[d + 11] = c & 255;
    }
  } else {
    const pl = sHdr - ipHl + pay;
    dst[d + 4] = pl >>> 8;
    dst[d + 5] = pl & 255;
  }
  const l4 = d + ipHl;
  const l4Len = lay.l4Hl + pay;
  if (lay.proto === IpProto.TCP) {
    const seq = (sSeq + i * sMss) >>> 0;
    dst[l4 + 4] = seq >>> 24;
    dst[l4 + 5] = (seq >>> 16) & 255;
    dst[l4 + 6] = (seq >>> 8) & 255;
    dst[l4 + 7] = seq & 255;
    let f = sFlags;
    if (!last) f &= ~(TcpFlag.FIN | TcpFlag.PSH);
    if (i !== 0) f &= ~TcpFlag.CWR;
    dst[l4 + 13] = f;
    dst[l4 + 16] = 0;
    dst[l4 + 17] = 0;
    const vary = (seq >>> 16) + (seq & 0xffff) + ((dst[l4 + 12]! << 8) | f);
    if (i === 0) {
      const s = onesSumSimple(dst, l4, lay.l4Hl, lay.pseudoBase + l4Len);
      sTcpInv = csumFold(s + 3 * 0xffff - csumFold(vary) - l4Len);
      return s;
    }
    return csumFold(sTcpInv + vary + l4Len);
  } else {
    dst[l4 + 4] = l4Len >>> 8;
    dst[l4 + 5] = l4Len & 255;
    dst[l4 + 6] = 0;
    dst[l4 + 7] = 0;
  }
  return onesSumSimple(dst, l4, lay.l4Hl, lay.pseudoBase + l4Len);
}

/** Store the L4 checksum of the segment at `dst[d..)` whose pseudo-header + L4 sum is `sum`. */
function storeL4Checksum(dst: Uint8Array, d: number, sum: number): void {
  let c = ~sum & 0xffff;
  if (c === 0 && lay.proto === IpProto.UDP) c = 0xffff;
  const co = d + lay.ipHl + lay.csumOff;
  dst[co] = c >>> 8;
  dst[co + 1] = c & 255;
}

/** Write segment `i` of the prepared super-packet at `dst[d..)`; returns its length. */
function writeSegment(i: number, dst: Uint8Array, d: number): number {
  const pay = segPayload(i);
  const hs = writeHeaders(i, dst, d, -1);
  storeL4Checksum(dst, d, copySum(sBuf, sOff + sHdr + i * sMss, dst, d + sHdr, pay, hs));
  return sHdr + pay;
}

/** Payload ranges of the strided segmentation (one copy-and-sum call for all segments). */
const ranges = new Int32Array(SEGMENT_MAX_SEGMENTS * RANGE_STRIDE);

/**
 * Segment the super-packet at `buf[off..off+len)` described by the checked virtio header
 * `hdr` (GSO_TCPV4, GSO_TCPV6 or GSO_UDP_L4) into `slots[0..n)`: segment i is written at
 * `slots[i].buf[slots[i].off..)` and `slots[i].len` set. Returns n (1..64) or why not;
 * on a reason nothing has been written. `info` (optional) receives the sizes.
 */
export function gsoSegment(
  buf: Uint8Array, off: number, len: number, hdr: VirtioNetHdr, slots: readonly SegmentSlot[], info?: SegmentInfo,
): number | SegmentReason {
  const r = prepare(buf, off, len, hdr);
  if (r !== 'ok') return r;
  const n = sCount;
  if (slots.length < n) return 'output-too-small';
  for (let i = 0; i < n; i++) {
    const s = slots[i]!;
    if (!inBounds(s.buf, s.off, segLength(i)) || s.buf.buffer === buf.buffer && overlaps(s.buf, s.off, segLength(i), buf, off, len)) {
      return 'output-too-small';
    }
  }
  for (let i = 0; i < n; i++) {
    const s = slots[i]!;
    s.len = writeSegment(i, s.buf, s.off);
  }
  if (info !== undefined) fillInfo(info, 0, 0);
  return n;
}

/**
 * Segment into ONE buffer for a UDP GSO send: segment i is written at
 * `out[base + i*stride + prefix ..)`, leaving `prefix` bytes before each for the caller's
 * tunnel headers. `stride` 0 means tight (`prefix + headers + gso_size`, what UDP_SEGMENT
 * needs: every datagram equal except the last); a larger stride leaves gaps. Returns the
 * segment count or why not; `info.total` is the send length from `base`.
 */
export function gsoSegmentStrided(
  buf: Uint8Array, off: number, len: number, hdr: VirtioNetHdr,
  out: Uint8Array, base: number, stride: number, prefix: number, info: SegmentInfo,
): number | SegmentReason {
  const r = prepare(buf, off, len, hdr);
  if (r !== 'ok') return r;
  const n = sCount;
  const need = prefix + sHdr + (n === 1 ? sPay : sMss);
  const st = stride === 0 ? need : stride;
  if (prefix < 0 || st < need) return 'output-too-small';
  const total = (n - 1) * st + prefix + segLength(n - 1);
  if (!inBounds(out, base, total) || out.buffer === buf.buffer && overlaps(out, base, total, buf, off, len)) {
    return 'output-too-small';
  }
  // headers first, then every payload copied and summed in one call, then the checksums
  for (let i = 0; i < n; i++) {
    const d = base + i * st + prefix;
    const r = i * RANGE_STRIDE;
    ranges[r + RANGE_SUM] = writeHeaders(i, out, d, i === 0 ? -1 : d - st);
    ranges[r] = sOff + sHdr + i * sMss;
    ranges[r + RANGE_DST] = d + sHdr;
    ranges[r + RANGE_LEN] = segPayload(i);
  }
  copySumRanges(sBuf, out, ranges, n); // every range was checked above: cannot refuse
  for (let i = 0; i < n; i++) storeL4Checksum(out, base + i * st + prefix, ranges[i * RANGE_STRIDE + RANGE_SUM]!);
  fillInfo(info, st, total);
  return n;
}

function fillInfo(info: SegmentInfo, stride: number, total: number): void {
  info.count = sCount;
  info.segLen = segLength(0);
  info.lastLen = segLength(sCount - 1);
  info.stride = stride;
  info.total = total;
}

/** True when two ranges over the same ArrayBuffer intersect. */
function overlaps(a: Uint8Array, ao: number, al: number, b: Uint8Array, bo: number, bl: number): boolean {
  const x = a.byteOffset + ao;
  const y = b.byteOffset + bo;
  return x < y + bl && y < x + al;
}

/** Why a NEEDS_CSUM checksum could not be finished. */
export type FinishReason = 'csum-out-of-range';

/**
 * Finish the checksum of a non-GSO packet at `buf[off..off+len)` whose header says
 * NEEDS_CSUM, in place (no-op without NEEDS_CSUM). For TCP/UDP over IPv4/IPv6 at the
 * expected offsets the checksum is recomputed from the pseudo-header (the partial field is
 * not trusted); otherwise the generic kernel rule applies: sum [csum_start, len) as it
 * stands and store the complement (0 as 0xffff) at csum_start + csum_offset.
 */
export function finishChecksum(buf: Uint8Array, off: number, len: number, hdr: VirtioNetHdr): 'ok' | FinishReason {
  if (!hdr.needsCsum) return 'ok';
  const start = hdr.csumStart;
  const at = start + hdr.csumOffset;
  if (!inBounds(buf, off, len) || at + 2 > len) return 'csum-out-of-range';
  if (parseL4(buf, off, len, lay) === 'ok' && start === lay.ipHl && hdr.csumOffset === lay.csumOff) {
    const l4 = off + start;
    let l4Len = lay.l4Len;
    if (lay.proto === IpProto.UDP) {
      const ul = (buf[l4 + 4]! << 8) | buf[l4 + 5]!;
      if (ul >= 8 && ul <= l4Len) l4Len = ul;
    }
    buf[off + at] = 0;
    buf[off + at + 1] = 0;
    let c = ~onesSum(buf, l4, l4Len, lay.pseudoBase + l4Len) & 0xffff;
    if (c === 0 && lay.proto === IpProto.UDP) c = 0xffff;
    buf[off + at] = c >>> 8;
    buf[off + at + 1] = c & 255;
    return 'ok';
  }
  let c = ~onesSum(buf, off + start, len - start) & 0xffff;
  if (c === 0) c = 0xffff;
  buf[off + at] = c >>> 8;
  buf[off + at + 1] = c & 255;
  return 'ok';
}
