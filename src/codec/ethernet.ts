/**
 * Ethernet II frames with an optional IEEE 802.1Q tag, and ARP (RFC 826) for
 * Ethernet/IPv4.
 */
import { macToNumber, readIpv4, writeIpv4, writeMac } from './addr.js';
import { ArpOp, ARP_LEN, ETH_HLEN, EtherType, VLAN_HLEN } from './constants.js';
import { EMPTY, inBounds } from './util.js';

/** Why an Ethernet frame was rejected. */
export type EthernetReason = 'too-short' | 'truncated';

/**
 * A checked view of an Ethernet II frame at `buf[off..off+len)`. Reuse one instance:
 * `check()` re-targets it without allocating. Getters are valid only after `check()`
 * returned 'ok'.
 */
export class EthernetFrame {
  /** Backing bytes. */
  buf: Uint8Array = EMPTY;
  /** Frame start. */
  off = 0;
  /** Frame length. */
  len = 0;
  /** Header length: 14, or 18 with an 802.1Q tag. */
  headerLen: number = ETH_HLEN;

  /** Target the view at `buf[off..off+len)` and validate it. */
  check(buf: Uint8Array, off: number, len: number): 'ok' | EthernetReason {
    if (!inBounds(buf, off, len)) return 'truncated';
    if (len < ETH_HLEN) return 'too-short';
    this.buf = buf;
    this.off = off;
    this.len = len;
    const t = (buf[off + 12]! << 8) | buf[off + 13]!;
    if (t === EtherType.VLAN) {
      if (len < ETH_HLEN + VLAN_HLEN) return 'too-short';
      this.headerLen = ETH_HLEN + VLAN_HLEN;
    } else {
      this.headerLen = ETH_HLEN;
    }
    return 'ok';
  }

  /** Destination MAC as a 48-bit number. */
  get dst(): number { return macToNumber(this.buf, this.off); }
  set dst(v: number) { writeMac(this.buf, this.off, v); }
  /** Source MAC as a 48-bit number. */
  get src(): number { return macToNumber(this.buf, this.off + 6); }
  set src(v: number) { writeMac(this.buf, this.off + 6, v); }
  /** True when an 802.1Q tag follows the source MAC. */
  get hasVlan(): boolean { return this.headerLen === ETH_HLEN + VLAN_HLEN; }
  /** 802.1Q tag control information (PCP/DEI/VID); 0 when untagged. */
  get vlanTci(): number {
    return this.hasVlan ? (this.buf[this.off + 14]! << 8) | this.buf[this.off + 15]! : 0;
  }
  set vlanTci(v: number) {
    if (!this.hasVlan) return;
    this.buf[this.off + 14] = (v >>> 8) & 255;
    this.buf[this.off + 15] = v & 255;
  }
  /** VLAN id (12 bits); 0 when untagged. */
  get vlanId(): number { return this.vlanTci & 0xfff; }
  /** Priority code point (3 bits); 0 when untagged. */
  get vlanPcp(): number { return this.vlanTci >>> 13; }
  /** EtherType of the payload (after the tag when tagged). */
  get etherType(): number {
    const p = this.off + this.headerLen - 2;
    return (this.buf[p]! << 8) | this.buf[p + 1]!;
  }
  set etherType(v: number) {
    const p = this.off + this.headerLen - 2;
    this.buf[p] = (v >>> 8) & 255;
    this.buf[p + 1] = v & 255;
  }
  /** Offset of the payload in `buf`. */
  get payloadOffset(): number { return this.off + this.headerLen; }
  /** Payload length. */
  get payloadLength(): number { return this.len - this.headerLen; }
}

/** Write an untagged Ethernet II header at `buf[off..off+14)`; returns `off + 14`. */
export function emitEthernet(buf: Uint8Array, off: number, dst: number, src: number, etherType: number): number {
  writeMac(buf, off, dst);
  writeMac(buf, off + 6, src);
  buf[off + 12] = (etherType >>> 8) & 255;
  buf[off + 13] = etherType & 255;
  return off + ETH_HLEN;
}

/** Write an 802.1Q-tagged Ethernet header at `buf[off..off+18)`; returns `off + 18`. */
export function emitEthernetVlan(buf: Uint8Array, off: number, dst: number, src: number, tci: number, etherType: number): number {
  writeMac(buf, off, dst);
  writeMac(buf, off + 6, src);
  buf[off + 12] = 0x81;
  buf[off + 13] = 0x00;
  buf[off + 14] = (tci >>> 8) & 255;
  buf[off + 15] = tci & 255;
  buf[off + 16] = (etherType >>> 8) & 255;
  buf[off + 17] = etherType & 255;
  return off + ETH_HLEN + VLAN_HLEN;
}

// ---------------------------------------------------------------------------
// ARP
// ---------------------------------------------------------------------------

/** Why an ARP packet was rejected. */
export type ArpReason = 'too-short' | 'truncated' | 'bad-hardware' | 'bad-protocol' | 'bad-op';

/** A checked view of an Ethernet/IPv4 ARP packet (the 28 bytes after the Ethernet header). */
export class ArpPacket {
  /** Backing bytes. */
  buf: Uint8Array = EMPTY;
  /** Start of the ARP header. */
  off = 0;

  /** Target the view at `buf[off..off+len)`; checks hardware type 1/len 6, protocol 0x0800/len 4, op 1 or 2. */
  check(buf: Uint8Array, off: number, len: number): 'ok' | ArpReason {
    if (!inBounds(buf, off, len)) return 'truncated';
    if (len < ARP_LEN) return 'too-short';
    if (buf[off] !== 0 || buf[off + 1] !== 1 || buf[off + 4] !== 6) return 'bad-hardware';
    if (buf[off + 2] !== 0x08 || buf[off + 3] !== 0x00 || buf[off + 5] !== 4) return 'bad-protocol';
    const op = (buf[off + 6]! << 8) | buf[off + 7]!;
    if (op !== ArpOp.REQUEST && op !== ArpOp.REPLY) return 'bad-op';
    this.buf = buf;
    this.off = off;
    return 'ok';
  }

  /** Operation: 1 request, 2 reply. */
  get op(): number { return (this.buf[this.off + 6]! << 8) | this.buf[this.off + 7]!; }
  set op(v: number) { this.buf[this.off + 6] = (v >>> 8) & 255; this.buf[this.off + 7] = v & 255; }
  /** Sender hardware address (48-bit number). */
  get sha(): number { return macToNumber(this.buf, this.off + 8); }
  set sha(v: number) { writeMac(this.buf, this.off + 8, v); }
  /** Sender protocol address (uint32). */
  get spa(): number { return readIpv4(this.buf, this.off + 14); }
  set spa(v: number) { writeIpv4(this.buf, this.off + 14, v); }
  /** Target hardware address (48-bit number). */
  get tha(): number { return macToNumber(this.buf, this.off + 18); }
  set tha(v: number) { writeMac(this.buf, this.off + 18, v); }
  /** Target protocol address (uint32). */
  get tpa(): number { return readIpv4(this.buf, this.off + 24); }
  set tpa(v: number) { writeIpv4(this.buf, this.off + 24, v); }
}

/** Write a 28-byte Ethernet/IPv4 ARP packet at `buf[off..)`; returns `off + 28`. */
export function emitArp(buf: Uint8Array, off: number, op: number, sha: number, spa: number, tha: number, tpa: number): number {
  buf[off] = 0; buf[off + 1] = 1; // Ethernet
  buf[off + 2] = 0x08; buf[off + 3] = 0x00; // IPv4
  buf[off + 4] = 6; buf[off + 5] = 4;
  buf[off + 6] = (op >>> 8) & 255; buf[off + 7] = op & 255;
  writeMac(buf, off + 8, sha);
  writeIpv4(buf, off + 14, spa);
  writeMac(buf, off + 18, tha);
  writeIpv4(buf, off + 24, tpa);
  return off + ARP_LEN;
}

/**
 * Build a complete ARP reply frame (Ethernet + ARP, 42 bytes) at `buf[off..)` answering
 * the request `req`: "`req.tpa` is at `mac`". Returns the frame length (42).
 * The request's fields are read before anything is written, so the reply may be built
 * in place over the request frame (`req` = the ARP header at `off + 14`).
 */
export function buildArpReply(buf: Uint8Array, off: number, req: ArpPacket, mac: number): number {
  const sha = req.sha;
  const spa = req.spa;
  const tpa = req.tpa;
  emitEthernet(buf, off, sha, mac, EtherType.ARP);
  emitArp(buf, off + ETH_HLEN, ArpOp.REPLY, mac, tpa, sha, spa);
  return ETH_HLEN + ARP_LEN;
}

/** Build a broadcast ARP request frame (42 bytes) at `buf[off..)`: "who has `tpa`? tell `spa` (`sha`)". Returns 42. */
export function buildArpRequest(buf: Uint8Array, off: number, sha: number, spa: number, tpa: number): number {
  emitEthernet(buf, off, 0xffffffffffff, sha, EtherType.ARP);
  emitArp(buf, off + ETH_HLEN, ArpOp.REQUEST, sha, spa, 0, tpa);
  return ETH_HLEN + ARP_LEN;
}
