/**
 * ICMPv6 (RFC 4443) errors a router-like dataplane sends about an IPv6 packet it cannot
 * forward: destination unreachable (no route), packet too big (with the MTU), time exceeded
 * (hop limit exceeded in transit). The counterpart of src/codec/icmp.ts's ICMPv4 builders, in
 * the same shape: one builder that refuses what RFC 4443 2.4 (e) forbids (an ICMPv6 error, a
 * multicast destination except for packet too big, a source that is not a single unicast
 * host) and quotes as much of the offending packet as fits the IPv6 minimum MTU (1280).
 * Also: the IPv6 hop-limit step and the inner-packet walk over extension headers.
 */
import { onesSum, pseudoSum6 } from './checksum.js';
import { ICMP_HLEN, IPV6_HLEN, IpProto } from './constants.js';
import { emitIpv6, ipv6Check } from './ip.js';
import { emitIcmpErrorBody } from './icmp.js';
import { inBounds } from './util.js';

/** ICMPv6 message types used by the dataplane (RFC 4443, RFC 4861). */
export const Icmp6Type = {
  DEST_UNREACH: 1,
  PACKET_TOO_BIG: 2,
  TIME_EXCEEDED: 3,
  PARAM_PROBLEM: 4,
  ECHO_REQUEST: 128,
  ECHO_REPLY: 129,
  NEIGHBOR_SOLICIT: 135,
  NEIGHBOR_ADVERT: 136,
} as const;

/** ICMPv6 codes: destination unreachable / no route (0); time exceeded / hop limit (0). */
export const Icmp6Code = {
  NO_ROUTE: 0,
  HOP_LIMIT_EXCEEDED: 0,
} as const;

/** Largest ICMPv6 error {@link buildIcmp6Error} produces: the IPv6 minimum MTU (RFC 4443 2.4 (c)). */
export const ICMP6_ERROR_MAX = 1280;

/** Why no ICMPv6 error may be sent about a packet. */
export type Icmp6SuppressReason = 'too-short' | 'truncated' | 'bad-version' | 'bad-total-length' | 'icmp-error' | 'bad-source' | 'multicast';

/** True when the 16 bytes at `b[o..)` are the unspecified address ::. */
function isUnspecified6(b: Uint8Array, o: number): boolean {
  for (let i = 0; i < 16; i++) if (b[o + i] !== 0) return false;
  return true;
}

/** True when the 16 bytes at `b[o..)` are ::1. */
function isLoopback6(b: Uint8Array, o: number): boolean {
  for (let i = 0; i < 15; i++) if (b[o + i] !== 0) return false;
  return b[o + 15] === 1;
}

/** True for IPv6 extension headers that may precede the upper-layer header (RFC 8200 4.1). */
function isExtHeader(nh: number): boolean {
  return nh === IpProto.HOPOPT || nh === IpProto.IPV6_ROUTE || nh === IpProto.IPV6_FRAG || nh === IpProto.IPV6_OPTS || nh === 51 /* AH */;
}

/**
 * The upper-layer protocol of the IPv6 packet `buf[off..off+len)` after its extension headers,
 * as `(proto << 16) | offset-from-off`; -1 when the chain runs past the packet or reaches a
 * non-first fragment (nothing to tell). Allocation-free.
 */
export function ipv6UpperLayer(buf: Uint8Array, off: number, len: number): number {
  let nh = buf[off + 6]!;
  let p = IPV6_HLEN;
  for (let hops = 0; isExtHeader(nh) && hops < 16; hops++) {
    if (p + 8 > len) return -1;
    if (nh === IpProto.IPV6_FRAG) {
      if ((((buf[off + p + 2]! << 8) | buf[off + p + 3]!) & 0xfff8) !== 0) return -1;
      nh = buf[off + p]!;
      p += 8;
    } else if (nh === 51) {
      const l = (buf[off + p + 1]! + 2) << 2;
      nh = buf[off + p]!;
      p += l;
    } else {
      const l = (buf[off + p + 1]! + 1) << 3;
      nh = buf[off + p]!;
      p += l;
    }
  }
  return p > len || isExtHeader(nh) ? -1 : (nh << 16) | p;
}

/**
 * May an ICMPv6 error of `type` be sent about the IPv6 packet `buf[off..off+len)`? 'ok', or
 * why not (RFC 4443 2.4 (e)): malformed; itself an ICMPv6 error (or a message too short to
 * tell); a multicast destination (except for packet too big); a source that is not a single
 * unicast host (::, ::1, multicast).
 */
export function icmp6ErrorAllowed(buf: Uint8Array, off: number, len: number, type: number): 'ok' | Icmp6SuppressReason {
  const r = ipv6Check(buf, off, len);
  if (r !== 'ok') return r;
  const src = off + 8;
  if (buf[src] === 0xff || isUnspecified6(buf, src) || isLoopback6(buf, src)) return 'bad-source';
  if (buf[off + 24] === 0xff && type !== Icmp6Type.PACKET_TOO_BIG) return 'multicast';
  const tl = IPV6_HLEN + ((buf[off + 4]! << 8) | buf[off + 5]!);
  const ul = ipv6UpperLayer(buf, off, tl);
  if (ul >= 0 && ul >>> 16 === IpProto.ICMPV6) {
    const p = ul & 0xffff;
    if (p >= tl || buf[off + p]! < 128) return 'icmp-error';
  }
  return 'ok';
}

/**
 * Build an ICMPv6 error packet into `out[outOff..)` about the IPv6 packet `pkt[pktOff..pktOff+pktLen)`:
 * IPv6 header (source the 16 bytes at `src[srcOff..)`, destination the offending packet's
 * source, hop limit `hopLimit`), ICMPv6 `type`/`code`/`rest` (the 4 bytes after the checksum:
 * the MTU for packet too big) and as much of the offending packet as keeps the error within
 * 1280 bytes (and `maxLen`). Returns the packet length, or 0 when {@link icmp6ErrorAllowed}
 * says no. `out` must not overlap the quoted bytes. Allocation-free.
 */
export function buildIcmp6Error(
  out: Uint8Array, outOff: number, pkt: Uint8Array, pktOff: number, pktLen: number,
  type: number, code: number, rest: number, src: Uint8Array, srcOff: number, hopLimit = 64, maxLen = ICMP6_ERROR_MAX,
): number {
  if (icmp6ErrorAllowed(pkt, pktOff, pktLen, type) !== 'ok') return 0;
  const tl = IPV6_HLEN + ((pkt[pktOff + 4]! << 8) | pkt[pktOff + 5]!);
  const cap = Math.min(ICMP6_ERROR_MAX, maxLen) - IPV6_HLEN - ICMP_HLEN;
  const quote = Math.min(tl, cap);
  const icmpLen = ICMP_HLEN + quote;
  const total = IPV6_HLEN + icmpLen;
  if (!inBounds(out, outOff, total)) throw new RangeError(`ICMPv6 error needs ${total} bytes at offset ${outOff}`);
  emitIpv6(out, outOff, 0, 0, icmpLen, IpProto.ICMPV6, hopLimit, src, srcOff, pkt, pktOff + 8);
  const m = outOff + IPV6_HLEN;
  emitIcmpErrorBody(out, m, type, code, rest, pkt, pktOff, quote);
  const c = ~onesSum(out, m, icmpLen, pseudoSum6(out, outOff + 8, outOff + 24, IpProto.ICMPV6, icmpLen)) & 0xffff;
  out[m + 2] = c >>> 8;
  out[m + 3] = c & 255;
  return total;
}

/**
 * Decrement the hop limit of the IPv6 packet at `buf[off..)` (no checksum in the IPv6 header);
 * returns false, leaving it, when it is already 0 or 1 (the packet may not be forwarded).
 */
export function ipv6DecrementHopLimit(buf: Uint8Array, off: number): boolean {
  const h = buf[off + 7]!;
  if (h <= 1) return false;
  buf[off + 7] = h - 1;
  return true;
}

/**
 * True when the IPv6 packet `buf[off..off+len)` is a well-formed neighbour solicitation (RFC 4861
 * 7.1.1: hop limit 255, ICMPv6 type 135 code 0 right after the fixed header, at least 24 bytes,
 * checksum valid) whose target is the 16 bytes at `target[tOff..)`.
 */
export function isNeighborSolicitFor(buf: Uint8Array, off: number, len: number, target: Uint8Array, tOff: number): boolean {
  if (ipv6Check(buf, off, len) !== 'ok' || buf[off + 6] !== IpProto.ICMPV6 || buf[off + 7] !== 255) return false;
  const pl = (buf[off + 4]! << 8) | buf[off + 5]!;
  const m = off + IPV6_HLEN;
  if (pl < 24 || buf[m] !== Icmp6Type.NEIGHBOR_SOLICIT || buf[m + 1] !== 0) return false;
  if (onesSum(buf, m, pl, pseudoSum6(buf, off + 8, off + 24, IpProto.ICMPV6, pl)) !== 0xffff) return false;
  for (let i = 0; i < 16; i++) if (buf[m + 8 + i] !== target[tOff + i]) return false;
  return true;
}

/** Length of the neighbour advertisement {@link buildNeighborAdvert} writes: Ethernet 14 + IPv6 40 + NA 24 + target link-layer option 8. */
export const NEIGHBOR_ADVERT_FRAME_LEN = 14 + IPV6_HLEN + 32;

/**
 * Turn the Ethernet frame at `buf[off..)` carrying a neighbour solicitation (checked with
 * {@link isNeighborSolicitFor}) into the neighbour advertisement answering it, in place: from
 * MAC `mac` (48-bit) and the solicited target, to the soliciter (or all-nodes ff02::1 when it
 * solicited from ::, RFC 4861 7.2.4), Solicited and Override set, with a target link-layer
 * option. `buf` must have {@link NEIGHBOR_ADVERT_FRAME_LEN} bytes at `off`. Returns that length.
 */
export function buildNeighborAdvert(buf: Uint8Array, off: number, mac: number): number {
  const ip = off + 14;
  const m = ip + IPV6_HLEN;
  const dad = isUnspecified6(buf, ip + 8);
  // Ethernet: to the soliciter's MAC (33:33:00:00:00:01 for DAD), from ours
  for (let i = 0; i < 6; i++) buf[off + i] = dad ? (i < 2 ? 0x33 : i === 5 ? 1 : 0) : buf[off + 6 + i]!;
  const hi = Math.floor(mac / 0x100000000);
  const lo = mac >>> 0;
  const macAt = (o: number): void => {
    buf[o] = (hi >>> 8) & 255; buf[o + 1] = hi & 255;
    buf[o + 2] = lo >>> 24; buf[o + 3] = (lo >>> 16) & 255; buf[o + 4] = (lo >>> 8) & 255; buf[o + 5] = lo & 255;
  };
  macAt(off + 6);
  // IPv6: destination the soliciter (ff02::1 for DAD), source the target
  for (let i = 0; i < 16; i++) buf[ip + 24 + i] = dad ? (i === 0 ? 0xff : i === 1 ? 2 : i === 15 ? 1 : 0) : buf[ip + 8 + i]!;
  for (let i = 0; i < 16; i++) buf[ip + 8 + i] = buf[m + 8 + i]!;
  buf[ip] = 0x60; buf[ip + 1] = 0; buf[ip + 2] = 0; buf[ip + 3] = 0;
  buf[ip + 4] = 0; buf[ip + 5] = 32; buf[ip + 6] = IpProto.ICMPV6; buf[ip + 7] = 255;
  buf[m] = Icmp6Type.NEIGHBOR_ADVERT; buf[m + 1] = 0; buf[m + 2] = 0; buf[m + 3] = 0;
  buf[m + 4] = dad ? 0x20 : 0x60; buf[m + 5] = 0; buf[m + 6] = 0; buf[m + 7] = 0; // S (not for DAD) and O
  buf[m + 24] = 2; // target link-layer address option, 1 unit of 8 bytes
  buf[m + 25] = 1;
  macAt(m + 26);
  const c = ~onesSum(buf, m, 32, pseudoSum6(buf, ip + 8, ip + 24, IpProto.ICMPV6, 32)) & 0xffff;
  buf[m + 2] = c >>> 8;
  buf[m + 3] = c & 255;
  return NEIGHBOR_ADVERT_FRAME_LEN;
}
