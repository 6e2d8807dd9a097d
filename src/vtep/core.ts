/**
 * The one dataplane core every tunnel backend plugs into.
 *
 * A tunnel backend is a TUN or TAP device, a UDP socket and a peer model. The core owns
 * everything they share: start/stop, the device and socket, batch queues, counters, ICMP
 * errors, replies, kernel-setup failures. A backend supplies only three things:
 *
 *   - `fromDevice(buf, off, len)`: classify one packet read from the device and
 *     encapsulate it in place (the slot's headroom), then hand it to `sendTo()`; or
 *     count a drop, or answer with `icmpError()` / `replyToDevice()`.
 *   - `fromNetwork(slot)`: validate and decapsulate one received datagram, then hand the
 *     inner packet to `deliver()`; or count a drop, or answer with `replyToNetwork()`.
 *   - the peer model: `addPeer` / `removePeer` / `peers` / `localLease`, and
 *     `configureKernel()` (address, MTU, routes) for its device.
 *
 * The pipeline, like wireguard-go's send/receive, runs as stages over whole batches:
 *
 *   device read (batch) -> fromDevice: classify + encapsulate -> tx queue -> socket send (batch)
 *   socket read (batch) -> fromNetwork: validate + decapsulate -> rx queue -> device write (batch)
 *
 * Buffer ownership (see src/tun/types.ts): the device's and socket's receive slots are
 * owned by them and valid until the batch callback returns. The core's queues are
 * preallocated *views* (src/vtep/slots.ts) that point into those slots: a backend
 * encapsulates in place, queues a view, and the core flushes every queue before the
 * callback returns, so no view outlives the slot it points into. Generated packets
 * (ICMP errors) are built in the core's own reply slots. Nothing is allocated per packet.
 */
import type { DataplaneStats, Lease } from './backend.js';
import type { DatagramSlot, PacketDevice, PacketSlot, UdpTransport } from '../tun/types.js';
import { ipPrefix, ipv4ToU32, u32ToIpv4, type IpPrefix, type ParsePrefixOptions } from '../codec/addr.js';
import { buildIcmpFragNeeded, buildIcmpNetUnreachable, buildIcmpTimeExceeded, ipv4Check, ipv4VerifyChecksum } from '../codec/index.js';
import { Counters, D, sendErrorReason, type PeerCounters } from './counters.js';
import { RtnlNet, type KernelNet } from './kernel.js';
import type { CommonBackendOptions, DataplaneIo } from './options.js';
import { defaultIo } from './io.js';
import { allocReplySlots, newDatagramViews, newPacketViews, type MutDatagramSlot, type MutPacketSlot } from './slots.js';

/** Subnets in leases and options: IPv4, host bits cleared. */
export const SUBNET: ParsePrefixOptions = { family: 4, hostBits: 'clear' };

/** Counters of no peer (generated traffic, unknown senders): written to, never read. */
export const NO_COUNTERS: PeerCounters = { txPackets: 0, txBytes: 0, rxPackets: 0, rxBytes: 0 };

/**
 * The drop code for a received inner IPv4 packet `buf[off, off+len)` that fails
 * validation, or 0 when it is valid: a datagram that filled its receive slot was cut by
 * the buffer (rx_oversized); short or cut packets are rx_truncated; a bad version, header
 * length or header checksum is rx_bad_ipv4.
 */
export function rxIpv4Reason(buf: Buffer, off: number, len: number): number {
  switch (ipv4Check(buf, off, len)) {
    case 'ok':
      return ipv4VerifyChecksum(buf, off) ? 0 : D.rx_bad_ipv4;
    case 'too-short':
    case 'truncated':
    case 'bad-total-length':
      return off + len >= buf.length ? D.rx_oversized : D.rx_truncated;
    default:
      return D.rx_bad_ipv4;
  }
}

/** The ICMP errors the core can generate back into the device. */
export const enum IcmpKind { NetUnreachable, TimeExceeded, FragNeeded }

/** Kernel-setup and device failures, as counted in {@link CoreStats.errors}. */
export interface ErrorStats {
  /** Kernel configuration operations (routes, addresses) that failed after start. */
  kernel: number;
  /** The last kernel failure's message, if any. */
  lastKernel?: string;
  /** Device read errors by errno name (`{ EIO: 2 }`), when there were any. */
  device?: Record<string, number>;
}

/** Statistics every tunnel backend reports. */
export interface CoreStats extends DataplaneStats {
  /** ICMP errors written back into the device. */
  icmpSent: number;
  /** Failures outside the packet path (kernel setup). */
  errors: ErrorStats;
}

/** The shared core of the tunnel backends. See the module comment. */
export abstract class TunnelCore {
  /** This host's subnet (lease). */
  readonly subnet: IpPrefix;
  /** The overlay network. */
  readonly network: IpPrefix;
  /** Our public (underlay) IPv4, uint32. */
  readonly publicIp: number;
  /** UDP port we bind and send to. */
  readonly port: number;
  /** Device name. */
  readonly deviceName: string;
  /** Device MTU. */
  readonly deviceMtu: number;

  protected readonly opts: CommonBackendOptions;
  protected readonly counters = new Counters();
  protected readonly kernel: KernelNet;
  protected readonly strictSource: boolean;
  /** Source address of the ICMP errors we generate: our device address. */
  protected icmpSrc: number;
  protected device: PacketDevice | undefined;
  protected transport: UdpTransport | undefined;
  protected running = false;

  private readonly io: DataplaneIo;
  private readonly deviceKind: 'tun' | 'tap';
  private starting: Promise<void> | undefined;
  private stopping: Promise<void> | undefined;
  private kernelErrors = 0;
  private lastKernelError: string | undefined;

  // preallocated queues (views into the batch being processed)
  private readonly txViews: MutDatagramSlot[];
  private readonly txCounters: PeerCounters[];
  private nTx = 0;
  private readonly rxViews: MutPacketSlot[];
  private readonly rxCounters: PeerCounters[];
  private nRx = 0;
  private readonly devReplies: MutPacketSlot[];
  private nDevReply = 0;
  private readonly netReplies: MutDatagramSlot[];
  private nNetReply = 0;
  private readonly icmpSlots: MutPacketSlot[];
  private nIcmp = 0;

  /**
   * @param opts the common options
   * @param deviceKind TUN (L3) or TAP (L2)
   * @param defaultDevice device name when `opts.deviceName` is not given
   * @param defaultPort UDP port when `opts.port` is not given
   * @param overhead bytes of encapsulation: device MTU = underlay MTU - overhead
   */
  protected constructor(opts: CommonBackendOptions, deviceKind: 'tun' | 'tap', defaultDevice: string, defaultPort: number, overhead: number) {
    this.opts = opts;
    this.deviceKind = deviceKind;
    this.subnet = ipPrefix(opts.subnet, SUBNET);
    this.network = ipPrefix(opts.network, SUBNET);
    this.publicIp = ipv4ToU32(opts.publicIp);
    this.port = opts.port ?? defaultPort;
    this.deviceName = opts.deviceName ?? defaultDevice;
    this.deviceMtu = opts.deviceMtu ?? (opts.mtu ?? 1500) - overhead;
    this.io = opts.io ?? defaultIo;
    this.kernel = opts.kernel ?? new RtnlNet();
    this.strictSource = opts.strictSource ?? true;
    this.icmpSrc = this.subnet.net;
    const n = Math.max(1, opts.batchSize ?? 64);
    this.txViews = newDatagramViews(n);
    this.txCounters = new Array<PeerCounters>(n).fill(NO_COUNTERS);
    this.rxViews = newPacketViews(n);
    this.rxCounters = new Array<PeerCounters>(n).fill(NO_COUNTERS);
    this.devReplies = newPacketViews(n);
    this.netReplies = newDatagramViews(8);
    this.icmpSlots = allocReplySlots(n);
  }

  // ---- what a backend supplies -------------------------------------------------

  /** Classify and encapsulate one packet read from the device (see the module comment). */
  protected abstract fromDevice(buf: Buffer, off: number, len: number): void;
  /** Validate and decapsulate one received datagram (see the module comment). */
  protected abstract fromNetwork(slot: DatagramSlot): void;
  /** Configure the kernel side of the new device `dev` (address, MTU, up, routes). */
  protected abstract configureKernel(dev: string): Promise<void>;

  // ---- lifecycle -----------------------------------------------------------------

  /** Create the device and socket, configure the kernel side, start forwarding. */
  start(): Promise<void> {
    if (!this.starting) this.starting = this.doStart().finally(() => { this.starting = undefined; });
    return this.starting;
  }

  private async doStart(): Promise<void> {
    if (this.running) return;
    if (this.stopping) await this.stopping;
    const tr = this.io.createTransport(this.opts.transport ?? 'dgram');
    let dev: PacketDevice | undefined;
    try {
      await tr.bind(this.port, this.opts.bindAddress);
      dev = await (this.deviceKind === 'tap' ? this.io.openTap(this.deviceName) : this.io.openTun(this.deviceName));
      if (this.opts.configureKernel !== false) await this.configureKernel(dev.name);
    } catch (e) {
      dev?.close();
      tr.close();
      throw e;
    }
    this.device = dev;
    this.transport = tr;
    dev.onReadError?.((e) => this.report(e));
    this.stopping = undefined; // a later stop() closes this device and socket
    this.running = true;
    dev.onBatch(this.onDeviceBatch);
    tr.onBatch(this.onSocketBatch);
  }

  /** Stop forwarding, close device and socket (the kernel drops the device's address and routes with it). */
  stop(): Promise<void> {
    if (!this.stopping) {
      this.stopping = (async () => {
        this.running = false;
        this.device?.close();
        this.transport?.close();
        this.device = undefined;
        this.transport = undefined;
        await this.kernel.flush().catch(() => undefined);
      })();
    }
    return this.stopping;
  }

  /** Whether the kernel side should follow peer changes now. */
  protected get kernelLive(): boolean {
    return this.running && this.opts.configureKernel !== false;
  }

  /**
   * Run a kernel update that follows a peer change (a route add or delete) without
   * waiting for it: a failure is counted in stats().errors and passed to `onError`,
   * with the peer change named and the kernel's error as its cause.
   */
  protected kernelUpdate(what: string, op: Promise<void>): void {
    op.catch((e: unknown) => this.kernelFailed(new Error(`${what}: ${e instanceof Error ? e.message : String(e)}`, { cause: e })));
  }

  private kernelFailed(e: Error): void {
    this.kernelErrors++;
    this.lastKernelError = e.message;
    this.report(e);
  }

  /** Pass a failure outside the packet path to the `onError` option. */
  private report(e: Error): void {
    try {
      this.opts.onError?.(e);
    } catch { /* a control plane's handler must not break the dataplane */ }
  }

  /** Counters as a plain object (not for the hot path). */
  stats(): CoreStats {
    const s: CoreStats = { ...this.counters.snapshot(), icmpSent: this.counters.icmpSent, errors: { kernel: this.kernelErrors } };
    if (this.lastKernelError !== undefined) s.errors.lastKernel = this.lastKernelError;
    const dev = this.device?.readErrorCounts;
    if (dev !== undefined && Object.keys(dev).length > 0) s.errors.device = { ...dev };
    return s;
  }

  /** This host's subnet as a lease key ("198.19.1.0/24"). */
  protected subnetString(): string {
    return this.subnet.toString();
  }

  /** The public IP as a dotted quad. */
  protected publicIpString(): string {
    return u32ToIpv4(this.publicIp);
  }

  /** A lease's subnet, parsed; our own subnet gives undefined (a shared peers file lists it). */
  protected peerSubnet(lease: Lease): IpPrefix | undefined {
    const subnet = ipPrefix(lease.subnet, SUBNET);
    return subnet.equals(this.subnet) ? undefined : subnet;
  }

  // ---- the stages ----------------------------------------------------------------

  /** Device -> network: one batch read from the device. */
  private readonly onDeviceBatch = (slots: PacketSlot[], count: number): void => {
    if (!this.running) return;
    for (let i = 0; i < count; i++) {
      const s = slots[i]!;
      this.fromDevice(s.buf, s.off, s.len);
    }
    this.flushTx();
    this.flushDeviceReplies();
  };

  /** Network -> device: one batch received from the socket. */
  private readonly onSocketBatch = (slots: DatagramSlot[], count: number): void => {
    if (!this.running) return;
    for (let i = 0; i < count; i++) this.fromNetwork(slots[i]!);
    this.flushRx();
    this.flushNetReplies();
  };

  /** Queue `buf[off, off+len)` as one datagram to IPv4 `addr` (int32 or uint32) on our port. */
  protected sendTo(buf: Buffer, off: number, len: number, addr: number, pc: PeerCounters): void {
    if (this.nTx === this.txViews.length) this.flushTx();
    const v = this.txViews[this.nTx]!;
    v.buf = buf;
    v.off = off;
    v.len = len;
    v.family = 4;
    v.addr = addr >>> 0;
    v.port = this.port;
    this.txCounters[this.nTx++] = pc;
  }

  private flushTx(): void {
    const n = this.nTx;
    if (n === 0) return;
    this.nTx = 0;
    const c = this.counters;
    const tr = this.transport!;
    const sent = tr.sendBatch(this.txViews, n);
    for (let j = 0; j < n; j++) {
      const pc = this.txCounters[j]!;
      this.txCounters[j] = NO_COUNTERS;
      const err = j < sent && sent === n ? 0 : tr.sendError(j);
      if (err === 0) {
        const len = this.txViews[j]!.len;
        c.txPackets++;
        c.txBytes += len;
        pc.txPackets++;
        pc.txBytes += len;
      } else c.drop(sendErrorReason(err));
    }
  }

  /** Queue the inner packet `buf[off, off+len)` for the device. */
  protected deliver(buf: Buffer, off: number, len: number, pc: PeerCounters): void {
    if (this.nRx === this.rxViews.length) this.flushRx();
    const v = this.rxViews[this.nRx]!;
    v.buf = buf;
    v.off = off;
    v.len = len;
    this.rxCounters[this.nRx++] = pc;
  }

  private flushRx(): void {
    const n = this.nRx;
    if (n === 0) return;
    this.nRx = 0;
    const c = this.counters;
    const w = this.device!.writeBatch(this.rxViews, n);
    for (let j = 0; j < n; j++) {
      const pc = this.rxCounters[j]!;
      this.rxCounters[j] = NO_COUNTERS;
      if (j < w) {
        const len = this.rxViews[j]!.len;
        c.rxPackets++;
        c.rxBytes += len;
        pc.rxPackets++;
        pc.rxBytes += len;
      } else c.drop(D.rx_device_full);
    }
  }

  /**
   * Answer the IPv4 packet `buf[off, off+len)` read from the device with an ICMP error
   * (never about an ICMP error or a non-first fragment: the codec's builders refuse those).
   */
  protected icmpError(kind: IcmpKind, buf: Buffer, off: number, len: number): void {
    if (this.nIcmp === this.icmpSlots.length) this.flushDeviceReplies();
    const o = this.icmpSlots[this.nIcmp]!;
    o.len = kind === IcmpKind.NetUnreachable ? buildIcmpNetUnreachable(o.buf, o.off, buf, off, len, this.icmpSrc)
      : kind === IcmpKind.TimeExceeded ? buildIcmpTimeExceeded(o.buf, o.off, buf, off, len, this.icmpSrc)
      : buildIcmpFragNeeded(o.buf, o.off, buf, off, len, this.icmpSrc, this.deviceMtu);
    if (o.len > 0) this.nIcmp++;
  }

  /** Write `buf[off, off+len)` (a reply built in place, e.g. a proxied ARP answer) back into the device. */
  protected replyToDevice(buf: Buffer, off: number, len: number): void {
    if (this.nDevReply === this.devReplies.length) this.flushDeviceReplies();
    const v = this.devReplies[this.nDevReply++]!;
    v.buf = buf;
    v.off = off;
    v.len = len;
  }

  private flushDeviceReplies(): void {
    const dev = this.device!;
    if (this.nIcmp > 0) {
      this.counters.icmpSent += dev.writeBatch(this.icmpSlots, this.nIcmp);
      this.nIcmp = 0;
    }
    if (this.nDevReply > 0) {
      dev.writeBatch(this.devReplies, this.nDevReply);
      this.nDevReply = 0;
    }
  }

  /** Send `buf[off, off+len)` (a reply built in place in a received datagram) back to `addr`. Rare: at most 8 per batch. */
  protected replyToNetwork(buf: Buffer, off: number, len: number, addr: number): void {
    if (this.nNetReply === this.netReplies.length) return;
    const v = this.netReplies[this.nNetReply++]!;
    v.buf = buf;
    v.off = off;
    v.len = len;
    v.family = 4;
    v.addr = addr >>> 0;
    v.port = this.port;
  }

  private flushNetReplies(): void {
    if (this.nNetReply === 0) return;
    this.transport!.sendBatch(this.netReplies, this.nNetReply);
    this.nNetReply = 0;
  }
}
