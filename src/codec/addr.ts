/**
 * Address helpers: IPv4 dotted quad <-> uint32 (the form used in slots and tables).
 */

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
