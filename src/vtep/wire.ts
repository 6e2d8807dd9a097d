/**
 * Wire helpers used on the dataplane hot path: IPv4 validation, TTL decrement with
 * the incremental checksum (RFC 1624), ICMP error construction, VXLAN header and
 * ARP handling. All functions work in place on Buffers and allocate nothing.
 *
 * (Private to src/vtep: small, self-contained versions of what src/codec provides,
 * kept here so the dataplane's hot path has no cross-module shape dependency.)
 */

/** Ethernet header length. */
export const ETH_HLEN = 14;
/** VXLAN header length. */
export const VXLAN_HLEN = 8;
/** Ethertypes. */
export const ETH_P_IP = 0x0800;
export const ETH_P_ARP = 0x0806;

/** One's-complement sum of `buf[off, off+len)` folded to 16 bits, not inverted. */
export function csumPartial(buf: Buffer, off: number, len: number, initial = 0): number {
  let sum = initial;
  const end = off + (len & ~1);
  for (let i = off; i < end; i += 2) sum += (buf[i]! << 8) | buf[i + 1]!;
  if (len & 1) sum += buf[off + len - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

/** Internet checksum (inverted one's-complement sum) of a range. */
export function checksum(buf: Buffer, off: number, len: number): number {
  return ~csumPartial(buf, off, len) & 0xffff;
}

/**
 * Validate an IPv4 packet at `buf[off, off+len)`: version 4, IHL >= 5, total length
 * consistent with `len` (len may carry trailing padding), header checksum correct.
 * Returns true when valid.
 */
export function ipv4Valid(buf: Buffer, off: number, len: number): boolean {
  if (len < 20) return false;
  const vihl = buf[off]!;
  if (vihl >> 4 !== 4) return false;
  const ihl = (vihl & 15) << 2;
  if (ihl < 20 || ihl > len) return false;
  const tot = (buf[off + 2]! << 8) | buf[off + 3]!;
  if (tot < ihl || tot > len) return false;
  return csumPartial(buf, off, ihl) === 0xffff;
}

/** IPv4 destination as uint32. */
export function ipv4Dst(buf: Buffer, off: number): number {
  return buf.readUInt32BE(off + 16);
}

/** IPv4 source as uint32. */
export function ipv4Src(buf: Buffer, off: number): number {
  return buf.readUInt32BE(off + 12);
}

/** IPv4 total length field. */
export function ipv4TotLen(buf: Buffer, off: number): number {
  return (buf[off + 2]! << 8) | buf[off + 3]!;
}

/**
 * Decrement the TTL and patch the header checksum incrementally (RFC 1624 eqn 3:
 * HC' = ~(~HC + ~m + m')). The caller has checked TTL > 1.
 */
export function ipv4DecTtl(buf: Buffer, off: number): void {
  const oldWord = (buf[off + 8]! << 8) | buf[off + 9]!;
  buf[off + 8] = buf[off + 8]! - 1;
  const newWord = (buf[off + 8]! << 8) | buf[off + 9]!;
  const hc = (buf[off + 10]! << 8) | buf[off + 11]!;
  let sum = (~hc & 0xffff) + (~oldWord & 0xffff) + newWord;
  sum = (sum & 0xffff) + (sum >>> 16);
  sum = (sum & 0xffff) + (sum >>> 16);
  const nc = ~sum & 0xffff;
  buf[off + 10] = nc >>> 8;
  buf[off + 11] = nc & 0xff;
}

/** True when the packet is a non-first fragment (fragment offset != 0). */
export function ipv4NonFirstFragment(buf: Buffer, off: number): boolean {
  return (((buf[off + 6]! & 0x1f) << 8) | buf[off + 7]!) !== 0;
}

/** True when DF is set. */
export function ipv4DontFragment(buf: Buffer, off: number): boolean {
  return (buf[off + 6]! & 0x40) !== 0;
}

/** True when the packet is an ICMP error message (dest unreachable, source quench, redirect, time exceeded, parameter problem), which must never trigger another ICMP error. */
export function ipv4IsIcmpError(buf: Buffer, off: number, len: number): boolean {
  if (buf[off + 9] !== 1) return false;
  const ihl = (buf[off]! & 15) << 2;
  if (len < ihl + 1) return false;
  const t = buf[off + ihl]!;
  return t === 3 || t === 4 || t === 5 || t === 11 || t === 12;
}

/** True when an ICMP error may be generated about this packet (RFC 1812 4.3.2.7, simplified). */
export function icmpErrorAllowed(buf: Buffer, off: number, len: number): boolean {
  if (ipv4NonFirstFragment(buf, off)) return false;
  if (ipv4IsIcmpError(buf, off, len)) return false;
  const src = ipv4Src(buf, off);
  const dst = ipv4Dst(buf, off);
  if (src === 0 || src >>> 28 === 14 || dst >>> 28 === 14 || dst === 0xffffffff) return false; // unspecified/multicast/broadcast
  return true;
}

/** ICMP types and codes used here. */
export const ICMP_DEST_UNREACH = 3;
export const ICMP_NET_UNREACH = 0;
export const ICMP_FRAG_NEEDED = 4;
export const ICMP_TIME_EXCEEDED = 11;
export const ICMP_EXC_TTL = 0;

/** Largest ICMP error we build (RFC 1812: as much of the original as fits in 576 bytes). */
export const ICMP_ERROR_MAX = 576;

/**
 * Build an IPv4 ICMP error about the packet at `orig[origOff, +origLen)` into
 * `out[outOff...]`, from `src` to the original packet's source. `mtu` fills the
 * next-hop MTU field (fragmentation needed), else 0. Returns the length written.
 */
export function buildIcmpError(
  out: Buffer, outOff: number, orig: Buffer, origOff: number, origLen: number,
  type: number, code: number, mtu: number, src: number,
): number {
  const quote = Math.min(origLen, ICMP_ERROR_MAX - 28);
  const total = 28 + quote;
  // IPv4 header
  out[outOff] = 0x45;
  out[outOff + 1] = 0xc0; // internetwork control, as Linux does for ICMP errors
  out.writeUInt16BE(total, outOff + 2);
  out.writeUInt16BE(0, outOff + 4);
  out.writeUInt16BE(0, outOff + 6);
  out[outOff + 8] = 64;
  out[outOff + 9] = 1;
  out.writeUInt16BE(0, outOff + 10);
  out.writeUInt32BE(src >>> 0, outOff + 12);
  orig.copy(out, outOff + 16, origOff + 12, origOff + 16); // dst = original source
  out.writeUInt16BE(checksum(out, outOff, 20), outOff + 10);
  // ICMP header
  const i = outOff + 20;
  out[i] = type;
  out[i + 1] = code;
  out.writeUInt16BE(0, i + 2);
  out.writeUInt16BE(0, i + 4);
  out.writeUInt16BE(mtu & 0xffff, i + 6);
  orig.copy(out, i + 8, origOff, origOff + quote);
  out.writeUInt16BE(checksum(out, i, 8 + quote), i + 2);
  return total;
}

/** VXLAN flags: I (valid VNI) and G (group based policy extension). */
export const VXLAN_FLAG_I = 0x08;
export const VXLAN_FLAG_G = 0x80;

/** Write a VXLAN header at `off` (with GBP, the G flag and `policy` when the policy is non-zero, as Linux does). */
export function writeVxlan(buf: Buffer, off: number, vni: number, gbp: boolean, policy: number): void {
  gbp = gbp && policy !== 0;
  buf[off] = gbp ? VXLAN_FLAG_I | VXLAN_FLAG_G : VXLAN_FLAG_I;
  buf[off + 1] = 0;
  buf[off + 2] = gbp ? (policy >>> 8) & 0xff : 0;
  buf[off + 3] = gbp ? policy & 0xff : 0;
  buf[off + 4] = (vni >>> 16) & 0xff;
  buf[off + 5] = (vni >>> 8) & 0xff;
  buf[off + 6] = vni & 0xff;
  buf[off + 7] = 0;
}

/**
 * Check a VXLAN header as the kernel does: the I flag set, no unknown flag or
 * reserved bits (the G flag and policy only when GBP is on). Returns true if valid.
 */
export function vxlanFlagsValid(buf: Buffer, off: number, gbp: boolean): boolean {
  const f = buf[off]!;
  if (gbp) {
    if ((f & ~(VXLAN_FLAG_I | VXLAN_FLAG_G)) !== 0 || (f & VXLAN_FLAG_I) === 0) return false;
    // byte 1: D (0x40) and A (0x08) bits of GBP are allowed
    if ((buf[off + 1]! & ~0x48) !== 0) return false;
  } else {
    if (f !== VXLAN_FLAG_I || buf[off + 1] !== 0 || buf[off + 2] !== 0 || buf[off + 3] !== 0) return false;
  }
  return buf[off + 7] === 0;
}

/** The 24-bit VNI of a VXLAN header. */
export function vxlanVni(buf: Buffer, off: number): number {
  return (buf[off + 4]! << 16) | (buf[off + 5]! << 8) | buf[off + 6]!;
}

/** Read a 48-bit MAC as a number (exact in a double). */
export function readMac(buf: Buffer, off: number): number {
  return buf.readUIntBE(off, 6);
}

/** Write a 48-bit MAC number. */
export function writeMac(buf: Buffer, off: number, mac: number): void {
  buf.writeUIntBE(mac, off, 6);
}

/** The broadcast MAC as a number. */
export const MAC_BROADCAST = 0xffffffffffff;

/** True for group (broadcast/multicast) MACs: the I/G bit of the first octet. */
export function macIsGroup(buf: Buffer, off: number): boolean {
  return (buf[off]! & 1) !== 0;
}

/** Parse "aa:bb:cc:dd:ee:ff" into a MAC number. */
export function parseMac(s: string): number {
  const m = /^([0-9a-f]{2}):([0-9a-f]{2}):([0-9a-f]{2}):([0-9a-f]{2}):([0-9a-f]{2}):([0-9a-f]{2})$/i.exec(s);
  if (!m) throw new Error(`invalid MAC "${s}"`);
  let v = 0;
  for (let i = 1; i <= 6; i++) v = v * 256 + parseInt(m[i]!, 16);
  return v;
}

/** Format a MAC number as "aa:bb:cc:dd:ee:ff". */
export function formatMac(mac: number): string {
  return mac.toString(16).padStart(12, '0').replace(/(..)(?!$)/g, '$1:');
}

/** True when `buf[off, off+len)` (an Ethernet frame with ethertype ARP) is an Ethernet/IPv4 ARP request. */
export function isArpRequest(buf: Buffer, off: number, len: number): boolean {
  if (len < ETH_HLEN + 28) return false;
  const a = off + ETH_HLEN;
  return buf[a] === 0 && buf[a + 1] === 1 && buf[a + 2] === 0x08 && buf[a + 3] === 0 && buf[a + 4] === 6 && buf[a + 5] === 4 &&
    buf[a + 6] === 0 && buf[a + 7] === 1;
}

/** Target protocol address (int32 form) of the ARP frame at `off`. */
export function arpTargetIp(buf: Buffer, off: number): number {
  return buf.readInt32BE(off + ETH_HLEN + 24);
}

/** Write a MAC given as (hi16, lo32-as-int32) halves. */
export function writeMacHL(buf: Buffer, off: number, hi: number, lo: number): void {
  buf[off] = (hi >>> 8) & 0xff;
  buf[off + 1] = hi & 0xff;
  buf[off + 2] = (lo >>> 24) & 0xff;
  buf[off + 3] = (lo >>> 16) & 0xff;
  buf[off + 4] = (lo >>> 8) & 0xff;
  buf[off + 5] = lo & 0xff;
}

/**
 * Turn the ARP request frame at `off` into the reply "`ip` is at mac (hi, lo)", in place:
 * Ethernet dst = requester, src = the MAC; ARP op 2 with sender/target swapped.
 * Returns the reply length (Ethernet + 28, no padding).
 */
export function arpReplyInPlace(buf: Buffer, off: number, hi: number, lo: number, ip: number): number {
  const a = off + ETH_HLEN;
  // Ethernet: dst <- requester's sender hardware address
  buf.copy(buf, off, a + 8, a + 14);
  writeMacHL(buf, off + 6, hi, lo);
  buf[a + 6] = 0;
  buf[a + 7] = 2;
  // target <- old sender
  buf.copy(buf, a + 18, a + 8, a + 18);
  writeMacHL(buf, a + 8, hi, lo);
  buf.writeInt32BE(ip | 0, a + 14);
  return ETH_HLEN + 28;
}
