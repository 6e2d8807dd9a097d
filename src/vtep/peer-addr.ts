/**
 * Peers by public (underlay) address, IPv4 or IPv6, looked up per received datagram without
 * allocating: IPv4 keys are int32 numbers in a Map (small integers never box); an IPv6 key is
 * hashed from its 16 bytes to an int32 bucket key, and the bucket (almost always one entry) is
 * searched by comparing the address as four 32-bit words. Changes (set/delete) are control-plane
 * operations and may allocate.
 */
import { IpAddr } from '../codec/addr.js';
import type { DatagramSlot } from '../tun/types.js';

/** One IPv6 entry: the address as four big-endian words, and its value. */
interface Entry6<T> {
  readonly w0: number;
  readonly w1: number;
  readonly w2: number;
  readonly w3: number;
  readonly addr: IpAddr;
  value: T;
}

/** The 32-bit word `i` (0..3) of the IPv6 address at `b[off..off+16)`, as int32. */
function word(b: Uint8Array, off: number, i: number): number {
  const o = off + 4 * i;
  return (b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!;
}

/** Bucket key of an IPv6 address given as its four int32 words. */
function hash6(w0: number, w1: number, w2: number, w3: number): number {
  let h = Math.imul(w0 ^ 0x9e3779b9, 0x85ebca6b);
  h = Math.imul(h ^ w1 ^ (h >>> 15), 0xc2b2ae35);
  h = Math.imul(h ^ w2 ^ (h >>> 13), 0x85ebca6b);
  h = Math.imul(h ^ w3 ^ (h >>> 16), 0xc2b2ae35);
  return (h ^ (h >>> 15)) | 0;
}

/** True for an IPv4-mapped IPv6 address (::ffff:0:0/96) at `b[off..off+16)`. Allocation-free. */
export function isIpv4Mapped(b: Uint8Array, off = 0): boolean {
  for (let i = 0; i < 10; i++) if (b[off + i] !== 0) return false;
  return b[off + 10] === 0xff && b[off + 11] === 0xff;
}

/** A map from peer addresses (either family) to `T`; lookups by a received datagram's sender allocate nothing. */
export class PeerAddrMap<T> {
  private readonly v4 = new Map<number, T>();
  private readonly v6 = new Map<number, Entry6<T>[]>();
  private n6 = 0;

  /** Number of entries. */
  get size(): number {
    return this.v4.size + this.n6;
  }

  /** The value of the IPv4 address `a` (uint32 or int32 number). Hot path. */
  get4(a: number): T | undefined {
    return this.v4.get(a | 0);
  }

  /** The value of the IPv6 address at `b[off..off+16)`. Hot path. */
  get6(b: Uint8Array, off: number): T | undefined {
    const w0 = word(b, off, 0);
    const w1 = word(b, off, 1);
    const w2 = word(b, off, 2);
    const w3 = word(b, off, 3);
    const list = this.v6.get(hash6(w0, w1, w2, w3));
    if (list === undefined) return undefined;
    for (let i = 0; i < list.length; i++) {
      const e = list[i]!;
      if (e.w0 === w0 && e.w1 === w1 && e.w2 === w2 && e.w3 === w3) return e.value;
    }
    return undefined;
  }

  /** The value of a received datagram's sender (its family, addr / addr6). Hot path. */
  getFrom(s: Pick<DatagramSlot, 'family' | 'addr' | 'addr6'>): T | undefined {
    return s.family === 4 ? this.v4.get(s.addr | 0) : this.get6(s.addr6, 0);
  }

  /** The value of `a`. */
  get(a: IpAddr): T | undefined {
    return a.family === 4 ? this.v4.get(a.v4 | 0) : this.get6(a.bytes, 0);
  }

  /** True when `a` has a value. */
  has(a: IpAddr): boolean {
    return this.get(a) !== undefined;
  }

  /** Set the value of `a`. */
  set(a: IpAddr, value: T): void {
    if (a.family === 4) { this.v4.set(a.v4 | 0, value); return; }
    const b = a.bytes;
    const w0 = word(b, 0, 0), w1 = word(b, 0, 1), w2 = word(b, 0, 2), w3 = word(b, 0, 3);
    const h = hash6(w0, w1, w2, w3);
    const list = this.v6.get(h);
    if (list === undefined) { this.v6.set(h, [{ w0, w1, w2, w3, addr: a, value }]); this.n6++; return; }
    for (const e of list) if (e.w0 === w0 && e.w1 === w1 && e.w2 === w2 && e.w3 === w3) { e.value = value; return; }
    list.push({ w0, w1, w2, w3, addr: a, value });
    this.n6++;
  }

  /** Remove `a`; false when it had no value. */
  delete(a: IpAddr): boolean {
    if (a.family === 4) return this.v4.delete(a.v4 | 0);
    const b = a.bytes;
    const w0 = word(b, 0, 0), w1 = word(b, 0, 1), w2 = word(b, 0, 2), w3 = word(b, 0, 3);
    const h = hash6(w0, w1, w2, w3);
    const list = this.v6.get(h);
    if (list === undefined) return false;
    const i = list.findIndex((e) => e.w0 === w0 && e.w1 === w1 && e.w2 === w2 && e.w3 === w3);
    if (i < 0) return false;
    list.splice(i, 1);
    if (list.length === 0) this.v6.delete(h);
    this.n6--;
    return true;
  }

  /** Remove everything. */
  clear(): void {
    this.v4.clear();
    this.v6.clear();
    this.n6 = 0;
  }

  /** Every (address, value) pair (not for the hot path). */
  *entries(): IterableIterator<[IpAddr, T]> {
    for (const [k, v] of this.v4) yield [IpAddr.fromV4(k), v];
    for (const list of this.v6.values()) for (const e of list) yield [e.addr, e.value];
  }
}
