/**
 * Address helpers.
 *
 * - IPv4 addresses are unsigned 32-bit numbers (a.b.c.d = a<<24|b<<16|c<<8|d), the
 *   form used in slots, tables and header views.
 * - MAC addresses are 48-bit unsigned numbers (aa:bb:cc:dd:ee:ff = 0xaabbccddeeff),
 *   exact in a double, so hot paths never allocate for them.
 * - IPv6 addresses are 16-byte arrays.
 *
 * Parsing functions throw an Error naming the offending value (configuration path);
 * the byte readers/writers (`macToNumber`, `writeMac`, ...) never allocate.
 */

/** 2^32, used to split/join 48-bit MACs. */
const TWO32 = 4294967296;

/** Parse dotted-quad IPv4 into the uint32 form used by slots and tables. Throws on bad input. */
export function ipv4ToU32(s: string): number {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (!m) throw new Error(`invalid IPv4 address "${s}"`);
  let v = 0;
  for (let i = 1; i <= 4; i++) {
    const o = Number(m[i]);
    if (o > 255 || (m[i]!.length > 1 && m[i]![0] === '0')) throw new Error(`invalid IPv4 address "${s}"`);
    v = v * 256 + o;
  }
  return v >>> 0;
}

/** Format a uint32 IPv4 as a dotted quad. */
export function u32ToIpv4(v: number): string {
  return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}

/** Alias of {@link ipv4ToU32}: parse a dotted quad into a uint32. */
export const parseIpv4 = ipv4ToU32;
/** Alias of {@link u32ToIpv4}: format a uint32 as a dotted quad. */
export const formatIpv4 = u32ToIpv4;

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

/** An IPv4 prefix: network-or-host address (uint32) and prefix length 0..32. */
export interface Ipv4Cidr {
  /** Address as written (host bits are kept; use {@link ipv4Network} to mask). */
  addr: number;
  /** Prefix length, 0..32. */
  prefixLen: number;
}

/** Parse "a.b.c.d/len" (len 0..32). Throws an Error naming the value when malformed. */
export function parseIpv4Cidr(s: string): Ipv4Cidr {
  const slash = s.indexOf('/');
  if (slash < 0) throw new Error(`invalid IPv4 CIDR "${s}": missing "/prefix"`);
  const ip = s.slice(0, slash);
  const pl = s.slice(slash + 1);
  if (!/^\d{1,2}$/.test(pl) || Number(pl) > 32 || (pl.length > 1 && pl[0] === '0')) {
    throw new Error(`invalid IPv4 CIDR "${s}": bad prefix length "${pl}"`);
  }
  let addr: number;
  try {
    addr = ipv4ToU32(ip);
  } catch {
    throw new Error(`invalid IPv4 CIDR "${s}": bad address "${ip}"`);
  }
  return { addr, prefixLen: Number(pl) };
}

/** Format an IPv4 prefix as "a.b.c.d/len". */
export function formatIpv4Cidr(c: Ipv4Cidr): string {
  return `${u32ToIpv4(c.addr)}/${c.prefixLen}`;
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
// MAC addresses (48-bit numbers)
// ---------------------------------------------------------------------------

/** The broadcast MAC ff:ff:ff:ff:ff:ff as a 48-bit number. */
export const MAC_BROADCAST = 0xffffffffffff;

/** Parse "aa:bb:cc:dd:ee:ff" (also '-' separated; case-insensitive) into a 48-bit number. Throws naming the value. */
export function parseMac(s: string): number {
  const m = /^([0-9a-fA-F]{2})([:-])([0-9a-fA-F]{2})\2([0-9a-fA-F]{2})\2([0-9a-fA-F]{2})\2([0-9a-fA-F]{2})\2([0-9a-fA-F]{2})$/.exec(s);
  if (!m) throw new Error(`invalid MAC address "${s}"`);
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

/** Alias of {@link formatMac}: 48-bit number to "aa:bb:cc:dd:ee:ff". */
export const numberToMac = formatMac;

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
 * Throws an Error naming the value when malformed. Zone ids ("%eth0") are rejected.
 */
export function parseIpv6(s: string, out?: Uint8Array, off = 0): Uint8Array {
  const bad = (): never => { throw new Error(`invalid IPv6 address "${s}"`); };
  if (s.length < 2 || s.length > 45) bad();
  const halves = s.split('::');
  if (halves.length > 2) bad();
  const side = (t: string, last: boolean): number[] => {
    if (t === '') return [];
    const parts = t.split(':');
    const ws: number[] = [];
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i]!;
      if (last && i === parts.length - 1 && p.includes('.')) {
        let v = 0;
        try { v = ipv4ToU32(p); } catch { bad(); }
        ws.push(v >>> 16, v & 0xffff);
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(p)) bad();
        ws.push(parseInt(p, 16));
      }
    }
    return ws;
  };
  let words: number[];
  if (halves.length === 1) {
    words = side(halves[0]!, true);
    if (words.length !== 8) bad();
  } else {
    const head = side(halves[0]!, false);
    const tail = side(halves[1]!, true);
    if (head.length + tail.length > 7) bad();
    words = [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  }
  const dst = out ?? new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    dst[off + 2 * i] = words[i]! >>> 8;
    dst[off + 2 * i + 1] = words[i]! & 255;
  }
  return dst;
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
