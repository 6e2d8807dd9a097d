/**
 * UDP transports behind the UdpTransport contract:
 *  - MmsgUdpTransport: the addon's recvmmsg/sendmmsg socket, readiness from uv_poll,
 *    datagrams received straight into slots at HEADROOM, one callback per batch.
 *  - DgramUdpTransport: portable node:dgram; each message is copied into the next slot
 *    and batches are delivered once per event-loop turn (setImmediate coalescing).
 */
import dgram from 'node:dgram';
import { AddrError, IpAddr, parseIp, u32ToIpv4 } from '../codec/addr.js';
import { HEADROOM, SLOT_SIZE, OFFLOAD_SLOT_SIZE, allocDatagramSlots, type BatchHandler, type BatchStamps, type DatagramSlot, type UdpTransport } from './types.js';
import {
  native, type NativeBatchIo, DESC_STRIDE, D_ADDR, D_FAMILY, D_FLAGS, D_LEN, D_OFF, D_PARTS, D_PORT, D_SEG,
  TX_SENT, TX_DROPPED, TX_GSO_REJECTED,
} from './native.js';
import { bytesToIp } from './rtnl.js';
import { errnoName, OsError } from './errors.js';

/** Most datagrams the kernel accepts in one UDP GSO message (UDP_MAX_SEGMENTS). */
export const UDP_GSO_MAX_SEGMENTS = 64;
/** Most payload bytes in one UDP GSO message (65535 - IPv4 header - UDP header; used for both families). */
export const UDP_GSO_MAX_BYTES = 65507;

/** Per-call result of `MmsgUdpTransport.sendBatch`, in a reused object (`transport.lastSend`). */
export interface SendResult {
  /** Slots whose datagrams were all handed to the kernel (= the return value). */
  slots: number;
  /** Datagrams handed to the kernel (a GSO slot counts its segments). */
  datagrams: number;
  /** Payload bytes handed to the kernel. */
  bytes: number;
  /** Datagrams the kernel refused (unreachable, too big...), not retried. */
  dropped: number;
  /** Datagrams not attempted because the socket buffer was full (EAGAIN/ENOBUFS). */
  unsent: number;
  /** Messages sent with UDP_SEGMENT (kernel GSO). */
  gsoMessages: number;
  /** Slots with segSize > 0 that the transport split into plain datagrams (no GSO or over the limits). */
  splitSlots: number;
  /** errno (positive) of the last refused message, 0 when none; `errnoName()` gives its name. */
  errno: number;
  /** Buffer ranges (iovecs) handed to the kernel: one per message, or per datagram of a run gathered from several places. */
  iovecs: number;
}

/** Options common to both transports. */
export interface TransportOptions {
  /** Receive slots = max datagrams per batch (default 64). */
  batch?: number;
  /** Slot size in bytes (default SLOT_SIZE). */
  slotSize?: number;
  /** SO_RCVBUF in bytes (SO_RCVBUFFORCE when permitted). */
  rcvbuf?: number;
  /** SO_SNDBUF in bytes (SO_SNDBUFFORCE when permitted). */
  sndbuf?: number;
  /** SO_REUSEPORT (mmsg only). */
  reusePort?: boolean;
  /**
   * An IPv6 socket for IPv6 only (IPV6_V6ONLY): one on `::` then leaves IPv4 to an IPv4 socket on
   * the same port (a dual-stack host's two VTEPs). Default false: an IPv6 socket takes IPv4 too.
   */
  ipv6Only?: boolean;
  /**
   * mmsg only: use UDP GSO (UDP_SEGMENT) for slots with `segSize` > 0 (default true, when the kernel
   * knows it). false: such slots are always split into plain datagrams by the transport.
   */
  gso?: boolean;
  /**
   * mmsg only: enable UDP GRO receive (setsockopt UDP_GRO). Received slots may then hold several
   * datagrams of one peer, with `segSize` set; slots default to OFFLOAD_SLOT_SIZE. Default false.
   */
  gro?: boolean;
  /**
   * mmsg only: called once when the kernel refuses a GSO send (EIO/EINVAL/EOPNOTSUPP) and the
   * transport switches to splitting itself for the rest of its life. Gets the errno name.
   */
  onGsoFallback?: (code: string) => void;
  /**
   * mmsg only: false sets SO_NO_CHECK (IPv4 datagrams sent with a zero UDP checksum, as the kernel's
   * VXLAN does by default). The kernel refuses UDP GSO on such sockets, so sends of `segSize` slots
   * go through the fallback split. Default true. Ignored on an IPv6 socket: over IPv6 the checksum
   * is always sent, and received zero checksums are dropped by the kernel (RFC 6935/6936).
   */
  udpChecksum?: boolean;
  /**
   * mmsg only: the DF bit of every datagram, UDP GSO segments included. Default false
   * (IP_PMTUDISC_DONT): DF clear, as the kernel's VXLAN device sends by default (`df unset`), so
   * a path with a smaller MTU fragments the outer packet instead of dropping it. true
   * (IP_PMTUDISC_DO): DF set; a datagram over the path MTU then fails with EMSGSIZE
   * (`tx_underlay_too_big`) instead of being fragmented.
   */
  dontFragment?: boolean;
  /**
   * mmsg only: adopt this already bound UDP socket (inherited from, or handed over by, another
   * process) at bind() instead of opening one; bind()'s port must be 0 or the socket's port.
   * The socket options above are applied to it again. Closing closes only this process's descriptor.
   */
  fd?: number;
  /** mmsg only: asked at bind(); a descriptor to adopt as `fd` is, or undefined to open a new socket. */
  fdFor?: (port: number, address: string) => number | undefined;
}

/** A received address, parsed once per distinct sender (node:dgram hands out strings). */
function dgramSource(address: string, family: string): IpAddr | undefined {
  const a = parseIp(family !== 'IPv4' && address.startsWith('::ffff:') ? address.slice(7) : address);
  return a instanceof AddrError ? undefined : a;
}

const familyOf = (address: string): 4 | 6 => (address.includes(':') ? 6 : 4);

/** The recvmmsg/sendmmsg transport (native addon). */
export class MmsgUdpTransport implements UdpTransport {
  /** Always 'mmsg'. */
  readonly kind = 'mmsg' as const;
  /** Receive slots (reused for every batch). */
  readonly slots: DatagramSlot[];
  /** Effective [SO_RCVBUF, SO_SNDBUF] after bind. */
  bufferSizes: [number, number] = [0, 0];
  /**
   * True while slots with `segSize` are sent with kernel GSO: after bind, when the kernel knows
   * UDP_SEGMENT and `gso` was not false; becomes false for good after a refused GSO send.
   */
  gso = false;
  /** True when UDP GRO receive is on (asked with `gro` and accepted by the kernel). */
  gro = false;
  /** errno name of the GSO refusal that switched the transport to splitting (null: none). */
  gsoError: string | null = null;
  /** Result of the last `sendBatch` call (the same object every time). */
  readonly lastSend: SendResult = { slots: 0, datagrams: 0, bytes: 0, dropped: 0, unsent: 0, gsoMessages: 0, splitSlots: 0, errno: 0, iovecs: 0 };
  private fd = -1;
  private family: 4 | 6 = 4;
  private io: NativeBatchIo | null = null;
  private readonly rxDesc: Uint32Array;
  private readonly rxA6: Uint8Array;
  private txDesc: Uint32Array;
  private txA6: Uint8Array;
  private txBufs: Buffer[] = [];
  /** Descriptor entry -> index of its slot (entries outnumber slots when GSO runs are split). */
  private txSlotOf: Uint32Array;
  /** Descriptor entry -> how many slots it carries (more than 1: a gathered run lying back to back). */
  private txSpan: Uint32Array;
  private handler: BatchHandler<DatagramSlot> | null = null;
  private closed = false;
  private held = false;
  private port = 0;
  private refed = true;

  /** Create an unbound transport; call bind(). */
  constructor(private readonly opts: TransportOptions = {}) {
    const n = Math.max(1, opts.batch ?? 64);
    this.slots = allocDatagramSlots(n, opts.slotSize ?? (opts.gro ? OFFLOAD_SLOT_SIZE : SLOT_SIZE));
    this.rxDesc = new Uint32Array(n * DESC_STRIDE);
    for (let i = 0; i < n; i++) this.rxDesc[i * DESC_STRIDE + D_OFF] = HEADROOM;
    this.rxA6 = new Uint8Array(n * 16);
    this.txDesc = new Uint32Array(n * DESC_STRIDE);
    this.txA6 = new Uint8Array(n * 16);
    this.txSlotOf = new Uint32Array(n);
    this.txSpan = new Uint32Array(n);
  }

  /** Bind to `address` (default 0.0.0.0; an IPv6 address makes a dual-stack IPv6 socket unless `ipv6Only`) and `port`. */
  async bind(port: number, address = '0.0.0.0'): Promise<void> {
    this.bindSync(port, address);
  }

  /** Synchronous bind. */
  bindSync(port: number, address = '0.0.0.0'): void {
    if (this.closed) throw new Error('transport closed');
    if (this.io) throw Object.assign(new Error('already bound'), { code: 'EINVAL' });
    const n = native();
    const adopt = this.opts.fd ?? this.opts.fdFor?.(port, address);
    if (adopt !== undefined) {
      const a = n.adoptFd(adopt, 'udp');
      if (port !== 0 && a.port !== port) {
        n.closeFd(adopt);
        throw Object.assign(new Error(`fd ${adopt} is bound to port ${a.port}, not ${port}`), { code: 'EINVAL' });
      }
      this.family = a.family;
      this.fd = adopt;
    } else {
      this.family = familyOf(address);
      this.fd = n.udpOpen(this.family, address, port, !!this.opts.reusePort, this.opts.ipv6Only === true);
    }
    try {
      if (this.opts.rcvbuf || this.opts.sndbuf) this.bufferSizes = n.setSockBuf(this.fd, this.opts.rcvbuf ?? 0, this.opts.sndbuf ?? 0);
      else this.bufferSizes = n.setSockBuf(this.fd, 0, 0);
      this.port = n.sockPort(this.fd);
      this.gso = this.opts.gso !== false && n.udpGsoProbe(this.fd) === 0;
      {
        // One DF policy for every datagram, UDP GSO segments included (the kernel's default,
        // IP_PMTUDISC_WANT, sets DF on plain sends but clears it on GSO segments)
        const e = n.udpSetPmtuDisc(this.fd, this.family, this.opts.dontFragment === true ? 2 /* IP_PMTUDISC_DO */ : 0 /* IP_PMTUDISC_DONT */);
        if (e < 0) throw new OsError(-e, 'IP_MTU_DISCOVER');
      }
      // IPv6 never: its UDP checksum is mandatory (RFC 8200; RFC 6935/6936 zero checksums only by
      // explicit UDP_NO_CHECK6_TX/RX, which this transport never sets), so the kernel always
      // computes it on send and drops zero-checksum datagrams on receive
      if (this.opts.udpChecksum === false && this.family === 4) {
        const e = n.udpSetNoCheck(this.fd, true);
        if (e < 0) throw new OsError(-e, 'SO_NO_CHECK');
      }
      if (this.opts.gro) {
        const r = n.udpSetGro(this.fd, true);
        this.gro = r === 0;
      }
      this.io = new n.BatchIo(this.fd, 1, this.family);
      this.io.setRxSlots(this.slots.map((s) => s.buf), this.rxDesc, this.rxA6);
    } catch (e) {
      n.closeFd(this.fd);
      this.fd = -1;
      throw e;
    }
    if (!this.refed) this.io.unref();
    if (this.handler && !this.held) this.io.start(this.deliver);
  }

  /** connect(2) to a default peer: slots sent with port 0 go there, and only its datagrams are received. */
  async connect(address: string, port: number): Promise<void> {
    if (!this.io) throw Object.assign(new Error('connect before bind'), { code: 'EINVAL' });
    native().udpConnect(this.fd, this.family, address, port);
  }

  /** The bound local port (0 before bind). */
  localPort(): number { return this.port; }

  private deliver = (count: number): void => {
    if (count <= 0) return;
    const d = this.rxDesc, s = this.slots, a6 = this.rxA6;
    for (let i = 0; i < count; i++) {
      const slot = s[i], b = i * DESC_STRIDE;
      slot.off = HEADROOM;
      slot.len = d[b + D_LEN];
      slot.segSize = d[b + D_SEG];
      slot.port = d[b + D_PORT];
      if (d[b + D_FAMILY] === 6) {
        slot.family = 6;
        const dst = slot.addr6, o = i * 16;
        for (let k = 0; k < 16; k++) dst[k] = a6[o + k];
      } else {
        slot.family = 4;
        slot.addr = d[b + D_ADDR];
      }
    }
    this.handler?.(s, count);
  };

  /** Install the batch handler and start receiving (now, or at bind; after `resume()` when paused). */
  onBatch(handler: BatchHandler<DatagramSlot>): void {
    this.handler = handler;
    if (this.io && !this.closed && !this.held) this.io.start(this.deliver);
  }

  /** Stop receiving (datagrams wait in the socket buffer); before onBatch/bind: do not start until `resume()`. */
  pause(): void {
    this.held = true;
    this.io?.stop();
  }

  /** Start receiving again after `pause()`. */
  resume(): void {
    this.held = false;
    if (this.io && !this.closed && this.handler) this.io.start(this.deliver);
  }

  /**
   * Timing mode: stamp every received batch into `stamps` (see BatchStamps), the kernel's receive
   * time included (SO_TIMESTAMPNS). Call after bind; false before it, or with an addon built
   * before timing existed.
   */
  enableStamps(stamps: BatchStamps): boolean {
    const n = native();
    if (!this.io || this.closed || typeof this.io.setStamps !== 'function' || typeof n.udpSetTimestamp !== 'function') return false;
    if (n.udpSetTimestamp(this.fd, true) < 0) return false;
    this.io.setStamps(stamps);
    return true;
  }

  /** Why slot `index` of the last sendBatch was not sent: 0 = sent, else a positive errno (EAGAIN: not attempted). */
  sendError(index: number): number {
    return index < this.slotErr.length ? this.slotErr[index]! : 11;
  }

  /** Per-slot outcome of the last sendBatch (see sendError). */
  private slotErr = new Int32Array(64);

  /**
   * Send `slots[0..count)` each to its own addr/port (port 0: the connected peer) in one or few
   * sendmmsg calls. A slot with `segSize` > 0 and `parts` k > 1 starts a gathered run: it and the
   * next k - 1 slots (each `segSize` bytes, the last no longer) are one UDP_SEGMENT message of k
   * iovecs, or plain datagrams without GSO or over the limits. Any other slot with `segSize` > 0 is
   * a run of datagrams: one UDP_SEGMENT message while
   * `gso` is true and it fits the limits (UDP_GSO_MAX_SEGMENTS, UDP_GSO_MAX_BYTES), otherwise split
   * here into plain datagrams (zero copy: descriptors into the same buffer). If the kernel refuses
   * GSO, the rest of the batch is resent split, `gso` becomes false and `onGsoFallback` fires once.
   * Returns how many slots were handed to the kernel completely; details in `lastSend`, and per
   * slot in `sendError(i)`.
   */
  sendBatch(slots: readonly DatagramSlot[], count: number): number {
    const r = this.lastSend;
    r.slots = 0; r.datagrams = 0; r.bytes = 0; r.dropped = 0; r.unsent = 0; r.gsoMessages = 0; r.splitSlots = 0; r.errno = 0; r.iovecs = 0;
    if (count > slots.length) count = slots.length;
    if (count <= 0) return 0;
    if (this.slotErr.length < count) this.slotErr = new Int32Array(count);
    if (!this.io || this.closed) {
      this.slotErr.fill(9 /* EBADF */, 0, count); // nothing sent: no stale status from an earlier batch
      return 0;
    }
    this.slotErr.fill(0, 0, count);
    let start = 0;
    while (start < count) start = this.sendFrom(slots, start, count);
    return r.slots;
  }

  /** Send slots[start..count); returns the slot index to resend from after a GSO refusal, else count. */
  private sendFrom(slots: readonly DatagramSlot[], start: number, count: number): number {
    const io = this.io!;
    const r = this.lastSend;
    const gso = this.gso;
    // Pass 1: number of descriptor entries (one per message, or per datagram of a gathered run).
    let entries = 0;
    for (let i = start; i < count; i++) {
      const s = slots[i], seg = s.segSize! | 0, len = s.len;
      if (seg <= 0 || len <= seg) entries++;
      else if (gso && len <= UDP_GSO_MAX_BYTES && len <= seg * UDP_GSO_MAX_SEGMENTS) entries++;
      else entries += Math.ceil(len / seg);
    }
    if (this.txDesc.length < entries * DESC_STRIDE) {
      this.txDesc = new Uint32Array(entries * DESC_STRIDE);
      this.txA6 = new Uint8Array(entries * 16);
    }
    if (this.txSlotOf.length < entries) {
      this.txSlotOf = new Uint32Array(entries);
      this.txSpan = new Uint32Array(entries);
    }
    const d = this.txDesc, bufs = this.txBufs, a6 = this.txA6, slotOf = this.txSlotOf, span = this.txSpan;
    if (bufs.length < entries) bufs.length = entries;
    // Pass 2: fill the descriptors.
    let e = 0;
    let gatherLeft = 0; // entries still to come of the gathered run being filled
    for (let i = start; i < count; i++) {
      const s = slots[i], seg = s.segSize! | 0;
      let off = s.off, len = s.len, left = len, step = len, segField = 0, parts = 0, slotSpan = 1;
      if (gatherLeft > 0) gatherLeft--;
      else if (seg > 0 && (s.parts! | 0) > 1) {
        // a gathered run: this slot and the next parts - 1, one iovec each, in one GSO message;
        // lying back to back in one buffer (a segmented super-packet), one iovec for all
        const k = Math.min(s.parts! | 0, count - i);
        let total = 0;
        let ok = k <= UDP_GSO_MAX_SEGMENTS;
        let flat = true;
        for (let j = i; j < i + k && ok; j++) {
          const q = slots[j], l = q.len;
          if (j > i) flat = flat && q.buf === s.buf && q.off === s.off + total;
          total += l;
          ok = l > 0 && (l === seg || (j === i + k - 1 && l < seg));
        }
        if (gso && ok && total <= UDP_GSO_MAX_BYTES) {
          segField = seg;
          if (flat) { len = left = step = total; slotSpan = k; } else { parts = k; gatherLeft = k - 1; }
        } else r.splitSlots++;
      } else if (seg > 0 && len > seg) {
        if (gso && len <= UDP_GSO_MAX_BYTES && len <= seg * UDP_GSO_MAX_SEGMENTS) segField = seg;
        else { step = seg; r.splitSlots++; }
      }
      do {
        const n = left < step ? left : step, b = e * DESC_STRIDE;
        bufs[e] = s.buf;
        slotOf[e] = i;
        span[e] = slotSpan;
        d[b + D_OFF] = off;
        d[b + D_LEN] = n;
        d[b + D_FAMILY] = s.family;
        d[b + D_PORT] = s.port;
        d[b + D_SEG] = segField;
        d[b + D_PARTS] = parts;
        if (s.family === 6) {
          const src = s.addr6, o = e * 16;
          for (let k = 0; k < 16; k++) a6[o + k] = src[k];
        } else {
          d[b + D_ADDR] = s.addr >>> 0;
        }
        off += n; left -= n; e++;
      } while (left > 0);
      i += slotSpan - 1;
    }
    io.write(bufs, d, a6, e);
    r.iovecs += e;
    // Pass 3: statuses written back by the addon.
    let slotOk = true, cur = start;
    for (let k = 0; k < e; k++) {
      const b = k * DESC_STRIDE, st = d[b + D_FLAGS], code = st & 0xff, i = slotOf[k], sp = span[k];
      if (i !== cur) { if (slotOk) r.slots++; slotOk = true; cur = i; }
      const seg = d[b + D_SEG], len = d[b + D_LEN];
      const dgrams = seg > 0 ? Math.ceil(len / seg) : 1;
      if (code === TX_SENT) {
        r.datagrams += dgrams; r.bytes += len;
        if (seg > 0) r.gsoMessages++;
        r.slots += sp - 1; // the other slots of a back-to-back run went with it
      } else if (code === TX_GSO_REJECTED) {
        // Messages before this one went out; resend from its slot without GSO.
        this.gso = false;
        if (this.gsoError === null) {
          this.gsoError = errnoName(st >>> 8);
          this.opts.onGsoFallback?.(this.gsoError);
        }
        return i;
      } else {
        slotOk = false;
        for (let j = i; j < i + sp; j++) {
          if (code === TX_DROPPED) this.slotErr[j] = st >>> 8 || 5;
          else if (this.slotErr[j] === 0) this.slotErr[j] = 11;
        }
        if (code === TX_DROPPED) { r.dropped += dgrams; r.errno = st >>> 8; } else r.unsent += dgrams;
      }
    }
    if (slotOk && e > 0) r.slots++;
    return count;
  }

  /** Busy-poll: receive one batch now without waiting and hand it to the handler (0 when nothing is queued or on an error). */
  pollNow(): number {
    if (!this.io || this.closed || !this.handler) return 0;
    let n: number;
    try { n = this.io.read(); } catch { return 0; }
    if (n > 0) this.deliver(n);
    return n;
  }

  /** Receive one batch now without waiting (0 when nothing is queued); fills `slots`. */
  recvBatch(): number {
    if (!this.io) return 0;
    const n = this.io.read();
    if (n > 0) {
      const h = this.handler;
      this.handler = null;
      this.deliver(n);
      this.handler = h;
    }
    return n;
  }

  /** Do not keep the event loop alive only for this socket. */
  unref(): void { this.refed = false; this.io?.unref(); }
  /** Keep the event loop alive while receiving (default). */
  ref(): void { this.refed = true; this.io?.ref(); }

  /** Close the socket. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.handler = null;
    if (this.io) this.io.close();
    else if (this.fd >= 0) native().closeFd(this.fd);
    this.io = null;
    this.fd = -1;
  }
}

/** The node:dgram transport (portable; one syscall per datagram). */
export class DgramUdpTransport implements UdpTransport {
  /** Always 'dgram'. */
  readonly kind = 'dgram' as const;
  /** Receive slots (reused for every batch). */
  readonly slots: DatagramSlot[];
  private sock: dgram.Socket | null = null;
  private handler: BatchHandler<DatagramSlot> | null = null;
  private pending = 0;
  private scheduled = false;
  private closed = false;
  private lastAddr = -1;
  private lastAddrStr = '';
  private refed = true;

  /** Create an unbound transport; call bind(). */
  constructor(private readonly opts: TransportOptions = {}) {
    this.slots = allocDatagramSlots(Math.max(1, opts.batch ?? 64), opts.slotSize ?? SLOT_SIZE);
  }

  /** Bind to `address` (default 0.0.0.0; IPv6 address: udp6 socket) and `port`. */
  bind(port: number, address = '0.0.0.0'): Promise<void> {
    if (this.closed) return Promise.reject(new Error('transport closed'));
    if (this.sock) return Promise.reject(Object.assign(new Error('already bound'), { code: 'EINVAL' }));
    const sock = dgram.createSocket({
      type: familyOf(address) === 6 ? 'udp6' : 'udp4',
      ipv6Only: this.opts.ipv6Only === true,
      // Synchronous lookup for IP literals: the send happens inside socket.send().
      lookup: (host: string, _o: unknown, cb: (err: Error | null, address: string, family: number) => void) => cb(null, host, familyOf(host)),
    } as dgram.SocketOptions);
    this.sock = sock;
    sock.on('message', this.onMessage);
    return new Promise((resolve, reject) => {
      const onErr = (e: Error): void => { this.sock = null; sock.close(); reject(e); };
      sock.once('error', onErr);
      sock.bind(port, address, () => {
        sock.off('error', onErr);
        sock.on('error', () => { /* send errors (ICMP unreachable) are dropped like in the mmsg transport */ });
        if (this.opts.rcvbuf) sock.setRecvBufferSize(this.opts.rcvbuf);
        if (this.opts.sndbuf) sock.setSendBufferSize(this.opts.sndbuf);
        if (!this.refed) sock.unref();
        resolve();
      });
    });
  }

  /** Connect to a default peer (slots sent with port 0 go there). */
  connect(address: string, port: number): Promise<void> {
    const sock = this.sock;
    if (!sock) return Promise.reject(Object.assign(new Error('connect before bind'), { code: 'EINVAL' }));
    return new Promise((resolve, reject) => sock.connect(port, address, (err?: Error) => (err ? reject(err) : resolve())));
  }

  /** The bound local port (0 before bind). */
  localPort(): number {
    return this.sock ? this.sock.address().port : 0;
  }

  private lastRxStr = '';
  private lastRx: IpAddr | undefined;

  private onMessage = (msg: Buffer, rinfo: dgram.RemoteInfo): void => {
    if (!this.handler) return;
    const slot = this.slots[this.pending];
    const n = Math.min(msg.length, slot.buf.length - HEADROOM);
    msg.copy(slot.buf, HEADROOM, 0, n);
    slot.off = HEADROOM;
    slot.len = n;
    slot.port = rinfo.port;
    if (rinfo.address !== this.lastRxStr) { this.lastRxStr = rinfo.address; this.lastRx = dgramSource(rinfo.address, rinfo.family); }
    const a = this.lastRx;
    if (a === undefined) return;
    if (a.family === 4) { slot.family = 4; slot.addr = a.v4; }
    else { slot.family = 6; slot.addr6.set(a.bytes); }
    this.pending++;
    if (this.pending === this.slots.length) this.flush();
    else if (!this.scheduled) { this.scheduled = true; setImmediate(this.flushTick); }
  };

  private flushTick = (): void => { this.scheduled = false; this.flush(); };

  private flush(): void {
    const n = this.pending;
    this.pending = 0;
    if (n > 0 && this.handler) this.handler(this.slots, n);
  }

  /** Install the batch handler and start receiving. */
  onBatch(handler: BatchHandler<DatagramSlot>): void { this.handler = handler; }

  /** Always 0: node:dgram takes every datagram (failures are reported asynchronously and dropped). */
  sendError(): number {
    return 0;
  }

  /**
   * Send `slots[0..count)` with socket.send, one datagram each (a slot with `segSize` > 0: one per
   * segment, split here; node:dgram has no GSO). The bytes are copied
   * (node:dgram may queue a send and read the buffer later), so slots can be reused at once.
   * Returns count (node:dgram reports failures asynchronously; they are dropped).
   */
  sendBatch(slots: readonly DatagramSlot[], count: number): number {
    const sock = this.sock;
    if (!sock || this.closed) return 0;
    if (count > slots.length) count = slots.length;
    for (let i = 0; i < count; i++) {
      const s = slots[i];
      let host = '';
      if (s.port !== 0) {
        if (s.family === 4) {
          if (s.addr !== this.lastAddr) { this.lastAddr = s.addr; this.lastAddrStr = u32ToIpv4(s.addr >>> 0); }
          host = this.lastAddrStr;
        } else host = bytesToIp(s.addr6);
      }
      // A segSize run (no GSO here) goes out as one datagram per segment.
      const seg = s.segSize! | 0, step = seg > 0 ? seg : s.len;
      for (let p = 0; p < s.len || p === 0; p += step) {
        const n = Math.min(step, s.len - p);
        const data = Buffer.allocUnsafe(n);
        s.buf.copy(data, 0, s.off + p, s.off + p + n);
        if (s.port === 0) sock.send(data); else sock.send(data, s.port, host);
        if (step <= 0) break;
      }
    }
    return count;
  }

  /** Do not keep the event loop alive only for this socket. */
  unref(): void { this.refed = false; this.sock?.unref(); }
  /** Keep the event loop alive while receiving (default). */
  ref(): void { this.refed = true; this.sock?.ref(); }

  /** Close the socket. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.handler = null;
    try { this.sock?.close(); } catch { /* already closed */ }
    this.sock = null;
  }
}

/** Make a transport of the given kind ('mmsg': recvmmsg/sendmmsg addon socket; 'dgram': node:dgram). */
export function createTransport(kind: 'mmsg', opts?: TransportOptions): MmsgUdpTransport;
export function createTransport(kind: 'dgram', opts?: TransportOptions): DgramUdpTransport;
export function createTransport(kind: 'dgram' | 'mmsg', opts?: TransportOptions): MmsgUdpTransport | DgramUdpTransport;
export function createTransport(kind: 'dgram' | 'mmsg', opts: TransportOptions = {}): MmsgUdpTransport | DgramUdpTransport {
  if (kind === 'mmsg') return new MmsgUdpTransport(opts);
  if (kind === 'dgram') return new DgramUdpTransport(opts);
  throw new TypeError(`unknown transport kind '${String(kind)}'`);
}
