/**
 * Construction options of the dataplanes, and the I/O factory they open their
 * device and socket through (replaceable, e.g. by in-memory fakes in unit tests).
 */
import type { PacketDevice, UdpTransport } from '../tun/types.js';
import type { KernelNet } from './kernel.js';

/** Opens devices and sockets for a dataplane. */
export interface DataplaneIo {
  /** Create/attach a TUN device (IFF_TUN | IFF_NO_PI) named `name`. */
  openTun(name: string): PacketDevice | Promise<PacketDevice>;
  /** Create/attach a TAP device (IFF_TAP | IFF_NO_PI) named `name`. */
  openTap(name: string): PacketDevice | Promise<PacketDevice>;
  /** Create an unbound UDP transport of the given kind. */
  createTransport(kind: 'dgram' | 'mmsg'): UdpTransport;
}

/** Options shared by both dataplanes. */
export interface CommonBackendOptions {
  /** This host's overlay subnet (its lease), CIDR, e.g. "198.19.1.0/24". */
  subnet: string;
  /** The whole overlay network, CIDR, e.g. "198.19.0.0/16". */
  network: string;
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
   * Drop packets from a peer whose inner source address is outside that peer's subnet
   * (anti-spoofing). Default true.
   */
  strictSource?: boolean;
  /** Maximum packets per output batch (default 64; matches the transports' batch size). */
  batchSize?: number;
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
  /** L2 mode: learn source MAC -> sender's public IP from received frames. Default false. */
  learning?: boolean;
  /** L2 mode: answer ARP requests from the neighbour table instead of flooding them. Default false. */
  proxyArp?: boolean;
  /** Called on FDB (l2miss) and neighbour (l3miss) misses; at most once per key per second. */
  onMiss?: (ev: MissEvent) => void;
}
