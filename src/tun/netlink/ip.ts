/**
 * Address literals for netlink attributes: IP and MAC text to bytes and back, CIDR parsing,
 * all through src/codec's one address type. Bad input throws OsError EINVAL (these validate
 * caller input, not kernel data), with the codec's AddrError as its cause.
 */
import { AddrError, IpAddr, parseIp, parseMac, parsePrefix, writeMac, formatMacBytes } from '../../codec/addr.js';
import { OsError } from '../errors.js';

/** Parse an IPv4/IPv6 literal to 4 or 16 bytes. Throws EINVAL on bad input. */
export function ipToBytes(s: string): Buffer {
  const a = parseIp(s);
  if (a instanceof AddrError) throw new OsError(22, 'parse address', `'${s}' is not an IP address`, { cause: a });
  return Buffer.from(a.bytes);
}

/** Format 4 or 16 bytes as an IP literal (IPv6 in RFC 5952 form). */
export function bytesToIp(b: Uint8Array): string {
  return IpAddr.fromBytes(b, b.length === 4 ? 4 : 6).toString();
}

/** Parse aa:bb:cc:dd:ee:ff to 6 bytes (like ip(8), an octet may be written with one digit: 2:0:0:0:0:1). */
export function macToBytes(mac: string): Buffer {
  let n: number;
  try {
    n = parseMac(typeof mac === 'string' ? mac.split(/([:-])/).map((g) => (g.length === 1 && g !== ':' && g !== '-' ? `0${g}` : g)).join('') : mac);
  } catch (e) {
    throw new OsError(22, 'parse MAC', `'${mac}' is not a MAC address`, { cause: e });
  }
  const b = Buffer.alloc(6);
  writeMac(b, 0, n);
  return b;
}

/** Format link-layer address bytes as aa:bb:cc:dd:ee:ff. */
export function bytesToMac(b: Uint8Array): string {
  return b.length === 6 ? formatMacBytes(b, 0) : Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(':');
}

/**
 * Parse 'a.b.c.d/len', 'x::y/len', a bare address (/32, /128), 'default' or 'default6'.
 * The address keeps its host bits (an interface address such as 198.19.1.1/24).
 */
export function parseCidr(s: string): { family: 4 | 6; addr: Buffer; len: number } {
  if (s === 'default') return { family: 4, addr: Buffer.alloc(4), len: 0 };
  if (s === 'default6') return { family: 6, addr: Buffer.alloc(16), len: 0 };
  const p = parsePrefix(s, { bare: true, hostBits: 'clear' });
  if (p instanceof AddrError) throw new OsError(22, 'parse CIDR', p.reason === 'bad-prefix-length' ? `bad prefix length in '${s}'` : `'${s}' is not an IP prefix`, { cause: p });
  const slash = s.indexOf('/');
  const addr = ipToBytes(slash >= 0 ? s.slice(0, slash) : s);
  return { family: p.family, addr, len: p.len };
}
