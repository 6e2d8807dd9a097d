/**
 * Small allocation-free lookup structures private to the dataplanes: a longest-prefix
 * match table keyed by uint32 IPv4 and CIDR parsing. (Kept in src/vtep so the hot
 * path does not depend on the shape of src/fdb's tables.)
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

/**
 * Longest-prefix-match table: one Map per prefix length keyed by the int32 form of the
 * network address (a V8 small integer, so lookups never box a key), probed from the
 * longest present length down. Lookups allocate nothing.
 */
export class PrefixTable<T> {
  private readonly byLen: Map<number, T>[] = Array.from({ length: 33 }, () => new Map<number, T>());
  private lens: number[] = [];
  private masks: number[] = [];

  /** Insert or replace the value for `net/len`. */
  set(p: Prefix4, value: T): void {
    this.byLen[p.len]!.set(p.neti, value);
    this.reindex();
  }

  /** Remove `net/len`; returns true if it was present. */
  delete(p: Prefix4): boolean {
    const had = this.byLen[p.len]!.delete(p.neti);
    if (had) this.reindex();
    return had;
  }

  /** Exact-match read of `net/len`. */
  get(p: Prefix4): T | undefined {
    return this.byLen[p.len]!.get(p.neti);
  }

  /** Longest-prefix match for `ip`; pass the int32 form (`buf.readInt32BE`) on hot paths. */
  lookup(ip: number): T | undefined {
    const lens = this.lens;
    for (let i = 0; i < lens.length; i++) {
      const v = this.byLen[lens[i]!]!.get(ip & this.masks[i]!);
      if (v !== undefined) return v;
    }
    return undefined;
  }

  /** Number of prefixes. */
  get size(): number {
    let n = 0;
    for (const m of this.byLen) n += m.size;
    return n;
  }

  private reindex(): void {
    const lens: number[] = [];
    for (let l = 32; l >= 0; l--) if (this.byLen[l]!.size > 0) lens.push(l);
    this.lens = lens;
    this.masks = lens.map((l) => maskOf(l) | 0);
  }
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
