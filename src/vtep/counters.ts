/**
 * Dataplane counters: packets/bytes each way, per peer, and drops by reason.
 *
 * Everything on the hot path is a preallocated number slot: drops are counted in a
 * Float64Array indexed by a numeric reason code, and per-peer counters live as plain
 * number fields on the peer object. Only `snapshot()` builds objects.
 */
import type { DataplaneStats } from './backend.js';
import { formatIpv6, u32ToIpv4, type IpAddr } from '../codec/addr.js';

/** Every reason a packet can be dropped, in a fixed order (the index is the hot-path code). */
export const DROP_REASONS = [
  // towards the network (read from the device)
  'tx_runt',
  'tx_not_ipv4',
  'tx_no_route',
  'tx_ttl_exceeded',
  'tx_too_big',
  'tx_no_neighbour',
  'tx_no_fdb',
  'tx_l2miss',
  'tx_l3miss',
  'tx_unsupported_ethertype',
  // inner IPv6 to a multicast or link-local destination (the kernel's MLD reports, router solicitations): never tunnelled
  'tx_ipv6_link_scope',
  // an IPv6-only backend (IPv6 subnet, flannel-v6.<VNI>) read an IPv4 packet: it carries no IPv4 overlay
  'tx_no_ipv4_overlay',
  // offload device (TUN with virtio_net_hdr): a header that fails its check, a super-packet that cannot be segmented
  'tx_bad_virtio',
  'tx_bad_gso',
  // sending failed: by errno class (see sendErrorReason)
  'tx_socket_full',
  'tx_underlay_unreachable',
  'tx_no_source_address',
  'tx_underlay_too_big',
  'tx_refused',
  'tx_blocked',
  'tx_send_error',
  // no socket: it is being bound again to a new underlay address
  'tx_no_socket',
  // from the network (read from the socket)
  // a datagram of the other underlay family than ours (an IPv4 VTEP's socket never gets IPv6;
  // an IPv6 one bound to :: gets IPv4 senders, IPv4-mapped ones included, reported as IPv4)
  'rx_ipv6_underlay',
  'rx_ipv4_underlay',
  // an IPv6 sender in ::ffff:0:0/96 (IPv4-mapped): never a peer
  'rx_ipv4_mapped_source',
  'rx_unknown_peer',
  'rx_truncated',
  'rx_oversized',
  'rx_bad_ipv4',
  'rx_bad_ipv6',
  'rx_not_our_subnet',
  // an IPv6-only backend received an inner IPv4 packet (or an ARP request): it carries no IPv4 overlay
  'rx_no_ipv4_overlay',
  'rx_spoofed_inner_source',
  'rx_bad_vxlan_flags',
  'rx_wrong_vni',
  'rx_not_our_mac',
  'rx_unsupported_ethertype',
  'rx_arp_not_for_us',
  'rx_ndp_not_for_us',
  'rx_device_full',
] as const;

/** A drop reason name. */
export type DropReason = (typeof DROP_REASONS)[number];

/** Numeric drop codes for the hot path (`D.tx_no_route` etc.). */
export const D: { readonly [K in DropReason]: number } = Object.freeze(
  Object.fromEntries(DROP_REASONS.map((r, i) => [r, i])) as { [K in DropReason]: number },
);

/**
 * The drop reason of a send that failed with `errno` (positive Linux errno):
 * EAGAIN/ENOBUFS -> tx_socket_full; ENETUNREACH/EHOSTUNREACH/ENETDOWN -> tx_underlay_unreachable;
 * EADDRNOTAVAIL/EINVAL (our source address vanished) -> tx_no_source_address;
 * EMSGSIZE -> tx_underlay_too_big; ECONNREFUSED -> tx_refused; EPERM/EACCES (a firewall) ->
 * tx_blocked; anything else -> tx_send_error.
 */
export function sendErrorReason(errno: number): number {
  switch (errno) {
    case 11: case 105: return D.tx_socket_full; // EAGAIN, ENOBUFS
    case 101: case 113: case 100: return D.tx_underlay_unreachable; // ENETUNREACH, EHOSTUNREACH, ENETDOWN
    case 99: case 22: return D.tx_no_source_address; // EADDRNOTAVAIL, EINVAL
    case 90: return D.tx_underlay_too_big; // EMSGSIZE
    case 111: return D.tx_refused; // ECONNREFUSED
    case 1: case 13: return D.tx_blocked; // EPERM, EACCES
    default: return D.tx_send_error;
  }
}

/**
 * Index of each counter in a {@link PeerCounters} array and in `Counters.totals`: packets and
 * bytes each way. Counters live in Float64Arrays so that adding to them never allocates, even
 * past 2^31 and even where V8's property caches have gone generic (several dataplanes in one
 * process); only snapshots build objects.
 */
export const TX_PKTS = 0;
export const TX_BYTES = 1;
export const RX_PKTS = 2;
export const RX_BYTES = 3;
/**
 * Not a counter: the peer's public IPv4 as uint32 (0 for no peer, and for an IPv6 peer). The send
 * path takes the destination from here, so that the address never crosses a call as a number
 * argument (a uint32 from 2^30 up is a heap number, boxed anew by every call V8 does not inline).
 */
export const PEER_ADDR = 4;
/** Not a counter: the peer's address family, 4 or 6. */
export const PEER_FAMILY = 5;
/** Not a counter: an IPv6 peer's address as four big-endian uint32 words at PEER_ADDR6 ... PEER_ADDR6 + 3. */
export const PEER_ADDR6 = 6;

/** Counters of one peer: [txPackets, txBytes, rxPackets, rxBytes, IPv4, family, IPv6 words x4] (see TX_PKTS ... PEER_ADDR6). */
export type PeerCounters = Float64Array;

/** Fresh zeroed per-peer counters for the peer at `addr` (an IPv4 int32/uint32 number or an IpAddr; default none). */
export function newPeerCounters(addr: number | IpAddr = 0): PeerCounters {
  const c = new Float64Array(10);
  c[PEER_FAMILY] = 4;
  if (typeof addr === 'number') c[PEER_ADDR] = addr >>> 0;
  else if (addr.family === 4) c[PEER_ADDR] = addr.v4;
  else {
    c[PEER_FAMILY] = 6;
    const b = addr.bytes;
    for (let w = 0; w < 4; w++) c[PEER_ADDR6 + w] = ((b[4 * w]! << 24) | (b[4 * w + 1]! << 16) | (b[4 * w + 2]! << 8) | b[4 * w + 3]!) >>> 0;
  }
  return c;
}

/** Write the IPv6 address held in `pc` (PEER_ADDR6 words) into `out[0..16)`. Allocation-free. */
export function peerAddr6Into(pc: PeerCounters, out: Uint8Array): void {
  for (let w = 0; w < 4; w++) {
    const v = pc[PEER_ADDR6 + w]!;
    out[4 * w] = v >>> 24;
    out[4 * w + 1] = (v >>> 16) & 255;
    out[4 * w + 2] = (v >>> 8) & 255;
    out[4 * w + 3] = v & 255;
  }
}

/** A peer's counters as a plain object. */
export function peerCountersObject(c: PeerCounters): { txPackets: number; txBytes: number; rxPackets: number; rxBytes: number } {
  return { txPackets: c[TX_PKTS]!, txBytes: c[TX_BYTES]!, rxPackets: c[RX_PKTS]!, rxBytes: c[RX_BYTES]! };
}

/** Offload activity (all zero with offload 'off' or without kernel support). See OffloadStats. */
export class OffloadCounters {
  /** TSO/USO super-packets read from the device (and segmented here). */
  superPackets = 0;
  /** Segments produced from those super-packets. */
  segmentsOut = 0;
  /** Datagrams runs sent as one UDP GSO message (segSize > 0). */
  gsoSends = 0;
  /** Datagrams inside those runs. */
  gsoSegments = 0;
  /** UDP GRO messages received (segSize > 0) and split here. */
  groMessages = 0;
  /** Datagrams inside those messages. */
  groSegments = 0;
  /** Coalesced TCP super-packets written to the device. */
  coalescedWrites = 0;
  /** Segments inside those super-packets. */
  coalescedSegments = 0;
  /**
   * Received inner TCP packets longer than the device MTU (a kernel peer's TSO super-packet that
   * crossed a veth unsegmented) written to the offload device as GSO super-packets.
   */
  rxSuperPackets = 0;
  /** Received inner packets with a partial TCP/UDP checksum completed in software (device without offloads). */
  csumFinished = 0;
  /**
   * Coalesced runs not written as one super-packet because a segment's TCP checksum failed: their
   * packets went to the device one by one, for the kernel to drop the bad one.
   */
  coalesceCsumFallbacks = 0;

  /** As a plain object. */
  snapshot(): OffloadStats {
    return {
      superPackets: this.superPackets, segmentsOut: this.segmentsOut, gsoSends: this.gsoSends, gsoSegments: this.gsoSegments,
      groMessages: this.groMessages, groSegments: this.groSegments, coalescedWrites: this.coalescedWrites,
      coalescedSegments: this.coalescedSegments, rxSuperPackets: this.rxSuperPackets, csumFinished: this.csumFinished,
      coalesceCsumFallbacks: this.coalesceCsumFallbacks,
    };
  }
}

/** Offload counters as reported in stats().offload (see {@link OffloadCounters} for each field). */
export interface OffloadStats {
  superPackets: number;
  segmentsOut: number;
  gsoSends: number;
  gsoSegments: number;
  groMessages: number;
  groSegments: number;
  coalescedWrites: number;
  coalescedSegments: number;
  rxSuperPackets: number;
  csumFinished: number;
  coalesceCsumFallbacks: number;
}

/** Aggregate counters of one dataplane. */
export class Counters {
  /** Totals each way, indexed like a PeerCounters array (TX_PKTS, TX_BYTES, RX_PKTS, RX_BYTES). */
  readonly totals: PeerCounters = newPeerCounters();
  /** ICMP errors generated back into the device. */
  icmpSent = 0;
  /** ICMP errors (either family) not sent: over the rate limit (see ICMP_RATE in src/vtep/core.ts). */
  icmpRateLimited = 0;
  /** ARP replies generated (L3 VTEP answers, L2 proxy). */
  arpReplies = 0;
  /** Neighbour advertisements sent (inner IPv6: solicitations for our VTEP address). */
  ndpReplies = 0;
  /** Frames flooded (head-end replicated) and the copies sent. */
  floods = 0;
  floodCopies = 0;
  /** Offload activity. */
  readonly offload = new OffloadCounters();
  /** Drops by numeric reason code (see DROP_REASONS). */
  readonly drops = new Float64Array(DROP_REASONS.length);

  /**
   * Count `pkts` packets of `bytes` one way (`way` TX_PKTS: sent; RX_PKTS: received and written
   * to the device), in the totals and in the peer's counters `pc` (hot path). The byte counter of
   * a way follows its packet counter.
   */
  count(pc: PeerCounters, way: typeof TX_PKTS | typeof RX_PKTS, pkts: number, bytes: number): void {
    const t = this.totals;
    t[way] += pkts;
    t[way + 1] += bytes;
    pc[way] += pkts;
    pc[way + 1] += bytes;
  }

  /** Count one drop (hot path, allocation-free). */
  drop(code: number): void {
    this.drops[code]!++;
  }

  /** Drops as a plain object; reasons with zero drops are left out. */
  dropsObject(): Record<string, number> {
    const out: Record<string, number> = {};
    for (let i = 0; i < DROP_REASONS.length; i++) if (this.drops[i]! > 0) out[DROP_REASONS[i]!] = this.drops[i]!;
    return out;
  }

  /** Per-peer counters keyed by public IPv4 (uint32); kept after a peer is removed. */
  readonly peers = new Map<number, PeerCounters>();
  /** Per-peer counters of IPv6 peers, keyed by the address text; kept after a peer is removed. */
  readonly peers6 = new Map<string, PeerCounters>();

  /** The counters of the peer at IPv4 `publicIp` (uint32; created on first use; not for the hot path). */
  peer(publicIp: number): PeerCounters {
    let c = this.peers.get(publicIp);
    if (!c) {
      c = newPeerCounters(publicIp);
      this.peers.set(publicIp, c);
    }
    return c;
  }

  /** The counters of the peer at `a`, either family (created on first use; not for the hot path). */
  peerAt(a: IpAddr): PeerCounters {
    if (a.family === 4) return this.peer(a.v4);
    const key = formatIpv6(a.bytes);
    let c = this.peers6.get(key);
    if (!c) {
      c = newPeerCounters(a);
      this.peers6.set(key, c);
    }
    return c;
  }

  /** Build the DataplaneStats object. */
  snapshot(): DataplaneStats {
    const p: DataplaneStats['peers'] = {};
    for (const [ip, c] of this.peers) p[u32ToIpv4(ip)] = peerCountersObject(c);
    for (const [ip, c] of this.peers6) p[ip] = peerCountersObject(c);
    return {
      ...peerCountersObject(this.totals),
      drops: this.dropsObject(),
      peers: p,
      offload: this.offload.snapshot(),
    };
  }
}
