/**
 * The flannel0-style UDP backend: a TUN device and a UDP socket; the datagram
 * payload is the bare IPv4 packet (flannel's wire format, default port 8285).
 * It plugs into the dataplane core (src/vtep/core.ts) with its encapsulation,
 * decapsulation and peer model:
 *
 * Towards the network: LPM on the inner destination -> peer; TTL decremented with the
 * incremental checksum; ICMP net unreachable / time exceeded / fragmentation needed
 * written back into the TUN. From the network: accepted only from known peers,
 * validated as IPv4, inner source inside the peer's subnet, destination inside ours.
 */
import type { Backend, Lease } from './backend.js';
import type { DatagramSlot } from '../tun/types.js';
import { u32ToIpv4, type IpAddr, type IpPrefix } from '../codec/addr.js';
import { FLANNEL_UDP_PORT, ipFlowHash, ipv4DecrementTtl, ipv4TotalLength, ipv4Valid, ipv6Check, ipv6DecrementHopLimit, IPV4_HLEN, IPV6_HLEN, UDP_HLEN } from '../codec/index.js';
import { D, type PeerCounters } from './counters.js';
import { RouteTable4, RouteTable6 } from '../fdb/index.js';
import { IcmpKind, ipv6LinkScope, rxIpv4Reason, rxIpv6Reason, TunnelCore, underlayOverhead, type CoreStats } from './core.js';
import { isIpv4Mapped, PeerAddrMap } from './peer-addr.js';
import type { UdpBackendOptions } from './options.js';
import { registerBackend } from './registry.js';
import { rd16, rd32 } from '../codec/util.js';

/** IPv4 + UDP header overhead of the UDP backend. */
export const UDP_OVERHEAD = IPV4_HLEN + UDP_HLEN;
/** IPv6 + UDP header overhead of the UDP backend over an IPv6 underlay (48). */
export const UDP_IPV6_OVERHEAD = underlayOverhead(UDP_OVERHEAD, 6);

interface UdpPeer {
  readonly lease: Lease;
  readonly subnet: IpPrefix;
  /** Inner IPv6: the lease's IPv6 subnet, when it has one and we run an IPv6 overlay. */
  readonly subnet6: IpPrefix | undefined;
  /** Public IP (our underlay's family). */
  readonly addr: IpAddr;
  readonly counters: PeerCounters;
}

/** The flannel0-style UDP backend. See the module comment. */
export class UdpBackend extends TunnelCore implements Backend {
  readonly type = 'udp' as const;

  /** Routes to peer subnets (src/fdb's LPM table); each route's `peer` slot holds the peer. */
  private readonly routes = new RouteTable4<UdpPeer>();
  /** Inner IPv6: routes to peers' IPv6 subnets (src/fdb's IPv6 LPM table), the peer in each route's slot. */
  private readonly routes6 = new RouteTable6<UdpPeer>();
  private readonly bySubnet = new Map<string, UdpPeer>();
  /** Peers by public IP (allocation-free lookups by a datagram's sender). */
  private readonly byAddr = new PeerAddrMap<UdpPeer>();

  /** The payload is the bare IPv4 packet: no header in front of it (socket adds IPv4 + UDP). */
  protected override readonly encapPrefix = 0;

  constructor(opts: UdpBackendOptions) {
    super(opts, 'tun', 'flannel0', FLANNEL_UDP_PORT, UDP_OVERHEAD);
    this.useSourcePorts(opts.sourcePorts ?? 0);
  }

  protected async configureKernel(dev: string): Promise<void> {
    // flannel: <subnet address>/<network prefix> on flannel0; the connected route sends the whole network here.
    // inner IPv6 likewise: <IPv6 subnet address>/<IPv6 network prefix>
    // (IPv6-only: the IPv6 one alone)
    const cidr6 = this.subnet6 === undefined ? undefined : `${this.subnet6.addr.toString()}/${this.network6!.len}`;
    const cidr = this.ipv4 ? `${u32ToIpv4(this.subnet.net)}/${this.network.len}` : cidr6!;
    await this.kernel.configureDevice(dev, { mtu: this.deviceMtu, cidr, gsoMaxSegs: this.deviceGsoMaxSegs, cidr6: this.ipv4 ? cidr6 : undefined });
    await this.kernel.deviceSysctl(dev, 'accept_local', '1'); // our ICMP errors carry our own TUN address as source
  }

  /** This host's lease. */
  localLease(): Lease {
    const l: Lease = { subnet: this.subnetString(), publicIp: this.publicIpString(), backendType: 'udp' };
    if (this.subnet6 !== undefined && this.ipv4) l.ipv6Subnet = this.subnet6.toString();
    return l;
  }

  /** Add or replace a peer (keyed by its subnet). */
  addPeer(lease: Lease): void {
    const subnet = this.peerSubnet(lease);
    if (subnet === undefined) return; // our own lease
    const key = subnet.toString();
    const addr = this.leaseAddress(lease);
    const old = this.bySubnet.get(key);
    if (old) this.unlink(old, key);
    const subnet6 = this.peerSubnet6(lease);
    const peer: UdpPeer = { lease: { ...lease }, subnet, subnet6, addr, counters: this.counters.peerAt(addr) };
    this.bySubnet.set(key, peer);
    if (this.ipv4) this.routes.replace({ dst: { prefix: subnet.net, prefixLen: subnet.len }, dev: this.deviceName, peer });
    if (subnet6 !== undefined) this.routes6.replace({ dst: { prefix: subnet6.addr.bytes, prefixLen: subnet6.len }, dev: this.deviceName, peer });
    this.byAddr.set(addr, peer);
  }

  /** Remove the peer owning `subnet`. */
  removePeer(subnet: string): void {
    if (!this.ownFamily(subnet)) return;
    const p = this.peerSubnet({ subnet, publicIp: '0.0.0.0', backendType: 'udp' });
    if (p === undefined) return;
    const key = p.toString();
    const old = this.bySubnet.get(key);
    if (old) this.unlink(old, key);
  }

  private unlink(peer: UdpPeer, key: string): void {
    this.bySubnet.delete(key);
    if (this.ipv4 && this.routes.getExact(peer.subnet.net, peer.subnet.len)?.peer === peer) this.routes.deleteExact(peer.subnet.net, peer.subnet.len);
    const s6 = peer.subnet6 === undefined ? undefined : { prefix: peer.subnet6.addr.bytes, prefixLen: peer.subnet6.len };
    if (s6 !== undefined && this.routes6.get(s6)?.peer === peer) this.routes6.delete(s6);
    if (this.byAddr.get(peer.addr) === peer) {
      this.byAddr.delete(peer.addr);
      // another lease on the same public IP keeps it a known source
      for (const other of this.bySubnet.values()) if (other.addr.equals(peer.addr)) { this.byAddr.set(other.addr, other); break; }
    }
  }

  /** Peers currently configured. */
  peers(): Lease[] {
    return [...this.bySubnet.values()].map((p) => ({ ...p.lease }));
  }

  /** Counters as a plain object (see CoreStats). */
  override stats(): CoreStats {
    return super.stats();
  }

  /** TUN -> network: route, TTL, MTU; the payload is the IPv4 (or inner IPv6) packet itself. */
  protected fromDevice(b: Buffer, off: number, len: number): void {
    const c = this.counters;
    if (len < 20) { c.drop(D.tx_runt); return; }
    if (b[off]! >>> 4 === 6 && this.subnet6 !== undefined) { this.fromDevice6(b, off, len); return; }
    if (!ipv4Valid(b, off, len)) { c.drop(D.tx_not_ipv4); return; }
    len = ipv4TotalLength(b, off);
    const route = this.routes.lookup(rd32(b, off + 16));
    const peer = route === undefined ? undefined : route.peer;
    if (peer === undefined) { this.noRoute4(b, off, len); return; }
    if (b[off + 8]! <= 1) { this.refuse(D.tx_ttl_exceeded, IcmpKind.TimeExceeded, b, off, len); return; }
    if (this.tooBig(b, off, len)) { this.refuse(D.tx_too_big, IcmpKind.FragNeeded, b, off, len); return; }
    ipv4DecrementTtl(b, off);
    // with a source-port pool, the inner flow picks the socket (as VXLAN's)
    this.sendTo(b, off, len, peer.counters, this.hasSourcePorts ? this.viaFor(ipFlowHash(b, off, len)) : 0); // the counters carry the peer's address
  }

  /** Inner IPv6: route by the destination, hop limit, MTU (packet too big); the bare IPv6 packet is the payload. */
  private fromDevice6(b: Buffer, off: number, len: number): void {
    const c = this.counters;
    if (ipv6Check(b, off, len) !== 'ok') { c.drop(D.tx_runt); return; }
    len = IPV6_HLEN + rd16(b, off + 4);
    if (ipv6LinkScope(b, off + 24)) { c.drop(D.tx_ipv6_link_scope); return; }
    const route = this.routes6.lookup(b, off + 24);
    const peer = route === undefined ? undefined : route.peer;
    if (peer === undefined) { this.refuse(D.tx_no_route, IcmpKind.NetUnreachable, b, off, len); return; }
    if (b[off + 7]! <= 1) { this.refuse(D.tx_ttl_exceeded, IcmpKind.TimeExceeded, b, off, len); return; }
    if (this.tooBig(b, off, len)) { this.refuse(D.tx_too_big, IcmpKind.FragNeeded, b, off, len); return; }
    ipv6DecrementHopLimit(b, off);
    this.sendTo(b, off, len, peer.counters, this.hasSourcePorts ? this.viaFor(ipFlowHash(b, off, len)) : 0);
  }

  /** Another segment of the super-packet whose first segment fromDevice sent: its TTL (hop limit) too. */
  protected override repeatEncap(b: Buffer, off: number): void {
    if (b[off]! >>> 4 === 6) ipv6DecrementHopLimit(b, off);
    else ipv4DecrementTtl(b, off);
  }

  /** Network -> TUN: known peer, valid IPv4 for our subnet from the peer's. */
  protected fromNetwork(s: DatagramSlot): void {
    const c = this.counters;
    if (s.family !== this.family) { c.drop(s.family === 6 ? D.rx_ipv6_underlay : D.rx_ipv4_underlay); return; }
    const peer = this.byAddr.getFrom(s);
    if (peer === undefined) { c.drop(s.family === 6 && isIpv4Mapped(s.addr6) ? D.rx_ipv4_mapped_source : D.rx_unknown_peer); return; }
    const b = s.buf;
    const off = s.off;
    if (s.len > 0 && b[off]! >>> 4 === 6) { this.fromNetwork6(b, off, s.len, peer); return; }
    if (!this.ipv4) { c.drop(D.rx_no_ipv4_overlay); return; }
    const why = rxIpv4Reason(b, off, s.len);
    if (why !== 0) { c.drop(why); return; }
    if (!this.subnet.containsV4(rd32(b, off + 16))) { c.drop(D.rx_not_our_subnet); return; }
    if (this.strictSource && !this.sourceOk(rd32(b, off + 12), peer)) { c.drop(D.rx_spoofed_inner_source); return; }
    this.deliver(b, off, ipv4TotalLength(b, off), peer.counters);
  }

  /** Inner IPv6 from `peer`: valid header, destination in our IPv6 subnet, source in one of the peer's. */
  private fromNetwork6(b: Buffer, off: number, len: number, peer: UdpPeer): void {
    const c = this.counters;
    const why = rxIpv6Reason(b, off, len);
    if (why !== 0) { c.drop(why); return; }
    if (this.subnet6 === undefined || !this.subnet6.containsV6At(b, off + 24)) { c.drop(D.rx_not_our_subnet); return; }
    if (this.strictSource && !this.sourceOk6(b, off + 8, peer)) { c.drop(D.rx_spoofed_inner_source); return; }
    this.deliver(b, off, IPV6_HLEN + rd16(b, off + 4), peer.counters);
  }

  /** Inner IPv6 source at `b[o..)` must belong to the sending peer (any of its leases). */
  private sourceOk6(b: Buffer, o: number, peer: UdpPeer): boolean {
    if (peer.subnet6 !== undefined && peer.subnet6.containsV6At(b, o)) return true;
    const owner = this.routes6.lookup(b, o);
    return owner !== undefined && owner.peer !== undefined && owner.peer.addr.equals(peer.addr);
  }

  /** Inner source must belong to the sending peer (any of its leases). */
  private sourceOk(src: number, peer: UdpPeer): boolean {
    if (peer.subnet.containsV4(src)) return true;
    const owner = this.routes.lookup(src);
    return owner !== undefined && owner.peer !== undefined && owner.peer.addr.equals(peer.addr);
  }
}

registerBackend('udp', { mtuOverhead: UDP_OVERHEAD, mtuOverheadV6: UDP_IPV6_OVERHEAD, defaultPort: FLANNEL_UDP_PORT, create: (c) => new UdpBackend(c) });
