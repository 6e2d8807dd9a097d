/**
 * IPv4 (RFC 791), IPv6 base header (RFC 8200) and UDP (RFC 768) views.
 */
import { readIpv4, writeIpv4 } from './addr.js';
import { csumFinish, csumUpdate16, onesSum, onesSumSimple, pseudoSum4, pseudoSum6 } from './checksum.js';
import { IPV4_HLEN, IPV6_HLEN, IpProto, UDP_HLEN } from './constants.js';
import { EMPTY, inBounds } from './util.js';

/** Why an IPv4 header was rejected. */
export type Ipv4Reason = 'too-short' | 'truncated' | 'bad-version' | 'bad-header-length' | 'bad-total-length' | 'bad-checksum';

/** IPv4 flag bit: don't fragment (in the 16-bit flags/fragment-offset word). */
export const IPV4_DF = 0x4000;
/** IPv4 flag bit: more fragments. */
export const IPV4_MF = 0x2000;

/** Result of a TTL decrement. */
export type TtlResult = 'ok' | 'ttl-exceeded';

/**
 * Checked view of an IPv4 packet at `buf[off..off+len)` (len = bytes available; the
 * packet itself is `totalLength` bytes, which must fit). Reuse one instance per
 * pipeline stage; `check()` allocates nothing.
 */
export class Ipv4Packet {
  /** Backing bytes. */
  buf: Uint8Array = EMPTY;
  /** Header start. */
  off = 0;

  /**
   * Target and validate: version 4, IHL >= 5 and inside the data, total length between
   * the header length and `len`, and (unless `verifyChecksum` is false) the header checksum.
   */
  check(buf: Uint8Array, off: number, len: number, verifyChecksum = true): 'ok' | Ipv4Reason {
    const r = ipv4Check(buf, off, len);
    if (r !== 'ok') return r;
    if (verifyChecksum && onesSumSimple(buf, off, (buf[off]! & 15) << 2) !== 0xffff) return 'bad-checksum';
    this.buf = buf;
    this.off = off;
    return 'ok';
  }

  /** IP version (4 after a successful check). */
  get version(): number { return this.buf[this.off]! >>> 4; }
  /** Header length in bytes (IHL * 4). */
  get headerLen(): number { return (this.buf[this.off]! & 15) << 2; }
  /** Type of service byte (DSCP << 2 | ECN). */
  get tos(): number { return this.buf[this.off + 1]!; }
  set tos(v: number) { this.buf[this.off + 1] = v & 255; }
  /** DSCP (6 bits). */
  get dscp(): number { return this.buf[this.off + 1]! >>> 2; }
  /** ECN (2 bits). */
  get ecn(): number { return this.buf[this.off + 1]! & 3; }
  /** Total length field. */
  get totalLength(): number { return (this.buf[this.off + 2]! << 8) | this.buf[this.off + 3]!; }
  set totalLength(v: number) { this.buf[this.off + 2] = (v >>> 8) & 255; this.buf[this.off + 3] = v & 255; }
  /** Identification field. */
  get id(): number { return (this.buf[this.off + 4]! << 8) | this.buf[this.off + 5]!; }
  set id(v: number) { this.buf[this.off + 4] = (v >>> 8) & 255; this.buf[this.off + 5] = v & 255; }
  /** The 16-bit flags + fragment offset word. */
  get fragWord(): number { return (this.buf[this.off + 6]! << 8) | this.buf[this.off + 7]!; }
  set fragWord(v: number) { this.buf[this.off + 6] = (v >>> 8) & 255; this.buf[this.off + 7] = v & 255; }
  /** Don't-fragment flag. */
  get dontFragment(): boolean { return ipv4DontFragment(this.buf, this.off); }
  /** More-fragments flag. */
  get moreFragments(): boolean { return (this.fragWord & IPV4_MF) !== 0; }
  /** Reserved (evil) bit. */
  get reservedFlag(): boolean { return (this.fragWord & 0x8000) !== 0; }
  /** Fragment offset in bytes (field * 8). */
  get fragOffset(): number { return (this.fragWord & 0x1fff) << 3; }
  /** True for any fragment (MF set or non-zero offset). */
  get isFragment(): boolean { return (this.fragWord & 0x3fff) !== 0; }
  /** Time to live. */
  get ttl(): number { return this.buf[this.off + 8]!; }
  set ttl(v: number) { this.buf[this.off + 8] = v & 255; }
  /** Protocol number of the payload. */
  get protocol(): number { return this.buf[this.off + 9]!; }
  set protocol(v: number) { this.buf[this.off + 9] = v & 255; }
  /** Header checksum field. */
  get checksum(): number { return (this.buf[this.off + 10]! << 8) | this.buf[this.off + 11]!; }
  set checksum(v: number) { this.buf[this.off + 10] = (v >>> 8) & 255; this.buf[this.off + 11] = v & 255; }
  /** Source address (uint32). */
  get src(): number { return readIpv4(this.buf, this.off + 12); }
  set src(v: number) { writeIpv4(this.buf, this.off + 12, v); }
  /** Destination address (uint32). */
  get dst(): number { return readIpv4(this.buf, this.off + 16); }
  set dst(v: number) { writeIpv4(this.buf, this.off + 16, v); }
  /** Offset of the payload in `buf`. */
  get payloadOffset(): number { return this.off + this.headerLen; }
  /** Payload length (total length minus header length). */
  get payloadLength(): number { return this.totalLength - this.headerLen; }
  /** Recompute and store the header checksum. */
  fillChecksum(): void { ipv4FillChecksum(this.buf, this.off); }
  /** True when the header checksum verifies. */
  verifyChecksum(): boolean { return onesSumSimple(this.buf, this.off, this.headerLen) === 0xffff; }
  /** Decrement TTL with the RFC 1624 incremental checksum update; 'ttl-exceeded' (unchanged) when TTL <= 1. */
  decrementTtl(): TtlResult { return ipv4DecrementTtl(this.buf, this.off); }
}

/**
 * Structural IPv4 check without the checksum: bounds, version, IHL, total length
 * (header length <= total length <= len). Allocation-free.
 */
export function ipv4Check(buf: Uint8Array, off: number, len: number): 'ok' | Exclude<Ipv4Reason, 'bad-checksum'> {
  if (!inBounds(buf, off, len)) return 'truncated';
  if (len < IPV4_HLEN) return 'too-short';
  const vihl = buf[off]!;
  if (vihl >>> 4 !== 4) return 'bad-version';
  const hl = (vihl & 15) << 2;
  if (hl < IPV4_HLEN || hl > len) return 'bad-header-length';
  const tl = (buf[off + 2]! << 8) | buf[off + 3]!;
  if (tl < hl || tl > len) return 'bad-total-length';
  return 'ok';
}

/** Total length field of the IPv4 header at `off` (caller checked bounds). */
export function ipv4TotalLength(buf: Uint8Array, off: number): number {
  return (buf[off + 2]! << 8) | buf[off + 3]!;
}

/** True when the IPv4 header at `off` has DF set (caller checked bounds). */
export function ipv4DontFragment(buf: Uint8Array, off: number): boolean {
  return (buf[off + 6]! & 0x40) !== 0;
}

/** Structural check plus header checksum of the IPv4 packet `buf[off..off+len)` (len may include trailing padding). */
export function ipv4Valid(buf: Uint8Array, off: number, len: number): boolean {
  return ipv4Check(buf, off, len) === 'ok' && ipv4VerifyChecksum(buf, off);
}

/** Compute and store the IPv4 header checksum of the header at `off`. */
export function ipv4FillChecksum(buf: Uint8Array, off: number): void {
  buf[off + 10] = 0;
  buf[off + 11] = 0;
  const c = ~onesSumSimple(buf, off, (buf[off]! & 15) << 2) & 0xffff;
  buf[off + 10] = c >>> 8;
  buf[off + 11] = c & 255;
}

/** True when the IPv4 header checksum at `off` verifies (header length from IHL; caller checked bounds). */
export function ipv4VerifyChecksum(buf: Uint8Array, off: number): boolean {
  return onesSumSimple(buf, off, (buf[off]! & 15) << 2) === 0xffff;
}

/**
 * Decrement the TTL of the IPv4 header at `off` and update the checksum incrementally
 * (RFC 1624 eqn. 3; equals a full recomputation whenever the old checksum was valid).
 * Returns 'ttl-exceeded' and leaves the packet untouched when TTL <= 1 (a router must
 * drop it and may answer with ICMP time exceeded).
 */
export function ipv4DecrementTtl(buf: Uint8Array, off: number): TtlResult {
  const ttl = buf[off + 8]!;
  if (ttl <= 1) return 'ttl-exceeded';
  const proto = buf[off + 9]!;
  const old = (ttl << 8) | proto;
  const c = csumUpdate16((buf[off + 10]! << 8) | buf[off + 11]!, old, old - 0x100);
  buf[off + 8] = ttl - 1;
  buf[off + 10] = c >>> 8;
  buf[off + 11] = c & 255;
  return 'ok';
}

/**
 * Write a 20-byte IPv4 header (no options) with its checksum at `buf[off..)`; returns `off + 20`.
 * `fragWord` is the flags/fragment-offset word (e.g. {@link IPV4_DF} or 0).
 */
export function emitIpv4(
  buf: Uint8Array, off: number, tos: number, totalLength: number, id: number, fragWord: number,
  ttl: number, protocol: number, src: number, dst: number,
): number {
  buf[off] = 0x45;
  buf[off + 1] = tos & 255;
  buf[off + 2] = (totalLength >>> 8) & 255;
  buf[off + 3] = totalLength & 255;
  buf[off + 4] = (id >>> 8) & 255;
  buf[off + 5] = id & 255;
  buf[off + 6] = (fragWord >>> 8) & 255;
  buf[off + 7] = fragWord & 255;
  buf[off + 8] = ttl & 255;
  buf[off + 9] = protocol & 255;
  writeIpv4(buf, off + 12, src);
  writeIpv4(buf, off + 16, dst);
  // Checksum from the values directly (no second pass over the bytes).
  const s = 0x4500 + (tos & 255) + (totalLength & 0xffff) + (id & 0xffff) + (fragWord & 0xffff) +
    (((ttl & 255) << 8) | (protocol & 255)) + (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff);
  const c = csumFinish(s);
  buf[off + 10] = c >>> 8;
  buf[off + 11] = c & 255;
  return off + IPV4_HLEN;
}

// ---------------------------------------------------------------------------
// IPv6
// ---------------------------------------------------------------------------

/** Why an IPv6 header was rejected. */
export type Ipv6Reason = 'too-short' | 'truncated' | 'bad-version' | 'bad-total-length';

/** Checked view of an IPv6 base header at `buf[off..off+len)` (payload length must fit in `len`). */
export class Ipv6Packet {
  /** Backing bytes. */
  buf: Uint8Array = EMPTY;
  /** Header start. */
  off = 0;

  /** Target and validate: version 6, 40 + payload length <= len. */
  check(buf: Uint8Array, off: number, len: number): 'ok' | Ipv6Reason {
    const r = ipv6Check(buf, off, len);
    if (r !== 'ok') return r;
    this.buf = buf;
    this.off = off;
    return 'ok';
  }

  /** IP version (6). */
  get version(): number { return this.buf[this.off]! >>> 4; }
  /** Traffic class (8 bits). */
  get trafficClass(): number { return ((this.buf[this.off]! & 15) << 4) | (this.buf[this.off + 1]! >>> 4); }
  set trafficClass(v: number) {
    this.buf[this.off] = 0x60 | ((v >>> 4) & 15);
    this.buf[this.off + 1] = ((v & 15) << 4) | (this.buf[this.off + 1]! & 15);
  }
  /** Flow label (20 bits). */
  get flowLabel(): number { return ((this.buf[this.off + 1]! & 15) << 16) | (this.buf[this.off + 2]! << 8) | this.buf[this.off + 3]!; }
  set flowLabel(v: number) {
    this.buf[this.off + 1] = (this.buf[this.off + 1]! & 0xf0) | ((v >>> 16) & 15);
    this.buf[this.off + 2] = (v >>> 8) & 255;
    this.buf[this.off + 3] = v & 255;
  }
  /** Payload length field. */
  get payloadLength(): number { return (this.buf[this.off + 4]! << 8) | this.buf[this.off + 5]!; }
  set payloadLength(v: number) { this.buf[this.off + 4] = (v >>> 8) & 255; this.buf[this.off + 5] = v & 255; }
  /** Next header (protocol of the payload when there are no extension headers). */
  get nextHeader(): number { return this.buf[this.off + 6]!; }
  set nextHeader(v: number) { this.buf[this.off + 6] = v & 255; }
  /** Hop limit. */
  get hopLimit(): number { return this.buf[this.off + 7]!; }
  set hopLimit(v: number) { this.buf[this.off + 7] = v & 255; }
  /** Offset of the 16-byte source address in `buf`. */
  get srcOffset(): number { return this.off + 8; }
  /** Offset of the 16-byte destination address in `buf`. */
  get dstOffset(): number { return this.off + 24; }
  /** Offset of the payload in `buf`. */
  get payloadOffset(): number { return this.off + IPV6_HLEN; }
  /** Copy the source address into `out[o..o+16)`. */
  copySrc(out: Uint8Array, o = 0): void { for (let i = 0; i < 16; i++) out[o + i] = this.buf[this.off + 8 + i]!; }
  /** Copy the destination address into `out[o..o+16)`. */
  copyDst(out: Uint8Array, o = 0): void { for (let i = 0; i < 16; i++) out[o + i] = this.buf[this.off + 24 + i]!; }
}

/** Structural IPv6 base header check. */
export function ipv6Check(buf: Uint8Array, off: number, len: number): 'ok' | Ipv6Reason {
  if (!inBounds(buf, off, len)) return 'truncated';
  if (len < IPV6_HLEN) return 'too-short';
  if (buf[off]! >>> 4 !== 6) return 'bad-version';
  const pl = (buf[off + 4]! << 8) | buf[off + 5]!;
  if (IPV6_HLEN + pl > len) return 'bad-total-length';
  return 'ok';
}

/**
 * Write a 40-byte IPv6 header at `buf[off..)`; addresses are copied from
 * `src[srcOff..+16)` and `dst[dstOff..+16)`. Returns `off + 40`.
 */
export function emitIpv6(
  buf: Uint8Array, off: number, trafficClass: number, flowLabel: number, payloadLength: number,
  nextHeader: number, hopLimit: number, src: Uint8Array, srcOff: number, dst: Uint8Array, dstOff: number,
): number {
  buf[off] = 0x60 | ((trafficClass >>> 4) & 15);
  buf[off + 1] = ((trafficClass & 15) << 4) | ((flowLabel >>> 16) & 15);
  buf[off + 2] = (flowLabel >>> 8) & 255;
  buf[off + 3] = flowLabel & 255;
  buf[off + 4] = (payloadLength >>> 8) & 255;
  buf[off + 5] = payloadLength & 255;
  buf[off + 6] = nextHeader & 255;
  buf[off + 7] = hopLimit & 255;
  for (let i = 0; i < 16; i++) {
    buf[off + 8 + i] = src[srcOff + i]!;
    buf[off + 24 + i] = dst[dstOff + i]!;
  }
  return off + IPV6_HLEN;
}

// ---------------------------------------------------------------------------
// UDP
// ---------------------------------------------------------------------------

/** Why a UDP header was rejected. */
export type UdpReason = 'too-short' | 'truncated' | 'bad-length' | 'bad-checksum';

/** Checked view of a UDP datagram at `buf[off..off+len)` (len = bytes available after the IP header). */
export class UdpDatagram {
  /** Backing bytes. */
  buf: Uint8Array = EMPTY;
  /** Header start. */
  off = 0;

  /** Target and validate: 8 <= length field <= len. Checksums are verified separately (they need the IP addresses). */
  check(buf: Uint8Array, off: number, len: number): 'ok' | UdpReason {
    const r = udpCheck(buf, off, len);
    if (r !== 'ok') return r;
    this.buf = buf;
    this.off = off;
    return 'ok';
  }

  /** Source port. */
  get srcPort(): number { return (this.buf[this.off]! << 8) | this.buf[this.off + 1]!; }
  set srcPort(v: number) { this.buf[this.off] = (v >>> 8) & 255; this.buf[this.off + 1] = v & 255; }
  /** Destination port. */
  get dstPort(): number { return (this.buf[this.off + 2]! << 8) | this.buf[this.off + 3]!; }
  set dstPort(v: number) { this.buf[this.off + 2] = (v >>> 8) & 255; this.buf[this.off + 3] = v & 255; }
  /** Length field (header + payload). */
  get length(): number { return (this.buf[this.off + 4]! << 8) | this.buf[this.off + 5]!; }
  set length(v: number) { this.buf[this.off + 4] = (v >>> 8) & 255; this.buf[this.off + 5] = v & 255; }
  /** Checksum field (0 = none, IPv4 only). */
  get checksum(): number { return (this.buf[this.off + 6]! << 8) | this.buf[this.off + 7]!; }
  set checksum(v: number) { this.buf[this.off + 6] = (v >>> 8) & 255; this.buf[this.off + 7] = v & 255; }
  /** Offset of the payload. */
  get payloadOffset(): number { return this.off + UDP_HLEN; }
  /** Payload length (length field - 8). */
  get payloadLength(): number { return this.length - UDP_HLEN; }
  /** Verify against the IPv4 pseudo-header; a zero checksum field (none) verifies. */
  verifyChecksum4(src: number, dst: number): boolean { return udpVerify4(this.buf, this.off, src, dst); }
  /** Verify against the IPv6 pseudo-header; zero is invalid over IPv6 (RFC 8200). */
  verifyChecksum6(addrBuf: Uint8Array, srcOff: number, dstOff: number): boolean {
    return udpVerify6(this.buf, this.off, addrBuf, srcOff, dstOff);
  }
  /** Compute and store the checksum over the IPv4 pseudo-header. */
  fillChecksum4(src: number, dst: number): void { udpFillChecksum4(this.buf, this.off, src, dst); }
  /** Compute and store the checksum over the IPv6 pseudo-header. */
  fillChecksum6(addrBuf: Uint8Array, srcOff: number, dstOff: number): void {
    udpFillChecksum6(this.buf, this.off, addrBuf, srcOff, dstOff);
  }
}

/** Structural UDP check: 8 <= length field <= len. */
export function udpCheck(buf: Uint8Array, off: number, len: number): 'ok' | Exclude<UdpReason, 'bad-checksum'> {
  if (!inBounds(buf, off, len)) return 'truncated';
  if (len < UDP_HLEN) return 'too-short';
  const l = (buf[off + 4]! << 8) | buf[off + 5]!;
  if (l < UDP_HLEN || l > len) return 'bad-length';
  return 'ok';
}

/** Write a UDP header with a zero checksum at `buf[off..)`; returns `off + 8`. */
export function emitUdp(buf: Uint8Array, off: number, srcPort: number, dstPort: number, length: number): number {
  buf[off] = (srcPort >>> 8) & 255;
  buf[off + 1] = srcPort & 255;
  buf[off + 2] = (dstPort >>> 8) & 255;
  buf[off + 3] = dstPort & 255;
  buf[off + 4] = (length >>> 8) & 255;
  buf[off + 5] = length & 255;
  buf[off + 6] = 0;
  buf[off + 7] = 0;
  return off + UDP_HLEN;
}

/** Store a computed UDP checksum, mapping 0 to 0xffff (RFC 768). */
function storeUdpCsum(buf: Uint8Array, off: number, c: number): void {
  if (c === 0) c = 0xffff;
  buf[off + 6] = c >>> 8;
  buf[off + 7] = c & 255;
}

/** Compute and store the UDP checksum (IPv4 pseudo-header) of the datagram at `off` (length from its header). */
export function udpFillChecksum4(buf: Uint8Array, off: number, src: number, dst: number): void {
  const l = (buf[off + 4]! << 8) | buf[off + 5]!;
  buf[off + 6] = 0;
  buf[off + 7] = 0;
  storeUdpCsum(buf, off, ~onesSum(buf, off, l, pseudoSum4(src, dst, IpProto.UDP, l)) & 0xffff);
}

/** Compute and store the UDP checksum (IPv6 pseudo-header; addresses at `addrBuf[srcOff..)`, `addrBuf[dstOff..)`). */
export function udpFillChecksum6(buf: Uint8Array, off: number, addrBuf: Uint8Array, srcOff: number, dstOff: number): void {
  const l = (buf[off + 4]! << 8) | buf[off + 5]!;
  buf[off + 6] = 0;
  buf[off + 7] = 0;
  storeUdpCsum(buf, off, ~onesSum(buf, off, l, pseudoSum6(addrBuf, srcOff, dstOff, IpProto.UDP, l)) & 0xffff);
}

/** Verify a UDP checksum over the IPv4 pseudo-header; a zero field means "no checksum" and verifies. Caller checked bounds. */
export function udpVerify4(buf: Uint8Array, off: number, src: number, dst: number): boolean {
  if (buf[off + 6] === 0 && buf[off + 7] === 0) return true;
  const l = (buf[off + 4]! << 8) | buf[off + 5]!;
  return onesSum(buf, off, l, pseudoSum4(src, dst, IpProto.UDP, l)) === 0xffff;
}

/** Verify a UDP checksum over the IPv6 pseudo-header; zero is invalid. Caller checked bounds. */
export function udpVerify6(buf: Uint8Array, off: number, addrBuf: Uint8Array, srcOff: number, dstOff: number): boolean {
  if (buf[off + 6] === 0 && buf[off + 7] === 0) return false;
  const l = (buf[off + 4]! << 8) | buf[off + 5]!;
  return onesSum(buf, off, l, pseudoSum6(addrBuf, srcOff, dstOff, IpProto.UDP, l)) === 0xffff;
}
