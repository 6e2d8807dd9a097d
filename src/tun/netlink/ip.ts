/**
 * Address literals for netlink attributes: IPv4/IPv6 and MAC text to bytes and back, CIDR
 * parsing. Bad input throws OsError EINVAL (these validate caller input, not kernel data).
 */
import { isIPv4, isIPv6 } from 'node:net';
import { OsError } from '../errors.js';

/** Parse an IPv4/IPv6 literal to 4 or 16 bytes. Throws EINVAL on bad input. */
export function ipToBytes(s: string): Buffer {
  if (isIPv4(s)) return Buffer.from(s.split('.').map(Number));
  if (!isIPv6(s)) throw new OsError(22, 'parse address', `'${s}' is not an IP address`);
  let head = s, tail = '';
  const dc = s.indexOf('::');
  if (dc >= 0) { head = s.slice(0, dc); tail = s.slice(dc + 2); }
  const parse = (part: string): number[] => {
    if (!part) return [];
    const out: number[] = [];
    for (const g of part.split(':')) {
      if (g.includes('.')) { const b = g.split('.').map(Number); out.push((b[0] << 8) | b[1], (b[2] << 8) | b[3]); }
      else out.push(parseInt(g, 16));
    }
    return out;
  };
  const h = parse(head), t = parse(tail);
  const groups = dc >= 0 ? [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t] : h;
  const b = Buffer.alloc(16);
  groups.forEach((g, i) => b.writeUInt16BE(g, i * 2));
  return b;
}

/** Format 4 or 16 bytes as an IP literal (IPv6 with the longest zero run compressed). */
export function bytesToIp(b: Uint8Array): string {
  if (b.length === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  const g: number[] = [];
  for (let i = 0; i < 16; i += 2) g.push((b[i] << 8) | b[i + 1]);
  let bs = -1, bl = 0;
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) { i++; continue; }
    let j = i; while (j < 8 && g[j] === 0) j++;
    if (j - i > bl && j - i > 1) { bs = i; bl = j - i; }
    i = j;
  }
  const hex = g.map((x) => x.toString(16));
  if (bs < 0) return hex.join(':');
  return `${hex.slice(0, bs).join(':')}::${hex.slice(bs + bl).join(':')}`;
}

/** Parse aa:bb:cc:dd:ee:ff to 6 bytes. */
export function macToBytes(mac: string): Buffer {
  const parts = mac.split(/[:-]/);
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{1,2}$/.test(p))) throw new OsError(22, 'parse MAC', `'${mac}' is not a MAC address`);
  return Buffer.from(parts.map((p) => parseInt(p, 16)));
}

/** Format link-layer address bytes as aa:bb:cc:dd:ee:ff. */
export function bytesToMac(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(':');
}

/** Parse 'a.b.c.d/len', 'x::y/len', a bare address (/32, /128), 'default' or 'default6'. */
export function parseCidr(s: string): { family: 4 | 6; addr: Buffer; len: number } {
  if (s === 'default') return { family: 4, addr: Buffer.alloc(4), len: 0 };
  if (s === 'default6') return { family: 6, addr: Buffer.alloc(16), len: 0 };
  const slash = s.indexOf('/');
  const ip = slash >= 0 ? s.slice(0, slash) : s;
  const addr = ipToBytes(ip);
  const family = addr.length === 4 ? 4 : 6;
  const len = slash >= 0 ? Number(s.slice(slash + 1)) : family === 4 ? 32 : 128;
  if (!Number.isInteger(len) || len < 0 || len > (family === 4 ? 32 : 128)) throw new OsError(22, 'parse CIDR', `bad prefix length in '${s}'`);
  return { family, addr, len };
}
