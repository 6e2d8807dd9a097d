/**
 * Small helpers private to the dataplanes: CIDR parsing with int32 forms for hot-path
 * comparisons, and a MAC-keyed table looked up by (hi16, lo32) small-integer halves so
 * that neighbour/FDB lookups never box a 48-bit key. (Routes use src/fdb's RouteTable4.)
 */
import { ipv4ToU32 } from '../codec/addr.js';

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

/** Netmask for a prefix length, as uint32. */
export function maskOf(len: number): number {
  return len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
}

/** Parse "a.b.c.d/len" (host bits are cleared). */
export function parseCidr(s: string): Prefix4 {
  const m = /^([^/]+)\/(\d{1,2})$/.exec(s.trim());
  if (!m) throw new Error(`invalid CIDR "${s}"`);
  const len = Number(m[2]);
  if (len > 32) throw new Error(`invalid CIDR "${s}"`);
  const mask = maskOf(len);
  const net = (ipv4ToU32(m[1]!) & mask) >>> 0;
  return { net, len, mask, neti: net | 0, maski: mask | 0 };
}

/** True when `ip` (int32 or uint32 form) is inside `p`. */
export function inPrefix(ip: number, p: Prefix4): boolean {
  return (ip & p.maski) === p.neti;
}

/** A MAC split into two V8 small integers (high 16 bits, low 32 bits as int32), plus the 48-bit number. */
export interface Mac {
  readonly hi: number;
  readonly lo: number;
  readonly n: number;
}

/** Split a 48-bit MAC number. */
export function macOf(n: number): Mac {
  return { hi: Math.floor(n / 2 ** 32) & 0xffff, lo: (n % 2 ** 32) | 0, n };
}

/**
 * A map keyed by MAC, looked up by the (hi, lo) small-integer halves read straight from
 * a frame (`readUInt16BE(off)`, `readInt32BE(off + 2)`), so lookups never allocate.
 */
export class MacTable<T> {
  private readonly m = new Map<number, Map<number, T>>();
  private count = 0;

  /** Look up by halves. */
  get(hi: number, lo: number): T | undefined {
    const inner = this.m.get(hi);
    return inner === undefined ? undefined : inner.get(lo);
  }

  /** Insert or replace. */
  set(mac: Mac, v: T): void {
    let inner = this.m.get(mac.hi);
    if (!inner) {
      inner = new Map();
      this.m.set(mac.hi, inner);
    }
    if (!inner.has(mac.lo)) this.count++;
    inner.set(mac.lo, v);
  }

  /** Remove; true if present. */
  delete(mac: Mac): boolean {
    const inner = this.m.get(mac.hi);
    if (!inner || !inner.delete(mac.lo)) return false;
    this.count--;
    if (inner.size === 0) this.m.delete(mac.hi);
    return true;
  }

  /** Number of entries. */
  get size(): number {
    return this.count;
  }

  /** All entries as [48-bit MAC number, value]. */
  entries(): [number, T][] {
    const out: [number, T][] = [];
    for (const [hi, inner] of this.m) for (const [lo, v] of inner) out.push([hi * 2 ** 32 + (lo >>> 0), v]);
    return out;
  }
}
