/** Internal helpers shared by the header views (not exported from the package). */

/** A zero-length array views point at before their first `check()`. */
export const EMPTY: Uint8Array = new Uint8Array(0);

/**
 * True when `buf[off..off+len)` is a valid integer range inside `buf`
 * (guards every read against typed-array out-of-range `undefined`).
 */
export function inBounds(buf: Uint8Array, off: number, len: number): boolean {
  return (off | 0) === off && (len | 0) === len && off >= 0 && len >= 0 && off + len <= buf.length;
}

/**
 * Big-endian 32 bits at `buf[off..off+4)` as an int32 (caller guarantees bounds). An int32 stays
 * a small integer in V8, never boxed across a call, and plain indexing skips Buffer's
 * argument checks on hot paths.
 */
export function rd32(buf: Uint8Array, off: number): number {
  return (buf[off]! << 24) | (buf[off + 1]! << 16) | (buf[off + 2]! << 8) | buf[off + 3]!;
}

/** Big-endian 16 bits at `buf[off..off+2)` (caller guarantees bounds). */
export function rd16(buf: Uint8Array, off: number): number {
  return (buf[off]! << 8) | buf[off + 1]!;
}
