/**
 * ICMPv4 (RFC 792): a checked view, and the error messages a router-like dataplane
 * sends (destination unreachable: network unreachable / fragmentation needed with the
 * next-hop MTU (RFC 1191); time exceeded), quoting the offending IP header plus the
 * first 8 bytes of its payload, and never about an ICMP error, a non-first fragment,
 * or a packet whose source is not a single host (RFC 1812 4.3.2.7).
 */
import { readIpv4 } from './addr.js';
import { copyBytes, onesSumSimple, onesSum } from './checksum.js';
import { ICMP_HLEN, IcmpCode, IcmpType, IPV4_HLEN, IpProto } from './constants.js';
import { emitIpv4, ipv4Check, type Ipv4Reason } from './ip.js';
import { EMPTY, inBounds } from './util.js';

/** Why an ICMP message was rejected. */
export type IcmpReason = 'too-short' | 'truncated' | 'bad-checksum';

/** Checked view of an ICMPv4 message at `buf[off..off+len)` (len = the IP payload length). */
export class IcmpPacket {
  /** Backing bytes. */
  buf: Uint8Array = EMPTY;
  /** Message start. */
  off = 0;
  /** Message length (header + data). */
  len = 0;

  /** Target and validate: at least 8 bytes and (unless disabled) a valid checksum over `len` bytes. */
  check(buf: Uint8Array, off: number, len: number, verifyChecksum = true): 'ok' | IcmpReason {
    if (!inBounds(buf, off, len)) return 'truncated';
    if (len < ICMP_HLEN) return 'too-short';
    if (verifyChecksum && onesSum(buf, off, len) !== 0xffff) return 'bad-checksum';
    this.buf = buf;
    this.off = off;
    this.len = len;
    return 'ok';
  }

  /** Message type. */
  get type(): number { return this.buf[this.off]!; }
  set type(v: number) { this.buf[this.off] = v & 255; }
  /** Message code. */
  get code(): number { return this.buf[this.off + 1]!; }
  set code(v: number) { this.buf[this.off + 1] = v & 255; }
  /** Checksum field. */
  get checksum(): number { return (this.buf[this.off + 2]! << 8) | this.buf[this.off + 3]!; }
  set checksum(v: number) { this.buf[this.off + 2] = (v >>> 8) & 255; this.buf[this.off + 3] = v & 255; }
  /** The 4 "rest of header" bytes as a uint32. */
  get restOfHeader(): number { return readIpv4(this.buf, this.off + 4); }
  /** Next-hop MTU of a fragmentation-needed message (low 16 bits of the rest of header). */
  get nextHopMtu(): number { return (this.buf[this.off + 6]! << 8) | this.buf[this.off + 7]!; }
  /** Echo identifier. */
  get identifier(): number { return (this.buf[this.off + 4]! << 8) | this.buf[this.off + 5]!; }
  /** Echo sequence number. */
  get sequence(): number { return (this.buf[this.off + 6]! << 8) | this.buf[this.off + 7]!; }
  /** True for error messages (not echo/timestamp/info/address-mask). */
  get isError(): boolean { return isIcmpErrorType(this.type); }
  /** Offset of the data after the 8-byte header (the quoted packet for errors). */
  get payloadOffset(): number { return this.off + ICMP_HLEN; }
  /** Recompute and store the checksum over `len` bytes. */
  fillChecksum(): void {
    this.buf[this.off + 2] = 0;
    this.buf[this.off + 3] = 0;
    const c = ~onesSum(this.buf, this.off, this.len) & 0xffff;
    this.buf[this.off + 2] = c >>> 8;
    this.buf[this.off + 3] = c & 255;
  }
}

/** True when an ICMP type is not a known informational (query/reply) type, i.e. is or must be treated as an error. */
export function isIcmpErrorType(type: number): boolean {
  switch (type) {
    case 0: case 8: case 9: case 10: case 13: case 14: case 15: case 16: case 17: case 18:
      return false;
    default:
      return true;
  }
}

/** Why no ICMP error may be sent about a packet. */
export type IcmpSuppressReason =
  | Exclude<Ipv4Reason, 'bad-checksum'>
  | 'icmp-error' | 'non-first-fragment' | 'bad-source' | 'multicast';

/**
 * May an ICMP error be sent about the IPv4 packet `buf[off..off+len)`? 'ok', or why not:
 * malformed, an ICMP error (or an ICMP message too short to tell), a non-first fragment,
 * destination broadcast/multicast, or a source that is not a single host (0.0.0.0,
 * 127/8, multicast, class E, broadcast).
 */
export function icmpErrorAllowed(buf: Uint8Array, off: number, len: number): 'ok' | IcmpSuppressReason {
  const r = ipv4Check(buf, off, len);
  if (r !== 'ok') return r;
  if ((((buf[off + 6]! << 8) | buf[off + 7]!) & 0x1fff) !== 0) return 'non-first-fragment';
  const src = readIpv4(buf, off + 12);
  const dst = readIpv4(buf, off + 16);
  if (dst >>> 28 === 0xe || dst === 0xffffffff) return 'multicast';
  if (src === 0 || src >>> 24 === 127 || src >>> 28 >= 0xe) return 'bad-source';
  if (buf[off + 9] === IpProto.ICMP) {
    const hl = (buf[off]! & 15) << 2;
    const tl = (buf[off + 2]! << 8) | buf[off + 3]!;
    if (tl <= hl || isIcmpErrorType(buf[off + hl]!)) return 'icmp-error';
  }
  return 'ok';
}

/**
 * Build an IPv4 ICMP error packet into `out[outOff..)` about the packet
 * `pkt[pktOff..pktOff+pktLen)`: IPv4 header (source `srcIp`, destination the offending
 * packet's source, TOS 0xc0, TTL `ttl`), ICMP `type`/`code`/`rest` (rest-of-header
 * uint32) and a quote of the offending IP header plus up to 8 payload bytes. Returns
 * the packet length, or 0 when {@link icmpErrorAllowed} says no. `out` must have room
 * for 28 + 60 + 8 bytes and must not overlap the quoted bytes. Allocation-free.
 */
export function buildIcmpError(
  out: Uint8Array, outOff: number, pkt: Uint8Array, pktOff: number, pktLen: number,
  type: number, code: number, rest: number, srcIp: number, ttl = 64, id = 0,
): number {
  if (icmpErrorAllowed(pkt, pktOff, pktLen) !== 'ok') return 0;
  const hl = (pkt[pktOff]! & 15) << 2;
  const tl = (pkt[pktOff + 2]! << 8) | pkt[pktOff + 3]!;
  const quote = Math.min(hl + 8, tl);
  const icmpLen = ICMP_HLEN + quote;
  const total = IPV4_HLEN + icmpLen;
  if (!inBounds(out, outOff, total)) throw new RangeError(`ICMP error needs ${total} bytes at offset ${outOff}`);
  emitIpv4(out, outOff, 0xc0, total, id, 0, ttl, IpProto.ICMP, srcIp, readIpv4(pkt, pktOff + 12));
  const m = outOff + IPV4_HLEN;
  emitIcmpErrorBody(out, m, type, code, rest, pkt, pktOff, quote);
  const c = ~onesSumSimple(out, m, icmpLen) & 0xffff;
  out[m + 2] = c >>> 8;
  out[m + 3] = c & 255;
  return total;
}

/**
 * The body of an ICMP (v4 or v6) error at `out[m..)`: type, code, a zero checksum, the 4-byte
 * `rest` (uint32), then the first `quote` bytes of the offending packet at `pkt[pktOff..)`.
 * The caller fills the checksum (ICMPv6's covers a pseudo-header).
 */
export function emitIcmpErrorBody(out: Uint8Array, m: number, type: number, code: number, rest: number, pkt: Uint8Array, pktOff: number, quote: number): void {
  out[m] = type & 255;
  out[m + 1] = code & 255;
  out[m + 2] = 0;
  out[m + 3] = 0;
  out[m + 4] = rest >>> 24;
  out[m + 5] = (rest >>> 16) & 255;
  out[m + 6] = (rest >>> 8) & 255;
  out[m + 7] = rest & 255;
  copyBytes(pkt, pktOff, out, m + ICMP_HLEN, quote);
}

/** ICMP destination unreachable / network unreachable about `pkt`; see {@link buildIcmpError}. */
export function buildIcmpNetUnreachable(
  out: Uint8Array, outOff: number, pkt: Uint8Array, pktOff: number, pktLen: number, srcIp: number,
): number {
  return buildIcmpError(out, outOff, pkt, pktOff, pktLen, IcmpType.DEST_UNREACH, IcmpCode.NET_UNREACH, 0, srcIp);
}

/** ICMP destination unreachable / fragmentation needed carrying the next-hop `mtu` (RFC 1191); see {@link buildIcmpError}. */
export function buildIcmpFragNeeded(
  out: Uint8Array, outOff: number, pkt: Uint8Array, pktOff: number, pktLen: number, srcIp: number, mtu: number,
): number {
  return buildIcmpError(out, outOff, pkt, pktOff, pktLen, IcmpType.DEST_UNREACH, IcmpCode.FRAG_NEEDED, mtu & 0xffff, srcIp);
}

/** ICMP time exceeded / TTL exceeded in transit about `pkt`; see {@link buildIcmpError}. */
export function buildIcmpTimeExceeded(
  out: Uint8Array, outOff: number, pkt: Uint8Array, pktOff: number, pktLen: number, srcIp: number,
): number {
  return buildIcmpError(out, outOff, pkt, pktOff, pktLen, IcmpType.TIME_EXCEEDED, IcmpCode.TTL_EXCEEDED, 0, srcIp);
}

/** Largest ICMP error packet {@link buildIcmpError} can produce: 20 + 8 + 60 + 8 = 96 bytes. */
export const ICMP_ERROR_MAX = IPV4_HLEN + ICMP_HLEN + 60 + 8;
