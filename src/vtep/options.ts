/**
 * Construction options of the dataplanes, and the I/O factory they open their
 * device and socket through (replaceable, e.g. by in-memory fakes in unit tests).
 */
import type { PacketDevice, UdpTransport } from '../tun/types.js';
import type { KernelNet } from './kernel.js';

/** What a dataplane asks of the device it opens (see {@link DataplaneIo.openTun}). */
export interface OpenDeviceOptions {
  /**
   * Open with kernel offloads (TunDevice `offload`: IFF_VNET_HDR + TUNSETOFFLOAD): the device
   * then reports `offload: true` and exchanges a virtio_net_hdr with every packet. A factory that
   * cannot do it ignores the option (and its device reports no `offload`).
   */
  offload?: boolean;
}

/** What a dataplane asks of the UDP transport it creates (see {@link DataplaneIo.createTransport}). */
export interface CreateTransportOptions {
  /** Enable UDP GRO receive (mmsg only; received slots may carry `segSize`). */
  gro?: boolean;
  /** Called once if the kernel refuses UDP GSO sends (the transport then splits runs itself). */
  onGsoFallback?: (code: string) => void;
  /** An IPv6 socket for IPv6 only (IPV6_V6ONLY; an IPv6-only backend's, see TunnelCore.ipv4). */
  ipv6Only?: boolean;
}

/** Opens devices and sockets for a dataplane. */
export interface DataplaneIo {
  /** Create/attach a TUN device (IFF_TUN | IFF_NO_PI) named `name`; `opts.offload` asks for kernel offloads. */
  openTun(name: string, opts?: OpenDeviceOptions): PacketDevice | Promise<PacketDevice>;
  /** Create/attach a TAP device (IFF_TAP | IFF_NO_PI) named `name`. */
  openTap(name: string): PacketDevice | Promise<PacketDevice>;
  /** Create an unbound UDP transport of the given kind (`opts.gro`: UDP GRO receive, mmsg only). */
  createTransport(kind: 'dgram' | 'mmsg', opts?: CreateTransportOptions): UdpTransport;
}

/** The `offload` option's default (see {@link CommonBackendOptions.offload}). */
export const DEFAULT_OFFLOAD: 'auto' | 'off' = 'auto';

/** Options shared by both dataplanes. */
export interface CommonBackendOptions {
  /** This host's overlay subnet (its lease), CIDR, e.g. "198.19.1.0/24". */
  subnet: string;
  /** The whole overlay network, CIDR, e.g. "198.19.0.0/16". */
  network: string;
  /**
   * Inner IPv6 (the IPv6 overlay): this host's IPv6 subnet, CIDR (e.g. "2001:2:0:101::/64"), and
   * the whole IPv6 overlay network (e.g. "2001:2:0:100::/56"). With both, inner IPv6 packets are
   * routed to the peer whose lease's `ipv6Subnet` holds the destination and received ones are
   * validated as IPv4 is; without them inner IPv6 is dropped (tx_not_ipv4, rx_not_our_subnet).
   */
  ipv6Subnet?: string;
  ipv6Network?: string;
  /** This host's underlay (public) IPv4 address. */
  publicIp: string;
  /** UDP port to bind and to send to (UDP backend default 8285, VXLAN default 8472). */
  port?: number;
  /** Underlay MTU (default 1500). The device MTU is derived: -28 for UDP, -50 for VXLAN. */
  mtu?: number;
  /** Device MTU override (default derived from `mtu`). */
  deviceMtu?: number;
  /** UDP transport: node:dgram or the recvmmsg/sendmmsg socket (default 'dgram'). */
  transport?: 'dgram' | 'mmsg';
  /** Device name (default flannel0 / flannel.<VNI>). */
  deviceName?: string;
  /** Local address to bind the socket to (default 0.0.0.0). */
  bindAddress?: string;
  /** Configure the kernel side (address, MTU, up, routes). Default true. */
  configureKernel?: boolean;
  /**
   * Mark and keep the device (issue #14): after configuring it, set this interface alias on it
   * (e.g. "overlayd:vxlan:1") and make it persistent (TUNSETPERSIST), so that a crash leaves the
   * device, its address and routes in place, for the next start to find by its mark and adopt
   * (opening a persistent TUN/TAP of the same name attaches to it). `stop()` removes it again
   * unless asked to keep it. Absent: an unmarked device that disappears with the process.
   */
  deviceAlias?: string;
  /**
   * Drop packets from a peer whose inner source address is outside that peer's subnet
   * (anti-spoofing). Default true.
   */
  strictSource?: boolean;
  /**
   * Maximum packets per output batch (default 64; matches the transports' batch size). With
   * offload 'auto' the queues are larger (segmented super-packets: 4 x 64 more datagrams; at
   * least 256 received packets per coalescing pass).
   */
  batchSize?: number;
  /**
   * Kernel offloads (issue #11). 'auto': open the TUN with offloads (TSO/USO super-packets read
   * and segmented here, UDP GSO sends, UDP GRO receive on the mmsg transport, TCP segments
   * coalesced into super-packets written to the TUN), falling back to plain I/O when the kernel
   * refuses. 'off': plain packets. Default {@link DEFAULT_OFFLOAD}. The dgram transport gets no GRO and a TAP (L2
   * mode) no device offloads in either case. Received inner packets whose TCP/UDP checksum is
   * still partial (a kernel sender over veth) are completed in both modes.
   */
  offload?: 'auto' | 'off';
  /**
   * Timing mode (issue #12): stamp every batch at each stage and keep per-stage histograms,
   * reported by stats().timing (see src/vtep/timing.ts for the stages). Costs a few clock
   * reads per batch; default false.
   */
  timing?: boolean;
  /**
   * Busy-poll (issue #12): after each batch, keep reading the device and the socket without
   * sleeping until nothing came for this many microseconds, so a reply that follows soon is
   * taken without an event-loop wake-up (and with the code still in cache). Costs up to this
   * much CPU after every batch; 0 (default) turns it off. Only the native (mmsg) transport and
   * src/tun devices can be polled.
   */
  busyPollUs?: number;
  /**
   * Per-flow UDP source ports, as the kernel's VXLAN device: datagrams leave from one of this
   * many sockets bound to ephemeral ports (the kernel's ip_local_port_range, the range its VXLAN
   * device uses by default), picked by a hash of the inner flow, so that ECMP fabrics spread
   * the tunnels; one flow always leaves from one port. 0: every datagram from `port`. At most
   * 64. Default: VXLAN 16; the UDP backend 0 (flanneld's UDP backend sends from 8285).
   * Receiving stays on `port`.
   */
  sourcePorts?: number;
  /**
   * Informational messages outside the packet path (an offload the kernel refused, GSO falling
   * back to software splitting). Each condition is reported once. Never called per packet.
   */
  onLog?: (msg: string) => void;
  /** Device/socket factory; defaults to src/tun's TunDevice/TapDevice/createTransport. */
  io?: DataplaneIo;
  /** Kernel configuration backend; defaults to src/tun's rtnetlink client (RtnlNet). */
  kernel?: KernelNet;
  /**
   * Called with failures outside the packet path after start (a kernel route that could
   * not be installed, ...). They are also counted in stats().errors. Never called per packet.
   */
  onError?: (e: Error) => void;
}

/** Options of the flannel0-style UDP backend. */
export interface UdpBackendOptions extends CommonBackendOptions {}

/** A table-miss event for a control plane (kernel vxlan's l2miss / l3miss). */
export type MissEvent =
  | { type: 'l2miss'; vni: number; mac: string }
  | { type: 'l3miss'; vni: number; ip: string };

/** Options of the VXLAN VTEP. */
export interface VxlanBackendOptions extends CommonBackendOptions {
  /** 'l3': TUN, flannel's route/neighbour/FDB scheme (default). 'l2': TAP, a bridge-port VTEP. */
  mode?: 'l3' | 'l2';
  /** VXLAN network identifier (default 1). */
  vni?: number;
  /** Our VTEP MAC "aa:bb:..." (default: random locally administered). */
  vtepMac?: string;
  /** Use the Group Based Policy extension (G flag); must match the peers. Default false. */
  gbp?: boolean;
  /** GBP group policy ID to send (default 0). */
  gbpPolicy?: number;
  /**
   * Learn source MAC -> sender's public IP from received frames (the kernel's `learning`; flannel's
   * net-conf `Learning`). L2 mode: bridge learning. L3 mode: frames from a sender that holds no
   * lease are accepted (the kernel's VXLAN device takes any sender; without learning we drop them
   * as rx_unknown_peer) if their inner source is in the overlay network and not in our subnet, and
   * the sender's VTEP MAC is learned as a dynamic FDB entry (leases' entries are permanent and
   * never move). Default false.
   */
  learning?: boolean;
  /** L2 mode: answer ARP requests from the neighbour table instead of flooding them. Default false. */
  proxyArp?: boolean;
  /** Called on FDB (l2miss) and neighbour (l3miss) misses; at most once per key per second. */
  onMiss?: (ev: MissEvent) => void;
  /**
   * L3 mode: flannel's DirectRouting. A peer whose public IP the kernel reaches without a gateway
   * (directly connected, decided from the routing table read at start) gets the kernel route
   * `<subnet> via <public IP> dev <underlay>` and is not encapsulated; the others go through the
   * VTEP. Default false.
   */
  directRouting?: boolean;
}
