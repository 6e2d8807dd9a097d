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
  return { net: (ipv4ToU32(m[1]!) & mask) >>> 0, len, mask };
}

/** True when `ip` is inside `p`. */
export function inPrefix(ip: number, p: Prefix4): boolean {
  return ((ip & p.mask) >>> 0) === p.net;
}

/**
 * Longest-prefix-match table: one Map per prefix length, probed from the longest
 * present length down. Lookups allocate nothing.
 */
export class PrefixTable<T> {
  private readonly byLen: Map<number, T>[] = Array.from({ length: 33 }, () => new Map<number, T>());
  private lens: number[] = [];
  private masks: number[] = [];

  /** Insert or replace the value for `net/len`. */
  set(p: Prefix4, value: T): void {
    this.byLen[p.len]!.set(p.net, value);
    this.reindex();
  }

  /** Remove `net/len`; returns true if it was present. */
  delete(p: Prefix4): boolean {
    const had = this.byLen[p.len]!.delete(p.net);
    if (had) this.reindex();
    return had;
  }

  /** Exact-match read of `net/len`. */
  get(p: Prefix4): T | undefined {
    return this.byLen[p.len]!.get(p.net);
  }

  /** Longest-prefix match for `ip` (uint32). */
  lookup(ip: number): T | undefined {
    const lens = this.lens;
    for (let i = 0; i < lens.length; i++) {
      const v = this.byLen[lens[i]!]!.get((ip & this.masks[i]!) >>> 0);
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
    this.masks = lens.map(maskOf);
  }
}
