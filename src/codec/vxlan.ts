/**
 * VXLAN (RFC 7348) with the Group Based Policy extension (draft-smith-vxlan-group-policy,
 * Linux `gbp`), in-place encapsulation (socket form and full form), decapsulation, and
 * the inner-flow hash that picks the outer UDP source port.
 *
 * Header layout:
 *
 *     0               1               2               3
 *     |G|R|R|R|I|R|R|R|R|D|R|R|A|R|R|R|   Group Policy ID (GBP) / 0   |
 *     |          VXLAN Network Identifier (VNI)       |   Reserved    |
 *
 * Without GBP the G/D/A bits and the group id are reserved: zero on send, ignored on receive.
 */
import { macToNumber, readIpv4, writeMac } from './addr.js';
import { csumFinish, onesSum, pseudoSum4, pseudoSum6 } from './checksum.js';
import {
  EPHEMERAL_PORT_MAX, EPHEMERAL_PORT_MIN, ETH_HLEN, EtherType, IPV4_HLEN, IPV6_HLEN, IpProto, UDP_HLEN,
  VXLAN_HLEN, VXLAN_IPV4_OVERHEAD, VXLAN_IPV6_OVERHEAD, VXLAN_PORT_LINUX, VNI_FLANNEL_DEFAULT,
} from './constants.js';
import { EMPTY, inBounds, rd32 } from './util.js';

/** VXLAN flags byte: I (valid VNI) bit. */
export const VXLAN_FLAG_I = 0x08;
/** VXLAN flags byte: G (group policy present) bit, GBP extension. */
export const VXLAN_FLAG_G = 0x80;
/** GBP second byte: D (don't learn) bit. */
export const VXLAN_GBP_DONT_LEARN = 0x40;
/** GBP second byte: A (policy applied) bit. */
export const VXLAN_GBP_APPLIED = 0x08;

/** Why a VXLAN header was rejected. */
export type VxlanReason = 'too-short' | 'truncated' | 'bad-flags' | 'unexpected-vni';

/** Checked view of an 8-byte VXLAN header. */
export class VxlanHeader {
  /** Backing bytes. */
  buf: Uint8Array = EMPTY;
  /** Header start. */
  off = 0;

  /** Target and validate: at least 8 bytes, I flag set; `expectVni` (>= 0) must match. */
  check(buf: Uint8Array, off: number, len: number, expectVni = -1): 'ok' | VxlanReason {
    if (!inBounds(buf, off, len)) return 'truncated';
    if (len < VXLAN_HLEN) return 'too-short';
    if ((buf[off]! & VXLAN_FLAG_I) === 0) return 'bad-flags';
    if (expectVni >= 0 && ((buf[off + 4]! << 16) | (buf[off + 5]! << 8) | buf[off + 6]!) !== expectVni) return 'unexpected-vni';
    this.buf = buf;
    this.off = off;
    return 'ok';
  }

  /** Raw flags byte. */
  get flags(): number { return this.buf[this.off]!; }
  /** 24-bit VNI. */
  get vni(): number { return vxlanVni(this.buf, this.off); }
  set vni(v: number) {
    this.buf[this.off + 4] = (v >>> 16) & 255;
    this.buf[this.off + 5] = (v >>> 8) & 255;
    this.buf[this.off + 6] = v & 255;
  }
  /** GBP: G flag set (a group policy id is present). Meaningful only when GBP is enabled. */
  get hasGbp(): boolean { return (this.buf[this.off]! & VXLAN_FLAG_G) !== 0; }
  /** GBP: 16-bit group policy id. */
  get gbpId(): number { return (this.buf[this.off + 2]! << 8) | this.buf[this.off + 3]!; }
  /** GBP: D (don't learn) bit. */
  get gbpDontLearn(): boolean { return (this.buf[this.off + 1]! & VXLAN_GBP_DONT_LEARN) !== 0; }
  /** GBP: A (policy applied) bit. */
  get gbpApplied(): boolean { return (this.buf[this.off + 1]! & VXLAN_GBP_APPLIED) !== 0; }
}

/** The 24-bit VNI of the VXLAN header at `off` (caller checked bounds). */
export function vxlanVni(buf: Uint8Array, off: number): number {
  return (buf[off + 4]! << 16) | (buf[off + 5]! << 8) | buf[off + 6]!;
}

/**
 * The Linux receive-side flag check (vxlan_rcv): the I flag set and no unknown flag or
 * reserved bit; with `gbp`, the G flag, the D/A bits in byte 1 and the group id in
 * bytes 2-3 are allowed too. The last byte (reserved) must be zero. Caller checked bounds.
 */
export function vxlanFlagsValid(buf: Uint8Array, off: number, gbp: boolean): boolean {
  const f = buf[off]!;
  if (gbp) {
    if ((f & ~(VXLAN_FLAG_I | VXLAN_FLAG_G)) !== 0 || (f & VXLAN_FLAG_I) === 0) return false;
    if ((buf[off + 1]! & ~(VXLAN_GBP_DONT_LEARN | VXLAN_GBP_APPLIED)) !== 0) return false;
  } else if (f !== VXLAN_FLAG_I || buf[off + 1] !== 0 || buf[off + 2] !== 0 || buf[off + 3] !== 0) {
    return false;
  }
  return buf[off + 7] === 0;
}

/**
 * Write the VXLAN header the Linux device sends: with GBP on and a non-zero `policy`,
 * a GBP header (G flag and the group id), else a plain one. Returns `off + 8`.
 */
export function emitVxlanPolicy(buf: Uint8Array, off: number, vni: number, gbp: boolean, policy: number): number {
  return gbp && policy !== 0 ? emitVxlanGbp(buf, off, vni, policy) : emitVxlan(buf, off, vni);
}

/** Write a plain VXLAN header (I flag, VNI, reserved zero) at `buf[off..off+8)`; returns `off + 8`. */
export function emitVxlan(buf: Uint8Array, off: number, vni: number): number {
  buf[off] = VXLAN_FLAG_I;
  buf[off + 1] = 0;
  buf[off + 2] = 0;
  buf[off + 3] = 0;
  buf[off + 4] = (vni >>> 16) & 255;
  buf[off + 5] = (vni >>> 8) & 255;
  buf[off + 6] = vni & 255;
  buf[off + 7] = 0;
  return off + VXLAN_HLEN;
}

/**
 * Write a GBP VXLAN header: G and I flags, `gbpFlags` (D/A bits: {@link VXLAN_GBP_DONT_LEARN},
 * {@link VXLAN_GBP_APPLIED}) in byte 1, 16-bit `groupId`, VNI. Returns `off + 8`.
 */
export function emitVxlanGbp(buf: Uint8Array, off: number, vni: number, groupId: number, gbpFlags = 0): number {
  buf[off] = VXLAN_FLAG_G | VXLAN_FLAG_I;
  buf[off + 1] = gbpFlags & (VXLAN_GBP_DONT_LEARN | VXLAN_GBP_APPLIED);
  buf[off + 2] = (groupId >>> 8) & 255;
  buf[off + 3] = groupId & 255;
  buf[off + 4] = (vni >>> 16) & 255;
  buf[off + 5] = (vni >>> 8) & 255;
  buf[off + 6] = vni & 255;
  buf[off + 7] = 0;
  return off + VXLAN_HLEN;
}

// ---------------------------------------------------------------------------
// Flow hash and source port
// ---------------------------------------------------------------------------

/** One multiply-xor-rotate step per 32-bit word (the murmur finaliser below does the avalanche). */
function mix(h: number, k: number): number {
  h = Math.imul(h ^ k, 0x9e3779b1);
  return (h << 13) | (h >>> 19);
}

/** murmur3 finaliser, reduced to 31 bits so the result is always a Smi (never boxed). */
function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 1;
}


/**
 * 31-bit non-zero hash (multiply-rotate mixing + murmur3 finaliser) of the inner Ethernet frame's flow: destination and
 * source MACs, EtherType, and for IPv4/IPv6 the addresses, protocol and (TCP, UDP,
 * SCTP, not a non-first fragment) the ports. Reads only inside `buf[off..off+len)`;
 * a short frame hashes what it has. Allocation-free; never returns 0.
 */
export function innerFlowHash(buf: Uint8Array, off: number, len: number, seed = 0): number {
  if (!inBounds(buf, off, len) || len < ETH_HLEN) return fmix(seed ^ 0x9e3779b9) || 1;
  let h = seed | 0;
  h = mix(h, rd32(buf, off));
  h = mix(h, rd32(buf, off + 4));
  h = mix(h, rd32(buf, off + 8));
  let p = off + 12;
  let et = (buf[p]! << 8) | buf[p + 1]!;
  if (et === EtherType.VLAN && len >= ETH_HLEN + 4) {
    p += 4;
    et = (buf[p]! << 8) | buf[p + 1]!;
  }
  h = mix(h, et);
  return ipFlowMix(buf, p + 2, off + len, et, h);
}

/**
 * The flow hash of a bare IP packet at `buf[off..off+len)` (the UDP backend's payload), the same
 * mixing as {@link innerFlowHash} applies to an Ethernet frame's IP part: addresses, protocol,
 * ports of a first fragment. Allocation-free; never returns 0.
 */
export function ipFlowHash(buf: Uint8Array, off: number, len: number, seed = 0): number {
  if (!inBounds(buf, off, len) || len < 1) return fmix(seed ^ 0x9e3779b9) || 1;
  const v = buf[off]! >>> 4;
  return ipFlowMix(buf, off, off + len, v === 4 ? EtherType.IPv4 : v === 6 ? EtherType.IPv6 : 0, seed | 0);
}

/** Mix the IPv4/IPv6 flow fields of the packet at `buf[p..end)` (EtherType `et`) into `h`; finalised. */
function ipFlowMix(buf: Uint8Array, p: number, end: number, et: number, h: number): number {
  let proto = -1;
  let l4 = 0;
  if (et === EtherType.IPv4 && p + IPV4_HLEN <= end && buf[p]! >>> 4 === 4) {
    h = mix(h, rd32(buf, p + 12));
    h = mix(h, rd32(buf, p + 16));
    proto = buf[p + 9]!;
    h = mix(h, proto);
    // Ports only for the first fragment (offset 0).
    if ((((buf[p + 6]! << 8) | buf[p + 7]!) & 0x1fff) !== 0) proto = -1;
    l4 = p + ((buf[p]! & 15) << 2);
  } else if (et === EtherType.IPv6 && p + IPV6_HLEN <= end && buf[p]! >>> 4 === 6) {
    for (let i = 8; i < 40; i += 4) h = mix(h, rd32(buf, p + i));
    proto = buf[p + 6]!;
    h = mix(h, proto);
    l4 = p + IPV6_HLEN;
  }
  if ((proto === IpProto.TCP || proto === IpProto.UDP || proto === IpProto.SCTP) && l4 + 4 <= end) {
    h = mix(h, rd32(buf, l4));
  }
  return fmix(h) || 1;
}

/**
 * Map a flow hash to a UDP source port the way Linux `udp_flow_src_port()` does:
 * `hash ^= hash << 16; port = min + ((hash * (max - min)) >> 32)`, i.e. in [min, max)
 * (max itself is never produced, as in the kernel). When `min >= max` the kernel's
 * default range (ip_local_port_range, 32768..60999) is used.
 */
export function flowSrcPort(hash: number, min: number = EPHEMERAL_PORT_MIN, max: number = EPHEMERAL_PORT_MAX): number {
  if (min >= max) { min = EPHEMERAL_PORT_MIN; max = EPHEMERAL_PORT_MAX; }
  const h = (hash ^ (hash << 16)) >>> 0;
  return min + Math.floor((h * (max - min)) / 4294967296);
}

// ---------------------------------------------------------------------------
// Encapsulation
// ---------------------------------------------------------------------------

/**
 * Everything full-form encapsulation needs for one remote VTEP, preconfigured once and
 * reused for every packet (mutable: `ipId` advances per packet).
 */
export interface VxlanTunnel {
  /** 24-bit VNI. */
  vni: number;
  /** Outer address family. */
  family: 4 | 6;
  /** Outer Ethernet source MAC (our underlay NIC), 48-bit number. */
  srcMac: number;
  /** Outer Ethernet destination MAC (underlay next hop), 48-bit number. */
  dstMac: number;
  /** Outer IPv4 source (uint32), family 4. */
  srcIp: number;
  /** Outer IPv4 destination (uint32), family 4. */
  dstIp: number;
  /** Outer IPv6 source (16 bytes), family 6. */
  src6: Uint8Array;
  /** Outer IPv6 destination (16 bytes), family 6. */
  dst6: Uint8Array;
  /** UDP destination port (8472 Linux/flannel, 4789 IANA). */
  dstPort: number;
  /** Source port range low end (inclusive), as vxlan `srcport MIN MAX`. */
  portMin: number;
  /** Source port range high end (exclusive, as in the kernel). */
  portMax: number;
  /** Outer TTL / hop limit (kernel default: 64). */
  ttl: number;
  /** Outer TOS / traffic class (DSCP bits; ECN is taken from the inner header when `ecn`). */
  tos: number;
  /** Copy the inner IP ECN bits to the outer header like the kernel (CE becomes ECT(0)). */
  ecn: boolean;
  /** Set DF on the outer IPv4 header (kernel default: not set). */
  df: boolean;
  /** Outer IPv6 flow label (20 bits). */
  flowLabel: number;
  /** Compute the outer UDP checksum (default true like Linux `udpcsum`; IPv4 `noudpcsum` sends 0; IPv6 zero only if false, RFC 6935). */
  udpChecksum: boolean;
  /** Emit the GBP extension (G flag + group id) when `gbpId` or `gbpFlags` is non-zero, as Linux does. */
  gbp: boolean;
  /** GBP group policy id (16 bits). */
  gbpId: number;
  /** GBP D/A bits. */
  gbpFlags: number;
  /** Next outer IPv4 identification; incremented (mod 2^16) per packet. */
  ipId: number;
}

/** Build a {@link VxlanTunnel} with kernel/flannel defaults (VNI 1, port 8472, TTL 64, no DF, UDP checksum on: Linux `udpcsum` default). */
export function vxlanTunnel(opts: Partial<VxlanTunnel> = {}): VxlanTunnel {
  return {
    vni: VNI_FLANNEL_DEFAULT,
    family: 4,
    srcMac: 0,
    dstMac: 0,
    srcIp: 0,
    dstIp: 0,
    src6: new Uint8Array(16),
    dst6: new Uint8Array(16),
    dstPort: VXLAN_PORT_LINUX,
    portMin: EPHEMERAL_PORT_MIN,
    portMax: EPHEMERAL_PORT_MAX,
    ttl: 64,
    tos: 0,
    ecn: true,
    df: false,
    flowLabel: 0,
    udpChecksum: true,
    gbp: false,
    gbpId: 0,
    gbpFlags: 0,
    ipId: 0,
    ...opts,
  };
}

function needHeadroom(off: number, n: number): void {
  if (off < n) throw new RangeError(`vxlan encapsulation needs ${n} bytes of headroom, have ${off}`);
}

/**
 * Socket-form encapsulation: write only the 8-byte VXLAN header at `buf[off-8..off)` in
 * front of the inner frame `buf[off..off+len)`. Returns the new start (`off - 8`); the
 * datagram payload is `len + 8` bytes. Throws RangeError if `off < 8` (slot contract).
 */
export function vxlanEncapSocket(buf: Uint8Array, off: number, vni: number): number {
  needHeadroom(off, VXLAN_HLEN);
  emitVxlan(buf, off - VXLAN_HLEN, vni);
  return off - VXLAN_HLEN;
}

/** Socket-form encapsulation with the GBP extension. Returns `off - 8`. */
export function vxlanEncapSocketGbp(buf: Uint8Array, off: number, vni: number, groupId: number, gbpFlags = 0): number {
  needHeadroom(off, VXLAN_HLEN);
  emitVxlanGbp(buf, off - VXLAN_HLEN, vni, groupId, gbpFlags);
  return off - VXLAN_HLEN;
}

/** ECN bits of the inner IP header of an Ethernet frame (0 when not IP or too short). */
function innerEcn(buf: Uint8Array, off: number, len: number): number {
  if (len < ETH_HLEN + 2) return 0;
  const et = (buf[off + 12]! << 8) | buf[off + 13]!;
  let e = 0;
  if (et === EtherType.IPv4 && buf[off + 14]! >>> 4 === 4) e = buf[off + 15]! & 3;
  else if (et === EtherType.IPv6 && buf[off + 14]! >>> 4 === 6) e = (buf[off + 15]! >>> 4) & 3;
  else return 0;
  return e === 3 ? 2 : e; // CE -> ECT(0) (INET_ECN_encapsulate)
}

/**
 * Full-form encapsulation of the inner Ethernet frame `buf[off..off+len)`: writes outer
 * Ethernet + IPv4 (50 bytes) or IPv6 (70 bytes) + UDP + VXLAN in front of it, with the
 * IPv4 header checksum and (if `t.udpChecksum`) the UDP checksum. The UDP source port is
 * {@link flowSrcPort} of {@link innerFlowHash}. Returns the new start offset; the frame
 * is `len + (off - newOff)` bytes. Allocation-free. Throws RangeError without headroom.
 */
export function vxlanEncapFull(buf: Uint8Array, off: number, len: number, t: VxlanTunnel): number {
  const v6 = t.family === 6;
  const oh = v6 ? VXLAN_IPV6_OVERHEAD : VXLAN_IPV4_OVERHEAD;
  needHeadroom(off, oh);
  const start = off - oh;
  const sport = flowSrcPort(innerFlowHash(buf, off, len), t.portMin, t.portMax);
  const udpLen = UDP_HLEN + VXLAN_HLEN + len;
  const tos = t.ecn ? (t.tos & 0xfc) | innerEcn(buf, off, len) : t.tos & 255;
  // VXLAN
  const vx = off - VXLAN_HLEN;
  // Like the kernel (vxlan_build_gbp_hdr), the G flag is sent only with a non-zero policy.
  if (t.gbp && (t.gbpId !== 0 || t.gbpFlags !== 0)) emitVxlanGbp(buf, vx, t.vni, t.gbpId, t.gbpFlags);
  else emitVxlan(buf, vx, t.vni);
  // UDP
  const u = vx - UDP_HLEN;
  buf[u] = sport >>> 8;
  buf[u + 1] = sport & 255;
  buf[u + 2] = (t.dstPort >>> 8) & 255;
  buf[u + 3] = t.dstPort & 255;
  buf[u + 4] = udpLen >>> 8;
  buf[u + 5] = udpLen & 255;
  buf[u + 6] = 0;
  buf[u + 7] = 0;
  // Ethernet
  writeMac(buf, start, t.dstMac);
  writeMac(buf, start + 6, t.srcMac);
  const ip = start + ETH_HLEN;
  if (!v6) {
    buf[start + 12] = 0x08;
    buf[start + 13] = 0x00;
    const id = t.ipId & 0xffff;
    t.ipId = (id + 1) & 0xffff;
    const tl = IPV4_HLEN + udpLen;
    const frag = t.df ? 0x4000 : 0;
    const src = t.srcIp >>> 0;
    const dst = t.dstIp >>> 0;
    const ttl = t.ttl & 255;
    buf[ip] = 0x45;
    buf[ip + 1] = tos;
    buf[ip + 2] = tl >>> 8;
    buf[ip + 3] = tl & 255;
    buf[ip + 4] = id >>> 8;
    buf[ip + 5] = id & 255;
    buf[ip + 6] = frag >>> 8;
    buf[ip + 7] = 0;
    buf[ip + 8] = ttl;
    buf[ip + 9] = IpProto.UDP;
    buf[ip + 12] = src >>> 24; buf[ip + 13] = (src >>> 16) & 255; buf[ip + 14] = (src >>> 8) & 255; buf[ip + 15] = src & 255;
    buf[ip + 16] = dst >>> 24; buf[ip + 17] = (dst >>> 16) & 255; buf[ip + 18] = (dst >>> 8) & 255; buf[ip + 19] = dst & 255;
    const c = csumFinish(0x4500 + tos + tl + id + frag + ((ttl << 8) | IpProto.UDP) +
      (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff));
    buf[ip + 10] = c >>> 8;
    buf[ip + 11] = c & 255;
    if (t.udpChecksum) {
      // the pseudo-header sum inline, from 16-bit halves: src/dst are uint32 (198.18.x.x is over
      // 2^31), and passed to a call the optimiser does not inline each becomes a boxed number
      const ps = (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff) + IpProto.UDP + udpLen;
      let uc = ~onesSum(buf, u, udpLen, ps) & 0xffff;
      if (uc === 0) uc = 0xffff;
      buf[u + 6] = uc >>> 8;
      buf[u + 7] = uc & 255;
    }
  } else {
    buf[start + 12] = 0x86;
    buf[start + 13] = 0xdd;
    const fl = t.flowLabel;
    buf[ip] = 0x60 | ((tos >>> 4) & 15);
    buf[ip + 1] = ((tos & 15) << 4) | ((fl >>> 16) & 15);
    buf[ip + 2] = (fl >>> 8) & 255;
    buf[ip + 3] = fl & 255;
    buf[ip + 4] = udpLen >>> 8;
    buf[ip + 5] = udpLen & 255;
    buf[ip + 6] = IpProto.UDP;
    buf[ip + 7] = t.ttl & 255;
    const s6 = t.src6;
    const d6 = t.dst6;
    for (let i = 0; i < 16; i++) {
      buf[ip + 8 + i] = s6[i]!;
      buf[ip + 24 + i] = d6[i]!;
    }
    if (t.udpChecksum) {
      let uc = ~onesSum(buf, u, udpLen, pseudoSum6(buf, ip + 8, ip + 24, IpProto.UDP, udpLen)) & 0xffff;
      if (uc === 0) uc = 0xffff;
      buf[u + 6] = uc >>> 8;
      buf[u + 7] = uc & 255;
    }
  }
  return start;
}

// ---------------------------------------------------------------------------
// Decapsulation
// ---------------------------------------------------------------------------

/** Why a VXLAN datagram or frame was rejected by decapsulation. */
export type VxlanDecapReason =
  | 'too-short' | 'truncated' | 'bad-ethertype' | 'bad-version' | 'bad-header-length' | 'bad-total-length'
  | 'bad-ip-checksum' | 'fragment' | 'not-udp' | 'bad-udp-length' | 'bad-udp-checksum' | 'bad-port'
  | 'bad-flags' | 'unexpected-vni' | 'inner-too-short';

/** Options for {@link vxlanDecapFrame} / {@link vxlanDecapSocket}. */
export interface VxlanDecapOptions {
  /** Expected VNI, or -1 to accept any. */
  vni: number;
  /** Expected UDP destination port (frame form), or -1 to accept any. */
  port: number;
  /** Parse the GBP extension (G flag and group id); otherwise those bits are ignored. */
  gbp: boolean;
  /** Verify a non-zero outer UDP checksum (IPv4) / the mandatory one (IPv6). */
  verifyUdpChecksum: boolean;
  /** Accept a zero UDP checksum over IPv6 (RFC 6935, Linux `udp6zerocsumrx`). */
  allowZeroChecksum6: boolean;
}

/** Build {@link VxlanDecapOptions}: defaults accept any VNI on port 8472, no GBP, verify checksums. */
export function vxlanDecapOptions(opts: Partial<VxlanDecapOptions> = {}): VxlanDecapOptions {
  return { vni: -1, port: VXLAN_PORT_LINUX, gbp: false, verifyUdpChecksum: true, allowZeroChecksum6: false, ...opts };
}

/**
 * Result of a decapsulation, owned by the caller and overwritten by each call (no
 * allocation per packet). Outer fields are set only by {@link vxlanDecapFrame}.
 */
export class VxlanDecapResult {
  /** Inner Ethernet frame offset in the buffer. */
  off = 0;
  /** Inner Ethernet frame length. */
  len = 0;
  /** VNI of the packet. */
  vni = 0;
  /** GBP: G flag was set (only when GBP parsing is on). */
  gbp = false;
  /** GBP group policy id (0 when absent). */
  gbpId = 0;
  /** GBP D/A bits (0 when absent). */
  gbpFlags = 0;
  /** Outer IP family (frame form). */
  family: 4 | 6 = 4;
  /** Outer source MAC (frame form). */
  outerSrcMac = 0;
  /** Outer destination MAC (frame form). */
  outerDstMac = 0;
  /** Outer IPv4 source (frame form, family 4). */
  outerSrcIp = 0;
  /** Outer IPv4 destination (frame form, family 4). */
  outerDstIp = 0;
  /** Offset of the outer IPv6 source address in the buffer (frame form, family 6), else -1. */
  outerSrc6Off = -1;
  /** Offset of the outer IPv6 destination address in the buffer (frame form, family 6), else -1. */
  outerDst6Off = -1;
  /** Outer UDP source port (frame form). */
  srcPort = 0;
  /** Outer UDP destination port (frame form). */
  dstPort = 0;
  /** Outer TTL / hop limit (frame form). */
  ttl = 0;
  /** Outer TOS / traffic class (frame form). */
  tos = 0;
}

/**
 * Socket-form decapsulation of a UDP payload `buf[off..off+len)` (VXLAN header + inner
 * frame): checks the I flag, the VNI (`expectVni` >= 0) and that an inner Ethernet
 * header is present. On 'ok', `out.off/len` is the inner frame.
 */
export function vxlanDecapSocket(
  buf: Uint8Array, off: number, len: number, expectVni: number, out: VxlanDecapResult, gbp = false,
): 'ok' | VxlanDecapReason {
  if (!inBounds(buf, off, len)) return 'truncated';
  if (len < VXLAN_HLEN) return 'too-short';
  const f = buf[off]!;
  if ((f & VXLAN_FLAG_I) === 0) return 'bad-flags';
  const vni = (buf[off + 4]! << 16) | (buf[off + 5]! << 8) | buf[off + 6]!;
  if (expectVni >= 0 && vni !== expectVni) return 'unexpected-vni';
  if (len < VXLAN_HLEN + ETH_HLEN) return 'inner-too-short';
  out.vni = vni;
  if (gbp && (f & VXLAN_FLAG_G) !== 0) {
    out.gbp = true;
    out.gbpId = (buf[off + 2]! << 8) | buf[off + 3]!;
    out.gbpFlags = buf[off + 1]! & (VXLAN_GBP_DONT_LEARN | VXLAN_GBP_APPLIED);
  } else {
    out.gbp = false;
    out.gbpId = 0;
    out.gbpFlags = 0;
  }
  out.off = off + VXLAN_HLEN;
  out.len = len - VXLAN_HLEN;
  return 'ok';
}

/**
 * Full-frame decapsulation of `buf[off..off+len)`: outer Ethernet (optional 802.1Q),
 * IPv4 (version, IHL, total length, header checksum, not a fragment) or IPv6 (version,
 * payload length, next header UDP), UDP (length, destination port, checksum), then the
 * VXLAN header as in {@link vxlanDecapSocket}. Bytes after the IP total length (Ethernet
 * padding) are ignored. On 'ok', `out` holds the inner frame and the outer fields.
 */
export function vxlanDecapFrame(
  buf: Uint8Array, off: number, len: number, opts: VxlanDecapOptions, out: VxlanDecapResult,
): 'ok' | VxlanDecapReason {
  if (!inBounds(buf, off, len)) return 'truncated';
  if (len < ETH_HLEN) return 'too-short';
  let p = off + 12;
  let et = (buf[p]! << 8) | buf[p + 1]!;
  if (et === EtherType.VLAN) {
    if (len < ETH_HLEN + 4) return 'too-short';
    p += 4;
    et = (buf[p]! << 8) | buf[p + 1]!;
  }
  p += 2;
  const end = off + len;
  let u: number; // UDP header offset
  let ulen: number; // bytes available for UDP (from IP lengths)
  if (et === EtherType.IPv4) {
    if (end - p < IPV4_HLEN) return 'too-short';
    const vihl = buf[p]!;
    if (vihl >>> 4 !== 4) return 'bad-version';
    const hl = (vihl & 15) << 2;
    if (hl < IPV4_HLEN || p + hl > end) return 'bad-header-length';
    const tl = (buf[p + 2]! << 8) | buf[p + 3]!;
    if (tl < hl || p + tl > end) return 'bad-total-length';
    // Header checksum (20..60 bytes, 16-bit words); the option-less header unrolled.
    let s = ((buf[p]! << 8) | buf[p + 1]!) + ((buf[p + 2]! << 8) | buf[p + 3]!) + ((buf[p + 4]! << 8) | buf[p + 5]!) +
      ((buf[p + 6]! << 8) | buf[p + 7]!) + ((buf[p + 8]! << 8) | buf[p + 9]!) + ((buf[p + 10]! << 8) | buf[p + 11]!) +
      ((buf[p + 12]! << 8) | buf[p + 13]!) + ((buf[p + 14]! << 8) | buf[p + 15]!) + ((buf[p + 16]! << 8) | buf[p + 17]!) +
      ((buf[p + 18]! << 8) | buf[p + 19]!);
    for (let i = IPV4_HLEN; i < hl; i += 2) s += (buf[p + i]! << 8) | buf[p + i + 1]!;
    s = (s & 0xffff) + (s >>> 16);
    s = (s & 0xffff) + (s >>> 16);
    if (s !== 0xffff) return 'bad-ip-checksum';
    if ((((buf[p + 6]! << 8) | buf[p + 7]!) & 0x3fff) !== 0) return 'fragment';
    if (buf[p + 9] !== IpProto.UDP) return 'not-udp';
    out.family = 4;
    out.tos = buf[p + 1]!;
    out.ttl = buf[p + 8]!;
    out.outerSrcIp = readIpv4(buf, p + 12);
    out.outerDstIp = readIpv4(buf, p + 16);
    out.outerSrc6Off = -1;
    out.outerDst6Off = -1;
    u = p + hl;
    ulen = tl - hl;
  } else if (et === EtherType.IPv6) {
    if (end - p < IPV6_HLEN) return 'too-short';
    if (buf[p]! >>> 4 !== 6) return 'bad-version';
    const pl = (buf[p + 4]! << 8) | buf[p + 5]!;
    if (p + IPV6_HLEN + pl > end) return 'bad-total-length';
    if (buf[p + 6] !== IpProto.UDP) return 'not-udp';
    out.family = 6;
    out.tos = ((buf[p]! & 15) << 4) | (buf[p + 1]! >>> 4);
    out.ttl = buf[p + 7]!;
    out.outerSrcIp = 0;
    out.outerDstIp = 0;
    out.outerSrc6Off = p + 8;
    out.outerDst6Off = p + 24;
    u = p + IPV6_HLEN;
    ulen = pl;
  } else {
    return 'bad-ethertype';
  }
  if (ulen < UDP_HLEN) return 'bad-udp-length';
  const ul = (buf[u + 4]! << 8) | buf[u + 5]!;
  if (ul < UDP_HLEN || ul > ulen) return 'bad-udp-length';
  const dport = (buf[u + 2]! << 8) | buf[u + 3]!;
  if (opts.port >= 0 && dport !== opts.port) return 'bad-port';
  const zero = buf[u + 6] === 0 && buf[u + 7] === 0;
  if (out.family === 4) {
    if (opts.verifyUdpChecksum && !zero &&
      onesSum(buf, u, ul, pseudoSum4(out.outerSrcIp, out.outerDstIp, IpProto.UDP, ul)) !== 0xffff) return 'bad-udp-checksum';
  } else if (zero) {
    if (!opts.allowZeroChecksum6) return 'bad-udp-checksum';
  } else if (opts.verifyUdpChecksum &&
    onesSum(buf, u, ul, pseudoSum6(buf, out.outerSrc6Off, out.outerDst6Off, IpProto.UDP, ul)) !== 0xffff) {
    return 'bad-udp-checksum';
  }
  const r = vxlanDecapSocket(buf, u + UDP_HLEN, ul - UDP_HLEN, opts.vni, out, opts.gbp);
  if (r !== 'ok') return r;
  out.outerDstMac = macToNumber(buf, off);
  out.outerSrcMac = macToNumber(buf, off + 6);
  out.srcPort = (buf[u]! << 8) | buf[u + 1]!;
  out.dstPort = dport;
  return 'ok';
}
