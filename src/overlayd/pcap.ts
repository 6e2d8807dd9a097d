/**
 * `--pcap FILE`: what crosses the tunnel, inner and outer, in a capture file that
 * Wireshark and tcpdump open.
 *
 * Format: classic libpcap (magic a1b2c3d4, microsecond timestamps) with link type
 * LINKTYPE_RAW (101, "raw IPv4/IPv6"), so both kinds of packet share one file:
 * - inner packets are the overlay IP packets as read from / written to the tunnel
 *   device, unchanged;
 * - outer packets are the underlay UDP datagrams; a UDP socket gives only the payload
 *   and the addresses, so an IPv4 + UDP header is synthesized in front of the payload
 *   (correct lengths and IPv4 checksum, UDP checksum 0 as allowed on IPv4). Wireshark
 *   decodes port 8472/4789 payloads as VXLAN (Decode As... for 8472 on old versions)
 *   and flannel's 8285 payloads are bare IPv4 ("Decode As IPv4").
 *   With a `.pcapng` file name the same records go into a pcapng file with two
 *   interfaces, "overlay" (inner) and "underlay" (outer), link type LINKTYPE_IPV4
 *   (228), and per-packet direction (epb_flags inbound/outbound).
 *
 * The dataplane calls a {@link PacketTap} synchronously from its hot path; the writer
 * copies the bytes into a buffer and flushes it with one write when full or on a
 * timer, so the slot can be reused as soon as the call returns.
 */
import { closeSync, openSync, writeSync } from 'node:fs';

/** Direction of a packet relative to this host: 'out' towards the network, 'in' from it. */
export type TapDirection = 'in' | 'out';

/**
 * The capture hook overlayd needs from a dataplane (optional `tap` in the backend's
 * options). Both methods are called synchronously; implementations copy what they
 * keep. Addresses are uint32 IPv4 (a.b.c.d = a<<24|b<<16|c<<8|d), as in DatagramSlot.
 */
export interface PacketTap {
  /** An overlay IP packet: read from the tunnel device ('out') or written to it after decapsulation ('in'). */
  inner(dir: TapDirection, buf: Uint8Array, off: number, len: number): void;
  /**
   * An underlay UDP datagram's payload (flannel's bare IPv4 packet, or VXLAN header +
   * inner Ethernet frame): sent to `remoteAddr:remotePort` ('out') or received from it ('in').
   */
  outer(dir: TapDirection, buf: Uint8Array, off: number, len: number, localAddr: number, localPort: number, remoteAddr: number, remotePort: number): void;
}

/** Link type of the classic pcap capture: raw IPv4/IPv6 (no link-layer header). */
export const LINKTYPE_RAW = 101;
/**
 * Link type of the pcapng interfaces: raw IPv4. (LINKTYPE_RAW in a pcapng file with two
 * interfaces trips libpcap's "interface has a different type" check; 228 maps 1:1.)
 */
export const LINKTYPE_IPV4 = 228;

/** Options of {@link PcapWriter}. */
export interface PcapWriterOptions {
  /** Bytes kept per packet (snap length). Default 65535. */
  snaplen?: number;
  /** Flush when this many bytes are buffered. Default 1 MiB. */
  bufferBytes?: number;
  /** Flush at least this often (ms); 0 disables the timer. Default 1000. */
  flushMs?: number;
  /** File format; default from the file name: ".pcapng" -> pcapng, else classic pcap. */
  format?: 'pcap' | 'pcapng';
  /** Clock, for tests: microseconds since the epoch. */
  nowMicros?: () => number;
}

const IP_UDP_HDR = 28;

function ipv4Checksum(b: Buffer, off: number): number {
  let s = 0;
  for (let i = 0; i < 20; i += 2) s += b.readUInt16BE(off + i);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

/** Writes a capture file; implements {@link PacketTap}. */
export class PcapWriter implements PacketTap {
  /** Packets written (inner + outer). */
  packets = 0;
  /** Packets not written because the writer was closed. */
  dropped = 0;
  private fd: number;
  private buf: Buffer;
  private used = 0;
  private readonly snaplen: number;
  private readonly pcapng: boolean;
  private readonly now: () => number;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  /** Create (truncate) `path` and write the file header. */
  constructor(readonly path: string, opts: PcapWriterOptions = {}) {
    this.snaplen = opts.snaplen ?? 65535;
    this.pcapng = (opts.format ?? (path.endsWith('.pcapng') ? 'pcapng' : 'pcap')) === 'pcapng';
    const base = Date.now() * 1000 - Number(process.hrtime.bigint() / 1000n);
    this.now = opts.nowMicros ?? (() => base + Number(process.hrtime.bigint() / 1000n));
    this.buf = Buffer.alloc(Math.max(opts.bufferBytes ?? 1 << 20, this.snaplen + 128));
    this.fd = openSync(path, 'w', 0o600);
    if (this.pcapng) this.writePcapngHeader();
    else this.writePcapHeader();
    this.flush();
    const ms = opts.flushMs ?? 1000;
    if (ms > 0) {
      this.timer = setInterval(() => this.flush(), ms);
      this.timer.unref();
    }
  }

  private writePcapHeader(): void {
    const h = this.buf;
    h.writeUInt32LE(0xa1b2c3d4, 0);
    h.writeUInt16LE(2, 4);
    h.writeUInt16LE(4, 6);
    h.writeInt32LE(0, 8);
    h.writeUInt32LE(0, 12);
    h.writeUInt32LE(this.snaplen, 16);
    h.writeUInt32LE(LINKTYPE_RAW, 20);
    this.used = 24;
  }

  private writePcapngHeader(): void {
    const b = this.buf;
    let o = 0;
    // Section Header Block (28 bytes, no options).
    b.writeUInt32LE(0x0a0d0d0a, o); b.writeUInt32LE(28, o + 4); b.writeUInt32LE(0x1a2b3c4d, o + 8);
    b.writeUInt16LE(1, o + 12); b.writeUInt16LE(0, o + 14); b.writeBigInt64LE(-1n, o + 16); b.writeUInt32LE(28, o + 24);
    o += 28;
    // Two Interface Description Blocks: 0 "overlay", 1 "underlay"; option if_name (2).
    for (const name of ['overlay', 'underlay']) {
      const nlen = Buffer.byteLength(name);
      const npad = (nlen + 3) & ~3;
      const len = 20 + 4 + npad + 4;
      b.writeUInt32LE(1, o); b.writeUInt32LE(len, o + 4);
      b.writeUInt16LE(LINKTYPE_IPV4, o + 8); b.writeUInt16LE(0, o + 10); b.writeUInt32LE(this.snaplen, o + 12);
      b.writeUInt16LE(2, o + 16); b.writeUInt16LE(nlen, o + 18);
      b.fill(0, o + 20, o + 20 + npad); b.write(name, o + 20);
      b.writeUInt32LE(0, o + 20 + npad); // opt_endofopt
      b.writeUInt32LE(len, o + len - 4);
      o += len;
    }
    this.used = o;
  }

  /** Reserve room for a record of `caplen` captured bytes plus `extra` synthesized bytes; returns the offset where packet data starts. */
  private begin(iface: 0 | 1, dir: TapDirection, caplen: number, origlen: number): number {
    const recHdr = this.pcapng ? 28 : 16;
    const trailer = this.pcapng ? 12 + 4 : 0; // epb_flags option (8) + endofopt (4) + total length (4)
    const need = recHdr + caplen + 3 + trailer;
    if (this.used + need > this.buf.length) this.flush();
    const ts = this.now();
    const b = this.buf;
    const o = this.used;
    if (this.pcapng) {
      const pad = (caplen + 3) & ~3;
      const total = 28 + pad + 12 + 4;
      b.writeUInt32LE(6, o); b.writeUInt32LE(total, o + 4); b.writeUInt32LE(iface, o + 8);
      const hi = Math.floor(ts / 4294967296);
      b.writeUInt32LE(hi, o + 12); b.writeUInt32LE(ts - hi * 4294967296, o + 16);
      b.writeUInt32LE(caplen, o + 20); b.writeUInt32LE(origlen, o + 24);
      b.fill(0, o + 28 + caplen, o + 28 + pad);
      const opt = o + 28 + pad;
      b.writeUInt16LE(2, opt); b.writeUInt16LE(4, opt + 2); b.writeUInt32LE(dir === 'in' ? 1 : 2, opt + 4); // epb_flags: inbound / outbound
      b.writeUInt32LE(0, opt + 8);
      b.writeUInt32LE(total, opt + 12);
      this.used = o + total;
      return o + 28;
    }
    b.writeUInt32LE(Math.floor(ts / 1e6), o);
    b.writeUInt32LE(ts % 1e6, o + 4);
    b.writeUInt32LE(caplen, o + 8);
    b.writeUInt32LE(origlen, o + 12);
    this.used = o + 16 + caplen;
    return o + 16;
  }

  /** Record an overlay IP packet. */
  inner(dir: TapDirection, buf: Uint8Array, off: number, len: number): void {
    if (this.closed) { this.dropped++; return; }
    const cap = Math.min(len, this.snaplen);
    const at = this.begin(0, dir, cap, len);
    this.buf.set(buf.subarray(off, off + cap), at);
    this.packets++;
  }

  /** Record an underlay UDP datagram, synthesizing its IPv4 + UDP header. */
  outer(dir: TapDirection, buf: Uint8Array, off: number, len: number, localAddr: number, localPort: number, remoteAddr: number, remotePort: number): void {
    if (this.closed) { this.dropped++; return; }
    const orig = len + IP_UDP_HDR;
    const cap = Math.min(orig, this.snaplen);
    const at = this.begin(1, dir, cap, orig);
    const b = this.buf;
    const [src, sport, dst, dport] = dir === 'out' ? [localAddr, localPort, remoteAddr, remotePort] : [remoteAddr, remotePort, localAddr, localPort];
    b.writeUInt8(0x45, at); b.writeUInt8(0, at + 1); b.writeUInt16BE(Math.min(orig, 0xffff), at + 2);
    b.writeUInt16BE(0, at + 4); b.writeUInt16BE(0x4000, at + 6); // DF, as the kernel sends tunnel packets
    b.writeUInt8(64, at + 8); b.writeUInt8(17, at + 9); b.writeUInt16BE(0, at + 10);
    b.writeUInt32BE(src >>> 0, at + 12); b.writeUInt32BE(dst >>> 0, at + 16);
    b.writeUInt16BE(ipv4Checksum(b, at), at + 10);
    b.writeUInt16BE(sport, at + 20); b.writeUInt16BE(dport, at + 22);
    b.writeUInt16BE(Math.min(len + 8, 0xffff), at + 24); b.writeUInt16BE(0, at + 26);
    const payCap = cap - IP_UDP_HDR;
    if (payCap > 0) b.set(buf.subarray(off, off + payCap), at + IP_UDP_HDR);
    this.packets++;
  }

  /** Write buffered records to the file. */
  flush(): void {
    if (this.used === 0 || this.fd < 0) return;
    let done = 0;
    while (done < this.used) done += writeSync(this.fd, this.buf, done, this.used - done);
    this.used = 0;
  }

  /** Flush and close the file. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    closeSync(this.fd);
    this.fd = -1;
  }
}
