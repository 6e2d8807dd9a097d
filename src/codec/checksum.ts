/**
 * The Internet checksum (RFC 1071) and incremental updates (RFC 1624).
 *
 * `onesSum` adds 32-bit words through a cached Uint32Array view of the buffer's
 * ArrayBuffer (one view per ArrayBuffer, created once and reused: no per-call
 * allocation), unrolled eight words per step into a double accumulator (exact up to
 * 2^53, folded every 1 Mi words). Alignment and byte order are handled with the
 * RFC 1071 byte-swap property, so any offset works.
 */

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Below this many bytes the plain 16-bit loop is faster than the word path. */
const SMALL = 64;
/** Words per chunk before folding the accumulator (keeps it far below 2^53). */
const CHUNK_WORDS = 1 << 20;

let lastAb: ArrayBufferLike | null = null;
let lastU32: Uint32Array = new Uint32Array(0);
let prevAb: ArrayBufferLike | null = null;
let prevU32: Uint32Array = lastU32;
const views = new WeakMap<ArrayBufferLike, Uint32Array>();

/** The cached whole-buffer Uint32Array view for an ArrayBuffer (two most recent kept: copies alternate two buffers). */
function u32View(ab: ArrayBufferLike): Uint32Array {
  if (ab === lastAb) return lastU32;
  if (ab === prevAb) {
    const v = prevU32;
    prevAb = lastAb;
    prevU32 = lastU32;
    lastAb = ab;
    lastU32 = v;
    return v;
  }
  let v = views.get(ab);
  if (v === undefined || v.length !== ab.byteLength >>> 2) {
    v = new Uint32Array(ab, 0, ab.byteLength >>> 2);
    views.set(ab, v);
  }
  prevAb = lastAb;
  prevU32 = lastU32;
  lastAb = ab;
  lastU32 = v;
  return v;
}

/** Fold any non-negative integer (< 2^53) to a 16-bit ones-complement sum in [0, 0xffff]. */
export function csumFold(sum: number): number {
  while (sum > 0xffff) {
    if (sum > 0xffffffff) sum = Math.floor(sum / 65536) + (sum % 65536);
    else sum = (sum >>> 16) + (sum & 0xffff);
  }
  return sum;
}

/** Swap the two bytes of a 16-bit value. */
function swap16(x: number): number {
  return ((x & 0xff) << 8) | (x >>> 8);
}

/** Byte-by-word loop for short spans: big-endian 16-bit words from `off`. */
function smallSum(buf: Uint8Array, off: number, len: number): number {
  let s = 0;
  const end = off + (len & ~1);
  for (let i = off; i < end; i += 2) s += (buf[i]! << 8) | buf[i + 1]!;
  if (len & 1) s += buf[off + len - 1]! << 8;
  return s;
}

/**
 * Ones-complement sum of `buf[off..off+len)` as big-endian 16-bit words, plus
 * `initial` (e.g. a pseudo-header sum), folded to 16 bits but NOT complemented.
 * Caller guarantees the range is inside `buf`.
 */
export function onesSumTs(buf: Uint8Array, off: number, len: number, initial = 0): number {
  if (len < SMALL) return csumFold(smallSum(buf, off, len) + initial);
  const abs = buf.byteOffset + off;
  const head = (4 - (abs & 3)) & 3;
  let s = initial;
  // Head bytes before the first aligned word; byte i of the span has weight 256 when i is even.
  for (let i = 0; i < head; i++) s += (i & 1) ? buf[off + i]! : buf[off + i]! << 8;
  const nWords = (len - head) >>> 2;
  const u = u32View(buf.buffer);
  let w = (abs + head) >>> 2;
  const wEnd = w + nWords;
  let acc = 0;
  while (w < wEnd) {
    const chunkEnd = Math.min(wEnd, w + CHUNK_WORDS);
    let a = 0;
    let b = 0;
    const unEnd = chunkEnd - 7;
    for (; w < unEnd; w += 8) {
      a += u[w]! + u[w + 1]! + u[w + 2]! + u[w + 3]!;
      b += u[w + 4]! + u[w + 5]! + u[w + 6]! + u[w + 7]!;
    }
    for (; w < chunkEnd; w++) a += u[w]!;
    // Fold the double accumulator inline (passing a non-Smi double to a call would box it).
    let x = acc + a + b;
    while (x > 0xffffffff) x = Math.floor(x / 65536) + (x % 65536);
    x = (x >>> 16) + (x & 0xffff);
    acc = (x >>> 16) + (x & 0xffff);
  }
  // Words were read in host order. On little-endian hosts a word starting at an even
  // span position sums to the byte-swapped value; on big-endian hosts, an odd one does.
  const evenStart = (head & 1) === 0;
  if (evenStart === LITTLE_ENDIAN) acc = swap16(acc);
  s += acc;
  // Tail bytes.
  for (let i = head + nWords * 4; i < len; i++) s += (i & 1) ? buf[off + i]! : buf[off + i]! << 8;
  return csumFold(s);
}

/** Reference ones-complement sum, one 16-bit word at a time (for tests and tiny spans). */
export function onesSumSimple(buf: Uint8Array, off: number, len: number, initial = 0): number {
  return csumFold(smallSum(buf, off, len) + initial);
}

/** Internet checksum of `buf[off..off+len)` plus `initial`: the complemented 16-bit ones-complement sum. */
export function checksum(buf: Uint8Array, off: number, len: number, initial = 0): number {
  return ~onesSum(buf, off, len, initial) & 0xffff;
}

/** Alias of {@link checksum}. */
export const internetChecksum = checksum;

/** Complement of a folded sum; the value to store in a checksum field. */
export function csumFinish(sum: number): number {
  return ~csumFold(sum) & 0xffff;
}

/**
 * RFC 1624 eqn. 3 incremental update of a stored checksum `check` when a 16-bit word
 * changes from `oldWord` to `newWord`: HC' = ~(~HC + ~m + m'). Gives exactly what a
 * full recomputation gives (never 0xffff for a non-zero sum, 0x0000 kept canonical).
 */
export function csumUpdate16(check: number, oldWord: number, newWord: number): number {
  let s = (~check & 0xffff) + (~oldWord & 0xffff) + (newWord & 0xffff);
  s = (s & 0xffff) + (s >>> 16);
  s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

/** RFC 1624 incremental update for a 32-bit field (e.g. an IPv4 address) changing from `oldVal` to `newVal`. */
export function csumUpdate32(check: number, oldVal: number, newVal: number): number {
  let s = (~check & 0xffff) + (~(oldVal >>> 16) & 0xffff) + (~oldVal & 0xffff) + (newVal >>> 16) + (newVal & 0xffff);
  s = (s & 0xffff) + (s >>> 16);
  s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

/** Unfolded sum of the IPv4 pseudo-header (src, dst, protocol, L4 length). Pass as `initial`. */
export function pseudoSum4(src: number, dst: number, proto: number, l4len: number): number { // src/dst: uint32 or int32 form
  return (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff) + proto + l4len;
}

/**
 * Unfolded sum of the IPv6 pseudo-header (RFC 8200 8.1): source at `buf[srcOff..+16)`,
 * destination at `buf[dstOff..+16)`, upper-layer length and next header.
 */
export function pseudoSum6(buf: Uint8Array, srcOff: number, dstOff: number, proto: number, l4len: number): number {
  let s = proto + (l4len >>> 16) + (l4len & 0xffff);
  for (let i = 0; i < 16; i += 2) {
    s += ((buf[srcOff + i]! << 8) | buf[srcOff + i + 1]!) + ((buf[dstOff + i]! << 8) | buf[dstOff + i + 1]!);
  }
  return s;
}

/**
 * Copy `src[srcOff..srcOff+len)` to `dst[dstOff..)` and return the ones-complement sum of
 * the copied bytes plus `initial` (as {@link onesSum} would over the destination), in one
 * pass. Ranges must be inside their arrays and must not overlap. Allocation-free (unlike
 * `Buffer#copy` / `set(subarray())`, which create a view per call): on little-endian hosts
 * it moves aligned 32-bit words, shifting when source and destination alignments differ.
 */
export function copySumTs(src: Uint8Array, srcOff: number, dst: Uint8Array, dstOff: number, len: number, initial = 0): number {
  if (len < SMALL || !LITTLE_ENDIAN) {
    let s = initial;
    for (let i = 0; i < len; i++) {
      const b = src[srcOff + i]!;
      dst[dstOff + i] = b;
      s += (i & 1) ? b : b << 8;
    }
    return csumFold(s);
  }
  const dAbs = dst.byteOffset + dstOff;
  const head = (4 - (dAbs & 3)) & 3;
  let s = initial;
  for (let i = 0; i < head; i++) {
    const b = src[srcOff + i]!;
    dst[dstOff + i] = b;
    s += (i & 1) ? b : b << 8;
  }
  const sAbs = src.byteOffset + srcOff + head;
  const shift = sAbs & 3;
  const su = u32View(src.buffer);
  const du = u32View(dst.buffer);
  let sw = sAbs >>> 2;
  let dw = (dAbs + head) >>> 2;
  let nWords = (len - head) >>> 2;
  // The shifted path reads one word past the last one it writes; keep that inside the view.
  if (shift !== 0 && sw + nWords >= su.length) nWords = Math.max(0, su.length - sw - 1);
  const wEnd = dw + nWords;
  let acc = 0;
  const rs = shift << 3;
  const ls = 32 - rs;
  while (dw < wEnd) {
    const chunkEnd = Math.min(wEnd, dw + CHUNK_WORDS);
    let a = 0;
    let c = 0;
    const unEnd = chunkEnd - 3;
    if (shift === 0) {
      for (; dw < unEnd; dw += 4, sw += 4) {
        const v0 = su[sw]!;
        const v1 = su[sw + 1]!;
        const v2 = su[sw + 2]!;
        const v3 = su[sw + 3]!;
        du[dw] = v0;
        du[dw + 1] = v1;
        du[dw + 2] = v2;
        du[dw + 3] = v3;
        a += v0 + v1;
        c += v2 + v3;
      }
      for (; dw < chunkEnd; dw++, sw++) {
        const v = su[sw]!;
        du[dw] = v;
        a += v;
      }
    } else {
      let cur = su[sw]!;
      for (; dw < unEnd; dw += 4, sw += 4) {
        const n0 = su[sw + 1]!;
        const n1 = su[sw + 2]!;
        const n2 = su[sw + 3]!;
        const n3 = su[sw + 4]!;
        const v0 = ((cur >>> rs) | (n0 << ls)) >>> 0;
        const v1 = ((n0 >>> rs) | (n1 << ls)) >>> 0;
        const v2 = ((n1 >>> rs) | (n2 << ls)) >>> 0;
        const v3 = ((n2 >>> rs) | (n3 << ls)) >>> 0;
        du[dw] = v0;
        du[dw + 1] = v1;
        du[dw + 2] = v2;
        du[dw + 3] = v3;
        a += v0 + v1;
        c += v2 + v3;
        cur = n3;
      }
      for (; dw < chunkEnd; dw++) {
        const nxt = su[++sw]!;
        const v = ((cur >>> rs) | (nxt << ls)) >>> 0;
        du[dw] = v;
        a += v;
        cur = nxt;
      }
    }
    let x = acc + a + c;
    while (x > 0xffffffff) x = Math.floor(x / 65536) + (x % 65536);
    x = (x >>> 16) + (x & 0xffff);
    acc = (x >>> 16) + (x & 0xffff);
  }
  // Words are host (little-endian) order; a word at an even span position sums byte-swapped.
  if ((head & 1) === 0) acc = swap16(acc);
  s += acc;
  for (let i = head + nWords * 4; i < len; i++) {
    const b = src[srcOff + i]!;
    dst[dstOff + i] = b;
    s += (i & 1) ? b : b << 8;
  }
  return csumFold(s);
}

// ---------------------------------------------------------------------------
// A faster implementation behind the same API

/**
 * Native versions of {@link onesSumTs} and {@link copySumTs} (same arguments and results; -1
 * for a range outside the array). src/tun installs the addon's when it loads, because the CPU
 * profile under TCP load showed these two at about 30% of the daemon's time; the TypeScript
 * versions stay, and a property test checks that both agree.
 */
export interface ChecksumImpl {
  onesSum(buf: Uint8Array, off: number, len: number, initial: number): number;
  copySum(src: Uint8Array, srcOff: number, dst: Uint8Array, dstOff: number, len: number, initial: number): number;
  /** {@link onesSumRangesTs}; -1 when a range is outside its array (then nothing was written). */
  onesSumRanges(buf: Uint8Array, desc: Int32Array, n: number): number;
  /** {@link copySumRangesTs}; -1 when a range is outside its array (then nothing was written). */
  copySumRanges(src: Uint8Array, dst: Uint8Array, desc: Int32Array, n: number): number;
}

/** Below this length the TypeScript loop beats the cost of a native call. */
const NATIVE_MIN = 256;
let native: ChecksumImpl | undefined;

/** Use `impl` for long ranges from now on (undefined: TypeScript only). Returns the previous one. */
export function installChecksum(impl: ChecksumImpl | undefined): ChecksumImpl | undefined {
  const prev = native;
  native = impl;
  return prev;
}

/**
 * Ones-complement sum of `buf[off..off+len)` as big-endian 16-bit words plus `initial`, folded
 * to 16 bits (see {@link onesSumTs}); the installed native version for long ranges.
 */
export function onesSum(buf: Uint8Array, off: number, len: number, initial = 0): number {
  if (native !== undefined && len >= NATIVE_MIN) {
    const r = native.onesSum(buf, off, len, initial);
    if (r >= 0) return r;
  }
  return onesSumTs(buf, off, len, initial);
}

/** Copy and sum in one pass (see {@link copySumTs}); the installed native version for long ranges. */
export function copySum(src: Uint8Array, srcOff: number, dst: Uint8Array, dstOff: number, len: number, initial = 0): number {
  if (native !== undefined && len >= NATIVE_MIN) {
    const r = native.copySum(src, srcOff, dst, dstOff, len, initial);
    if (r >= 0) return r;
  }
  return copySumTs(src, srcOff, dst, dstOff, len, initial);
}

// ---------------------------------------------------------------------------
// Range lists: many sums in one call

/**
 * Ints per range in a range list (an Int32Array): source offset, destination offset, length,
 * and the sum (in: the initial value, a non-negative unfolded sum below 2^31; out: the folded sum).
 * Segmenting a super-packet or writing a coalesced one sums 40-64 payloads; one call for all of
 * them pays the native call's cost (more than summing a 1.4 KB segment) once.
 */
export const RANGE_STRIDE = 4;
/** Field offsets within one range of a range list. */
export const RANGE_SRC = 0;
/** Destination offset (copySumRanges only). */
export const RANGE_DST = 1;
/** Length in bytes. */
export const RANGE_LEN = 2;
/** Initial value in, folded sum out. */
export const RANGE_SUM = 3;

/** Whether every one of the `n` ranges of `desc` lies inside `src` (and `dst`, when given) with a valid initial sum. */
function rangesOk(src: Uint8Array, dst: Uint8Array | undefined, desc: Int32Array, n: number): boolean {
  if (n < 0 || n * RANGE_STRIDE > desc.length) return false;
  for (let k = 0; k < n; k++) {
    const r = k * RANGE_STRIDE;
    const so = desc[r]!;
    const len = desc[r + RANGE_LEN]!;
    if (so < 0 || len < 0 || so + len > src.length || desc[r + RANGE_SUM]! < 0) return false;
    if (dst !== undefined) {
      const d = desc[r + RANGE_DST]!;
      if (d < 0 || d + len > dst.length) return false;
    }
  }
  return true;
}

/**
 * For each of the first `n` ranges of the range list `desc` (see {@link RANGE_STRIDE}): its sum
 * field becomes {@link onesSumTs} of `buf` over the range, plus the field's initial value. Returns
 * `n`, or -1 when a range lies outside `buf` (nothing is written then).
 */
export function onesSumRangesTs(buf: Uint8Array, desc: Int32Array, n: number): number {
  if (!rangesOk(buf, undefined, desc, n)) return -1;
  for (let k = 0; k < n; k++) {
    const r = k * RANGE_STRIDE;
    desc[r + RANGE_SUM] = onesSumTs(buf, desc[r]!, desc[r + RANGE_LEN]!, desc[r + RANGE_SUM]!);
  }
  return n;
}

/**
 * For each of the first `n` ranges of `desc`: copy `src[srcOff, srcOff+len)` to `dst[dstOff..)` and
 * set the sum field to the folded sum of the copied bytes plus its initial value ({@link copySumTs}).
 * Returns `n`, or -1 when a range lies outside its array (nothing is copied then).
 */
export function copySumRangesTs(src: Uint8Array, dst: Uint8Array, desc: Int32Array, n: number): number {
  if (!rangesOk(src, dst, desc, n)) return -1;
  for (let k = 0; k < n; k++) {
    const r = k * RANGE_STRIDE;
    desc[r + RANGE_SUM] = copySumTs(src, desc[r]!, dst, desc[r + RANGE_DST]!, desc[r + RANGE_LEN]!, desc[r + RANGE_SUM]!);
  }
  return n;
}

/** {@link onesSumRangesTs}, by the installed native version when there is one. */
export function onesSumRanges(buf: Uint8Array, desc: Int32Array, n: number): number {
  if (native !== undefined) {
    const r = native.onesSumRanges(buf, desc, n);
    if (r >= 0) return r;
  }
  return onesSumRangesTs(buf, desc, n);
}

/** {@link copySumRangesTs}, by the installed native version when there is one. */
export function copySumRanges(src: Uint8Array, dst: Uint8Array, desc: Int32Array, n: number): number {
  if (native !== undefined) {
    const r = native.copySumRanges(src, dst, desc, n);
    if (r >= 0) return r;
  }
  return copySumRangesTs(src, dst, desc, n);
}

/** Copy `src[srcOff, srcOff+len)` to `dst[dstOff..)` (short ranges, e.g. headers: no view, no call into C++). */
export function copyBytes(src: Uint8Array, srcOff: number, dst: Uint8Array, dstOff: number, len: number): void {
  for (let i = 0; i < len; i++) dst[dstOff + i] = src[srcOff + i]!;
}
