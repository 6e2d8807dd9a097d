/**
 * The backend contract, after flannel's pkg/backend: a dataplane that owns its
 * device and socket, and takes peers as subnet leases.
 *
 * Implemented by the UDP backend (src/vtep/udp), the VXLAN VTEP (src/vtep/vxlan) and, without
 * a tunnel, host-gw (src/vtep/hostgw);
 * driven by overlayd (src/overlayd) and the benchmark.
 */

import type { OffloadStats } from './counters.js';
import type { StageSummary, TimingStage } from './timing.js';

/** Backend type names, as in a lease's BackendType and net-conf.json's Backend.Type. */
export type BackendTypeName = 'udp' | 'vxlan' | 'host-gw';

/** A subnet lease: the unit of peer state, in flannel's etcd layout. */
export interface Lease {
  /** The host's overlay subnet, CIDR (e.g. "198.19.2.0/24"). */
  subnet: string;
  /** The host's underlay (public) IPv4 address. */
  publicIp: string;
  /** Backend the host runs. */
  backendType: BackendTypeName;
  /** VXLAN only: the VNI the host's VTEP uses. */
  vni?: number;
  /** VXLAN only: the host's VTEP MAC, "aa:bb:cc:dd:ee:ff". */
  vtepMac?: string;
  /**
   * The IPv6 half (flannel's dual stack, src/overlayd/config.ts): the host's IPv6 subnet (the
   * lease key's part after '&'), PublicIPv6, and for VXLAN BackendV6Data (VNI and VTEP MAC of its
   * flannel-v6.<VNI> device). On an IPv6-only lease `subnet`, `publicIp`, `vni` and `vtepMac`
   * are these same IPv6 values.
   */
  ipv6Subnet?: string;
  publicIpv6?: string;
  v6Vni?: number;
  v6VtepMac?: string;
}

/** Counters, readable as a plain object. */
export interface DataplaneStats {
  /** Packets/bytes read from the device and sent to the network. */
  txPackets: number;
  txBytes: number;
  /** Packets/bytes received from the network and written to the device. */
  rxPackets: number;
  rxBytes: number;
  /** Drops by reason (reason -> count). */
  drops: Record<string, number>;
  /** Per-peer counters keyed by the peer's public IP. */
  peers: Record<string, { txPackets: number; txBytes: number; rxPackets: number; rxBytes: number }>;
  /**
   * Offload activity, when the backend has offload stages (src/vtep/core.ts): super-packets read
   * and segmented, UDP GSO sends and GRO receives, coalesced writes, partial checksums completed
   * (one field per counter of src/vtep/counters.ts OffloadCounters).
   */
  offload?: OffloadStats;
  /** Failures outside the packet path (kernel setup after start), when the backend tracks them. */
  errors?: {
    kernel: number;
    lastKernel?: string;
    device?: Record<string, number>;
    send?: Record<string, number>;
    /** host-gw: peers refused because their public IP is not on the underlay's segment. */
    rejectedPeers?: number;
    lastRejectedPeer?: string;
  };
  /** Timing mode only: per-stage batch durations in microseconds (src/vtep/timing.ts). */
  timing?: Partial<Record<TimingStage, StageSummary>>;
}

/** A running dataplane. */
export interface Backend {
  /** Backend type, as in a lease. */
  readonly type: BackendTypeName;
  /** Create the device and socket, configure the kernel side, start forwarding. */
  start(): Promise<void>;
  /** This host's own lease (for peers to configure from). Valid after start(). */
  localLease(): Lease;
  /** Add or update a peer. Idempotent; a changed lease replaces the old one atomically. */
  addPeer(lease: Lease): void;
  /** Remove the peer owning `subnet` (CIDR). No-op if unknown. */
  removePeer(subnet: string): void;
  /**
   * Resolves once the kernel updates that peer changes so far queued (routes: addPeer and
   * removePeer return before the kernel has them) have been made or have failed (failures go to
   * `onError` and stats().errors). Optional: a backend without kernel side effects may omit it.
   */
  settled?(): Promise<void>;
  /**
   * The underlay address changed: bind the socket again to `bindAddress` (undefined: all
   * addresses) and advertise `publicIp` in localLease(). Optional.
   */
  rebind?(bindAddress: string | undefined, publicIp: string): Promise<void>;
  /** Current counters (a fresh plain object; not for the hot path). */
  stats(): DataplaneStats;
  /**
   * Stop forwarding, close device and socket, remove what start() created. Idempotent.
   * `keepDevice`: leave a persistent (marked) device in place, with its address and routes,
   * for a planned restart to adopt.
   */
  stop(opts?: StopOptions): Promise<void>;
}

/** Options of {@link Backend.stop}. */
export interface StopOptions {
  /** Keep the device (when it was made persistent, see CommonBackendOptions.deviceAlias). */
  keepDevice?: boolean;
}
