/** Builders and reference checks for the offload tests (slow and simple on purpose). */
import { csumFold, emitIpv4, emitIpv6, IpProto, onesSumSimple, pseudoSum4, pseudoSum6 } from '../../src/codec/index.js';

export interface TcpSpec {
  v: 4 | 6;
  tos?: number;
  ttl?: number;
  id?: number;
  df?: boolean;
  ipOpts?: Uint8Array; // IPv4 options (multiple of 4)
  flowLabel?: number;
  src4?: number;
  dst4?: number;
  src6?: Uint8Array;
  dst6?: Uint8Array;
  sport?: number;
  dport?: number;
  seq?: number;
  ack?: number;
  flags?: number;
  win?: number;
  urg?: number;
  tcpOpts?: Uint8Array; // multiple of 4
  proto?: 'tcp' | 'udp';
  payload: Uint8Array;
  /** 'full' (default), 'partial' (pseudo sum), 'zero'. */
  csum?: 'full' | 'partial' | 'zero';
}

export const SRC6 = Uint8Array.from([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
export const DST6 = Uint8Array.from([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);

/** Write the packet at `buf[off..)`; returns its length. */
export function buildPacket(buf: Uint8Array, off: number, s: TcpSpec): number {
  const udp = s.proto === 'udp';
  const optLen = s.tcpOpts?.length ?? 0;
  const l4Hl = udp ? 8 : 20 + optLen;
  const l4Len = l4Hl + s.payload.length;
  let ipHl: number;
  let pseudo: number;
  const proto = udp ? IpProto.UDP : IpProto.TCP;
  if (s.v === 4) {
    const ol = s.ipOpts?.length ?? 0;
    ipHl = 20 + ol;
    emitIpv4(buf, off, s.tos ?? 0, ipHl + l4Len, s.id ?? 1, s.df === false ? 0 : 0x4000, s.ttl ?? 64, proto,
      s.src4 ?? 0x0a000001, s.dst4 ?? 0x0a000002);
    if (ol > 0) {
      buf[off] = 0x40 | (ipHl >>> 2);
      buf.set(s.ipOpts!, off + 20);
      buf[off + 10] = 0; buf[off + 11] = 0;
      const c = ~onesSumSimple(buf, off, ipHl) & 0xffff;
      buf[off + 10] = c >>> 8; buf[off + 11] = c & 255;
    }
    pseudo = pseudoSum4(s.src4 ?? 0x0a000001, s.dst4 ?? 0x0a000002, proto, l4Len);
  } else {
    ipHl = 40;
    emitIpv6(buf, off, s.tos ?? 0, s.flowLabel ?? 0x12345, l4Len, proto, s.ttl ?? 64, s.src6 ?? SRC6, 0, s.dst6 ?? DST6, 0);
    pseudo = pseudoSum6(buf, off + 8, off + 24, proto, l4Len);
  }
  const l4 = off + ipHl;
  const w16 = (o: number, v: number): void => { buf[o] = (v >>> 8) & 255; buf[o + 1] = v & 255; };
  const w32 = (o: number, v: number): void => { w16(o, v >>> 16); w16(o + 2, v & 0xffff); };
  w16(l4, s.sport ?? 40000);
  w16(l4 + 2, s.dport ?? 5201);
  let fo: number;
  if (udp) {
    w16(l4 + 4, l4Len);
    w16(l4 + 6, 0);
    fo = l4 + 6;
  } else {
    w32(l4 + 4, s.seq ?? 1000);
    w32(l4 + 8, s.ack ?? 77);
    buf[l4 + 12] = (l4Hl >>> 2) << 4;
    buf[l4 + 13] = s.flags ?? 0x10;
    w16(l4 + 14, s.win ?? 512);
    w16(l4 + 16, 0);
    w16(l4 + 18, s.urg ?? 0);
    if (optLen) buf.set(s.tcpOpts!, l4 + 20);
    fo = l4 + 16;
  }
  buf.set(s.payload, l4 + l4Hl);
  const mode = s.csum ?? 'full';
  let c = 0;
  if (mode === 'full') {
    c = ~onesSumSimple(buf, l4, l4Len, pseudo) & 0xffff;
    if (udp && c === 0) c = 0xffff;
  } else if (mode === 'partial') {
    c = csumFold(pseudo);
  }
  w16(fo, c);
  return ipHl + l4Len;
}

/** Reference: IP header length, L4 offset info of a (valid) packet. */
export function layout(buf: Uint8Array, off: number): { v: number; ipHl: number; ipLen: number; proto: number; l4: number; l4Len: number } {
  const v = buf[off]! >>> 4;
  const ipHl = v === 4 ? (buf[off]! & 15) * 4 : 40;
  const ipLen = v === 4 ? (buf[off + 2]! << 8) | buf[off + 3]! : 40 + ((buf[off + 4]! << 8) | buf[off + 5]!);
  const proto = v === 4 ? buf[off + 9]! : buf[off + 6]!;
  return { v, ipHl, ipLen, proto, l4: off + ipHl, l4Len: ipLen - ipHl };
}

export function pseudoOf(buf: Uint8Array, off: number, l4Len: number): number {
  const L = layout(buf, off);
  if (L.v === 4) {
    const r = (o: number): number => ((buf[o]! << 24) | (buf[o + 1]! << 16) | (buf[o + 2]! << 8) | buf[o + 3]!) >>> 0;
    return pseudoSum4(r(off + 12), r(off + 16), L.proto, l4Len);
  }
  return pseudoSum6(buf, off + 8, off + 24, L.proto, l4Len);
}

/** True when the L4 checksum of the packet verifies. */
export function l4Verifies(buf: Uint8Array, off: number): boolean {
  const L = layout(buf, off);
  return onesSumSimple(buf, L.l4, L.l4Len, pseudoOf(buf, off, L.l4Len)) === 0xffff;
}

/** True when the IPv4 header checksum verifies (true for IPv6). */
export function ipVerifies(buf: Uint8Array, off: number): boolean {
  const L = layout(buf, off);
  return L.v === 6 || onesSumSimple(buf, off, L.ipHl) === 0xffff;
}

/** Copy of the packet with the L4 checksum field set to the partial (pseudo-header) form. */
export function normalised(buf: Uint8Array, off: number): Uint8Array {
  const L = layout(buf, off);
  const c = Uint8Array.from(buf.subarray(off, off + L.ipLen));
  const fo = L.ipHl + (L.proto === IpProto.TCP ? 16 : 6);
  const p = csumFold(pseudoOf(buf, off, L.l4Len));
  c[fo] = p >>> 8;
  c[fo + 1] = p & 255;
  return c;
}

export function rd32(b: Uint8Array, o: number): number {
  return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
}
export function rd16(b: Uint8Array, o: number): number {
  return (b[o]! << 8) | b[o + 1]!;
}
