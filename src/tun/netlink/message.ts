/**
 * Netlink message codec: the 16-byte nlmsghdr, route attributes (struct rtattr / nlattr),
 * NLMSG_ERROR bodies with extended acks. Pure functions over Buffers: no I/O, and the
 * parsers never throw on kernel (or garbage) input; they return a typed failure instead.
 * Netlink uses host byte order (see netlink(7)); attributes marked "be" are network order.
 */
import { endianness } from 'node:os';

const LE = endianness() === 'LE';

/** Size of struct nlmsghdr. */
export const NLMSG_HDRLEN = 16;
/** Size of struct nlattr / rtattr header. */
export const NLA_HDRLEN = 4;

// Message types (linux/netlink.h).
export const NLMSG_NOOP = 1, NLMSG_ERROR = 2, NLMSG_DONE = 3, NLMSG_OVERRUN = 4;
// Header flags.
export const NLM_F_REQUEST = 0x1, NLM_F_MULTI = 0x2, NLM_F_ACK = 0x4, NLM_F_ECHO = 0x8, NLM_F_DUMP_INTR = 0x10;
export const NLM_F_ROOT = 0x100, NLM_F_MATCH = 0x200, NLM_F_DUMP = 0x300;
export const NLM_F_REPLACE = 0x100, NLM_F_EXCL = 0x200, NLM_F_CREATE = 0x400, NLM_F_APPEND = 0x800;
/** Ack flags: the error message carries only the request header (capped) / TLVs follow. */
export const NLM_F_CAPPED = 0x100, NLM_F_ACK_TLVS = 0x200;
/** Extended ack attribute: human-readable message. */
export const NLMSGERR_ATTR_MSG = 1;
/** Nested-attribute flag and byte-order flag in an attribute's type. */
export const NLA_F_NESTED = 0x8000, NLA_F_NET_BYTEORDER = 0x4000;
const NLA_TYPE_MASK = 0x3fff;

/** Why a parser rejected its input. */
export type ParseFailure =
  | 'short-header' // fewer than 16 bytes left for an nlmsghdr
  | 'bad-length' // nlmsg_len smaller than the header
  | 'truncated' // nlmsg_len / nla_len runs past the end of the data
  | 'short-body' // a fixed-size family header (ifinfomsg...) does not fit in the body
  | 'bad-attribute'; // nla_len smaller than the attribute header

/** A parse failure with where it happened. */
export interface ParseError {
  reason: ParseFailure;
  /** Byte offset of the offending header. */
  offset: number;
}

/** Result of a parser: the value, or a typed failure (never an exception). */
export type Parsed<T> = { ok: true; value: T } | { ok: false; error: ParseError };

/** Build a successful Parsed. */
export function ok<T>(value: T): Parsed<T> { return { ok: true, value }; }
/** Build a failed Parsed. */
export function fail<T>(reason: ParseFailure, offset = 0): Parsed<T> { return { ok: false, error: { reason, offset } }; }

/** One netlink message. `body` is everything after the 16-byte header (a view, not a copy). */
export interface NlMessage {
  type: number;
  flags: number;
  seq: number;
  /** Sender port id (0: the kernel). */
  pid: number;
  body: Buffer;
}

/** Round up to the 4-byte netlink alignment. */
export function align4(n: number): number { return (n + 3) & ~3; }

/** Host-order readers/writers (netlink's byte order). */
export function readU32(b: Buffer, o: number): number { return LE ? b.readUInt32LE(o) : b.readUInt32BE(o); }
export function readI32(b: Buffer, o: number): number { return LE ? b.readInt32LE(o) : b.readInt32BE(o); }
export function readU16(b: Buffer, o: number): number { return LE ? b.readUInt16LE(o) : b.readUInt16BE(o); }
export function writeU32(b: Buffer, v: number, o: number): void { if (LE) b.writeUInt32LE(v >>> 0, o); else b.writeUInt32BE(v >>> 0, o); }
export function writeI32(b: Buffer, v: number, o: number): void { if (LE) b.writeInt32LE(v | 0, o); else b.writeInt32BE(v | 0, o); }
export function writeU16(b: Buffer, v: number, o: number): void { if (LE) b.writeUInt16LE(v & 0xffff, o); else b.writeUInt16BE(v & 0xffff, o); }

/** Encode one message: header (length, type, flags, seq, pid) followed by `payload`. */
export function encodeMessage(type: number, flags: number, seq: number, payload: Uint8Array, pid = 0): Buffer {
  const msg = Buffer.alloc(NLMSG_HDRLEN + payload.length);
  writeU32(msg, msg.length, 0);
  writeU16(msg, type, 4);
  writeU16(msg, flags, 6);
  writeU32(msg, seq, 8);
  writeU32(msg, pid, 12);
  msg.set(payload, NLMSG_HDRLEN);
  return msg;
}

/** The messages of one received datagram, plus the reason parsing stopped early, if it did. */
export interface ParsedBatch {
  messages: NlMessage[];
  error?: ParseError;
}

/** Split `len` bytes of `buf` into messages. Stops (with `error`) at the first malformed header. */
export function parseMessages(buf: Buffer, len = buf.length): ParsedBatch {
  const end = Math.min(len, buf.length);
  const messages: NlMessage[] = [];
  let o = 0;
  while (o < end) {
    if (o + NLMSG_HDRLEN > end) return { messages, error: { reason: 'short-header', offset: o } };
    const mlen = readU32(buf, o);
    if (mlen < NLMSG_HDRLEN) return { messages, error: { reason: 'bad-length', offset: o } };
    if (o + mlen > end) return { messages, error: { reason: 'truncated', offset: o } };
    messages.push({ type: readU16(buf, o + 4), flags: readU16(buf, o + 6), seq: readU32(buf, o + 8), pid: readU32(buf, o + 12), body: buf.subarray(o + NLMSG_HDRLEN, o + mlen) });
    o += align4(mlen);
  }
  return { messages };
}

/** Attributes by type (flags masked off). The first occurrence of a type wins. */
export type AttrMap = Map<number, Buffer>;

/** Parse the attributes in `b[start, end)`. */
export function parseAttrs(b: Buffer, start = 0, end = b.length): Parsed<AttrMap> {
  const m: AttrMap = new Map();
  const stop = Math.min(end, b.length);
  let o = start;
  while (o < stop) {
    if (o + NLA_HDRLEN > stop) {
      // Trailing padding shorter than a header is tolerated only when it is zero.
      if (b.subarray(o, stop).every((x) => x === 0)) break;
      return fail('truncated', o);
    }
    const len = readU16(b, o), type = readU16(b, o + 2) & NLA_TYPE_MASK;
    if (len < NLA_HDRLEN) return fail('bad-attribute', o);
    if (o + len > stop) return fail('truncated', o);
    if (!m.has(type)) m.set(type, b.subarray(o + NLA_HDRLEN, o + len));
    o += align4(len);
  }
  return ok(m);
}

/** Attribute readers: undefined when absent or too short. */
export function attrU32(m: AttrMap, type: number): number | undefined {
  const a = m.get(type);
  return a && a.length >= 4 ? readU32(a, 0) : undefined;
}
export function attrU16be(m: AttrMap, type: number): number | undefined {
  const a = m.get(type);
  return a && a.length >= 2 ? a.readUInt16BE(0) : undefined;
}
export function attrU8(m: AttrMap, type: number): number | undefined {
  const a = m.get(type);
  return a && a.length >= 1 ? a[0] : undefined;
}
/** A NUL-terminated string attribute. */
export function attrStr(m: AttrMap, type: number): string | undefined {
  const a = m.get(type);
  if (!a) return undefined;
  const z = a.indexOf(0);
  return a.subarray(0, z >= 0 ? z : a.length).toString('utf8');
}

/** Builder of an attribute list (each attribute padded to 4 bytes). */
export class AttrWriter {
  private parts: Buffer[] = [];
  private size = 0;
  /** Append a raw attribute. */
  add(type: number, data: Uint8Array): this {
    const len = NLA_HDRLEN + data.length;
    const b = Buffer.alloc(align4(len));
    writeU16(b, len, 0);
    writeU16(b, type, 2);
    b.set(data, NLA_HDRLEN);
    this.parts.push(b);
    this.size += b.length;
    return this;
  }
  /** Host-order u32. */
  u32(type: number, v: number): this { const b = Buffer.alloc(4); writeU32(b, v, 0); return this.add(type, b); }
  /** Network-order u16 (ports). */
  u16be(type: number, v: number): this { const b = Buffer.alloc(2); b.writeUInt16BE(v & 0xffff); return this.add(type, b); }
  u8(type: number, v: number): this { return this.add(type, Uint8Array.of(v & 0xff)); }
  /** NUL-terminated string. */
  str(type: number, s: string): this { return this.add(type, Buffer.concat([Buffer.from(s), Buffer.alloc(1)])); }
  /** A nested attribute holding `inner`. */
  nested(type: number, inner: AttrWriter): this { return this.add(type, inner.bytes()); }
  /** The encoded attributes. */
  bytes(): Buffer { return Buffer.concat(this.parts, this.size); }
}

/** An NLMSG_ERROR body: errno 0 is an ACK. */
export interface NlError {
  /** Positive errno, 0 for an ACK. */
  errno: number;
  /** Extended ack message (NLMSGERR_ATTR_MSG), when the kernel sent one. */
  message?: string;
  /** The header of the request this answers (length, type, flags, seq, pid). */
  request?: { type: number; seq: number };
}

/** Parse the body of an NLMSG_ERROR message (`flags` are the error message's header flags). */
export function parseError(body: Buffer, flags: number): Parsed<NlError> {
  if (body.length < 4) return fail('short-body', 0);
  const out: NlError = { errno: Math.abs(readI32(body, 0)) };
  if (body.length >= 4 + NLMSG_HDRLEN) {
    out.request = { type: readU16(body, 8), seq: readU32(body, 12) };
    if (flags & NLM_F_ACK_TLVS) {
      const origLen = readU32(body, 4);
      const start = 4 + (flags & NLM_F_CAPPED ? NLMSG_HDRLEN : align4(origLen));
      if (start <= body.length) {
        const attrs = parseAttrs(body, start, body.length);
        if (attrs.ok) {
          const msg = attrStr(attrs.value, NLMSGERR_ATTR_MSG);
          if (msg) out.message = msg;
        }
      }
    }
  }
  return ok(out);
}

/** Encode an NLMSG_ERROR body (tests and fakes): errno (positive), the request header, optional ext-ack message. */
export function encodeError(errno: number, request: { type: number; flags?: number; seq: number }, message?: string): { flags: number; body: Buffer } {
  const hdr = Buffer.alloc(4 + NLMSG_HDRLEN);
  writeI32(hdr, -Math.abs(errno), 0);
  writeU32(hdr, NLMSG_HDRLEN, 4);
  writeU16(hdr, request.type, 8);
  writeU16(hdr, request.flags ?? 0, 10);
  writeU32(hdr, request.seq, 12);
  if (message === undefined) return { flags: NLM_F_CAPPED, body: hdr };
  return { flags: NLM_F_CAPPED | NLM_F_ACK_TLVS, body: Buffer.concat([hdr, new AttrWriter().str(NLMSGERR_ATTR_MSG, message).bytes()]) };
}
