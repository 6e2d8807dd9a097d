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
 *
 * Offloads (option `offload: 'auto'`, the default: DEFAULT_OFFLOAD in src/vtep/options.ts;
 * issue #11) are four more stages, here and only here, so every backend gets them by declaring
 * `encapPrefix` (its header bytes in front of the packet):
 *
 *   - segment (device side): a TUN read carries a virtio_net_hdr; a TSO/USO super-packet is cut
 *     by `gsoSegmentStrided` into a core-owned staging buffer with `encapPrefix` free bytes in
 *     front of each segment and no gap between them, then each segment goes to `fromDevice`;
 *     the backend's headers exactly fill the prefix, so consecutive datagrams are contiguous.
 *     A NEEDS_CSUM packet gets its checksum finished in place first.
 *   - GSO at send (`flushTx`): consecutive queued datagrams that go to the same peer and have
 *     equal length (the last may be shorter) are marked as one gathered run (`segSize`, `parts`),
 *     sent as one UDP GSO message of one iovec each (or as plain datagrams by the transport).
 *     Segments of a super-packet and packets read one by one (a UDP flow's 1400-byte datagrams,
 *     small ACKs) alike: nothing is copied to make them contiguous.
 *   - GRO split (socket side): a received message with `segSize` is split into its datagrams,
 *     each validated by `fromNetwork` exactly as a single one.
 *   - coalesce (device side, `flushRx`): the queued inner packets go through a `TcpCoalescer`
 *     (TCP runs, and UDP runs when the TUN takes USO);
 *     merged runs are written as GSO super-packets from core-owned buffers, everything else in
 *     place with its virtio header written in the 10 bytes before it when those bytes are the
 *     packet's own outer headers, else copied. Without device offloads, an inner TCP/UDP
 *     checksum left partial by a kernel sender (CHECKSUM_PARTIAL over veth) is finished here.
 *
 * TAP devices (L2 mode) run without device offloads but with UDP GSO (gathered runs) and GRO;
 * the dgram transport has no UDP GSO/GRO (the TUN side still segments and coalesces, and the
 * transport sends a run's datagrams one by one). offload 'off' turns all of it off.
 */
import type { DataplaneStats, Lease, StopOptions } from './backend.js';
import type { DatagramSlot, PacketDevice, PacketSlot, UdpTransport } from '../tun/types.js';
import { AddrError, ipPrefix, ipv6Equal, parseIp, type IpAddr, type IpPrefix, type ParsePrefixOptions } from '../codec/addr.js';
import { IPV4_HLEN, IPV6_HLEN } from '../codec/constants.js';
import {
  buildIcmpFragNeeded, buildIcmpNetUnreachable, buildIcmpTimeExceeded, ipv4DontFragment, ipv4Check, ipv4VerifyChecksum,
  buildIcmp6Error, ipv6Check, Icmp6Code, Icmp6Type, ICMP6_ERROR_MAX,
  csumFold, emitVirtioNone, emitVirtioTcpGso, finishChecksum, storePartialChecksum, gsoSegmentStrided, onesSum, parseL4, partialKind,
  SEGMENT_MAX_SEGMENTS, IpProto, L4Layout, SegmentInfo, TcpCoalescer, VirtioGso, VirtioNetHdr, VIRTIO_NET_HDR_LEN, WRITE_BAD_CHECKSUM, copyBytes,
} from '../codec/index.js';
import { HEADROOM, OFFLOAD_SLOT_SIZE } from '../tun/types.js';
import { Counters, D, newPeerCounters, PEER_ADDR, PEER_FAMILY, peerAddr6Into, RX_PKTS, sendErrorReason, TX_PKTS, type OffloadStats, type PeerCounters } from './counters.js';
import { isIpv4Mapped } from './peer-addr.js';
import { RtnlNet, type KernelNet } from './kernel.js';
import { DEFAULT_OFFLOAD, type CommonBackendOptions, type DataplaneIo } from './options.js';
import { defaultIo } from './io.js';
import { allocReplySlots, newDatagramViews, newPacketViews, type MutDatagramSlot, type MutPacketSlot } from './slots.js';
import { stampNow } from '../tun/native.js';
import { errnoName } from '../tun/errors.js';
import { StageTimer, type StageSummary, type TimingStage } from './timing.js';

const EMPTY_BUF = Buffer.alloc(0);

/** Subnets in leases and options: IPv4, host bits cleared. */
export const SUBNET: ParsePrefixOptions = { family: 4, hostBits: 'clear' };
/** IPv6 subnets (inner IPv6) in leases and options: host bits cleared. */
export const SUBNET6: ParsePrefixOptions = { family: 6, hostBits: 'clear' };

/** Counters of no peer (generated traffic, unknown senders): written to, never read; never a destination. */
export const NO_COUNTERS: PeerCounters = newPeerCounters();

/** The drop code for a received inner packet whose header check said `r` ('ok': none): cut or short ones, else `bad`. */
function rxReason(r: string, buf: Buffer, off: number, len: number, bad: number): number {
  if (r === 'ok') return 0;
  if (r === 'too-short' || r === 'truncated' || r === 'bad-total-length') return off + len >= buf.length ? D.rx_oversized : D.rx_truncated;
  return bad;
}

/**
 * The drop code for a received inner IPv4 packet `buf[off, off+len)` that fails
 * validation, or 0 when it is valid: a datagram that filled its receive slot was cut by
 * the buffer (rx_oversized); short or cut packets are rx_truncated; a bad version, header
 * length or header checksum is rx_bad_ipv4.
 */
export function rxIpv4Reason(buf: Buffer, off: number, len: number): number {
  const why = rxReason(ipv4Check(buf, off, len), buf, off, len, D.rx_bad_ipv4);
  return why !== 0 || ipv4VerifyChecksum(buf, off) ? why : D.rx_bad_ipv4;
}

/**
 * The drop code for a received inner IPv6 packet `buf[off, off+len)` that fails validation, or
 * 0 when it is valid (as {@link rxIpv4Reason}; a bad version is rx_bad_ipv6). Extension headers
 * are not walked: the packet is forwarded by its fixed header, as a router does.
 */
export function rxIpv6Reason(buf: Buffer, off: number, len: number): number {
  return rxReason(ipv6Check(buf, off, len), buf, off, len, D.rx_bad_ipv6);
}

/**
 * True when the IPv6 destination at `buf[off..)` is multicast (ff00::/8) or link-local
 * (fe80::/10): link-scope traffic of the device itself, never tunnelled.
 */
export function ipv6LinkScope(buf: Buffer, off: number): boolean {
  const a = buf[off]!;
  return a === 0xff || (a === 0xfe && (buf[off + 1]! & 0xc0) === 0x80);
}

/**
 * Parse a public (underlay) address of a lease or an option, IPv4 or IPv6; `family`, when
 * given, is the one it must have (the backend's underlay). Throws one clear line, naming `what`.
 * An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is refused: write the IPv4 address.
 */
export function publicAddress(s: string, what: string, family?: 4 | 6): IpAddr {
  const a = parseIp(s);
  if (a instanceof AddrError) throw new Error(`${what}: invalid public IP "${String(s)}" (an IPv4 or IPv6 address)`, { cause: a });
  if (a.family === 6 && isIpv4Mapped(a.bytes)) throw new Error(`${what}: public IP ${s} is IPv4-mapped; give the IPv4 address`);
  if (family !== undefined && a.family !== family) {
    throw new Error(`${what}: public IP ${s} is IPv${a.family} but this backend's underlay is IPv${family} (one backend per underlay family)`);
  }
  return a;
}

/** True when the CIDR (or address) text `s` is IPv6 (an IPv6-only backend's subnet, a lease's IPv6 half). */
export function isIpv6Cidr(s: unknown): boolean {
  return typeof s === 'string' && s.includes(':');
}

/** Most datagrams in one UDP GSO send (the kernel's UDP_MAX_SEGMENTS). */
export const GSO_SEND_MAX_SEGMENTS = 64;
/** Most bytes in one UDP GSO send (65535 - IPv4 header - UDP header). */
export const GSO_SEND_MAX_BYTES = 65507;
/** Staging buffers for segmented super-packets: this many super-packets per flush of the tx queue. */
const STAGES = 4;
/** Most sockets in a source-port pool (CommonBackendOptions / VxlanBackendOptions.sourcePorts). */
export const SOURCE_PORTS_MAX = 64;
/** Output buffers for coalesced (or copied) packets written to an offload device. */
const RX_OUT_BUFS = 4;
/** Largest IP + TCP header a segment repeats (IPv4 60 + TCP 60). */
const MAX_SEG_HEADERS = 120;

const finishLay = new L4Layout();

/**
 * If the IP packet at `buf[off, off+len)` carries TCP or UDP whose checksum field still holds
 * only the pseudo-header sum (CHECKSUM_PARTIAL from a kernel sender, or its complement), finish
 * the checksum in place and return true. A complete checksum is left alone (the field is
 * compared first; the payload is summed only when it looks partial). Allocation-free.
 */
export function finishPartialChecksum(buf: Buffer, off: number, len: number): boolean {
  const lay = finishLay;
  if (parseL4(buf, off, len, lay) !== 'ok') return false;
  const l4 = off + lay.ipHl;
  let l4Len = lay.l4Len;
  if (lay.proto === IpProto.UDP) {
    const ul = (buf[l4 + 4]! << 8) | buf[l4 + 5]!;
    if (ul < 8 || ul > l4Len) return false;
    l4Len = ul;
  }
  const fo = l4 + lay.csumOff;
  const field = (buf[fo]! << 8) | buf[fo + 1]!;
  if (field === 0 && lay.proto === IpProto.UDP && lay.version === 4) return false; // no checksum
  const pseudo = lay.pseudoBase + l4Len;
  if (partialKind(field, csumFold(pseudo)) === 'bad') return false; // a complete (or corrupt) checksum
  if (onesSum(buf, l4, l4Len, pseudo) === 0xffff) return false; // a complete one that happens to equal P
  buf[fo] = 0;
  buf[fo + 1] = 0;
  let c = ~onesSum(buf, l4, l4Len, pseudo) & 0xffff;
  if (c === 0 && lay.proto === IpProto.UDP) c = 0xffff;
  buf[fo] = c >>> 8;
  buf[fo + 1] = c & 255;
  return true;
}

const bigLay = new L4Layout();

/**
 * The IP packet at `buf[off, off+len)` (virtio header at off - 10) is longer than the device
 * `mtu`: if it is TCP with a partial or complete checksum, rewrite its header as GSO_TCPV4/6 +
 * NEEDS_CSUM with gso_size = MTU - IP and TCP headers (the checksum field set to the partial
 * pseudo-header sum), so the kernel segments it when it has to. Anything else is left as is.
 */
function oversizedTcpGso(buf: Buffer, off: number, len: number, mtu: number): boolean {
  const lay = bigLay;
  if (parseL4(buf, off, len, lay) !== 'ok' || lay.proto !== IpProto.TCP || lay.ipLen !== len) return false;
  const hdr = lay.ipHl + lay.l4Hl;
  if (mtu <= hdr) return false;
  const pseudo = lay.pseudoBase + lay.l4Len;
  const fo = off + lay.ipHl + 16;
  const field = (buf[fo]! << 8) | buf[fo + 1]!;
  if (partialKind(field, csumFold(pseudo)) === 'bad' && onesSum(buf, off + lay.ipHl, lay.l4Len, pseudo) !== 0xffff) return false; // corrupt: the kernel drops it
  storePartialChecksum(buf, off, lay, lay.l4Len);
  emitVirtioTcpGso(buf, off - VIRTIO_NET_HDR_LEN, lay.version === 4 ? 4 : 6, lay.ipHl, hdr, mtu - hdr);
  return true;
}

/** Encapsulation bytes over an underlay of `family`, given those over IPv4: IPv6's header is 20 bytes longer (VXLAN 50 -> 70, UDP 28 -> 48). */
export function underlayOverhead(overheadV4: number, family: 4 | 6): number {
  return overheadV4 === 0 || family === 4 ? overheadV4 : overheadV4 + IPV6_HLEN - IPV4_HLEN;
}

/** True when datagram views `q` and `a` go to the same address (either family) and port. Allocation-free. */
function sameDest(q: MutDatagramSlot, a: MutDatagramSlot): boolean {
  if (q.family !== a.family || q.port !== a.port) return false;
  return q.family === 4 ? q.addr === a.addr : ipv6Equal(q.addr6, 0, a.addr6, 0);
}

/**
 * ICMP errors (ICMPv4 and ICMPv6 together) are generated at most at this rate per second on
 * average, in bursts of up to ICMP_BURST: RFC 4443 2.4 (f) for ICMPv6, RFC 1812 4.3.2.8 for
 * ICMPv4 (the kernel's net.ipv4.icmp_msgs_per_sec and icmp_msgs_burst defaults).
 */
export const ICMP_RATE = 1000;
/** See {@link ICMP_RATE}. */
export const ICMP_BURST = 50;

/**
 * The ICMP errors the core can generate back into the device, for either inner family:
 * ICMPv4 network unreachable / time exceeded / fragmentation needed, or for an IPv6 packet
 * ICMPv6 destination unreachable (no route) / time exceeded (hop limit) / packet too big.
 */
export const enum IcmpKind { NetUnreachable, TimeExceeded, FragNeeded }

/** Kernel-setup and device failures, as counted in {@link CoreStats.errors}. */
export interface ErrorStats {
  /** Kernel configuration operations (routes, addresses) that failed after start. */
  kernel: number;
  /** The last kernel failure's message, if any. */
  lastKernel?: string;
  /** Device read errors by errno name (`{ EIO: 2 }`), when there were any. */
  device?: Record<string, number>;
  /**
   * Failed datagram sends by errno name (`{ ENETUNREACH: 3, EAGAIN: 1 }`), when there were any;
   * the drops count them by class (tx_underlay_unreachable, tx_socket_full, ...).
   */
  send?: Record<string, number>;
}

/** Statistics every tunnel backend reports. */
export interface CoreStats extends DataplaneStats {
  /** ICMP errors written back into the device. */
  icmpSent: number;
  /** ICMP errors not sent because they were over the rate limit (ICMP_RATE, ICMP_BURST). */
  icmpRateLimited: number;
  /** Failures outside the packet path (kernel setup). */
  errors: ErrorStats;
  /** Offload activity (see {@link OffloadStats}). */
  offload: OffloadStats;
  /** Timing mode only: per-stage batch durations (see src/vtep/timing.ts). */
  timing?: Partial<Record<TimingStage, StageSummary>>;
  /** Busy-poll only: batches read while polling (without an event-loop wake-up). */
  busyPolled?: number;
  /** With a source-port pool (VXLAN sourcePorts): the local ports datagrams leave from. */
  sourcePorts?: number[];
}

/** The shared core of the tunnel backends. See the module comment. */
export abstract class TunnelCore {
  /** This host's subnet (lease): IPv4, or IPv6 on an IPv6-only backend (then the same as {@link subnet6}). */
  readonly subnet: IpPrefix;
  /** The overlay network (IPv6 on an IPv6-only backend, the same as {@link network6}). */
  readonly network: IpPrefix;
  /**
   * Inner IPv4 is carried: false on an IPv6-only backend (options `subnet`/`network` IPv6, as
   * flannel's flannel-v6.<VNI>): it carries inner IPv6 only and drops inner IPv4 both ways
   * (tx_no_ipv4_overlay, rx_no_ipv4_overlay); its peers are leases whose subnet is IPv6.
   */
  readonly ipv4: boolean;
  /** Inner IPv6: this host's IPv6 subnet (options.ipv6Subnet, or an IPv6 `subnet`), or undefined (no IPv6 overlay). */
  readonly subnet6: IpPrefix | undefined;
  /** Inner IPv6: the IPv6 overlay network (options.ipv6Network, or an IPv6 `network`). */
  readonly network6: IpPrefix | undefined;
  /** Our public (underlay) IPv4 as uint32, 0 with an IPv6 underlay ({@link rebind} changes it; see {@link publicAddr}). */
  get publicIp(): number {
    return this.pub.v4;
  }
  /** Our public (underlay) address, IPv4 or IPv6 ({@link rebind} changes it). */
  get publicAddr(): IpAddr {
    return this.pub;
  }
  private pub: IpAddr;
  /**
   * The underlay's address family: that of the public IP. An IPv6 underlay binds an IPv6 socket
   * (`::` unless `bindAddress` is given), takes peers with IPv6 public IPs only, and costs 20
   * bytes more per packet than IPv4 (device MTU = underlay MTU - 70 for VXLAN, - 48 for UDP).
   */
  readonly family: 4 | 6;
  /** Address the socket is bound to (undefined: all); {@link rebind} changes it. */
  private bindAddress: string | undefined;
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
  /** Source address of the ICMPv6 errors we generate: our device's IPv6 address (the IPv6 subnet's network address; empty without one). */
  protected readonly icmpSrc6: Uint8Array;
  protected device: PacketDevice | undefined;
  protected transport: UdpTransport | undefined;
  protected running = false;
  /**
   * Bytes of encapsulation a backend's `fromDevice` writes in front of the packet it is given
   * (VXLAN L3: VXLAN 8 + inner Ethernet 14 = 22; UDP backend: 0). The segment stage leaves exactly
   * this much room before each segment, so the datagrams of one super-packet end up contiguous.
   */
  protected readonly encapPrefix: number = 0;
  /** gso_max_segs for the device being configured (offload TUN), for `configureKernel` to pass on. */
  protected deviceGsoMaxSegs: number | undefined;

  private readonly io: DataplaneIo;
  private readonly deviceKind: 'tun' | 'tap';
  private starting: Promise<void> | undefined;
  private stopping: Promise<void> | undefined;
  /** Incremented by every stop(), so a start() in progress can tell it was stopped. */
  private stopGen = 0;
  private kernelErrors = 0;
  private lastKernelError: string | undefined;

  // preallocated queues (views into the batch being processed)
  private readonly txViews: MutDatagramSlot[];
  private readonly txCounters: PeerCounters[];
  /** Per queued datagram: the socket it leaves from (0: the bound one, k: source-port pool socket k - 1). */
  private readonly txVia: Int32Array;
  private nTx = 0;
  /**
   * Source-port pool size ({@link useSourcePorts}, before start): datagrams leave from one of this many
   * extra sockets, bound to ephemeral ports, picked by a hash of the inner flow ({@link viaFor}),
   * as the kernel's VXLAN device picks a per-flow source port, so that ECMP fabrics spread the
   * tunnels over their paths. 0: everything leaves from `port`.
   */
  private sourcePortPool = 0;
  /** The pool's sockets (open while running). */
  private txPool: UdpTransport[] = [];
  /** flushTx with a pool: the queued datagrams grouped by socket (stable), their queue indices, counts, errors. */
  private txByVia: MutDatagramSlot[][] = [];
  private txByViaIdx: Int32Array[] = [];
  private readonly txViaCount = new Int32Array(1 + SOURCE_PORTS_MAX);
  private readonly txErr: Int32Array;
  private readonly rxViews: MutPacketSlot[];
  private readonly rxCounters: PeerCounters[];
  private nRx = 0;
  private readonly devReplies: MutPacketSlot[];
  private nDevReply = 0;
  private readonly netReplies: MutDatagramSlot[];
  private nNetReply = 0;
  private readonly icmpSlots: MutPacketSlot[];
  private nIcmp = 0;

  // offload stages (see the module comment); buffers allocated at the first offloaded start
  /** offload 'auto' asked for and the device is a TUN. */
  private readonly offloadWanted: boolean;
  /** offload 'auto': UDP GSO (gathered runs) on send and UDP GRO on receive, for TUN and TAP alike. */
  private readonly udpOffload: boolean;
  /** The current device uses the offload layout (virtio_net_hdr in front of every packet). */
  private devOffload = false;
  private readonly vhdr = new VirtioNetHdr();
  private readonly segInfo = new SegmentInfo();
  private stages: Buffer[] = [];
  private nStage = 0;
  /** Per GSO run marked by flushTx: its first queued datagram and how many it covers. */
  private readonly txOutFirst: Int32Array;
  private readonly txOutCount: Int32Array;
  private gsoFallbackLogged = false;
  /** GRO split: the datagram being validated (re-pointed into the received message). */
  private readonly rxSub: MutDatagramSlot;
  /** Start of the bytes owned by the datagram in fromNetwork (0: the whole slot buffer). */
  private rxOwnStart = 0;
  /** Per queued rx packet: 1 when the 10 bytes before it belong to its own datagram. */
  private readonly rxOwnHead: Uint8Array;
  private coalescer: TcpCoalescer | undefined;
  /** Per coalescer output: index of its first queued rx packet. */
  private readonly coFirst: Int32Array;
  private rxOutBufs: Buffer[] = [];
  private readonly devOut: MutPacketSlot[];
  /** Per device write view: the received packets it carries, their bytes as received, and its first queued rx packet. */
  private readonly devOutSegs: Int32Array;
  private readonly devOutBytes: Float64Array;
  private readonly devOutFirst: Int32Array;
  /** Per device write view: 1 when it is a coalesced super-packet. */
  private readonly devOutMerged: Uint8Array;

  /**
   * @param opts the common options
   * @param deviceKind TUN (L3) or TAP (L2)
   * @param defaultDevice device name when `opts.deviceName` is not given
   * @param defaultPort UDP port when `opts.port` is not given
   * @param overhead bytes of encapsulation over an IPv4 underlay: device MTU = underlay MTU - overhead
   *   (an IPv6 underlay adds the 20 bytes by which its header is longer)
   */
  protected constructor(opts: CommonBackendOptions, deviceKind: 'tun' | 'tap', defaultDevice: string, defaultPort: number, overhead: number) {
    this.opts = opts;
    this.deviceKind = deviceKind;
    this.ipv4 = !isIpv6Cidr(opts.subnet);
    if (!this.ipv4) {
      // IPv6-only: the IPv6 subnet and network are the lease's own
      if (!isIpv6Cidr(opts.network)) throw new Error(`subnet ${opts.subnet} is IPv6 but network ${String(opts.network)} is not (an IPv6-only backend takes both IPv6)`);
      if (opts.ipv6Subnet !== undefined || opts.ipv6Network !== undefined) throw new Error('an IPv6-only backend (IPv6 subnet) takes no ipv6Subnet/ipv6Network: its subnet and network are the IPv6 ones');
      this.subnet = ipPrefix(opts.subnet, SUBNET6);
      this.network = ipPrefix(opts.network, SUBNET6);
      this.subnet6 = this.subnet;
      this.network6 = this.network;
    } else {
      this.subnet = ipPrefix(opts.subnet, SUBNET);
      this.network = ipPrefix(opts.network, SUBNET);
      if ((opts.ipv6Subnet === undefined) !== (opts.ipv6Network === undefined)) throw new Error('ipv6Subnet and ipv6Network go together (inner IPv6)');
      this.subnet6 = opts.ipv6Subnet === undefined ? undefined : ipPrefix(opts.ipv6Subnet, SUBNET6);
      this.network6 = opts.ipv6Network === undefined ? undefined : ipPrefix(opts.ipv6Network, SUBNET6);
    }
    if (this.subnet6 !== undefined && !this.network6!.covers(this.subnet6)) throw new Error(`ipv6Subnet ${this.subnet6.toString()} is not inside ipv6Network ${this.network6!.toString()}`);
    this.icmpSrc6 = this.subnet6 === undefined ? new Uint8Array(16) : this.subnet6.addr.bytes;
    this.pub = publicAddress(opts.publicIp, 'publicIp');
    this.family = this.pub.family;
    if (opts.bindAddress !== undefined) publicAddress(opts.bindAddress, 'bindAddress', this.family);
    this.bindAddress = opts.bindAddress;
    this.port = opts.port ?? defaultPort;
    this.deviceName = opts.deviceName ?? defaultDevice;
    this.deviceMtu = opts.deviceMtu ?? (opts.mtu ?? 1500) - underlayOverhead(overhead, this.family);
    this.io = opts.io ?? defaultIo;
    this.kernel = opts.kernel ?? new RtnlNet();
    this.strictSource = opts.strictSource ?? true;
    this.icmpSrc = this.subnet.net;
    const n = Math.max(1, opts.batchSize ?? 64);
    this.udpOffload = (opts.offload ?? DEFAULT_OFFLOAD) === 'auto';
    this.offloadWanted = this.udpOffload && deviceKind === 'tun';
    this.busyPollUs = Math.max(0, Math.min(opts.busyPollUs ?? 0, 1_000_000));
    // with offloads the queues hold whole segmented super-packets / GRO messages
    const txCap = this.offloadWanted ? n + STAGES * SEGMENT_MAX_SEGMENTS : n;
    const rxCap = this.offloadWanted ? Math.max(n, 256) : n;
    this.txViews = newDatagramViews(txCap);
    this.txCounters = new Array<PeerCounters>(txCap).fill(NO_COUNTERS);
    this.txVia = new Int32Array(txCap);
    this.txErr = new Int32Array(txCap);
    this.txOutFirst = new Int32Array(txCap);
    this.txOutCount = new Int32Array(txCap);
    this.rxViews = newPacketViews(rxCap);
    this.rxCounters = new Array<PeerCounters>(rxCap).fill(NO_COUNTERS);
    this.rxOwnHead = new Uint8Array(rxCap);
    this.rxSub = newDatagramViews(1)[0]!;
    this.coFirst = new Int32Array(rxCap);
    this.devOut = newPacketViews(rxCap);
    this.devOutSegs = new Int32Array(rxCap);
    this.devOutBytes = new Float64Array(rxCap);
    this.devOutFirst = new Int32Array(rxCap);
    this.devOutMerged = new Uint8Array(rxCap);
    this.devReplies = newPacketViews(n);
    this.netReplies = newDatagramViews(8);
    // an ICMPv6 error quotes up to the IPv6 minimum MTU; an ICMPv4 one 96 bytes
    this.icmpSlots = allocReplySlots(n, this.subnet6 === undefined ? undefined : HEADROOM + ICMP6_ERROR_MAX);
  }

  // ---- what a backend supplies -------------------------------------------------

  /** Classify and encapsulate one packet read from the device (see the module comment). */
  protected abstract fromDevice(buf: Buffer, off: number, len: number): void;
  /** Validate and decapsulate one received datagram (see the module comment). */
  protected abstract fromNetwork(slot: DatagramSlot): void;
  /** Configure the kernel side of the new device `dev` (address, MTU, up, routes). */
  protected abstract configureKernel(dev: string): Promise<void>;

  /**
   * Repeat, on the segment at `buf[off, off+len)` of a super-packet, what {@link fromDevice}
   * did to its first segment at `first` when it queued one datagram starting `pre` bytes
   * before it. By default: copy those `pre` header bytes (the backend wrote only in front of
   * the packet). A backend that also changes the packet itself (the UDP backend's TTL)
   * overrides this.
   */
  protected repeatEncap(buf: Buffer, off: number, len: number, pre: number, first: number): void {
    for (let i = 0; i < pre; i++) buf[off - pre + i] = buf[first - pre + i]!;
  }

  // ---- lifecycle -----------------------------------------------------------------

  /** Create the device and socket, configure the kernel side, start forwarding. */
  start(): Promise<void> {
    if (!this.starting) this.starting = this.doStart().finally(() => { this.starting = undefined; });
    return this.starting;
  }

  private async doStart(): Promise<void> {
    if (this.running) return;
    if (this.stopping) await this.stopping;
    const tr = this.newTransport();
    let dev: PacketDevice | undefined;
    const gen = this.stopGen;
    const pool: UdpTransport[] = [];
    try {
      await tr.bind(this.port, this.bindTo(this.bindAddress));
      for (let i = 0; i < this.sourcePortPool; i++) {
        const p = this.newTransport();
        pool.push(p);
        await p.bind(0, this.bindTo(this.bindAddress));
      }
      if (this.stopGen === gen) dev = await (this.deviceKind === 'tap' ? this.io.openTap(this.deviceName) : this.openTun());
      this.deviceGsoMaxSegs = dev?.offload === true ? this.gsoSegmentsPerSend() : undefined;
      if (dev !== undefined && this.stopGen === gen && this.opts.configureKernel !== false) await this.configureKernel(dev.name);
      if (dev !== undefined && this.stopGen === gen && this.opts.deviceAlias !== undefined) await this.markDevice(dev, this.opts.deviceAlias);
    } catch (e) {
      dev?.close();
      tr.close();
      for (const p of pool) p.close();
      throw e;
    }
    if (dev === undefined || this.stopGen !== gen) {
      // stop() was called while we were starting: close what we opened, do not forward
      dev?.close();
      tr.close();
      for (const p of pool) p.close();
      return;
    }
    this.device = dev;
    this.transport = tr;
    this.txPool = pool;
    if (pool.length > 0 && this.txByVia.length !== pool.length + 1) {
      const cap = this.txViews.length;
      this.txByVia = Array.from({ length: pool.length + 1 }, () => new Array<MutDatagramSlot>(cap));
      this.txByViaIdx = Array.from({ length: pool.length + 1 }, () => new Int32Array(cap));
    }
    dev.onReadError?.((e) => this.report(e));
    this.devOffload = dev.offload === true;
    if (this.devOffload) {
      this.allocOffloadBuffers();
      // UDP flows coalesce too when the TUN takes USO (GSO_UDP_L4 writes, Linux 6.2+)
      this.coalescer!.udp = dev.offloads?.uso4 === true && dev.offloads.uso6;
    }
    this.stopping = undefined; // a later stop() closes this device and socket
    this.running = true;
    if (this.opts.timing === true) {
      this.timer ??= new StageTimer();
      this.devStamped = dev.enableStamps?.(this.devStamps) === true;
      this.sockStamped = tr.enableStamps?.(this.sockStamps) === true;
    }
    dev.onBatch(this.onDeviceBatch);
    tr.onBatch(this.onSocketBatch);
  }

  /** The address to bind: `addr`, else all addresses of the underlay family (`::` for IPv6; the transports' default 0.0.0.0 for IPv4). */
  private bindTo(addr: string | undefined): string | undefined {
    return addr ?? (this.family === 6 ? '::' : undefined);
  }

  /**
   * A new, unbound UDP transport of the configured kind. An IPv6-only backend over an IPv6
   * underlay (flannel-v6.<VNI>) gets an IPv6-only socket: on `::` it leaves IPv4 to the IPv4
   * backend of a dual-stack host, bound to the same port.
   */
  private newTransport(): UdpTransport {
    const kind = this.opts.transport ?? 'dgram';
    const only6 = !this.ipv4 && this.family === 6;
    return this.udpOffload
      ? this.io.createTransport(kind, only6 ? { gro: true, onGsoFallback: this.onGsoFallback, ipv6Only: true } : { gro: true, onGsoFallback: this.onGsoFallback })
      : this.io.createTransport(kind, only6 ? { ipv6Only: true } : undefined);
  }

  /**
   * The underlay address changed (issue #14): close the socket (and the source-port pool's) and
   * bind new ones, on the same port, to `bindAddress` (undefined: all addresses), and advertise `publicIp` in
   * {@link localLease} from now on. The device, tables and routes are untouched; datagrams that
   * arrive in between are lost (the kernel answers them with ICMP port unreachable). Rejects when
   * the new socket cannot be bound (the dataplane then has no socket until the next rebind).
   */
  async rebind(bindAddress: string | undefined, publicIp: string): Promise<void> {
    if (!this.running) throw new Error('rebind: not running');
    const pub = publicAddress(publicIp, 'rebind', this.family);
    if (bindAddress !== undefined) publicAddress(bindAddress, 'rebind bindAddress', this.family);
    const old = this.transport;
    const oldPool = this.txPool;
    this.transport = undefined;
    this.txPool = [];
    old?.close(); // first: the same address and port may be bound again
    for (const p of oldPool) p.close();
    const tr = this.newTransport();
    const pool: UdpTransport[] = [];
    try {
      await tr.bind(this.port, this.bindTo(bindAddress));
      // the source-port pool's sockets were bound to the old address too
      for (let i = 0; i < oldPool.length; i++) {
        const p = this.newTransport();
        pool.push(p);
        await p.bind(0, this.bindTo(bindAddress));
      }
    } catch (e) {
      tr.close();
      for (const p of pool) p.close();
      throw e;
    }
    if (!this.running) { tr.close(); for (const p of pool) p.close(); return; }
    this.bindAddress = bindAddress;
    this.pub = pub;
    this.transport = tr;
    this.txPool = pool;
    if (this.opts.timing === true) this.sockStamped = tr.enableStamps?.(this.sockStamps) === true;
    tr.onBatch(this.onSocketBatch);
  }

  /** Timing mode: stage stamps of the device's and the socket's current batch, and the core's own. */
  private timer: StageTimer | undefined;
  private readonly devStamps = new Float64Array(3);
  private readonly sockStamps = new Float64Array(3);
  private readonly coreStamps = new Float64Array(3);
  private devStamped = false;
  private sockStamped = false;

  /** Timing mode: core stamp `i` of the current batch: 0 the handler's start, 1 the per-packet work done, 2 the flush done. */
  private stamp(i: number): void {
    stampNow(this.coreStamps, i);
  }

  /** Timing mode: record a device batch (tx) or socket batch (rx) from the stamps. */
  private recordBatch(rx: boolean): void {
    const t = this.timer!;
    const c = this.coreStamps;
    const io = rx ? this.sockStamps : this.devStamps;
    const stamped = rx ? this.sockStamped : this.devStamped;
    // without device/socket stamps, the handler's start stands in for the read returning
    const wake = stamped ? io[0]! : c[0]!;
    const read = stamped ? io[1]! : c[0]!;
    const base = rx ? 4 : 0; // TIMING_STAGES: tx_read, tx_encap, tx_send, tx_total | rx_wakeup, rx_read, rx_decap, rx_write, rx_total
    if (rx) {
      const kern = stamped ? io[2]! : 0;
      if (kern > 0) t.record(base, wake - kern);
      t.record(base + 1, read - wake);
      t.record(base + 2, c[1]! - read);
      t.record(base + 3, c[2]! - c[1]!);
      t.record(base + 4, c[2]! - (kern > 0 ? kern : wake));
    } else {
      t.record(base, read - wake);
      t.record(base + 1, c[1]! - read);
      t.record(base + 2, c[2]! - c[1]!);
      t.record(base + 3, c[2]! - wake);
    }
  }

  /**
   * Segments of an MTU-sized super-packet that fit one UDP GSO send (GSO_SEND_MAX_BYTES): the
   * cap on the TUN's gso_max_segs, so that every TSO super-packet the kernel hands us leaves in
   * one GSO send, is received as one GRO message and written as one coalesced packet (a 64 KB
   * one would need a second, nearly empty send: 46 segments of 1398 bytes against 44 per send).
   */
  private gsoSegmentsPerSend(): number {
    return Math.min(GSO_SEND_MAX_SEGMENTS, Math.floor(GSO_SEND_MAX_BYTES / (this.encapPrefix + this.deviceMtu)));
  }

  /** Open the TUN, with offloads when asked for; a kernel that refuses them gets a plain TUN (logged once). */
  private async openTun(): Promise<PacketDevice> {
    if (!this.offloadWanted) return this.io.openTun(this.deviceName);
    try {
      return await this.io.openTun(this.deviceName, { offload: true });
    } catch (e) {
      this.log(`${this.deviceName}: TUN offloads unavailable (${e instanceof Error ? e.message : String(e)}); plain packets`);
      return this.io.openTun(this.deviceName);
    }
  }

  /** Staging, output buffers and the coalescer of the offload stages (once; kept across restarts). */
  private allocOffloadBuffers(): void {
    if (this.stages.length > 0) return;
    const stage = 65535 + SEGMENT_MAX_SEGMENTS * (MAX_SEG_HEADERS + this.encapPrefix) + 64;
    for (let i = 0; i < STAGES; i++) this.stages.push(Buffer.alloc(stage));
    for (let i = 0; i < RX_OUT_BUFS; i++) this.rxOutBufs.push(Buffer.alloc(OFFLOAD_SLOT_SIZE));
    this.coalescer = new TcpCoalescer({ maxPackets: this.rxViews.length });
  }

  /** The transport fell back to splitting GSO runs itself (kernel refused UDP_SEGMENT). */
  private readonly onGsoFallback = (code: string): void => {
    if (this.gsoFallbackLogged) return;
    this.gsoFallbackLogged = true;
    this.log(`UDP GSO refused by the kernel (${code}); datagram runs are split in software`);
  };

  /** An informational message through `opts.onLog` (never per packet). */
  protected log(msg: string): void {
    try {
      this.opts.onLog?.(msg);
    } catch { /* a control plane's handler must not break the dataplane */ }
  }

  /** Whether the running device exchanges virtio_net_hdr offload metadata. */
  get deviceOffload(): boolean {
    return this.devOffload;
  }

  /**
   * Mark the device as ours (its alias), then make it persistent: in this order, so that a crash
   * in between leaves no persistent device without the mark (it goes with the process).
   */
  private async markDevice(dev: PacketDevice, alias: string): Promise<void> {
    if (this.opts.configureKernel !== false) await this.kernel.setAlias?.(dev.name, alias);
    dev.setPersist?.(true);
    this.persistent = dev.setPersist !== undefined;
  }

  /** The device was made persistent (see `deviceAlias`). */
  private persistent = false;

  /**
   * Stop forwarding, close device and socket (the kernel drops the device's address and routes
   * with it). `keepDevice`: a persistent device stays, with its address and routes.
   */
  stop(opts: StopOptions = {}): Promise<void> {
    this.stopGen++; // a start() under way notices and closes what it opened
    if (!this.stopping) {
      this.stopping = (async () => {
        this.running = false;
        if (this.persistent && opts.keepDevice !== true) {
          try {
            this.device?.setPersist?.(false);
          } catch (e) {
            this.report(new Error(`${this.deviceName}: cannot clear TUNSETPERSIST: ${(e as Error).message}`, { cause: e }));
          }
        }
        this.persistent = false;
        this.device?.close();
        this.transport?.close();
        for (const p of this.txPool) p.close();
        this.device = undefined;
        this.transport = undefined;
        this.txPool = [];
        await this.kernel.flush().catch(() => undefined);
      })();
    }
    return this.stopping;
  }

  /** Resolves once every kernel update queued so far (the routes of peer changes) has been made or has failed. */
  settled(): Promise<void> {
    return this.kernel.flush();
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
    const s: CoreStats = {
      ...this.counters.snapshot(), icmpSent: this.counters.icmpSent, icmpRateLimited: this.counters.icmpRateLimited, errors: { kernel: this.kernelErrors },
      offload: this.counters.offload.snapshot(),
    };
    if (this.lastKernelError !== undefined) s.errors.lastKernel = this.lastKernelError;
    if (this.timer !== undefined) s.timing = this.timer.summary();
    if (this.busyPollUs > 0) s.busyPolled = this.busyPolled;
    if (this.txPool.length > 0) s.sourcePorts = this.sourcePorts();
    const dev = this.device?.readErrorCounts;
    if (dev !== undefined && Object.keys(dev).length > 0) s.errors.device = { ...dev };
    for (let e = 0; e < this.sendErrnos.length; e++) {
      if (this.sendErrnos[e]! > 0) (s.errors.send ??= {})[e === 0 ? 'other' : errnoName(e)] = this.sendErrnos[e]!;
    }
    return s;
  }

  /** This host's subnet as a lease key ("198.19.1.0/24"). */
  protected subnetString(): string {
    return this.subnet.toString();
  }

  /** The public IP as text (dotted quad, or IPv6). */
  protected publicIpString(): string {
    return this.pub.toString();
  }

  /** A lease's public IP, which must be of our underlay family (throws one clear line otherwise). */
  protected leaseAddress(lease: Lease): IpAddr {
    return publicAddress(lease.publicIp, `lease ${lease.subnet}`, this.family);
  }

  /**
   * A lease's subnet, parsed; our own subnet gives undefined (a shared peers file lists it). Its
   * family must be ours: an IPv6-only backend takes leases whose subnet is IPv6 (throws one clear line otherwise).
   */
  protected peerSubnet(lease: Lease): IpPrefix | undefined {
    if (isIpv6Cidr(lease.subnet) === this.ipv4) {
      throw new Error(`lease ${String(lease.subnet)}: ${this.ipv4 ? 'an IPv6 subnet, but this backend carries IPv4 (its inner IPv6 comes from ipv6Subnet)' : 'an IPv4 subnet, but this backend carries IPv6 only (give it the lease\'s IPv6 half)'}`);
    }
    const subnet = ipPrefix(lease.subnet, this.ipv4 ? SUBNET : SUBNET6);
    return subnet.equals(this.subnet) ? undefined : subnet;
  }

  /** True when `subnet` (a removePeer argument) is of our lease family; removing one of the other family is a no-op. */
  protected ownFamily(subnet: string): boolean {
    return isIpv6Cidr(subnet) !== this.ipv4;
  }

  /**
   * A lease's IPv6 subnet (inner IPv6), parsed: undefined when the lease has none, when we run no
   * IPv6 overlay, or for our own. On an IPv6-only backend it is the lease's subnet itself.
   * Throws one clear line when it is malformed or outside our IPv6 network.
   */
  protected peerSubnet6(lease: Lease): IpPrefix | undefined {
    const s = this.ipv4 ? lease.ipv6Subnet : lease.subnet;
    if (s === undefined || this.subnet6 === undefined) return undefined;
    const p = ipPrefix(s, SUBNET6);
    if (p.equals(this.subnet6)) return undefined;
    if (!this.network6!.covers(p)) throw new Error(`lease ${lease.subnet}: ${this.ipv4 ? 'ipv6Subnet' : 'subnet'} ${s} is not inside the IPv6 network ${this.network6!.toString()}`);
    return p;
  }

  // ---- the stages ----------------------------------------------------------------

  /** Device -> network: one batch read from the device. */
  private readonly onDeviceBatch = (slots: PacketSlot[], count: number): void => {
    if (!this.running) return;
    if (this.transport === undefined) {
      // rebinding (the underlay address changed): no socket for this moment
      for (let i = 0; i < count; i++) this.counters.drop(D.tx_no_socket);
      return;
    }
    const timing = this.timer !== undefined;
    if (timing) this.stamp(0);
    if (this.devOffload) this.segmentStage(slots, count);
    else {
      for (let i = 0; i < count; i++) {
        const s = slots[i]!;
        this.fromDevice(s.buf, s.off, s.len);
      }
    }
    if (timing) this.stamp(1);
    this.flushTx();
    this.flushDeviceReplies();
    if (timing) {
      this.stamp(2);
      this.recordBatch(false);
    }
    if (this.busyPollUs > 0 && !this.spinning) this.busyPoll();
  };

  /**
   * Segment stage: every slot carries a virtio_net_hdr at [off - 10, off). Plain packets (after
   * finishing a NEEDS_CSUM checksum) go to fromDevice in place; a super-packet is segmented into
   * a staging buffer, `encapPrefix` bytes free before each segment, segments back to back.
   */
  private segmentStage(slots: PacketSlot[], count: number): void {
    const c = this.counters;
    const h = this.vhdr;
    const info = this.segInfo;
    const prefix = this.encapPrefix;
    this.nStage = 0;
    for (let i = 0; i < count; i++) {
      const s = slots[i]!;
      const b = s.buf;
      const off = s.off;
      const len = s.len;
      if (off < VIRTIO_NET_HDR_LEN || h.check(b, off - VIRTIO_NET_HDR_LEN, len + VIRTIO_NET_HDR_LEN) !== 'ok') { c.drop(D.tx_bad_virtio); continue; }
      if (h.gsoBase === VirtioGso.NONE) {
        if (h.needsCsum && finishChecksum(b, off, len, h) !== 'ok') { c.drop(D.tx_bad_virtio); continue; }
        this.fromDevice(b, off, len);
        continue;
      }
      if (this.nStage === this.stages.length) {
        this.flushTx(); // every staging buffer is free again
        this.nStage = 0;
      }
      const st = this.stages[this.nStage]!;
      const n = gsoSegmentStrided(b, off, len, h, st, 0, 0, prefix, info);
      if (typeof n !== 'number') { c.drop(D.tx_bad_gso); continue; }
      this.nStage++;
      c.offload.superPackets++;
      c.offload.segmentsOut += n;
      this.segmentsStage(st, prefix, info.stride, n, info.segLen, info.lastLen);
    }
  }

  /**
   * Device -> network for the `n` segments of one super-packet, at `st[first + k * stride)`,
   * `segLen` bytes each but `lastLen` the last. Every segment carries the same addresses,
   * TTL, ToS and flow, so what the backend decides for the first (route, neighbour, FDB,
   * checks) holds for all: when the first became exactly one queued datagram, every other
   * segment gets the same headers ({@link repeatEncap}) and the same peer, with no lookups.
   * Anything else (refused, flooded to several peers) runs segment by segment.
   */
  private segmentsStage(st: Buffer, first: number, stride: number, n: number, segLen: number, lastLen: number): void {
    if (this.nTx >= this.txViews.length) this.flushTx();
    const t0 = this.nTx;
    this.fromDevice(st, first, n === 1 ? lastLen : segLen);
    let k = 1;
    let o = first + stride;
    if (this.nTx === t0 + 1 && this.txViews[t0]!.buf === st) {
      const v = this.txViews[t0]!;
      const pre = first - v.off;
      const pc = this.txCounters[t0]!;
      const via = this.txVia[t0]!;
      if (pre >= 0 && v.len === segLen + pre) {
        for (; k < n; k++, o += stride) {
          const len = k === n - 1 ? lastLen : segLen;
          this.repeatEncap(st, o, len, pre, first);
          this.sendTo(st, o - pre, len + pre, pc, via);
        }
      }
    }
    for (; k < n; k++, o += stride) this.fromDevice(st, o, k === n - 1 ? lastLen : segLen);
  }

  /** Network -> device: one batch received from the socket (GRO messages split into their datagrams). */
  private readonly onSocketBatch = (slots: DatagramSlot[], count: number): void => {
    if (!this.running) return;
    const timing = this.timer !== undefined;
    if (timing) this.stamp(0);
    for (let i = 0; i < count; i++) {
      const s = slots[i]!;
      const seg = s.segSize;
      this.rxOwnStart = 0;
      if (seg !== undefined && seg > 0 && s.len > seg) this.groSplit(s, seg);
      else this.fromNetwork(s);
    }
    if (timing) this.stamp(1);
    this.flushRx();
    this.flushNetReplies();
    if (timing) {
      this.stamp(2);
      this.recordBatch(true);
    }
    if (this.busyPollUs > 0 && !this.spinning) this.busyPoll();
  };

  /** Busy-poll window in microseconds (options.busyPollUs; 0 = off). */
  private readonly busyPollUs: number;
  /** True while busyPoll() runs (batches it reads do not start another). */
  private spinning = false;
  /** Batches busyPoll() read. */
  private busyPolled = 0;

  /**
   * Busy-poll: read the device and the socket without sleeping, each batch handled as readiness
   * would, until nothing came for `busyPollUs`. Runs on the event loop's thread after a batch;
   * timers and the control plane wait at most that long past the last packet.
   */
  private busyPoll(): void {
    const dev = this.device;
    const tr = this.transport;
    if (dev?.pollNow === undefined || tr?.pollNow === undefined) return;
    this.spinning = true;
    try {
      const window = this.busyPollUs / 1000;
      let deadline = performance.now() + window;
      while (this.running) {
        const got = (tr.pollNow() > 0 ? 1 : 0) + (dev.pollNow() > 0 ? 1 : 0);
        const now = performance.now();
        if (got > 0) {
          this.busyPolled += got;
          deadline = now + window;
        }
        else if (now >= deadline) break;
      }
    } finally {
      this.spinning = false;
    }
  }

  /**
   * Receive stage: run fromNetwork on each datagram of the GRO message `s` (every one `seg`
   * bytes but a shorter last), through one re-pointed sub-view carrying the sender.
   */
  private groSplit(s: DatagramSlot, seg: number): void {
    const v = this.rxSub;
    v.buf = s.buf;
    v.family = s.family;
    v.addr = s.addr;
    v.port = s.port;
    v.segSize = 0;
    if (s.family === 6) for (let k = 0; k < 16; k++) v.addr6[k] = s.addr6[k]!;
    let o = s.off;
    let left = s.len;
    let n = 0;
    while (left > 0) {
      const l = left < seg ? left : seg;
      v.off = o;
      v.len = l;
      // the first datagram also owns the slot headroom; a later one starts where the previous ended
      this.rxOwnStart = n === 0 ? 0 : o;
      this.fromNetwork(v);
      o += l;
      left -= l;
      n++;
    }
    this.rxOwnStart = 0;
    const oc = this.counters.offload;
    oc.groMessages++;
    oc.groSegments += n;
  }

  /**
   * Point datagram view `v` at `buf[off, off+len)`, on our port; the caller sets the address
   * (an address is never passed as an argument here: see PEER_ADDR in counters.ts).
   */
  private pointAt(v: MutDatagramSlot, buf: Buffer, off: number, len: number): void {
    v.buf = buf;
    v.off = off;
    v.len = len;
    v.port = this.port;
  }

  /**
   * Queue `buf[off, off+len)` as one datagram to the peer whose counters are `pc` (its address is
   * `pc[PEER_ADDR]`, or `pc[PEER_ADDR6...]` for an IPv6 peer), on our port.
   */
  protected sendTo(buf: Buffer, off: number, len: number, pc: PeerCounters, via = 0): void {
    if (this.nTx === this.txViews.length) this.flushTx();
    const v = this.txViews[this.nTx]!;
    this.pointAt(v, buf, off, len);
    if (pc[PEER_FAMILY] === 6) {
      v.family = 6;
      peerAddr6Into(pc, v.addr6);
    } else {
      v.family = 4;
      v.addr = pc[PEER_ADDR]!;
    }
    this.txVia[this.nTx] = via;
    this.txCounters[this.nTx++] = pc;
  }

  /**
   * The socket for a flow of (31-bit, non-zero) hash `hash`: 0 (the bound port) without a
   * source-port pool, else 1 + the pool socket the hash falls on. Pass it to {@link sendTo}.
   */
  protected viaFor(hash: number): number {
    const k = this.txPool.length;
    return k === 0 ? 0 : 1 + Math.floor((hash & 0x7fffffff) * k / 0x80000000);
  }

  /** True while datagrams leave from a source-port pool (pass {@link viaFor} of the flow's hash to sendTo). */
  protected get hasSourcePorts(): boolean {
    return this.txPool.length > 0;
  }

  /** Set the source-port pool size (a backend's constructor: its default when the options give none). */
  protected useSourcePorts(n: number): void {
    if (!Number.isInteger(n) || n < 0 || n > SOURCE_PORTS_MAX) throw new Error(`invalid sourcePorts ${n} (0-${SOURCE_PORTS_MAX})`);
    this.sourcePortPool = n;
  }

  /** Local ports of the source-port pool's sockets (empty without a pool, or when stopped). */
  sourcePorts(): number[] {
    return this.txPool.map((p) => p.localPort());
  }

  /**
   * Send the tx queue. GSO at send: runs of consecutive queued datagrams to the same address and
   * port, all of the first one's length except a shorter last (at most GSO_SEND_MAX_SEGMENTS
   * datagrams and GSO_SEND_MAX_BYTES), are marked as gathered runs (`segSize` and `parts` on the
   * first): the transport sends each as one UDP GSO message of one iovec per datagram, wherever
   * the datagrams are (segments of one super-packet, or packets read one by one). Counters count
   * datagrams.
   */
  private flushTx(): void {
    const n = this.nTx;
    if (n === 0) return;
    this.nTx = 0;
    const c = this.counters;
    const v = this.txViews;
    const via = this.txVia;
    const first = this.txOutFirst;
    const cnt = this.txOutCount;
    let m = 0;
    for (let j = 0; j < n;) {
      const a = v[j]!;
      const seg = a.len;
      let total = seg;
      let k = j + 1;
      if (this.udpOffload) {
        for (; k < n && k - j < GSO_SEND_MAX_SEGMENTS; k++) {
          const p = v[k - 1]!;
          const q = v[k]!;
          if (p.len !== seg || !sameDest(q, a) || q.len > seg || q.len === 0 ||
              via[k] !== via[j] || total + q.len > GSO_SEND_MAX_BYTES) break;
          total += q.len;
        }
      }
      a.segSize = k - j > 1 ? seg : 0;
      a.parts = k - j > 1 ? k - j : 0;
      for (let x = j + 1; x < k; x++) {
        const q = v[x]!;
        q.segSize = 0;
        q.parts = 0;
      }
      first[m] = j;
      cnt[m++] = k - j;
      j = k;
    }
    const err = this.txErr;
    if (this.txPool.length === 0) {
      const tr = this.transport!;
      const sent = tr.sendBatch(v, n);
      for (let j = 0; j < n; j++) err[j] = sent === n ? 0 : tr.sendError(j);
    } else this.sendByVia(n);
    for (let g = 0; g < m; g++) {
      const k = cnt[g]!;
      if (k > 1 && err[first[g]!] === 0) {
        c.offload.gsoSends++;
        c.offload.gsoSegments += k;
      }
    }
    for (let j = 0; j < n; j++) {
      const pc = this.txCounters[j]!;
      this.txCounters[j] = NO_COUNTERS;
      const e = err[j]!;
      if (e === 0) c.count(pc, TX_PKTS, 1, v[j]!.len);
      else {
        c.drop(sendErrorReason(e));
        this.sendErrnos[e < this.sendErrnos.length ? e : 0]!++;
      }
    }
  }

  /**
   * flushTx with a source-port pool: the `n` queued datagrams grouped by their socket, in queue
   * order within each (a flow, and a gathered run, stays on one socket and in order), one
   * sendBatch per socket used; the outcome of each in txErr.
   */
  private sendByVia(n: number): void {
    const v = this.txViews;
    const via = this.txVia;
    const cn = this.txViaCount;
    const k = this.txPool.length + 1;
    cn.fill(0, 0, k);
    for (let j = 0; j < n; j++) {
      const w = via[j]!;
      const i = cn[w]!++;
      this.txByVia[w]![i] = v[j]!;
      this.txByViaIdx[w]![i] = j;
    }
    for (let w = 0; w < k; w++) {
      const cnt = cn[w]!;
      if (cnt === 0) continue;
      const tr = w === 0 ? this.transport! : this.txPool[w - 1]!;
      const slots = this.txByVia[w]!;
      const idx = this.txByViaIdx[w]!;
      const sent = tr.sendBatch(slots, cnt);
      for (let i = 0; i < cnt; i++) {
        this.txErr[idx[i]!] = sent === cnt ? 0 : tr.sendError(i);
      }
    }
  }

  /** Failed sends by errno (index; 0: out of range). */
  private readonly sendErrnos = new Float64Array(160);

  /**
   * Queue the inner packet `buf[off, off+len)` for the device. An L3 backend delivers only
   * IPv4 packets whose header it verified, checksum included (the coalesce stage relies on it),
   * and IPv6 packets whose fixed header it checked.
   */
  protected deliver(buf: Buffer, off: number, len: number, pc: PeerCounters): void {
    if (this.nRx === this.rxViews.length) this.flushRx();
    const v = this.rxViews[this.nRx]!;
    v.buf = buf;
    v.off = off;
    v.len = len;
    // the virtio header may go in place only over this datagram's own bytes (never a GRO neighbour's)
    this.rxOwnHead[this.nRx] = off - VIRTIO_NET_HDR_LEN >= this.rxOwnStart ? 1 : 0;
    this.rxCounters[this.nRx++] = pc;
  }

  private flushRx(): void {
    const n = this.nRx;
    if (n === 0) return;
    this.nRx = 0;
    if (this.devOffload) {
      this.coalesceStage(n);
      return;
    }
    const c = this.counters;
    const views = this.rxViews;
    // no device offloads: the kernel expects complete checksums
    if (this.deviceKind === 'tun') {
      for (let j = 0; j < n; j++) {
        const v = views[j]!;
        if (finishPartialChecksum(v.buf, v.off, v.len)) c.offload.csumFinished++;
      }
    } else {
      for (let j = 0; j < n; j++) {
        const v = views[j]!;
        if (v.len > 14) {
          const et = (v.buf[v.off + 12]! << 8) | v.buf[v.off + 13]!;
          if ((et === 0x0800 || et === 0x86dd) && finishPartialChecksum(v.buf, v.off + 14, v.len - 14)) c.offload.csumFinished++;
        }
      }
    }
    const w = this.device!.writeBatch(views, n);
    for (let j = 0; j < n; j++) {
      const pc = this.rxCounters[j]!;
      this.rxCounters[j] = NO_COUNTERS;
      if (j < w) c.count(pc, RX_PKTS, 1, views[j]!.len);
      else c.drop(D.rx_device_full);
    }
  }

  /**
   * Coalesce stage (offload device): TCP runs become GSO super-packets written from the output
   * buffers; other packets get their virtio header in place when the 10 bytes before them are
   * their own datagram's, else they are copied (with the header) into the output buffers.
   *
   * A packet longer than the device MTU (a kernel VXLAN peer over veth hands its TSO
   * super-packets to the UDP socket unsegmented, up to 64 KB) is never merged: the coalescer is
   * drained before and after it, and a TCP one is written as a GSO_TCP super-packet with an
   * MTU-sized gso_size, so the kernel can still forward it (re-segmenting) instead of dropping it.
   */
  private coalesceStage(n: number): void {
    const co = this.coalescer!;
    const views = this.rxViews;
    const mtu = this.deviceMtu;
    co.reset();
    for (let j = 0; j < n; j++) {
      const v = views[j]!;
      const big = v.len > mtu;
      if (big && co.packets > 0) this.drainCoalescer();
      const r = co.add(v.buf, v.off, v.len, true); // capacity = rx queue size: never 'full'; deliver()ed IPv4 is verified
      if (r === 'started' || r === 'passthrough') this.coFirst[co.count - 1] = j;
      if (big) this.drainCoalescer();
    }
    this.drainCoalescer();
    for (let j = 0; j < n; j++) this.rxCounters[j] = NO_COUNTERS;
    const out = this.devOut;
    for (let g = 0; g < out.length && out[g]!.buf !== EMPTY_BUF; g++) out[g]!.buf = EMPTY_BUF;
  }

  /** Build the device writes of the coalescer's outputs, write them, and reset the coalescer. */
  private drainCoalescer(): void {
    const co = this.coalescer!;
    const views = this.rxViews;
    const items = co.count;
    const mtu = this.deviceMtu;
    this.nOut = 0;
    this.outBuf = 0;
    this.outPos = 0;
    for (let i = 0; i < items; i++) {
      const j = this.coFirst[i]!;
      if (co.merged(i)) {
        const need = co.outputLength(i);
        const buf = this.outSpace(need);
        if (co.write(i, buf, this.outPos) === WRITE_BAD_CHECKSUM) {
          // a segment's checksum failed: every packet of the run on its own, for the kernel to check
          this.counters.offload.coalesceCsumFallbacks++;
          for (let k = 0, p = co.runPacket(i, 0); p >= 0; p = co.runPacket(i, ++k)) {
            this.queueCopy(co.pktBuf(p), co.pktOff(p), co.pktLen(p), j);
          }
          continue;
        }
        // the run's segments each carried the first one's IP + L4 headers
        const segs = co.segments(i);
        this.queueOut(buf, this.outPos + VIRTIO_NET_HDR_LEN, need - VIRTIO_NET_HDR_LEN, segs,
          need - VIRTIO_NET_HDR_LEN + (segs - 1) * co.headerLength(i), j, 1);
        this.outPos += (need + 7) & ~7;
      } else if (this.rxOwnHead[j] === 0) {
        const need = co.outputLength(i);
        const buf = this.outSpace(need);
        co.write(i, buf, this.outPos);
        const d = this.queueOut(buf, this.outPos + VIRTIO_NET_HDR_LEN, need - VIRTIO_NET_HDR_LEN, 1, need - VIRTIO_NET_HDR_LEN, j, 0);
        this.outPos += (need + 7) & ~7;
        if (d.len > mtu && oversizedTcpGso(buf, d.off, d.len, mtu)) this.counters.offload.rxSuperPackets++;
      } else {
        const v = views[j]!;
        co.emitHeader(i, v.buf, v.off - VIRTIO_NET_HDR_LEN);
        this.queueOut(v.buf, v.off, v.len, 1, v.len, j, 0);
        if (v.len > mtu && oversizedTcpGso(v.buf, v.off, v.len, mtu)) this.counters.offload.rxSuperPackets++;
      }
    }
    this.writeCoalesced();
    co.reset();
  }

  // drainCoalescer's position: device write views queued, output buffer in use and the next free byte in it
  private nOut = 0;
  private outBuf = 0;
  private outPos = 0;

  /** An output buffer with `need` free bytes at `outPos` (writing the queued views first when all are in use). */
  private outSpace(need: number): Buffer {
    if (this.outPos + need > this.rxOutBufs[this.outBuf]!.length) {
      this.outBuf++;
      this.outPos = 0;
      if (this.outBuf === this.rxOutBufs.length || this.nOut === this.devOut.length) {
        this.writeCoalesced(); // every output buffer is free again
        this.outBuf = 0;
      }
    }
    return this.rxOutBufs[this.outBuf]!;
  }

  /** Queue one device write of `buf[off, off+len)` carrying `segs` received packets (`bytes` as received), counted to rx packet `j`'s peer. */
  private queueOut(buf: Buffer, off: number, len: number, segs: number, bytes: number, j: number, merged: number): MutPacketSlot {
    if (this.nOut === this.devOut.length) this.writeCoalesced();
    const g = this.nOut++;
    const d = this.devOut[g]!;
    d.buf = buf;
    d.off = off;
    d.len = len;
    this.devOutSegs[g] = segs;
    this.devOutBytes[g] = bytes;
    this.devOutFirst[g] = j;
    this.devOutMerged[g] = merged;
    return d;
  }

  /** Queue a copy of the packet `src[off, off+len)` behind an all-zero virtio header, counted to rx packet `j`'s peer. */
  private queueCopy(src: Uint8Array, off: number, len: number, j: number): void {
    const need = VIRTIO_NET_HDR_LEN + len;
    const buf = this.outSpace(need);
    emitVirtioNone(buf, this.outPos);
    copyBytes(src, off, buf, this.outPos + VIRTIO_NET_HDR_LEN, len);
    this.queueOut(buf, this.outPos + VIRTIO_NET_HDR_LEN, len, 1, len, j, 0);
    this.outPos += (need + 7) & ~7;
  }

  /** Write the queued device write views to the offload device and count their packets and bytes as received. */
  private writeCoalesced(): void {
    const m = this.nOut;
    if (m === 0) return;
    this.nOut = 0;
    const c = this.counters;
    const w = this.device!.writeBatch(this.devOut, m);
    for (let g = 0; g < m; g++) {
      const segs = this.devOutSegs[g]!;
      if (g >= w) {
        for (let k = 0; k < segs; k++) c.drop(D.rx_device_full);
        continue;
      }
      if (this.devOutMerged[g] === 1) {
        c.offload.coalescedWrites++;
        c.offload.coalescedSegments += segs;
      }
      c.count(this.rxCounters[this.devOutFirst[g]!]!, RX_PKTS, segs, this.devOutBytes[g]!);
    }
  }

  /**
   * Answer the IP packet `buf[off, off+len)` read from the device with an ICMP error, ICMPv4 or
   * ICMPv6 by its version (never about an ICMP error, a non-first IPv4 fragment, a multicast
   * destination: the codec's builders refuse those). At most one per offending packet, and
   * no more than ICMP_RATE per second in bursts of ICMP_BURST (both families together).
   */
  protected icmpError(kind: IcmpKind, buf: Buffer, off: number, len: number): void {
    if (this.nIcmp === this.icmpSlots.length) this.flushDeviceReplies();
    const o = this.icmpSlots[this.nIcmp]!;
    if (buf[off]! >>> 4 === 6) {
      // RFC 4443: the same three, never about an ICMPv6 error (buildIcmp6Error refuses those)
      o.len = this.subnet6 === undefined ? 0 : buildIcmp6Error(o.buf, o.off, buf, off, len,
        kind === IcmpKind.NetUnreachable ? Icmp6Type.DEST_UNREACH : kind === IcmpKind.TimeExceeded ? Icmp6Type.TIME_EXCEEDED : Icmp6Type.PACKET_TOO_BIG,
        kind === IcmpKind.NetUnreachable ? Icmp6Code.NO_ROUTE : 0, kind === IcmpKind.FragNeeded ? this.deviceMtu : 0, this.icmpSrc6, 0, 64,
        o.buf.length - o.off);
      if (o.len > 0 && this.icmpAllowed()) this.nIcmp++;
      return;
    }
    o.len = kind === IcmpKind.NetUnreachable ? buildIcmpNetUnreachable(o.buf, o.off, buf, off, len, this.icmpSrc)
      : kind === IcmpKind.TimeExceeded ? buildIcmpTimeExceeded(o.buf, o.off, buf, off, len, this.icmpSrc)
      : buildIcmpFragNeeded(o.buf, o.off, buf, off, len, this.icmpSrc, this.deviceMtu);
    if (o.len > 0 && this.icmpAllowed()) this.nIcmp++;
  }

  // the ICMP rate limit's token bucket
  private icmpTokens = ICMP_BURST;
  private icmpRefilled = 0;

  /** Take a token for one ICMP error; false (counted) when the rate limit says no. */
  private icmpAllowed(): boolean {
    const now = performance.now();
    this.icmpTokens = Math.min(ICMP_BURST, this.icmpTokens + ((now - this.icmpRefilled) * ICMP_RATE) / 1000);
    this.icmpRefilled = now;
    if (this.icmpTokens < 1) {
      this.counters.icmpRateLimited++;
      return false;
    }
    this.icmpTokens--;
    return true;
  }

  /** Count drop `code` for the IPv4 packet `buf[off, off+len)` read from the device and answer it with ICMP `kind`. */
  protected refuse(code: number, kind: IcmpKind, buf: Buffer, off: number, len: number): void {
    this.counters.drop(code);
    this.icmpError(kind, buf, off, len);
  }

  /**
   * No IPv4 route for the packet read from the device: ICMP net unreachable, or on an IPv6-only
   * backend (which has no IPv4 routes) a plain tx_no_ipv4_overlay drop. Off the IPv4 fast path.
   */
  protected noRoute4(buf: Buffer, off: number, len: number): void {
    if (this.ipv4) this.refuse(D.tx_no_route, IcmpKind.NetUnreachable, buf, off, len);
    else this.counters.drop(D.tx_no_ipv4_overlay);
  }

  /** True when the IP packet at `off` (length `len`) exceeds the device MTU and may not be fragmented (IPv4 with DF; IPv6 always: routers never fragment it). */
  protected tooBig(buf: Buffer, off: number, len: number): boolean {
    return len > this.deviceMtu && (buf[off]! >>> 4 === 6 || ipv4DontFragment(buf, off));
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
    if (this.devOffload) {
      // an offload device reads a virtio_net_hdr before every packet: none (complete checksums)
      for (let i = 0; i < this.nIcmp; i++) { const o = this.icmpSlots[i]!; emitVirtioNone(o.buf, o.off - VIRTIO_NET_HDR_LEN); }
      for (let i = 0; i < this.nDevReply; i++) { const o = this.devReplies[i]!; if (o.off >= VIRTIO_NET_HDR_LEN) emitVirtioNone(o.buf, o.off - VIRTIO_NET_HDR_LEN); }
    }
    if (this.nIcmp > 0) {
      this.counters.icmpSent += dev.writeBatch(this.icmpSlots, this.nIcmp);
      this.nIcmp = 0;
    }
    if (this.nDevReply > 0) {
      dev.writeBatch(this.devReplies, this.nDevReply);
      this.nDevReply = 0;
    }
  }

  /** Send `buf[off, off+len)` (a reply built in place in a received datagram) back to the sender of `from`, on our port. Rare: at most 8 per batch. */
  protected replyToNetwork(buf: Buffer, off: number, len: number, from: DatagramSlot): void {
    if (this.nNetReply === this.netReplies.length) return;
    const v = this.netReplies[this.nNetReply++]!;
    this.pointAt(v, buf, off, len);
    v.family = from.family;
    v.addr = from.addr >>> 0;
    if (from.family === 6) v.addr6.set(from.addr6);
  }

  private flushNetReplies(): void {
    if (this.nNetReply === 0) return;
    this.transport!.sendBatch(this.netReplies, this.nNetReply);
    this.nNetReply = 0;
  }
}
