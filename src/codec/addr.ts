/**
 * Addresses: one IP address type and one prefix type for IPv4 and IPv6, MACs, and the
 * allocation-free number forms hot paths use.
 *
 * - {@link IpAddr} / {@link IpPrefix}: the one address and prefix type used by every
 *   configuration path (tables, rtnetlink, the dataplanes, overlayd). Immutable values.
 * - Hot paths keep IPv4 addresses as unsigned 32-bit numbers (a.b.c.d =
 *   a<<24|b<<16|c<<8|d) and MACs as 48-bit numbers, exact in a double, so nothing
 *   allocates per packet; IPv6 addresses are 16-byte arrays.
 *
 * One error convention: {@link parseIp} and {@link parsePrefix} return the value or an
 * {@link AddrError} (typed `reason`, the `input`, a one-line message); the `ipAddr()`,
 * `ipPrefix()`, `ipv4ToU32()` and `parseMac()` shorthands throw that same AddrError,
 * for literals and for callers that already turn exceptions into their own errors.
 * The byte readers/writers (`macToNumber`, `writeMac`, ...) never allocate.
 */

/** 2^32, used to split/join 48-bit MACs. */
const TWO32 = 4294967296;

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/** Why an address, prefix or MAC string was refused. */
export type AddrReason =
  | 'bad-address'
  | 'bad-prefix-length'
  | 'missing-prefix-length'
  | 'host-bits-set'
  | 'wrong-family'
  | 'bad-mac';

/** A refused address, prefix or MAC: the one error type for bad addresses. */
export class AddrError extends Error {
  /** What was wrong. */
  readonly reason: AddrReason;
  /** The string as given. */
  readonly input: string;
  constructor(reason: AddrReason, input: string, message: string) {
    super(message);
    this.name = 'AddrError';
    this.reason = reason;
    this.input = input;
  }
}

// ---------------------------------------------------------------------------
// IPv4 numbers
// ---------------------------------------------------------------------------

/** Parse a dotted quad to uint32, or -1 when malformed (internal: no allocation beyond the regex). */
function dottedQuad(s: string): number {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (!m) return -1;
  let v = 0;
  for (let i = 1; i <= 4; i++) {
    const part = m[i]!;
    const o = Number(part);
    if (o > 255 || (part.length > 1 && part[0] === '0')) return -1;
    v = v * 256 + o;
  }
  return v >>> 0;
}

/** Parse dotted-quad IPv4 into the uint32 form used by slots and tables. Throws {@link AddrError}. */
export function ipv4ToU32(s: string): number {
  const v = typeof s === 'string' ? dottedQuad(s) : -1;
  if (v < 0) throw new AddrError('bad-address', String(s), `invalid IPv4 address "${String(s)}"`);
  return v;
}

/** Format a uint32 (or int32) IPv4 number as a dotted quad. */
export function u32ToIpv4(v: number): string {
  return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}

/** Read a big-endian IPv4 address (uint32) at `buf[off..off+4)`. Caller guarantees bounds. */
export function readIpv4(buf: Uint8Array, off: number): number {
  return ((buf[off]! << 24) | (buf[off + 1]! << 16) | (buf[off + 2]! << 8) | buf[off + 3]!) >>> 0;
}

/** Write a uint32 IPv4 address big-endian at `buf[off..off+4)`. */
export function writeIpv4(buf: Uint8Array, off: number, addr: number): void {
  buf[off] = addr >>> 24;
  buf[off + 1] = (addr >>> 16) & 255;
  buf[off + 2] = (addr >>> 8) & 255;
  buf[off + 3] = addr & 255;
}

/** Netmask (uint32) for a prefix length 0..32. */
export function ipv4Mask(prefixLen: number): number {
  return prefixLen <= 0 ? 0 : prefixLen >= 32 ? 0xffffffff : (0xffffffff << (32 - prefixLen)) >>> 0;
}

/** Network address of `addr` under `prefixLen` (host bits cleared). */
export function ipv4Network(addr: number, prefixLen: number): number {
  return (addr & ipv4Mask(prefixLen)) >>> 0;
}

/** True when `addr` lies inside `net/prefixLen`. */
export function ipv4InPrefix(addr: number, net: number, prefixLen: number): boolean {
  const m = ipv4Mask(prefixLen);
  return ((addr & m) >>> 0) === ((net & m) >>> 0);
}

// ---------------------------------------------------------------------------
// IpAddr and IpPrefix: the one address and prefix type
// ---------------------------------------------------------------------------

/** An IPv4 or IPv6 address. Immutable; compare with {@link IpAddr.equals}. */
export class IpAddr {
  /** Address family. */
  readonly family: 4 | 6;
  /** IPv4: the uint32 form (hot-path form). IPv6: 0. */
  readonly v4: number;
  /** The address in network byte order: 4 or 16 bytes. Do not mutate. */
  readonly bytes: Uint8Array;

  private constructor(family: 4 | 6, v4: number, bytes: Uint8Array) {
    this.family = family;
    this.v4 = v4;
    this.bytes = bytes;
  }

  /** The IPv4 address of a uint32 (or int32) number. */
  static fromV4(u32: number): IpAddr {
    const b = new Uint8Array(4);
    writeIpv4(b, 0, u32 >>> 0);
    return new IpAddr(4, u32 >>> 0, b);
  }

  /** An address from 4 or 16 bytes at `buf[off..)` (copied). */
  static fromBytes(buf: Uint8Array, family: 4 | 6, off = 0): IpAddr {
    if (family === 4) return IpAddr.fromV4(readIpv4(buf, off));
    return new IpAddr(6, 0, Uint8Array.from(buf.subarray(off, off + 16)));
  }

  /** Text form: dotted quad, or RFC 5952 IPv6. */
  toString(): string {
    return this.family === 4 ? u32ToIpv4(this.v4) : formatIpv6(this.bytes);
  }

  /** True when both are the same family and address. */
  equals(o: IpAddr): boolean {
    if (o.family !== this.family) return false;
    if (this.family === 4) return this.v4 === o.v4;
    return ipv6Equal(this.bytes, 0, o.bytes, 0);
  }

  /** Address width in bits (32 or 128). */
  get bits(): 32 | 128 {
    return this.family === 4 ? 32 : 128;
  }
}

/** An IPv4 or IPv6 prefix: a network address (host bits cleared) and a length. Immutable. */
export class IpPrefix {
  /** The network address (host bits cleared). */
  readonly addr: IpAddr;
  /** Prefix length: 0..32 or 0..128. */
  readonly len: number;
  /** IPv4 hot-path forms (0 for IPv6): network and mask as uint32 and as int32. */
  readonly net: number;
  readonly mask: number;
  readonly neti: number;
  readonly maski: number;

  /** A prefix of `addr`/`len` with host bits cleared (`len` must be in range: see {@link parsePrefix}). */
  constructor(addr: IpAddr, len: number) {
    this.len = len;
    if (addr.family === 4) {
      this.mask = ipv4Mask(len);
      this.net = (addr.v4 & this.mask) >>> 0;
      this.addr = this.net === addr.v4 ? addr : IpAddr.fromV4(this.net);
    } else {
      this.mask = 0;
      this.net = 0;
      const b = Uint8Array.from(addr.bytes);
      clearHostBits6(b, len);
      this.addr = IpAddr.fromBytes(b, 6);
    }
    this.neti = this.net | 0;
    this.maski = this.mask | 0;
  }

  /** The IPv4 prefix `net/len` from a uint32 network number (host bits cleared). */
  static v4(net: number, len: number): IpPrefix {
    return new IpPrefix(IpAddr.fromV4(net), len);
  }

  /** Address family. */
  get family(): 4 | 6 {
    return this.addr.family;
  }

  /** "a.b.c.d/len" or "x::/len". */
  toString(): string {
    return `${this.addr.toString()}/${this.len}`;
  }

  /** flannel's etcd key form: "a.b.c.d-len". */
  toKey(): string {
    return `${this.addr.toString()}-${this.len}`;
  }

  /** True when `a` lies inside this prefix (false for the other family). */
  contains(a: IpAddr): boolean {
    if (a.family !== this.family) return false;
    if (a.family === 4) return (a.v4 & this.maski) === this.neti;
    return prefixMatch6(this.addr.bytes, a.bytes, 0, this.len);
  }

  /** Hot path: true when the IPv4 number `ip` (int32 or uint32 form) lies inside this IPv4 prefix. */
  containsV4(ip: number): boolean {
    return (ip & this.maski) === this.neti;
  }

  /** Hot path: true when the 16 bytes at `buf[off..)` (an IPv6 address in a packet) lie inside this IPv6 prefix. Allocation-free. */
  containsV6At(buf: Uint8Array, off: number): boolean {
    return this.addr.family === 6 && prefixMatch6(this.addr.bytes, buf, off, this.len);
  }

  /** True when prefix `p` lies entirely inside this one. */
  covers(p: IpPrefix): boolean {
    return p.family === this.family && p.len >= this.len && this.contains(p.addr);
  }

  /** True when both prefixes share any address. */
  overlaps(p: IpPrefix): boolean {
    return this.covers(p) || p.covers(this);
  }

  /** True when both are the same family, network and length. */
  equals(p: IpPrefix): boolean {
    return p.len === this.len && p.addr.equals(this.addr);
  }
}

function clearHostBits6(b: Uint8Array, len: number): void {
  for (let i = 0; i < 16; i++) {
    const keep = len >= (i + 1) * 8 ? 8 : len <= i * 8 ? 0 : len - i * 8;
    b[i] = b[i]! & (keep === 0 ? 0 : (0xff << (8 - keep)) & 0xff);
  }
}

function prefixMatch6(net: Uint8Array, a: Uint8Array, ao: number, len: number): boolean {
  for (let i = 0; i < 16; i++) {
    const keep = len >= (i + 1) * 8 ? 8 : len <= i * 8 ? 0 : len - i * 8;
    if (keep === 0) return true;
    const m = (0xff << (8 - keep)) & 0xff;
    if ((a[ao + i]! & m) !== net[i]) return false;
  }
  return true;
}

/** Options of {@link parseIp}. */
export interface ParseIpOptions {
  /** Accept only this family (reason 'wrong-family' otherwise). */
  family?: 4 | 6;
}

/** Parse an IPv4 dotted quad or IPv6 text address. Returns the address or an {@link AddrError}. */
export function parseIp(s: string, opts: ParseIpOptions = {}): IpAddr | AddrError {
  if (typeof s !== 'string') return new AddrError('bad-address', String(s), `invalid IP address "${String(s)}"`);
  let a: IpAddr | undefined;
  if (s.includes(':')) {
    const b = new Uint8Array(16);
    if (ipv6Into(s, b, 0)) a = IpAddr.fromBytes(b, 6);
  } else {
    const v = dottedQuad(s);
    if (v >= 0) a = IpAddr.fromV4(v);
  }
  if (a === undefined) {
    const what = opts.family === 4 ? 'IPv4' : opts.family === 6 ? 'IPv6' : 'IP';
    return new AddrError('bad-address', s, `invalid ${what} address "${s}"`);
  }
  if (opts.family !== undefined && a.family !== opts.family) {
    return new AddrError('wrong-family', s, `"${s}" is not an IPv${opts.family} address`);
  }
  return a;
}

/** Options of {@link parsePrefix}. */
export interface ParsePrefixOptions {
  /** Accept only this family. */
  family?: 4 | 6;
  /**
   * What to do with host bits set beyond the prefix length: 'reject' (reason
   * 'host-bits-set', the default, as `ip route` does) or 'clear' (keep the network).
   */
  hostBits?: 'reject' | 'clear';
  /** Accept a bare address as a host prefix (/32 or /128), as `ip route` does. Default false. */
  bare?: boolean;
  /** Accept `default`, `all` and `any` as 0.0.0.0/0 (or ::/0 with family 6), as `ip route` does. Default false. */
  keywords?: boolean;
}

/** Parse "a.b.c.d/len" or "x::/len". Returns the prefix or an {@link AddrError}. */
export function parsePrefix(s: string, opts: ParsePrefixOptions = {}): IpPrefix | AddrError {
  if (typeof s !== 'string') return new AddrError('bad-address', String(s), `invalid prefix "${String(s)}"`);
  if (opts.keywords && (s === 'default' || s === 'all' || s === 'any')) {
    return opts.family === 6 ? new IpPrefix(IpAddr.fromBytes(new Uint8Array(16), 6), 0) : IpPrefix.v4(0, 0);
  }
  const slash = s.indexOf('/');
  if (slash < 0 && !opts.bare) return new AddrError('missing-prefix-length', s, `invalid prefix "${s}": missing "/length"`);
  const a = parseIp(slash < 0 ? s : s.slice(0, slash), opts.family === undefined ? {} : { family: opts.family });
  if (a instanceof AddrError) {
    return new AddrError(a.reason, s, a.reason === 'wrong-family' ? `"${s}" is not an IPv${opts.family} prefix` : `invalid prefix "${s}": bad address`);
  }
  let len: number = a.bits;
  if (slash >= 0) {
    const pl = s.slice(slash + 1);
    if (!/^(0|[1-9]\d{0,2})$/.test(pl) || Number(pl) > a.bits) {
      return new AddrError('bad-prefix-length', s, `invalid prefix "${s}": bad prefix length "${pl}" (0..${a.bits})`);
    }
    len = Number(pl);
  }
  const p = new IpPrefix(a, len);
  if ((opts.hostBits ?? 'reject') === 'reject' && !p.addr.equals(a)) {
    return new AddrError('host-bits-set', s, `prefix "${s}" has host bits set (did you mean ${p.toString()}?)`);
  }
  return p;
}

/** Parse an address, throwing the {@link AddrError} (for literals and config paths that catch). */
export function ipAddr(s: string, opts?: ParseIpOptions): IpAddr {
  const r = parseIp(s, opts);
  if (r instanceof AddrError) throw r;
  return r;
}

/** Parse a prefix, throwing the {@link AddrError} (for literals and config paths that catch). */
export function ipPrefix(s: string, opts?: ParsePrefixOptions): IpPrefix {
  const r = parsePrefix(s, opts);
  if (r instanceof AddrError) throw r;
  return r;
}

// ---------------------------------------------------------------------------
// MAC addresses (48-bit numbers)
// ---------------------------------------------------------------------------

/** The broadcast MAC ff:ff:ff:ff:ff:ff as a 48-bit number. */
export const MAC_BROADCAST = 0xffffffffffff;

/** Parse "aa:bb:cc:dd:ee:ff" (also '-' separated; case-insensitive) into a 48-bit number. Throws naming the value. */
export function parseMac(s: string): number {
  const m = /^([0-9a-fA-F]{2})([:-])([0-9a-fA-F]{2})\2([0-9a-fA-F]{2})\2([0-9a-fA-F]{2})\2([0-9a-fA-F]{2})\2([0-9a-fA-F]{2})$/.exec(s);
  if (!m) throw new AddrError('bad-mac', String(s), `invalid MAC address "${String(s)}"`);
  let v = 0;
  for (const i of [1, 3, 4, 5, 6, 7]) v = v * 256 + parseInt(m[i]!, 16);
  return v;
}

/** Parse a MAC string into a fresh 6-byte Buffer. Throws naming the value. */
export function parseMacBytes(s: string): Buffer {
  const b = Buffer.alloc(6);
  writeMac(b, 0, parseMac(s));
  return b;
}

/** Format a 48-bit MAC number as lowercase "aa:bb:cc:dd:ee:ff". */
export function formatMac(n: number): string {
  const hi = Math.floor(n / TWO32);
  const lo = n >>> 0;
  const h = (x: number): string => (x < 16 ? '0' : '') + x.toString(16);
  return `${h((hi >>> 8) & 255)}:${h(hi & 255)}:${h(lo >>> 24)}:${h((lo >>> 16) & 255)}:${h((lo >>> 8) & 255)}:${h(lo & 255)}`;
}

/** Format the 6 bytes at `buf[off..off+6)` as "aa:bb:cc:dd:ee:ff". */
export function formatMacBytes(buf: Uint8Array, off = 0): string {
  return formatMac(macToNumber(buf, off));
}

/** Read the MAC at `buf[off..off+6)` as a 48-bit number. Caller guarantees bounds. No allocation. */
export function macToNumber(buf: Uint8Array, off: number): number {
  return ((buf[off]! << 8) | buf[off + 1]!) * TWO32 +
    (((buf[off + 2]! << 24) | (buf[off + 3]! << 16) | (buf[off + 4]! << 8) | buf[off + 5]!) >>> 0);
}

/** Write a 48-bit MAC number at `buf[off..off+6)`. No allocation. */
export function writeMac(buf: Uint8Array, off: number, n: number): void {
  const hi = Math.floor(n / TWO32);
  const lo = n >>> 0;
  buf[off] = (hi >>> 8) & 255;
  buf[off + 1] = hi & 255;
  buf[off + 2] = lo >>> 24;
  buf[off + 3] = (lo >>> 16) & 255;
  buf[off + 4] = (lo >>> 8) & 255;
  buf[off + 5] = lo & 255;
}

/**
 * Write a MAC given as two V8 small integers, the high 16 bits and the low 32 bits
 * (as int32), at `buf[off..off+6)`: the form hot paths keep MACs in so that no 48-bit
 * double is ever boxed. No allocation.
 */
export function writeMacHL(buf: Uint8Array, off: number, hi: number, lo: number): void {
  buf[off] = (hi >>> 8) & 255;
  buf[off + 1] = hi & 255;
  buf[off + 2] = (lo >>> 24) & 255;
  buf[off + 3] = (lo >>> 16) & 255;
  buf[off + 4] = (lo >>> 8) & 255;
  buf[off + 5] = lo & 255;
}

/** High 16 bits of a 48-bit MAC number (see {@link writeMacHL}). */
export function macHi(n: number): number {
  return Math.floor(n / TWO32) & 0xffff;
}

/** Low 32 bits of a 48-bit MAC number as int32 (see {@link writeMacHL}). */
export function macLo(n: number): number {
  return (n % TWO32) | 0;
}

/** True when the MAC at `buf[off..off+6)` is a group (multicast/broadcast) address: the I/G bit. */
export function isMulticastMacAt(buf: Uint8Array, off: number): boolean {
  return (buf[off]! & 1) !== 0;
}

/** True for group (multicast or broadcast) MACs: the I/G bit, least significant bit of the first octet. */
export function isMulticastMac(n: number): boolean {
  return (Math.floor(n / 1099511627776) & 1) === 1; // n / 2^40 = first octet
}

/** True for ff:ff:ff:ff:ff:ff. */
export function isBroadcastMac(n: number): boolean {
  return n === MAC_BROADCAST;
}

/** True when the locally-administered (U/L) bit of the first octet is set. */
export function isLocalMac(n: number): boolean {
  return (Math.floor(n / 1099511627776) & 2) === 2;
}

/** True for a valid unicast MAC (not group, not zero). */
export function isUnicastMac(n: number): boolean {
  return n !== 0 && !isMulticastMac(n);
}

// ---------------------------------------------------------------------------
// IPv6 addresses (16-byte arrays)
// ---------------------------------------------------------------------------

/**
 * Parse an IPv6 address (RFC 4291 text: "::" compression, optional trailing dotted
 * IPv4) into `out[off..off+16)` (a fresh 16-byte array when `out` is omitted).
 * Throws {@link AddrError} when malformed. Zone ids ("%eth0") are rejected.
 */
export function parseIpv6(s: string, out?: Uint8Array, off = 0): Uint8Array {
  const dst = out ?? new Uint8Array(16);
  if (!ipv6Into(s, dst, off)) throw new AddrError('bad-address', String(s), `invalid IPv6 address "${String(s)}"`);
  return dst;
}

/** Parse IPv6 text into `dst[off..off+16)`; false (dst untouched) when malformed. */
function ipv6Into(s: string, dst: Uint8Array, off: number): boolean {
  if (typeof s !== 'string' || s.length < 2 || s.length > 45) return false;
  const halves = s.split('::');
  if (halves.length > 2) return false;
  const side = (t: string, last: boolean): number[] | undefined => {
    if (t === '') return [];
    const parts = t.split(':');
    const ws: number[] = [];
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i]!;
      if (last && i === parts.length - 1 && p.includes('.')) {
        const v = dottedQuad(p);
        if (v < 0) return undefined;
        ws.push(v >>> 16, v & 0xffff);
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(p)) return undefined;
        ws.push(parseInt(p, 16));
      }
    }
    return ws;
  };
  let words: number[];
  if (halves.length === 1) {
    const w = side(halves[0]!, true);
    if (w === undefined || w.length !== 8) return false;
    words = w;
  } else {
    const head = side(halves[0]!, false);
    const tail = side(halves[1]!, true);
    if (head === undefined || tail === undefined || head.length + tail.length > 7) return false;
    words = [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  }
  for (let i = 0; i < 8; i++) {
    dst[off + 2 * i] = words[i]! >>> 8;
    dst[off + 2 * i + 1] = words[i]! & 255;
  }
  return true;
}

/** Format the 16 bytes at `buf[off..off+16)` as RFC 5952 canonical IPv6 text (longest zero run compressed, lowercase). */
export function formatIpv6(buf: Uint8Array, off = 0): string {
  const w: number[] = [];
  for (let i = 0; i < 8; i++) w.push((buf[off + 2 * i]! << 8) | buf[off + 2 * i + 1]!);
  // IPv4-mapped ::ffff:a.b.c.d
  if (w[0] === 0 && w[1] === 0 && w[2] === 0 && w[3] === 0 && w[4] === 0 && w[5] === 0xffff) {
    return `::ffff:${u32ToIpv4(((w[6]! << 16) | w[7]!) >>> 0)}`;
  }
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8;) {
    if (w[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && w[j] === 0) j++;
    if (j - i > bestLen) { bestStart = i; bestLen = j - i; }
    i = j;
  }
  if (bestLen < 2) bestStart = -1;
  const hex = (x: number): string => x.toString(16);
  if (bestStart < 0) return w.map(hex).join(':');
  const head = w.slice(0, bestStart).map(hex).join(':');
  const tail = w.slice(bestStart + bestLen).map(hex).join(':');
  return `${head}::${tail}`;
}

/** True when the 16 bytes at `a[ao..)` and `b[bo..)` are equal. No allocation. */
export function ipv6Equal(a: Uint8Array, ao: number, b: Uint8Array, bo: number): boolean {
  for (let i = 0; i < 16; i++) if (a[ao + i] !== b[bo + i]) return false;
  return true;
}
