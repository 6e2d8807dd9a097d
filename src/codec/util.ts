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
