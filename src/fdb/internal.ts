/**
 * Internal helpers for src/fdb: input validation with ip(8)-style errors, and
 * allocation-free open-addressing hash maps over typed arrays. Not exported from
 * the package entry.
 */
import { AddrError, IpAddr, IpPrefix, parseIp, parsePrefix, parseMac, formatMac, isMulticastMac, formatIpv6, u32ToIpv4 } from '../codec/addr.js';

export { formatMac, formatIpv6, u32ToIpv4 };

/** 2^32 as a double. */
export const TWO32 = 4294967296;

/** int32 network masks by prefix length (index 0..32). */
export const MASK4 = new Int32Array(33);
for (let l = 1; l <= 32; l++) MASK4[l] = l === 32 ? -1 : ~((1 << (32 - l)) - 1);

/** Parse an IPv4 address (dotted quad or uint32 number); throws naming the value. */
export function toU32(v: string | number, what = 'IPv4 address'): number {
  if (typeof v === 'number') {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new Error(`invalid ${what} ${String(v)}: not a uint32`);
    return v >>> 0;
  }
  const a = parseIp(v, { family: 4 });
  if (a instanceof AddrError) throw new Error(`invalid ${what} "${String(v)}"`, { cause: a });
  return a.v4;
}

/** src/codec's prefix parser with ip-route's keywords, bare addresses and error wording. */
function routePrefix(s: string, family: 4 | 6): IpPrefix {
  const p = parsePrefix(s, { family, bare: true, keywords: true });
  if (p instanceof AddrError) {
    if (p.reason === 'host-bits-set') throw new Error(`Invalid prefix for given prefix length. ("${s}")`, { cause: p });
    throw new Error(`any valid prefix is expected rather than "${String(s)}".`, { cause: p });
  }
  return p;
}

/** Parse "a.b.c.d/len", "a.b.c.d" (=/32) or "default"; refuses host bits like ip-route does. */
export function parseCidr4(s: string): { prefix: number; prefixLen: number } {
  const p = routePrefix(s, 4);
  return { prefix: p.net, prefixLen: p.len };
}

/** Validate a numeric prefix/length pair; returns the prefix as uint32. */
export function checkPrefix4(prefix: number, prefixLen: number): number {
  if (!Number.isInteger(prefixLen) || prefixLen < 0 || prefixLen > 32) throw new Error(`invalid prefix length ${String(prefixLen)} (0..32).`);
  const p = toU32(prefix, 'IPv4 prefix');
  if (IpPrefix.v4(p, prefixLen).net !== p) throw new Error(`Invalid prefix for given prefix length. ("${u32ToIpv4(p)}/${prefixLen}")`);
  return p;
}

/** Parse an IPv6 address (string or 16 bytes, copied); throws naming the value. */
export function toV6(v: string | Uint8Array, what = 'IPv6 address'): Uint8Array {
  if (v instanceof Uint8Array) {
    if (v.length !== 16) throw new Error(`invalid ${what}: expected 16 bytes, got ${v.length}`);
    return new Uint8Array(v);
  }
  const a = parseIp(v, { family: 6 });
  if (a instanceof AddrError) throw new Error(`invalid ${what} "${String(v)}"`, { cause: a });
  return Uint8Array.from(a.bytes);
}

/** Parse "x::/len", "x::" (=/128) or "default"; refuses host bits like ip-route does. */
export function parseCidr6(s: string): { prefix: Uint8Array; prefixLen: number } {
  const p = routePrefix(s, 6);
  return { prefix: Uint8Array.from(p.addr.bytes), prefixLen: p.len };
}

/** Throw unless bits beyond `len` are zero. */
export function checkHostBits6(addr: Uint8Array, len: number, shown: string): void {
  if (!new IpPrefix(IpAddr.fromBytes(addr, 6), len).addr.equals(IpAddr.fromBytes(addr, 6))) throw new Error(`Invalid prefix for given prefix length. ("${shown}")`);
}

/** Parse a MAC (string or 48-bit number); throws naming the value. */
export function toMac(v: string | number): number {
  if (typeof v === 'number') {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffffffff) throw new Error(`invalid MAC address ${String(v)}: not a 48-bit number`);
    return v;
  }
  return parseMac(v);
}

/** Parse a unicast MAC key: refuses multicast/broadcast MACs. `allowZero` admits 00:00:00:00:00:00. */
export function toUnicastMac(v: string | number, what: string, allowZero = false): number {
  const m = toMac(v);
  if (m === 0 && !allowZero) throw new Error(`invalid ${what} MAC ${formatMac(m)}: all-zeros is not a unicast address`);
  if (isMulticastMac(m)) throw new Error(`invalid ${what} MAC ${formatMac(m)}: multicast/broadcast MAC cannot be a unicast key`);
  return m;
}

/** Validate a VNI (0..2^24-1). */
export function checkVni(v: number): number {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffff) throw new Error(`invalid VNI ${String(v)}: out of range 0..16777215`);
  return v;
}

/** Validate a UDP port (0 = the device's default port, else 1..65535). */
export function checkPort(p: number): number {
  if (!Number.isInteger(p) || p < 0 || p > 65535) throw new Error(`invalid port ${String(p)}: out of range 0..65535 (0 = device default)`);
  return p;
}

/** Validate a device name like the kernel (1..15 chars, no '/', ':' or whitespace). */
export function checkDev(d: string): string {
  if (typeof d !== 'string' || d.length === 0 || d.length > 15 || /[\s/:]/.test(d)) throw new Error(`invalid device name "${String(d)}"`);
  return d;
}

/** Fibonacci hash of an int32 into the top (32 - shift) bits. */
export function h32(k: number, shift: number): number {
  return Math.imul(k, -1640531535) >>> shift;
}

/**
 * Open-addressing (linear probing, backward-shift delete) map int32 -> int32 >= 0.
 * Key and value are interleaved in one Int32Array so a probe touches one cache
 * line. `get` returns -1 on miss; no allocation on get/set once sized.
 */
export class I32Map {
  /** [key, value] pairs by slot; value -1 = empty. */
  private t: Int32Array;
  private mask: number;
  private shift: number;
  /** Entries stored. */
  size = 0;

  constructor(capacity = 16) {
    let cap = 16;
    while (cap < capacity * 2) cap *= 2;
    this.t = new Int32Array(cap * 2).fill(-1);
    this.mask = cap - 1;
    this.shift = 32 - Math.log2(cap);
  }

  /** Value for `k` or -1. */
  get(k: number): number {
    const t = this.t;
    const mask = this.mask;
    let i = h32(k, this.shift);
    for (;;) {
      const b = i << 1;
      const v = t[b + 1]!;
      if (v < 0) return -1;
      if (t[b] === k) return v;
      i = (i + 1) & mask;
    }
  }

  /** Insert or overwrite. */
  set(k: number, v: number): void {
    if ((this.size + 1) * 10 > (this.mask + 1) * 7) this.grow(); // max load 0.7
    const t = this.t;
    const mask = this.mask;
    let i = h32(k, this.shift);
    for (;;) {
      const b = i << 1;
      if (t[b + 1]! < 0) {
        t[b] = k;
        t[b + 1] = v;
        this.size++;
        return;
      }
      if (t[b] === k) {
        t[b + 1] = v;
        return;
      }
      i = (i + 1) & mask;
    }
  }

  /** Remove `k`; returns the old value or -1. */
  delete(k: number): number {
    const t = this.t;
    const mask = this.mask;
    let i = h32(k, this.shift);
    for (;;) {
      const v = t[(i << 1) + 1]!;
      if (v < 0) return -1;
      if (t[i << 1] === k) break;
      i = (i + 1) & mask;
    }
    const old = t[(i << 1) + 1]!;
    // Backward-shift deletion keeps probe chains intact without tombstones.
    let j = i;
    for (;;) {
      j = (j + 1) & mask;
      if (t[(j << 1) + 1]! < 0) break;
      const home = h32(t[j << 1]!, this.shift);
      // Move j to i if home is not cyclically in (i, j].
      if (i <= j ? home <= i || home > j : home <= i && home > j) {
        t[i << 1] = t[j << 1]!;
        t[(i << 1) + 1] = t[(j << 1) + 1]!;
        i = j;
      }
    }
    t[(i << 1) + 1] = -1;
    this.size--;
    return old;
  }

  /** Iterate [key, value] pairs (control plane only). */
  *entries(): IterableIterator<[number, number]> {
    const t = this.t;
    for (let i = 0; i < t.length; i += 2) if (t[i + 1]! >= 0) yield [t[i]!, t[i + 1]!];
  }

  /** Bytes held by the typed array. */
  bytes(): number {
    return this.t.byteLength;
  }

  private grow(): void {
    const o = this.t;
    const cap = (this.mask + 1) * 2;
    this.t = new Int32Array(cap * 2).fill(-1);
    this.mask = cap - 1;
    this.shift = 32 - Math.log2(cap);
    this.size = 0;
    for (let i = 0; i < o.length; i += 2) if (o[i + 1]! >= 0) this.set(o[i]!, o[i + 1]!);
  }
}

/**
 * Open-addressing map from W-word int32 keys to int32 >= 0 (linear probing,
 * backward-shift delete), key words and value interleaved (stride W+1). Lookups
 * take the key words from a caller-owned scratch Int32Array, so nothing allocates.
 */
export class WordsMap {
  private t: Int32Array;
  private mask: number;
  private shift: number;
  private readonly stride: number;
  /** Entries stored. */
  size = 0;

  constructor(readonly words: number, capacity = 16) {
    let cap = 16;
    while (cap < capacity * 2) cap *= 2;
    this.stride = words + 1;
    this.t = new Int32Array(cap * this.stride).fill(-1);
    this.mask = cap - 1;
    this.shift = 32 - Math.log2(cap);
  }

  private hash(k: Int32Array, ko: number): number {
    let h = k[ko]!;
    for (let w = 1; w < this.words; w++) h = (Math.imul(h ^ (h >>> 15), -2048144789) + k[ko + w]!) | 0;
    return h32(h, this.shift);
  }

  private eq(b: number, k: Int32Array, ko: number): boolean {
    const W = this.words;
    const t = this.t;
    for (let w = 0; w < W; w++) if (t[b + w] !== k[ko + w]) return false;
    return true;
  }

  /** Value for the 3-word key (a, b, c) or -1; only for maps made with words = 3. Allocation-free. */
  get3(a: number, b: number, c: number): number {
    let h = a;
    h = (Math.imul(h ^ (h >>> 15), -2048144789) + b) | 0;
    h = (Math.imul(h ^ (h >>> 15), -2048144789) + c) | 0;
    const t = this.t;
    const mask = this.mask;
    let i = h32(h, this.shift);
    for (;;) {
      const o = i << 2;
      const v = t[o + 3]!;
      if (v < 0) return -1;
      if (t[o] === a && t[o + 1] === b && t[o + 2] === c) return v;
      i = (i + 1) & mask;
    }
  }

  /** Value for key words `k[ko..ko+W)` or -1. */
  get(k: Int32Array, ko = 0): number {
    const t = this.t;
    const mask = this.mask;
    const S = this.stride;
    const W = this.words;
    let i = this.hash(k, ko);
    for (;;) {
      const b = i * S;
      const v = t[b + W]!;
      if (v < 0) return -1;
      if (this.eq(b, k, ko)) return v;
      i = (i + 1) & mask;
    }
  }

  /** Insert or overwrite. */
  set(k: Int32Array, v: number, ko = 0): void {
    if ((this.size + 1) * 10 > (this.mask + 1) * 7) this.grow(); // max load 0.7
    const t = this.t;
    const mask = this.mask;
    const S = this.stride;
    const W = this.words;
    let i = this.hash(k, ko);
    for (;;) {
      const b = i * S;
      if (t[b + W]! < 0) {
        for (let w = 0; w < W; w++) t[b + w] = k[ko + w]!;
        t[b + W] = v;
        this.size++;
        return;
      }
      if (this.eq(b, k, ko)) {
        t[b + W] = v;
        return;
      }
      i = (i + 1) & mask;
    }
  }

  /** Remove; returns old value or -1. */
  delete(k: Int32Array, ko = 0): number {
    const t = this.t;
    const mask = this.mask;
    const S = this.stride;
    const W = this.words;
    let i = this.hash(k, ko);
    for (;;) {
      const v = t[i * S + W]!;
      if (v < 0) return -1;
      if (this.eq(i * S, k, ko)) break;
      i = (i + 1) & mask;
    }
    const old = t[i * S + W]!;
    let j = i;
    for (;;) {
      j = (j + 1) & mask;
      if (t[j * S + W]! < 0) break;
      const home = this.hash(t, j * S);
      if (i <= j ? home <= i || home > j : home <= i && home > j) {
        for (let w = 0; w <= W; w++) t[i * S + w] = t[j * S + w]!;
        i = j;
      }
    }
    t[i * S + W] = -1;
    this.size--;
    return old;
  }

  /** Bytes held by the typed array. */
  bytes(): number {
    return this.t.byteLength;
  }

  private grow(): void {
    const o = this.t;
    const S = this.stride;
    const W = this.words;
    const cap = (this.mask + 1) * 2;
    this.t = new Int32Array(cap * S).fill(-1);
    this.mask = cap - 1;
    this.shift = 32 - Math.log2(cap);
    this.size = 0;
    for (let b = 0; b < o.length; b += S) if (o[b + W]! >= 0) this.set(o, o[b + W]!, b);
  }
}

/** Slot allocator with a free list: hands out dense indices 0..n. */
export class Slots {
  private free: number[] = [];
  /** One past the highest index ever handed out. */
  high = 0;
  /** Allocate an index. */
  alloc(): number {
    return this.free.length > 0 ? this.free.pop()! : this.high++;
  }
  /** Return an index. */
  release(i: number): void {
    this.free.push(i);
  }
  /** Forget everything. */
  clear(): void {
    this.free = [];
    this.high = 0;
  }
}

/** Grow a typed array to at least `n` elements (doubling). */
export function growTo<T extends Int32Array | Uint16Array | Uint8Array | Float64Array>(a: T, n: number): T {
  if (n <= a.length) return a;
  let cap = Math.max(16, a.length);
  while (cap < n) cap *= 2;
  const b = new (a.constructor as { new (n: number): T })(cap);
  b.set(a);
  return b;
}

/**
 * Rate limiter for miss events: at most one event per key per `intervalMs`, and at
 * most `burst` events in total per `intervalMs`.
 */
export class MissLimiter {
  private window = -Infinity;
  private count = 0;
  private seen = new Set<number>();
  constructor(
    private readonly intervalMs: number,
    private readonly burst: number,
  ) {}
  /** True when an event for `key` may be emitted at time `now` (ms). */
  allow(key: number, now: number): boolean {
    if (now - this.window >= this.intervalMs) {
      this.window = now;
      this.count = 0;
      this.seen.clear();
    }
    if (this.count >= this.burst || this.seen.has(key)) return false;
    this.seen.add(key);
    this.count++;
    return true;
  }
}

/**
 * A shared coarse millisecond clock for the tables' hot paths when no clock is
 * injected. Reading `Date.now()` (or any clock function) returns a fresh heap number
 * on every call; the hot paths instead read `COARSE_NOW[0]` (an unboxed double),
 * which an unref'd timer refreshes every {@link COARSE_TICK_MS} ms and every
 * {@link coarseNow} call refreshes too. Entries may age up to one tick early/late.
 */
export const COARSE_NOW = new Float64Array(1);
/** Refresh period of {@link COARSE_NOW}. */
export const COARSE_TICK_MS = 10;
let coarseTimer: ReturnType<typeof setInterval> | undefined;

/** Start the coarse clock (idempotent; the timer never keeps the process alive). */
export function startCoarseClock(): void {
  COARSE_NOW[0] = Date.now();
  if (coarseTimer !== undefined) return;
  coarseTimer = setInterval(() => { COARSE_NOW[0] = Date.now(); }, COARSE_TICK_MS);
  coarseTimer.unref();
}

/** Exact time for control-plane paths; also refreshes {@link COARSE_NOW}. The default table clock. */
export function coarseNow(): number {
  const t = Date.now();
  COARSE_NOW[0] = t;
  return t;
}
