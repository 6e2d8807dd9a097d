/**
 * Software GRO for TCP (and UDP): merge consecutive in-order segments of one flow, received in
 * a batch of decapsulated inner IP packets, into super-packets written to TUN behind a
 * virtio_net_hdr (GSO_TCPV4/TCPV6 + NEEDS_CSUM), so the kernel handles one packet where it
 * would have handled up to 64. With {@link TcpCoalescer.udp} on (a TUN that takes USO),
 * consecutive datagrams of one UDP flow merge the same way into GSO_UDP_L4 super-packets,
 * which the kernel splits back into the same datagrams at the receiving socket.
 *
 * Driving it (one batch, e.g. one recvmmsg):
 *
 *     co.reset();
 *     for each inner packet p:  if (co.add(p.buf, p.off, p.len) === 'full') { drain(); co.reset(); co.add(...); }
 *     drain():  for (let i = 0; i < co.count; i++)
 *                 if (co.merged(i)) { n = co.write(i, big, 0); tunWrite(big, 0, n); }
 *                 else { o = co.packetOff(i) - 10; co.emitHeader(i, co.packetBuf(i), o);
 *                        tunWrite(co.packetBuf(i), o, 10 + co.packetLen(i)); }   // in place, no copy
 *
 * `add` only records a view: the input bytes must stay untouched until the batch is
 * drained (it may itself rewrite a complemented partial checksum to the canonical form).
 * Outputs keep the per-flow order of the inputs.
 *
 * Merge rules (a careful subset of Linux `tcp_gro_receive` / `inet_gro_receive`):
 * same addresses and ports; same IP header except length, ID and checksum (IPv4: no
 * options, no fragment, same ToS, DF, TTL; IPv6: same version/traffic class/flow label
 * word, hop limit, TCP as next header); a valid IPv4 header checksum; TCP flags exactly ACK
 * or ACK|PSH, and PSH ends the run; same ACK number, window, urgent pointer and option
 * bytes; sequence number exactly the run's next; non-empty payload no larger than the
 * first segment's (gso_size), a smaller one ends the run; at most 64 segments and 65535
 * bytes of IP packet; each segment's TCP checksum verifies, or is a partial one (pseudo-
 * header sum; merged output is NEEDS_CSUM anyway). The checksums of a run are verified while
 * {@link TcpCoalescer.write} copies its payloads (one pass over the bytes, one native call per
 * run); when one does not verify, `write` returns {@link WRITE_BAD_CHECKSUM} and the caller
 * writes the run's packets one by one ({@link TcpCoalescer.runPacket}), each with an all-zero
 * header, so the kernel drops the bad one as it would have. IP IDs are not compared: the output
 * carries the first ID and the kernel increments from it if it re-segments. Everything
 * else passes through unchanged with an all-zero header (NEEDS_CSUM for a partial
 * checksum), so a packet with a bad checksum reaches the kernel and is dropped there.
 *
 * UDP rules (as Linux `udp_gro_receive_segment`): same addresses, ports and IP header but
 * length, ID and checksum (IPv4 without options); a UDP length equal to the IP payload; every
 * payload the size of the first except a shorter last, which ends the run; the same limits.
 * A zero (no) or partial checksum is not verified; others are, as for TCP. The output's UDP
 * length is the total and its checksum field the pseudo-header sum over it (NEEDS_CSUM).
 */
import {
  copyBytes, copySum, copySumRanges, csumFold, onesSum, onesSumSimple, pseudoSum4, pseudoSum6, RANGE_DST, RANGE_LEN, RANGE_STRIDE, RANGE_SUM,
} from './checksum.js';
import { IpProto } from './constants.js';
import { ipv4FillChecksum } from './ip.js';
import { GSO_MAX_SEGMENTS, TcpFlag } from './gso.js';
import { L4Layout, parseL4, partialKind, storePartialChecksum } from './l4.js';
import { VIRTIO_NET_HDR_LEN, VirtioFlag, VirtioGso, emitVirtio, emitVirtioNeedsCsum, emitVirtioNone, emitVirtioTcpGso } from './virtio.js';
import { EMPTY, rd32 } from './util.js';

/** What `add` did with a packet. */
export type CoalesceResult =
  /** Appended to an open run of its flow. */
  | 'merged'
  /** Started a new run (output item) that later segments may join. */
  | 'started'
  /** Not coalescible: its own output item, written unchanged. */
  | 'passthrough'
  /** The batch is full: nothing recorded; drain, `reset()` and add it again. */
  | 'full';

/** Sizing of a {@link TcpCoalescer}. */
export interface CoalescerOptions {
  /** Most packets per batch (default 256). */
  maxPackets?: number;
  /** Most flows with an open run at once; the oldest is closed beyond (default 16). */
  maxFlows?: number;
}

/** {@link TcpCoalescer.write}: a segment of the run failed its TCP checksum; nothing usable was written. */
export const WRITE_BAD_CHECKSUM = -2;

/** Largest IP packet a merged run may grow to. */
export const GRO_MAX_LENGTH = 65535;

const KIND_PLAIN = 0; // pass-through, zero header
const KIND_PARTIAL = 1; // pass-through, NEEDS_CSUM header
const KIND_RUN = 2; // TCP run (1..64 packets)
const KIND_URUN = 3; // UDP run (1..64 packets)

/** Allocation-free TCP segment coalescer; see the module comment for how to drive it. */
export class TcpCoalescer {
  private readonly cap: number;
  private readonly maxFlows: number;
  private readonly lay = new L4Layout();
  // Packets.
  private readonly pBuf: Uint8Array[];
  private readonly pOff: Int32Array;
  private readonly pLen: Int32Array;
  private readonly pNext: Int32Array;
  private readonly pPay: Int32Array; // payload length (runs)
  private readonly pPartial: Uint8Array;
  /** Pseudo-header + TCP header sum (checksum field included) of a run segment: its check starts here. */
  private readonly pInit: Int32Array;
  /** 1 when a run segment's checksum is not verified by write(): partial, or UDP without one. */
  private readonly pNoVerify: Uint8Array;
  private nPkts = 0;
  /** Payload ranges of the run being written (copied and verified in one call). */
  private readonly ranges = new Int32Array(GSO_MAX_SEGMENTS * RANGE_STRIDE);
  /** Packet of each range in `ranges`. */
  private readonly rangePkt = new Int32Array(GSO_MAX_SEGMENTS);
  // Output items.
  private readonly iFirst: Int32Array;
  private readonly iLast: Int32Array;
  private readonly iKind: Uint8Array;
  private readonly iCount: Int32Array;
  private readonly iTotal: Int32Array; // IP bytes of the run
  private readonly iGso: Int32Array;
  private readonly iNextSeq: Uint32Array;
  private readonly iHash: Int32Array;
  /**
   * TCP runs: the first segment's pseudo-header + TCP header sum without the words a later
   * segment may change (sequence number, flags word, checksum) and without the length, so a
   * segment that continues the run gets its own sum from four words instead of its whole header.
   */
  private readonly iInv: Int32Array;
  private readonly iHdr: Int32Array; // IP + TCP header length
  private readonly iIpHl: Int32Array;
  private readonly iCsumOff: Int32Array; // pass-through NEEDS_CSUM
  private nItems = 0;
  // Open runs (item indices), oldest first.
  private readonly open: Int32Array;
  private nOpen = 0;

  /** Merge UDP flows too (GSO_UDP_L4 output): set when the device takes USO. Default false. */
  udp = false;

  constructor(opts: CoalescerOptions = {}) {
    const cap = opts.maxPackets ?? 256;
    this.cap = cap;
    this.maxFlows = Math.max(1, opts.maxFlows ?? 16);
    this.pBuf = new Array<Uint8Array>(cap).fill(EMPTY);
    this.pOff = new Int32Array(cap);
    this.pLen = new Int32Array(cap);
    this.pNext = new Int32Array(cap);
    this.pPay = new Int32Array(cap);
    this.pPartial = new Uint8Array(cap);
    this.pInit = new Int32Array(cap);
    this.pNoVerify = new Uint8Array(cap);
    this.iFirst = new Int32Array(cap);
    this.iLast = new Int32Array(cap);
    this.iKind = new Uint8Array(cap);
    this.iCount = new Int32Array(cap);
    this.iTotal = new Int32Array(cap);
    this.iGso = new Int32Array(cap);
    this.iNextSeq = new Uint32Array(cap);
    this.iHash = new Int32Array(cap);
    this.iInv = new Int32Array(cap);
    this.iHdr = new Int32Array(cap);
    this.iIpHl = new Int32Array(cap);
    this.iCsumOff = new Int32Array(cap);
    this.open = new Int32Array(this.maxFlows);
  }

  /** Forget the batch (drop the references to its buffers' contents logically; slots stay allocated). */
  reset(): void {
    for (let i = 0; i < this.nPkts; i++) this.pBuf[i] = EMPTY;
    this.nPkts = 0;
    this.nItems = 0;
    this.nOpen = 0;
  }

  /** Number of output packets so far. */
  get count(): number { return this.nItems; }

  /** Number of packets added so far. */
  get packets(): number { return this.nPkts; }

  /** True when output `i` is a merged super-packet (more than one segment) that must be written with {@link write}. */
  merged(i: number): boolean { return this.iKind[i]! >= KIND_RUN && this.iCount[i]! > 1; }

  /** Segments in output `i` (1 for a pass-through). */
  segments(i: number): number { return this.iKind[i]! >= KIND_RUN ? this.iCount[i]! : 1; }

  /** IP + L4 header bytes every segment of merged output `i` carried (0 for a pass-through). */
  headerLength(i: number): number { return this.merged(i) ? this.iHdr[i]! : 0; }

  /** Buffer of the (first) input packet of output `i`. */
  packetBuf(i: number): Uint8Array { return this.pBuf[this.iFirst[i]!]!; }
  /** Offset of the (first) input packet of output `i`. */
  packetOff(i: number): number { return this.pOff[this.iFirst[i]!]!; }
  /** Length of the (first) input packet of output `i`, as given to `add`. */
  packetLen(i: number): number { return this.pLen[this.iFirst[i]!]!; }

  /**
   * Packet `k` (0-based, in order) of output `i`, for writing a run whose checksum failed one
   * packet at a time: its index for {@link pktBuf} / {@link pktOff} / {@link pktLen}, or -1
   * past the end.
   */
  runPacket(i: number, k: number): number {
    let p = this.iFirst[i]!;
    for (; p >= 0 && k > 0; k--) p = this.pNext[p]!;
    return p;
  }
  /** Buffer of added packet `p`. */
  pktBuf(p: number): Uint8Array { return this.pBuf[p]!; }
  /** Offset of added packet `p`. */
  pktOff(p: number): number { return this.pOff[p]!; }
  /** Length of added packet `p`. */
  pktLen(p: number): number { return this.pLen[p]!; }

  /** Bytes {@link write} produces for output `i` (10-byte header included). */
  outputLength(i: number): number {
    return VIRTIO_NET_HDR_LEN + (this.merged(i) ? this.iTotal[i]! : this.pLen[this.iFirst[i]!]!);
  }

  /**
   * Write the virtio header of output `i` at `buf[off..off+10)`: all-zero, NEEDS_CSUM for
   * a pass-through partial checksum, or GSO_TCPV4/6 + NEEDS_CSUM for a merged run (whose
   * packet then has to come from {@link write}). Returns `off + 10`.
   */
  emitHeader(i: number, buf: Uint8Array, off: number): number {
    const p = this.iFirst[i]!;
    if (this.merged(i)) {
      if (this.iKind[i] === KIND_URUN) {
        return emitVirtio(buf, off, VirtioFlag.NEEDS_CSUM, VirtioGso.UDP_L4, this.iHdr[i]!, this.iGso[i]!, this.iIpHl[i]!, 6);
      }
      const b = this.pBuf[p]!;
      return emitVirtioTcpGso(buf, off, (b[this.pOff[p]!]! >>> 4) === 4 ? 4 : 6, this.iIpHl[i]!, this.iHdr[i]!, this.iGso[i]!);
    }
    if (this.pPartial[p] !== 0) return emitVirtioNeedsCsum(buf, off, this.iIpHl[i]!, this.iCsumOff[i]!);
    return emitVirtioNone(buf, off);
  }

  /**
   * Write output `i` (virtio header + packet) at `out[off..)`; returns the bytes written, -1
   * when `out` is too small, or {@link WRITE_BAD_CHECKSUM}. A merged run becomes one packet: the
   * first segment's headers with the summed length (IPv4 checksum redone), PSH if the last
   * segment had it, the TCP checksum field set to the pseudo-header sum, then every segment's
   * payload, each segment's checksum verified as its payload is copied.
   */
  write(i: number, out: Uint8Array, off: number): number {
    const n = this.outputLength(i);
    if (off < 0 || off + n > out.length) return -1;
    const h = this.emitHeader(i, out, off);
    let p = this.iFirst[i]!;
    if (!this.merged(i)) {
      copySum(this.pBuf[p]!, this.pOff[p]!, out, h, this.pLen[p]!);
      return n;
    }
    const hdr = this.iHdr[i]!;
    const ipHl = this.iIpHl[i]!;
    const total = this.iTotal[i]!;
    copyBytes(this.pBuf[p]!, this.pOff[p]!, out, h, hdr);
    // payloads: one copy-and-sum call per source buffer (a GRO message holds a whole run)
    const rg = this.ranges;
    const rp = this.rangePkt;
    let d = h + hdr;
    let lastFlags = 0;
    let nr = 0;
    let src = this.pBuf[p]!;
    for (; p >= 0; p = this.pNext[p]!) {
      const b = this.pBuf[p]!;
      const o = this.pOff[p]!;
      if (b !== src) {
        if (!this.copyVerify(src, out, nr)) return WRITE_BAD_CHECKSUM;
        src = b;
        nr = 0;
      }
      const r = nr * RANGE_STRIDE;
      rg[r] = o + hdr;
      rg[r + RANGE_DST] = d;
      rg[r + RANGE_LEN] = this.pPay[p]!;
      rg[r + RANGE_SUM] = this.pInit[p]!;
      rp[nr++] = p;
      d += this.pPay[p]!;
      lastFlags = b[o + ipHl + 13]!;
    }
    if (!this.copyVerify(src, out, nr)) return WRITE_BAD_CHECKSUM;
    const l4 = h + ipHl;
    const l4Len = total - ipHl;
    const udp = this.iKind[i] === KIND_URUN;
    const proto = udp ? IpProto.UDP : IpProto.TCP;
    let pseudo: number;
    if (out[h]! >>> 4 === 4) {
      out[h + 2] = total >>> 8;
      out[h + 3] = total & 255;
      ipv4FillChecksum(out, h);
      pseudo = pseudoSum4(rd32(out, h + 12), rd32(out, h + 16), proto, l4Len);
    } else {
      out[h + 4] = l4Len >>> 8;
      out[h + 5] = l4Len & 255;
      pseudo = pseudoSum6(out, h + 8, h + 24, proto, l4Len);
    }
    const ps = csumFold(pseudo);
    const co = l4 + (udp ? 6 : 16);
    if (udp) {
      out[l4 + 4] = l4Len >>> 8;
      out[l4 + 5] = l4Len & 255;
    } else {
      out[l4 + 13] = out[l4 + 13]! | (lastFlags & TcpFlag.PSH);
    }
    out[co] = ps >>> 8;
    out[co + 1] = ps & 255;
    return n;
  }

  /** Copy and sum the `nr` ranges from `src`; false when a complete checksum among them does not verify. */
  private copyVerify(src: Uint8Array, out: Uint8Array, nr: number): boolean {
    const rg = this.ranges;
    copySumRanges(src, out, rg, nr); // ranges inside both arrays (checked by add and outputLength)
    for (let k = 0; k < nr; k++) {
      if (this.pNoVerify[this.rangePkt[k]!] === 0 && rg[k * RANGE_STRIDE + RANGE_SUM] !== 0xffff) return false;
    }
    return true;
  }

  /**
   * Offer the inner IP packet at `buf[off..off+len)`; see {@link CoalesceResult}. With
   * `ipv4HeaderVerified` the caller has already verified an IPv4 header's checksum (a
   * dataplane validates every received packet), and it is not summed again.
   */
  add(buf: Uint8Array, off: number, len: number, ipv4HeaderVerified = false): CoalesceResult {
    if (this.nPkts >= this.cap) return 'full';
    const p = this.nPkts++;
    this.pBuf[p] = buf;
    this.pOff[p] = off;
    this.pLen[p] = len;
    this.pNext[p] = -1;
    this.pPay[p] = 0;
    this.pPartial[p] = 0;
    const lay = this.lay;
    if (parseL4(buf, off, len, lay) !== 'ok') return this.passthrough(p, 0, -1);
    const ipHl = lay.ipHl;
    const l4 = off + ipHl;
    const l4Len = lay.l4Len;
    const udp = lay.proto === IpProto.UDP;
    let ckLen = l4Len; // bytes the L4 checksum covers
    if (udp) {
      const ul = (buf[l4 + 4]! << 8) | buf[l4 + 5]!;
      if (ul < 8 || ul > l4Len) return this.passthroughFlow(p, buf, off, lay.version, l4, 0);
      ckLen = ul;
    }
    const pseudo = lay.pseudoBase + ckLen;
    const fo = l4 + lay.csumOff;
    const field = (buf[fo]! << 8) | buf[fo + 1]!;
    // A partial checksum (pseudo-header sum in the field) needs NEEDS_CSUM even when passed
    // through; UDP over IPv4 may carry none (zero); any other is verified by write() for a run,
    // by the kernel for a pass-through. Only a field that looks partial costs a sum here: a
    // complete checksum may equal the pseudo-header sum (or its complement) by chance, and is
    // then left as it is.
    this.pNoVerify[p] = 0;
    if (udp && field === 0 && lay.version === 4) this.pNoVerify[p] = 1;
    else {
      const pk = partialKind(field, csumFold(pseudo));
      if (pk !== 'bad' && onesSum(buf, l4, ckLen, pseudo) !== 0xffff) {
        if (pk === 'partial-complement') storePartialChecksum(buf, off, lay, ckLen);
        this.pPartial[p] = 1;
        this.pNoVerify[p] = 1;
      }
    }
    const hash = flowHash(buf, off, lay.version, l4);
    const run = this.findOpen(buf, off, lay.version, l4, hash, lay.proto);
    const flags = udp ? 0 : buf[l4 + 13]!;
    const pay = l4Len - lay.l4Hl;
    const v4ok = lay.version === 6 || (ipHl === 20 && (ipv4HeaderVerified || onesSumSimple(buf, off, 20) === 0xffff));
    const eligible = pay > 0 && v4ok && (udp
      ? this.udp && ckLen === l4Len
      : flags === TcpFlag.ACK || flags === (TcpFlag.ACK | TcpFlag.PSH));
    if (!eligible) {
      if (run >= 0) this.closeAt(run);
      return this.passthrough(p, ipHl, udp ? -1 : 1);
    }
    this.pPay[p] = pay;
    const seq = udp ? 0 : ((buf[l4 + 4]! << 24) | (buf[l4 + 5]! << 16) | (buf[l4 + 6]! << 8) | buf[l4 + 7]!) >>> 0;
    // the TCP header words a segment of a run may change: sequence number, flags word, checksum
    const vary = udp ? 0 : ((buf[l4 + 4]! << 8) | buf[l4 + 5]!) + ((buf[l4 + 6]! << 8) | buf[l4 + 7]!) +
      ((buf[l4 + 12]! << 8) | buf[l4 + 13]!) + ((buf[l4 + 16]! << 8) | buf[l4 + 17]!);
    if (run >= 0) {
      const it = this.open[run]!;
      if (udp ? this.canAppendUdp(it, buf, off, lay.version, pay) : this.canAppend(it, buf, off, lay.version, l4, lay.l4Hl, seq, pay)) {
        // every other header word equals the run's first segment's (canAppend checked them)
        this.pInit[p] = udp ? onesSumSimple(buf, l4, lay.l4Hl, pseudo) : csumFold(this.iInv[it]! + vary + ckLen);
        this.pNext[this.iLast[it]!] = p;
        this.iLast[it] = p;
        this.iCount[it]!++;
        this.iTotal[it]! += pay;
        this.iNextSeq[it] = (seq + pay) >>> 0;
        if (pay < this.iGso[it]! || (flags & TcpFlag.PSH) !== 0 || this.iCount[it]! >= GSO_MAX_SEGMENTS ||
            this.iTotal[it]! >= GRO_MAX_LENGTH) this.closeAt(run);
        return 'merged';
      }
      this.closeAt(run);
    }
    // Start a new run.
    this.pInit[p] = onesSumSimple(buf, l4, lay.l4Hl, pseudo);
    const it = this.nItems++;
    this.iFirst[it] = p;
    this.iLast[it] = p;
    this.iKind[it] = udp ? KIND_URUN : KIND_RUN;
    this.iCount[it] = 1;
    this.iTotal[it] = lay.ipLen;
    this.iGso[it] = pay;
    this.iNextSeq[it] = (seq + pay) >>> 0;
    this.iHash[it] = hash;
    // the same sum without the words that vary and the length: congruent modulo 0xffff, kept positive
    if (!udp) this.iInv[it] = csumFold(this.pInit[p]! + 2 * 0xffff - csumFold(vary) - ckLen);
    this.iHdr[it] = ipHl + lay.l4Hl;
    this.iIpHl[it] = ipHl;
    this.iCsumOff[it] = udp ? 6 : 16;
    if ((flags & TcpFlag.PSH) === 0 && lay.ipLen < GRO_MAX_LENGTH) {
      if (this.nOpen >= this.maxFlows) this.closeAt(0);
      this.open[this.nOpen++] = it;
    }
    return 'started';
  }

  /** A malformed packet of a flow: close the flow's open run (order is kept) and pass it through. */
  private passthroughFlow(p: number, buf: Uint8Array, off: number, version: number, l4: number, ipHl: number): CoalesceResult {
    const run = this.findOpen(buf, off, version, l4, flowHash(buf, off, version, l4), this.lay.proto);
    if (run >= 0) this.closeAt(run);
    return this.passthrough(p, ipHl, -1);
  }

  /** Whether a UDP datagram (already eligible) continues run `it`: the same IP header but length, ID and checksum; no larger payload. */
  private canAppendUdp(it: number, buf: Uint8Array, off: number, version: number, pay: number): boolean {
    if (pay > this.iGso[it]! || this.iTotal[it]! + pay > GRO_MAX_LENGTH || this.iCount[it]! >= GSO_MAX_SEGMENTS) return false;
    const q = this.iFirst[it]!;
    const b = this.pBuf[q]!;
    const o = this.pOff[q]!;
    if (version === 4) {
      return b[o + 1] === buf[off + 1] && b[o + 6] === buf[off + 6] && b[o + 7] === buf[off + 7] &&
        b[o + 8] === buf[off + 8] && b[o] === buf[off];
    }
    return same(b, o, buf, off, 4) && b[o + 6] === buf[off + 6] && b[o + 7] === buf[off + 7];
  }

  /** Record packet `p` as its own pass-through output (csum fields for a partial checksum). */
  private passthrough(p: number, ipHl: number, tcp: number): CoalesceResult {
    const it = this.nItems++;
    this.iFirst[it] = p;
    this.iLast[it] = p;
    this.iKind[it] = this.pPartial[p] !== 0 ? KIND_PARTIAL : KIND_PLAIN;
    this.iCount[it] = 1;
    this.iIpHl[it] = ipHl !== 0 ? ipHl : this.lay.ipHl;
    this.iCsumOff[it] = tcp === 1 ? 16 : 6;
    this.iGso[it] = 0;
    this.iHdr[it] = 0;
    return 'passthrough';
  }

  /** Index in `open` of the open run of this packet's flow, or -1. */
  private findOpen(buf: Uint8Array, off: number, version: number, l4: number, hash: number, proto: number): number {
    for (let k = 0; k < this.nOpen; k++) {
      const it = this.open[k]!;
      if (this.iHash[it] !== hash) continue;
      const q = this.iFirst[it]!;
      const b = this.pBuf[q]!;
      const o = this.pOff[q]!;
      if (b[o]! >>> 4 !== version || (this.iKind[it] === KIND_URUN) !== (proto === IpProto.UDP)) continue;
      const ql4 = o + this.iIpHl[it]!;
      if (!same(b, ql4, buf, l4, 4)) continue;
      if (version === 4 ? same(b, o + 12, buf, off + 12, 8) : same(b, o + 8, buf, off + 8, 32)) return k;
    }
    return -1;
  }

  /** Whether a TCP segment (already eligible) continues run `it`. */
  private canAppend(it: number, buf: Uint8Array, off: number, version: number, l4: number, l4Hl: number, seq: number, pay: number): boolean {
    if (seq !== this.iNextSeq[it] || pay > this.iGso[it]!) return false;
    if (this.iTotal[it]! + pay > GRO_MAX_LENGTH || this.iCount[it]! >= GSO_MAX_SEGMENTS) return false;
    const q = this.iFirst[it]!;
    const b = this.pBuf[q]!;
    const o = this.pOff[q]!;
    if (version === 4) {
      // ver/ihl + ToS, flags/fragment word (DF), TTL + protocol.
      if (b[o + 1] !== buf[off + 1] || b[o + 6] !== buf[off + 6] || b[o + 7] !== buf[off + 7] ||
          b[o + 8] !== buf[off + 8] || b[o] !== buf[off]) return false;
    } else if (!same(b, o, buf, off, 4) || b[o + 6] !== buf[off + 6] || b[o + 7] !== buf[off + 7]) {
      return false;
    }
    const ql4 = o + this.iIpHl[it]!;
    if (this.iHdr[it]! - this.iIpHl[it]! !== l4Hl) return false;
    // ACK number, data offset, window, urgent pointer, options (flags are ACK or ACK|PSH, PSH closed the run).
    return same(b, ql4 + 8, buf, l4 + 8, 5) && same(b, ql4 + 14, buf, l4 + 14, 2) &&
      same(b, ql4 + 18, buf, l4 + 18, l4Hl - 18);
  }

  /** Close the open run at index `k` of `open`. */
  private closeAt(k: number): void {
    for (let j = k + 1; j < this.nOpen; j++) this.open[j - 1] = this.open[j]!;
    this.nOpen--;
  }
}

function same(a: Uint8Array, ao: number, b: Uint8Array, bo: number, n: number): boolean {
  for (let i = 0; i < n; i++) if (a[ao + i] !== b[bo + i]) return false;
  return true;
}


/** Cheap hash of addresses and ports (a pre-filter before the byte compare). */
function flowHash(buf: Uint8Array, off: number, version: number, l4: number): number {
  let h = rd32(buf, l4) | 0;
  const end = version === 4 ? off + 20 : off + 40;
  for (let o = version === 4 ? off + 12 : off + 8; o < end; o += 4) h = Math.imul(h ^ (rd32(buf, o) | 0), 0x9e3779b1);
  return h | 0;
}
