/**
 * The dataplanes' parsed subnets: a CIDR with int32 forms for hot-path comparisons.
 * (Routes, neighbours and the FDB are src/fdb's tables; wire work is src/codec's.)
 */
import { ipv4Mask, ipv4Network, parseIpv4Cidr } from '../codec/addr.js';

/** A parsed IPv4 prefix. */
export interface Prefix4 {
  /** Network address, uint32, host bits cleared. */
  net: number;
  /** Prefix length 0..32. */
  len: number;
  /** Netmask, uint32. */
  mask: number;
  /** `net` as int32 (a small integer for V8: the form used by hot-path comparisons and map keys). */
  neti: number;
  /** `mask` as int32. */
  maski: number;
}

/** Parse "a.b.c.d/len" with src/codec's parser (host bits are cleared) and add the int32 forms. */
export function parseCidr(s: string): Prefix4 {
  const c = parseIpv4Cidr(s.trim());
  const mask = ipv4Mask(c.prefixLen);
  const net = ipv4Network(c.addr, c.prefixLen);
  return { net, len: c.prefixLen, mask, neti: net | 0, maski: mask | 0 };
}

/** True when `ip` (int32 or uint32 form) is inside `p`. */
export function inPrefix(ip: number, p: Prefix4): boolean {
  return (ip & p.maski) === p.neti;
}
