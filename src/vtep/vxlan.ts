/**
 * A userspace VXLAN tunnel endpoint, wire-compatible with the Linux kernel's vxlan
 * device, over our own UDP socket (default VNI 1, port 8472 as flannel uses).
 *
 * L3 mode (flannel's current scheme, device flannel.<VNI>, a TUN): towards the
 * network the inner IPv4 destination goes through route -> next hop -> neighbour
 * (peer VTEP MAC) -> FDB (peer public IP); the inner Ethernet header (our VTEP MAC ->
 * neighbour MAC) and the 8-byte VXLAN header are written in the slot headroom in front
 * of the packet, and the datagram is sent. From the network: the VXLAN flags and VNI
 * are validated, frames to our VTEP MAC or broadcast are accepted, ARP requests for our
 * VTEP address are answered through the tunnel, and the IPv4 packet is written to TUN.
 *
 * L2 mode (a TAP, like a kernel vxlan bridge port): FDB lookup by destination MAC;
 * broadcast, multicast and unknown unicast are flooded to the all-zeros FDB entries
 * (head-end replication: every copy shares the same buffer); optional learning;
 * optional ARP proxy from the neighbour table; l2miss/l3miss events.
 *
 * No allocation per packet: output batches are preallocated views onto input slots.
 */
import { randomBytes } from 'node:crypto';
import type { Backend, Lease, StopOptions } from './backend.js';
import type { DatagramSlot } from '../tun/types.js';
import { IpAddr, u32ToIpv4, type IpPrefix } from '../codec/addr.js';
import { D, type PeerCounters } from './counters.js';
import { Fdb, HostModel, NeighbourTable, NeighbourTable6, RouteTable4, RouteTable6, type FdbDest } from '../fdb/index.js';
import type { MissEvent, VxlanBackendOptions } from './options.js';
import { registerBackend } from './registry.js';
import { rd16, rd32 } from '../codec/util.js';
import {
  buildArpReply, buildNeighborAdvert, formatMac, innerFlowHash, isNeighborSolicitFor, macHi, macLo, parseMac, emitVxlanPolicy, vxlanFlagsValid, vxlanVni, writeMacHL,
  ArpOp, ArpPacket, EtherType, ETH_HLEN, IPV6_HLEN, NEIGHBOR_ADVERT_FRAME_LEN, VXLAN_HLEN, VXLAN_IPV4_OVERHEAD, VXLAN_IPV6_OVERHEAD, VXLAN_PORT_LINUX,
} from '../codec/index.js';
import { IcmpKind, ipv6LinkScope, NO_COUNTERS, publicAddress, rxIpv4Reason, rxIpv6Reason, SOURCE_PORTS_MAX, TunnelCore, type CoreStats } from './core.js';
import { isIpv4Mapped, PeerAddrMap } from './peer-addr.js';
import { UnderlayView } from './underlay.js';

/** Outer IPv4 + UDP + VXLAN + inner Ethernet overhead. */
export const VXLAN_OVERHEAD = VXLAN_IPV4_OVERHEAD;
/** Outer IPv6 + UDP + VXLAN + inner Ethernet overhead (70, as flannel's flannel-v6.<VNI>). */
export const VXLAN_V6_OVERHEAD = VXLAN_IPV6_OVERHEAD;
/** Default size of the VTEP's source-port pool (VxlanBackendOptions.sourcePorts). */
export const DEFAULT_SOURCE_PORTS = 16;

interface VxPeer {
  readonly lease: Lease;
  /** DirectRouting: routed via its public IP on the underlay, not through the VTEP. */
  readonly direct: boolean;
  readonly subnet: IpPrefix;
  /** Peer VTEP MAC (48-bit number), or undefined when the lease has none (L2 mode may learn it). */
  readonly mac: number | undefined;
  /** Public IP (our underlay's family). */
  readonly ip: IpAddr;
  /** Inner IPv6: the lease's IPv6 subnet (when it has one and we run an IPv6 overlay). */
  readonly subnet6: IpPrefix | undefined;
  /** Inner IPv6: the VTEP MAC IPv6 packets go to (the lease's v6VtepMac, else its vtepMac). */
  readonly mac6: number | undefined;
}

/** An FDB destination form of a public IP (a uint32 for IPv4, the 16 bytes for IPv6). */
function fdbDst(a: IpAddr): number | Uint8Array {
  return a.family === 4 ? a.v4 : a.bytes;
}

/** The public IP of an FDB destination. */
function destAddr(d: FdbDest): IpAddr {
  return d.family === 4 ? IpAddr.fromV4(d.ip) : IpAddr.fromBytes(d.ip6!, 6);
}

/** Statistics of the VXLAN VTEP: the core's plus ARP replies and flooding. */
export interface VxlanStats extends CoreStats {
  /** DirectRouting: peers routed directly on the underlay (not encapsulated). */
  directPeers: number;
  arpReplies: number;
  /** Neighbour advertisements answering solicitations for our VTEP IPv6 address (inner IPv6, L3). */
  ndpReplies: number;
  floods: number;
  floodCopies: number;
}

/** The userspace VXLAN VTEP. See the module comment. */
export class VxlanBackend extends TunnelCore implements Backend {
  readonly type = 'vxlan' as const;
  readonly mode: 'l3' | 'l2';
  readonly vni: number;
  /** Our VTEP MAC as a number. */
  readonly vtepMac: number;
  /** Our VTEP address: the subnet's network address (flannel puts it /32 on flannel.<VNI>). */
  readonly vtepIp: number;
  private readonly vtepIpi: number;
  private readonly macHi: number;
  private readonly macLo: number;

  /** L3: VXLAN + inner Ethernet (22 bytes) written before the IPv4 packet; L2: VXLAN (8). */
  protected override readonly encapPrefix: number;
  private readonly gbp: boolean;
  private readonly gbpPolicy: number;
  private readonly learning: boolean;
  /** L3 with learning: senders that hold no lease are accepted and their VTEP MAC learned (see {@link VxlanBackendOptions.learning}). */
  private readonly learnL3: boolean;
  private readonly proxyArp: boolean;

  // the three tables, all src/fdb's (hot-path lookups allocation-free), kept by flannel's host model:
  /** Route table (LPM): subnet via the peer's VTEP address, onlink. */
  private readonly routes = new RouteTable4<VxPeer>();
  /**
   * Inner IPv6, the same three tables as flannel's flannel-v6.<VNI> keeps them: route
   * `<IPv6 subnet> via <its network address> onlink`, a permanent NDP entry for that address ->
   * VTEP MAC, and the FDB entry of that MAC (shared with the IPv4 side when the MAC is the same).
   */
  private readonly routes6 = new RouteTable6<VxPeer>();
  private readonly neigh6 = new NeighbourTable6();
  /** The kernel IPv6 route asked for each peer (by its IPv4 subnet key): its IPv6 subnet. */
  private readonly route6Of = new Map<string, string>();
  /** Neighbours: peer VTEP address -> VTEP MAC (permanent entries). */
  private readonly neigh: NeighbourTable;
  /**
   * FDB: VTEP MAC -> public IP; the all-zeros entry is the flood list. Lease and setFdb()
   * entries are permanent, so learning never moves them (as in the kernel).
   */
  private readonly fdb: Fdb;
  /** 1 route + 1 neighbour + 1 FDB entry per lease, refcounted when leases share a VTEP MAC. */
  private readonly hosts: HostModel<VxPeer>;
  /** Known senders (public IP -> that peer's counters). */
  private known = new PeerAddrMap<PeerCounters>();
  /** Subnets owned by each sender (public IP), for the inner-source check. */
  private senderSubnets = new PeerAddrMap<IpPrefix[]>();
  /**
   * `known` and `senderSubnets` follow each peer change incrementally (10,000 peers added one by
   * one used to rebuild both from scratch each time: 30 s). A control plane's setFdb() may name
   * any destination: it marks them out of date, to be rebuilt once by the next packet.
   */
  private knownDirty = false;
  /** setFdb() was used: FDB destinations other than peers' public IPs may exist. */
  private customFdb = false;
  private readonly bySubnet = new Map<string, VxPeer>();
  /** Peers whose kernel route could not be installed: the next change of their lease tries again. */
  private readonly routeFailed = new Set<string>();
  /** The kernel route asked for each peer subnet, "via <ip> dev <dev>" (a changed lease with the same route sends none). */
  private readonly routeOf = new Map<string, { via: string; dev: string; onlink: boolean }>();
  /** DirectRouting (L3 only): peers on the underlay's segment get a direct route instead of the VTEP. */
  private readonly directRouting: boolean;
  /** The underlay's routes, read at start: which peers are directly connected (src/vtep/underlay.ts). */
  private readonly underlay = new UnderlayView();

  constructor(opts: VxlanBackendOptions) {
    const vni = opts.vni ?? 1;
    if (!Number.isInteger(vni) || vni < 0 || vni > 0xffffff) throw new Error(`invalid VNI ${opts.vni}`);
    const mode = opts.mode ?? 'l3';
    super(opts, mode === 'l2' ? 'tap' : 'tun', opts.deviceName ?? `flannel${vxlanFamily(opts.publicIp) === 6 ? '-v6' : ''}.${vni}`, VXLAN_PORT_LINUX, VXLAN_OVERHEAD);
    if (mode === 'l2' && !this.ipv4) throw new Error('VXLAN L2 mode has no IPv6-only overlay (an IPv6 subnet): use L3, or an IPv4 subnet with ipv6Subnet');
    this.mode = mode;
    this.encapPrefix = mode === 'l3' ? VXLAN_HLEN + ETH_HLEN : VXLAN_HLEN;
    this.vni = vni;
    this.gbp = opts.gbp ?? false;
    this.gbpPolicy = opts.gbpPolicy ?? 0;
    this.learning = opts.learning ?? false;
    this.learnL3 = mode === 'l3' && this.learning;
    this.proxyArp = opts.proxyArp ?? false;
    this.useSourcePorts(opts.sourcePorts ?? DEFAULT_SOURCE_PORTS);
    this.directRouting = mode === 'l3' && opts.directRouting === true;
    if (opts.vtepMac) this.vtepMac = parseMac(opts.vtepMac);
    else {
      const r = randomBytes(6);
      r[0] = (r[0]! & 0xfe) | 0x02; // unicast, locally administered
      this.vtepMac = r.readUIntBE(0, 6);
    }
    this.vtepIp = this.subnet.net;
    this.vtepIpi = this.subnet.neti;
    this.macHi = macHi(this.vtepMac);
    this.macLo = macLo(this.vtepMac);
    this.neigh = new NeighbourTable({ proxy: true });
    this.fdb = new Fdb({ vni: this.vni, dev: this.deviceName, learning: this.learning, missOnDefault: true });
    this.hosts = new HostModel<VxPeer>({ vni: this.vni, dev: this.deviceName, routes: this.routes, neigh: this.neigh, fdb: this.fdb });
    const cb = opts.onMiss;
    if (cb) {
      const emit = (ev: MissEvent): void => {
        try { cb(ev); } catch { /* control plane errors must not break the dataplane */ }
      };
      // both tables rate-limit their events (one per key per second)
      this.fdb.on('l2miss', (vni, mac) => emit({ type: 'l2miss', vni, mac: formatMac(mac) }));
      this.neigh.on('l3miss', (ip) => emit({ type: 'l3miss', vni: this.vni, ip: u32ToIpv4(ip) }));
    }
  }

  protected async configureKernel(dev: string): Promise<void> {
    await this.kernel.configureDevice(dev, {
      mtu: this.deviceMtu,
      // IPv6-only (flannel-v6.<VNI>): only the IPv6 subnet's network address /128, as flanneld configures it
      cidr: this.ipv4 ? `${u32ToIpv4(this.vtepIp)}/32` : `${this.subnet.addr.toString()}/128`,
      // inner IPv6: the IPv6 subnet's network address /128, as flannel-v6.<VNI> has it (in L2 the kernel then answers NDP for it, as it does ARP)
      cidr6: this.subnet6 === undefined || !this.ipv4 ? undefined : `${this.subnet6.addr.toString()}/128`,
      mac: this.mode === 'l2' ? formatMac(this.vtepMac) : undefined,
      gsoMaxSegs: this.deviceGsoMaxSegs,
    });
    if (this.mode === 'l3') await this.kernel.deviceSysctl(dev, 'accept_local', '1');
    if (this.directRouting) {
      await this.underlay.refresh(this.kernel);
      // peers added before start were decided without the underlay's routes
      for (const p of [...this.bySubnet.values()]) if (this.isDirect(p.lease) !== p.direct) this.upsert(p.lease, true);
    }
    // all at once: the kernel queue pipelines them (src/vtep/kernel.ts)
    const v6 = [...this.bySubnet.values()].filter((p) => p.subnet6 !== undefined && this.mode === 'l3').map((p) => {
      this.route6Of.set(p.lease.subnet, p.subnet6!.toString());
      return this.kernel.replaceRoute(p.subnet6!.toString(), p.subnet6!.addr.toString(), dev, { onlink: true });
    });
    // IPv4 routes only on a device that carries IPv4 (an IPv6-only one's peers are all in v6)
    const v4 = this.ipv4 ? [...this.bySubnet.values()] : [];
    await Promise.all([...v6, ...v4.map((p) => {
      const r = this.wantedRoute(p, dev);
      this.routeOf.set(p.lease.subnet, r);
      return this.kernel.replaceRoute(p.lease.subnet, r.via, r.dev, { onlink: r.onlink });
    })]);
  }

  /** DirectRouting's decision, as flannel makes it: the route to the peer's public IP has no gateway. */
  private isDirect(lease: Lease): boolean {
    // (over an IPv6 underlay every peer goes through the VTEP: the underlay view reads IPv4 routes)
    return this.directRouting && this.family === 4 && this.ipv4 && this.underlay.pathTo(lease.publicIp).direct;
  }

  /** The kernel route of a peer: through the VTEP (`via <subnet address> dev flannel.N onlink`) or, direct, `via <public IP> dev <underlay>`. */
  private wantedRoute(p: VxPeer, dev: string): { via: string; dev: string; onlink: boolean } {
    if (!p.direct) return { via: u32ToIpv4(p.subnet.net), dev, onlink: true };
    return { via: p.lease.publicIp, dev: this.underlay.linkName(this.underlay.pathTo(p.lease.publicIp).oif), onlink: false };
  }

  /**
   * Stop; direct routes live on the underlay device (the VTEP's go with its device, or stay with a
   * kept one), so they are removed first, also with `keepDevice` (a route on the underlay left
   * behind would outlive a peer that leaves before the next start).
   */
  override stop(opts: StopOptions = {}): Promise<void> {
    if (this.kernelLive) {
      for (const [key, r] of this.routeOf) if (r.dev !== this.deviceName) void this.kernel.deleteRoute(key, r.dev);
    }
    this.routeOf.clear();
    this.route6Of.clear();
    return super.stop(opts);
  }

  /** This host's lease (with our VNI and VTEP MAC). */
  localLease(): Lease {
    const l: Lease = { subnet: this.subnetString(), publicIp: this.publicIpString(), backendType: 'vxlan', vni: this.vni, vtepMac: formatMac(this.vtepMac) };
    if (this.subnet6 !== undefined && this.ipv4) l.ipv6Subnet = this.subnet6.toString(); // one device: IPv6 goes to the same VTEP MAC
    return l;
  }

  /**
   * Add or replace a peer: flannel's host model installs 1 route (subnet via its network
   * address, onlink), 1 neighbour (network address -> VTEP MAC) and 1 FDB entry (MAC ->
   * public IP), refcounted when leases share a VTEP MAC; plus the kernel route
   * `subnet via X dev flannel.N onlink`. L2 mode also adds the peer's public IP to the
   * all-zeros flood list; there the MAC is optional (it may be learned).
   */
  addPeer(lease: Lease): void {
    this.upsert(lease, false);
  }

  /** addPeer; `tablesOnly`: the userspace tables only (start-up decides the kernel routes itself). */
  private upsert(lease: Lease, tablesOnly: boolean): void {
    const subnet = this.peerSubnet(lease);
    if (subnet === undefined) return;
    const key = subnet.toString();
    const mac = lease.vtepMac ? parseMac(lease.vtepMac) : undefined;
    if (this.mode === 'l3' && mac === undefined) throw new Error(`lease ${key} has no vtepMac (required in L3 mode)`);
    const ip = this.leaseAddress(lease);
    const subnet6 = this.peerSubnet6(lease);
    // IPv6-only: the lease's vtepMac is its flannel-v6 device's; it goes into the IPv6 tables alone (no IPv4 host entry)
    const mac6 = subnet6 === undefined ? undefined : lease.v6VtepMac && this.ipv4 ? parseMac(lease.v6VtepMac) : mac;
    if (subnet6 !== undefined && this.mode === 'l3' && mac6 === undefined) throw new Error(`lease ${key} has an ipv6Subnet but no VTEP MAC`);
    const peer: VxPeer = { lease: { ...lease, subnet: key }, direct: this.isDirect(lease), subnet, mac: this.ipv4 ? mac : undefined, ip, subnet6, mac6 };
    const old = this.bySubnet.get(key);
    if (old !== undefined) this.unlink6(old);
    this.link6(peer);
    // a direct peer has no route, neighbour or FDB entry here: the kernel routes it past the VTEP
    if (peer.mac !== undefined && !peer.direct) this.hosts.addHost({ subnet: key, publicIp: fdbDst(ip), vtepMac: peer.mac, peer });
    else if (old?.mac !== undefined && !old.direct) this.hosts.removeHost(key);
    this.bySubnet.set(key, peer);
    if (old) this.removeSender(old);
    this.addSender(peer);
    if (this.mode === 'l2') {
      if (old && !old.ip.equals(ip)) this.unflood(old);
      if (!this.floodList().some((d) => d.equals(ip))) this.fdb.append({ mac: 0, dst: fdbDst(ip) });
    }
    // a VTEP route depends on the subnet alone: a changed lease (new public IP or MAC) keeps it,
    // unless installing it failed before; a direct route follows the public IP
    if (this.kernelLive && !tablesOnly) {
      const r = this.wantedRoute(peer, this.device!.name);
      const was = this.routeOf.get(key);
      this.kernelRoute6(key, old, peer);
      if (this.ipv4 && (was === undefined || was.via !== r.via || was.dev !== r.dev || this.routeFailed.has(key))) {
        this.routeFailed.delete(key);
        this.routeOf.set(key, r);
        const op = this.kernel.replaceRoute(key, r.via, r.dev, { onlink: r.onlink });
        op.catch(() => { if (this.bySubnet.has(key)) this.routeFailed.add(key); });
        this.kernelUpdate(`route ${key} via ${r.via} dev ${r.dev}${r.onlink ? ' onlink' : ''}`, op);
      }
    }
  }

  /** Remove the peer owning `subnet` (tables and kernel route). */
  removePeer(subnet: string): void {
    if (!this.ownFamily(subnet)) return;
    const p = this.peerSubnet({ subnet, publicIp: '', backendType: 'vxlan' });
    if (p === undefined) return;
    const key = p.toString();
    const old = this.bySubnet.get(key);
    if (!old) return;
    this.bySubnet.delete(key);
    this.routeFailed.delete(key);
    if (old.mac !== undefined && !old.direct) this.hosts.removeHost(key);
    this.unlink6(old);
    if (this.kernelLive) this.kernelRoute6(key, old, undefined);
    if (this.mode === 'l2') this.unflood(old);
    this.removeSender(old);
    const dev = this.routeOf.get(key)?.dev ?? this.deviceName;
    this.routeOf.delete(key);
    if (this.kernelLive && this.ipv4) this.kernelUpdate(`delete route ${key} dev ${dev}`, this.kernel.deleteRoute(key, dev));
  }

  /**
   * Inner IPv6 tables for peer `p` (L3): route, permanent NDP entry, and the FDB entry of its IPv6
   * VTEP MAC when that is not its IPv4 one (which the host model keeps).
   */
  private link6(p: VxPeer): void {
    if (p.subnet6 === undefined || p.mac6 === undefined || this.mode !== 'l3') return;
    const gw = p.subnet6.addr.bytes;
    this.routes6.replace({ dst: { prefix: gw, prefixLen: p.subnet6.len }, via: gw, onlink: true, dev: this.deviceName, peer: p });
    this.neigh6.replace({ ip: gw, lladdr: formatMac(p.mac6), dev: this.deviceName, state: 'permanent' });
    if (p.mac6 !== p.mac) this.fdb.replace({ mac: p.mac6, vni: this.vni, dev: this.deviceName, dst: fdbDst(p.ip), state: 'permanent' });
  }

  /** Undo {@link link6} for peer `p` (an FDB entry stays while another peer's MAC is the same). */
  private unlink6(p: VxPeer): void {
    if (p.subnet6 === undefined || p.mac6 === undefined || this.mode !== 'l3') return;
    const dst = { prefix: p.subnet6.addr.bytes, prefixLen: p.subnet6.len };
    if (this.routes6.get(dst)?.peer === p) {
      this.routes6.delete(dst);
      this.neigh6.delete(p.subnet6.addr.bytes);
    }
    if (p.mac6 === p.mac) return;
    for (const o of this.bySubnet.values()) if (o !== p && (o.mac === p.mac6 || o.mac6 === p.mac6)) return;
    this.fdb.delete(this.vni, p.mac6);
  }

  /** The kernel's IPv6 route for the peer with IPv4 subnet `key` (L3): from `old`'s IPv6 subnet to `now`'s. */
  private kernelRoute6(key: string, old: VxPeer | undefined, now: VxPeer | undefined): void {
    if (this.mode !== 'l3') return;
    const was = this.route6Of.get(key);
    const want = now?.subnet6?.toString();
    if (was === want && old !== undefined) return;
    const dev = this.device?.name ?? this.deviceName;
    if (was !== undefined && was !== want) {
      this.route6Of.delete(key);
      this.kernelUpdate(`delete route ${was} dev ${dev}`, this.kernel.deleteRoute(was, dev));
    }
    if (want !== undefined && now!.subnet6 !== undefined) {
      this.route6Of.set(key, want);
      const via = now!.subnet6.addr.toString();
      this.kernelUpdate(`route ${want} via ${via} dev ${dev} onlink`, this.kernel.replaceRoute(want, via, dev, { onlink: true }));
    }
  }

  /** Take `p`'s public IP off the flood list unless another lease still uses it. */
  private unflood(p: VxPeer): void {
    for (const o of this.bySubnet.values()) if (o !== p && o.ip.equals(p.ip)) return;
    this.fdb.delete(this.vni, 0, fdbDst(p.ip));
  }

  /** Public IPs of the all-zeros (flood) entry. */
  private floodList(): IpAddr[] {
    return this.fdb.get(this.vni, 0)?.dests.map(destAddr) ?? [];
  }

  /** Add/replace an FDB entry (`mac` "00:00:00:00:00:00" = the flood list) for a control plane. */
  setFdb(mac: string, publicIps: string[]): void {
    const m = parseMac(mac);
    const dsts = publicIps.map((ip) => publicAddress(ip, `setFdb ${mac}`, this.family));
    this.fdb.delete(this.vni, m);
    for (const d of dsts) this.fdb.append({ mac: m, dst: fdbDst(d) });
    this.customFdb = true;
    this.knownDirty = true;
  }

  /** Add/replace (or with `mac` undefined, delete) a neighbour entry for a control plane. */
  setNeighbour(ip: string, mac: string | undefined): void {
    if (mac === undefined) this.neigh.delete(ip);
    else this.neigh.replace({ ip, lladdr: mac, dev: this.deviceName });
  }

  /** The FDB as a plain object (mac -> public IPs; all-zeros = flood list). */
  fdbEntries(): Record<string, string[]> {
    const out: Record<string, string[]> = {};
    for (const e of this.fdb.list()) if (e.dests.length > 0) out[formatMac(e.mac)] = e.dests.map((d) => destAddr(d).toString());
    return out;
  }

  /** The three tables in `ip route` / `ip neigh` / `bridge fdb show` shape. */
  showTables(): { route: string; neigh: string; fdb: string } {
    return this.hosts.show();
  }

  /** Peers currently configured. */
  peers(): Lease[] {
    return [...this.bySubnet.values()].map((p) => ({ ...p.lease }));
  }

  /** Peer `p`'s lease now counts: its public IP is a known sender owning `p.subnet`. */
  private addSender(p: VxPeer): void {
    const list = this.senderSubnets.get(p.ip);
    if (list === undefined) this.senderSubnets.set(p.ip, [p.subnet]);
    else list.push(p.subnet);
    if (!this.known.has(p.ip)) this.known.set(p.ip, this.counters.peerAt(p.ip));
  }

  /** Peer `p`'s lease is gone: its public IP stops being a known sender with its last lease. */
  private removeSender(p: VxPeer): void {
    const list = this.senderSubnets.get(p.ip);
    if (list === undefined) return;
    const i = list.indexOf(p.subnet);
    if (i >= 0) list.splice(i, 1);
    if (list.length > 0) return;
    this.senderSubnets.delete(p.ip);
    if (this.customFdb) this.knownDirty = true; // an FDB entry set by hand may still name it
    else this.known.delete(p.ip);
  }

  /** Rebuild `known` (peers' public IPs and every FDB destination) and `senderSubnets` from scratch. */
  private rebuildKnown(): void {
    this.knownDirty = false;
    this.known = new PeerAddrMap<PeerCounters>();
    this.senderSubnets = new PeerAddrMap<IpPrefix[]>();
    for (const p of this.bySubnet.values()) this.addSender(p);
    for (const e of this.fdb.list()) {
      for (const d of e.dests) {
        const a = destAddr(d);
        if (!this.known.has(a)) this.known.set(a, this.counters.peerAt(a));
      }
    }
  }


  /** Counters as a plain object: the core's plus ARP replies and flood counts. */
  override stats(): VxlanStats {
    const c = this.counters;
    let direct = 0;
    for (const p of this.bySubnet.values()) if (p.direct) direct++;
    return { ...super.stats(), directPeers: direct, arpReplies: c.arpReplies, ndpReplies: c.ndpReplies, floods: c.floods, floodCopies: c.floodCopies };
  }

  /** Device -> network: L3 (TUN) or L2 (TAP). */
  protected fromDevice(b: Buffer, off: number, len: number): void {
    if (this.mode === 'l3') this.fromTun(b, off, len);
    else this.fromTap(b, off, len);
  }

  /** Send the datagram `b[off, off+len)` to every destination of FDB entry dests. */
  private sendToAll(b: Buffer, off: number, len: number, ds: readonly FdbDest[]): void {
    if (this.knownDirty) this.rebuildKnown();
    // the source port: a hash of the inner frame's flow picks the pool socket (as the kernel's udp_flow_src_port)
    const via = this.hasSourcePorts ? this.viaFor(innerFlowHash(b, off + VXLAN_HLEN, len - VXLAN_HLEN)) : 0;
    for (let k = 0; k < ds.length; k++) {
      const d = ds[k]!;
      // every FDB destination is in `known` (rebuilt with the FDB); one added since has counters made here
      const pc = d.family === 4 ? this.known.get4(d.ip) : this.known.get6(d.ip6!, 0);
      this.sendTo(b, off, len, pc ?? this.counters.peerAt(destAddr(d)), via);
    }
  }

  /** L3: route -> neighbour -> FDB, then inner Ethernet + VXLAN headers in the headroom. */
  private fromTun(b: Buffer, off: number, len: number): void {
    const c = this.counters;
    const hdr = VXLAN_HLEN + ETH_HLEN;
    if (len < 20) { c.drop(D.tx_runt); return; }
    if (b[off]! >> 4 === 6 && this.subnet6 !== undefined) { this.fromTun6(b, off, len); return; }
    if (b[off]! >> 4 !== 4) { c.drop(D.tx_not_ipv4); return; }
    const r = this.routes.lookup(rd32(b, off + 16));
    if (r === undefined) { this.noRoute4(b, off, len); return; }
    if (this.tooBig(b, off, len)) { this.refuse(D.tx_too_big, IcmpKind.FragNeeded, b, off, len); return; }
    if (off < hdr) { c.drop(D.tx_runt); return; }
    const e = off - ETH_HLEN;
    // neighbour: the peer VTEP MAC goes straight into the inner Ethernet destination
    if (!this.neigh.lookupMacInto(r.gateway | 0, b, e)) { c.drop(D.tx_no_neighbour); return; }
    this.encapL3(b, off, len, EtherType.IPv4);
  }

  /**
   * L3, either inner family, once the neighbour's MAC is in the inner Ethernet destination (the
   * 14 bytes before `off`): FDB by that MAC, our MAC, ethertype `et`, the VXLAN header; send.
   */
  private encapL3(b: Buffer, off: number, len: number, et: number): void {
    const hdr = VXLAN_HLEN + ETH_HLEN;
    const e = off - ETH_HLEN;
    const ent = this.fdb.lookupBytes(this.vni, b, e);
    if (ent === undefined || ent.dests.length === 0) { this.counters.drop(D.tx_no_fdb); return; }
    writeMacHL(b, e + 6, this.macHi, this.macLo);
    b[e + 12] = et >>> 8;
    b[e + 13] = et & 0xff;
    emitVxlanPolicy(b, off - hdr, this.vni, this.gbp, this.gbpPolicy);
    this.sendToAll(b, off - hdr, len + hdr, ent.dests);
  }

  /** L3, inner IPv6: IPv6 route -> NDP entry -> FDB, then inner Ethernet (0x86DD) + VXLAN headers in the headroom. */
  private fromTun6(b: Buffer, off: number, len: number): void {
    const c = this.counters;
    if (len < IPV6_HLEN) { c.drop(D.tx_runt); return; }
    if (ipv6LinkScope(b, off + 24)) { c.drop(D.tx_ipv6_link_scope); return; }
    const r = this.routes6.lookup(b, off + 24);
    if (r === undefined || r.gateway === null) { this.refuse(D.tx_no_route, IcmpKind.NetUnreachable, b, off, len); return; }
    if (this.tooBig(b, off, len)) { this.refuse(D.tx_too_big, IcmpKind.FragNeeded, b, off, len); return; }
    if (off < VXLAN_HLEN + ETH_HLEN) { c.drop(D.tx_runt); return; }
    if (!this.neigh6.lookupMacInto(r.gateway, b, off - ETH_HLEN)) { c.drop(D.tx_no_neighbour); return; }
    this.encapL3(b, off, len, EtherType.IPv6);
  }

  /** L2: bridge-port semantics (FDB, flooding, proxy ARP). */
  private fromTap(b: Buffer, off: number, len: number): void {
    const c = this.counters;
    if (len < ETH_HLEN) { c.drop(D.tx_runt); return; }
    if (this.proxyArp && rd16(b, off + 12) === EtherType.ARP && this.arpRequest(b, off, len)) {
      const ent = this.neigh.proxyLookup(this.arp.tpa);
      if (ent === undefined) { c.drop(D.tx_l3miss); return; }
      this.replyToDevice(b, off, buildArpReply(b, off, this.arp, ent.mac));
      c.arpReplies++;
      return;
    }
    if (off < VXLAN_HLEN) { c.drop(D.tx_runt); return; }
    // exact entry, else the all-zeros flood entry (broadcast, multicast, unknown unicast)
    const ent = this.fdb.lookupBytes(this.vni, b, off);
    if (ent === undefined || ent.dests.length === 0) { c.drop(D.tx_l2miss); return; }
    if (ent.mac === 0) {
      c.floods++;
      c.floodCopies += ent.dests.length;
    }
    emitVxlanPolicy(b, off - VXLAN_HLEN, this.vni, this.gbp, this.gbpPolicy);
    this.sendToAll(b, off - VXLAN_HLEN, len + VXLAN_HLEN, ent.dests);
  }

  /** Network -> device (both modes): known sender, flags, VNI; then L2 delivery or L3 checks. */
  protected fromNetwork(s: DatagramSlot): void {
    const c = this.counters;
    if (s.family !== this.family) { c.drop(s.family === 6 ? D.rx_ipv6_underlay : D.rx_ipv4_underlay); return; }
    const from = s.addr | 0;
    if (this.knownDirty) this.rebuildKnown();
    let pc = this.known.getFrom(s);
    if (pc === undefined) {
      if (s.family === 6 && isIpv4Mapped(s.addr6)) { c.drop(D.rx_ipv4_mapped_source); return; }
      if (!this.learnL3) { c.drop(D.rx_unknown_peer); return; }
      pc = NO_COUNTERS; // a sender with no lease (learning): counted in the totals only
    }
    const b = s.buf;
    const off = s.off;
    const len = s.len;
    if (len < VXLAN_HLEN + ETH_HLEN) { c.drop(D.rx_truncated); return; }
    if (!vxlanFlagsValid(b, off, this.gbp)) { c.drop(D.rx_bad_vxlan_flags); return; }
    if (vxlanVni(b, off) !== this.vni) { c.drop(D.rx_wrong_vni); return; }
    const e = off + VXLAN_HLEN;
    const elen = len - VXLAN_HLEN;
    if (this.mode === 'l2') {
      // learning (kernel vxlan_snoop): never our own MAC; permanent entries are never moved
      // (learning records IPv4 senders: the FDB learns uint32 destinations)
      if (this.learning && s.family === 4 && !(rd16(b, e + 6) === this.macHi && rd32(b, e + 8) === this.macLo)) {
        this.fdb.learnBytes(this.vni, b, e + 6, from, this.port);
      }
      this.deliver(b, e, elen, pc);
      return;
    }
    const dh = rd16(b, e);
    const dl = rd32(b, e + 2);
    // ours, broadcast (ARP), or IPv6 multicast 33:33:... (a neighbour solicitation to a solicited-node address)
    const multicast = dh === 0x3333 && this.subnet6 !== undefined && rd16(b, e + 12) === EtherType.IPv6;
    if (!(dh === this.macHi && dl === this.macLo) && !(dh === 0xffff && dl === -1) && !multicast) { c.drop(D.rx_not_our_mac); return; }
    if (this.learnL3 && s.family === 4) this.fdb.learnBytes(this.vni, b, e + 6, from, this.port); // kernel vxlan_snoop: leases' entries are permanent, never moved
    const et = rd16(b, e + 12);
    if (et === EtherType.IPv4) {
      if (!this.ipv4) { c.drop(D.rx_no_ipv4_overlay); return; }
      const ip = e + ETH_HLEN;
      const why = rxIpv4Reason(b, ip, elen - ETH_HLEN);
      if (why !== 0) { c.drop(why); return; }
      if (!this.subnet.containsV4(rd32(b, ip + 16))) { c.drop(D.rx_not_our_subnet); return; }
      if (this.strictSource && !this.sourceOk(rd32(b, ip + 12), s) && !(pc === NO_COUNTERS && this.unleasedSourceOk(rd32(b, ip + 12)))) { c.drop(D.rx_spoofed_inner_source); return; }
      this.deliver(b, ip, (b[ip + 2]! << 8) | b[ip + 3]!, pc);
    } else if (et === EtherType.IPv6 && this.subnet6 !== undefined) {
      const ip = e + ETH_HLEN;
      const why = rxIpv6Reason(b, ip, elen - ETH_HLEN);
      if (why !== 0) { c.drop(why); return; }
      if (b[ip + 6] === 58 && elen - ETH_HLEN > IPV6_HLEN && b[ip + IPV6_HLEN] === 135) {
        // a neighbour solicitation for our VTEP address: answered through the tunnel (the counterpart of ARP below)
        if (!isNeighborSolicitFor(b, ip, elen - ETH_HLEN, this.icmpSrc6, 0) || e + NEIGHBOR_ADVERT_FRAME_LEN > b.length) { c.drop(D.rx_ndp_not_for_us); return; }
        const rl = buildNeighborAdvert(b, e, this.vtepMac);
        emitVxlanPolicy(b, off, this.vni, this.gbp, this.gbpPolicy);
        this.replyToNetwork(b, off, VXLAN_HLEN + rl, s);
        c.ndpReplies++;
        return;
      }
      if (multicast || !this.subnet6.containsV6At(b, ip + 24)) { c.drop(D.rx_not_our_subnet); return; }
      if (this.strictSource && !this.sourceOk6(b, ip + 8, pc)) { c.drop(D.rx_spoofed_inner_source); return; }
      this.deliver(b, ip, IPV6_HLEN + rd16(b, ip + 4), pc);
    } else if (et === EtherType.ARP) {
      if (!this.ipv4) { c.drop(D.rx_no_ipv4_overlay); return; }
      if (!this.arpRequest(b, e, elen) || (this.arp.tpa | 0) !== this.vtepIpi) { c.drop(D.rx_arp_not_for_us); return; }
      const rl = buildArpReply(b, e, this.arp, this.vtepMac);
      emitVxlanPolicy(b, off, this.vni, this.gbp, this.gbpPolicy);
      this.replyToNetwork(b, off, VXLAN_HLEN + rl, s);
      c.arpReplies++;
    } else c.drop(D.rx_unsupported_ethertype);
  }

  /** ARP view, reused (the ARP paths are not hot, but allocate nothing either). */
  private readonly arp = new ArpPacket();

  /** True when the Ethernet frame `buf[off..off+len)` (ethertype ARP) carries an Ethernet/IPv4 ARP request; targets `this.arp` at it. */
  private arpRequest(buf: Buffer, off: number, len: number): boolean {
    return this.arp.check(buf, off + ETH_HLEN, len - ETH_HLEN) === 'ok' && this.arp.op === ArpOp.REQUEST;
  }

  /** A sender without a lease (learning) may send from the overlay network, not from our own subnet. */
  private unleasedSourceOk(src: number): boolean {
    return this.network.containsV4(src) && !this.subnet.containsV4(src);
  }

  /**
   * Inner IPv6 source at `b[o..)` must be inside an IPv6 subnet owned by the sender whose
   * counters are `pc` (the most specific IPv6 route to it is one of that sender's leases).
   */
  private sourceOk6(b: Buffer, o: number, pc: PeerCounters): boolean {
    const r = this.routes6.lookup(b, o);
    return r !== undefined && r.peer !== undefined && this.known.get(r.peer.ip) === pc;
  }

  /** Inner source (int32) must be inside a subnet owned by the sender of `s`. */
  private sourceOk(src: number, s: DatagramSlot): boolean {
    const subnets = this.senderSubnets.getFrom(s);
    if (subnets === undefined) return false;
    for (let i = 0; i < subnets.length; i++) if (subnets[i]!.containsV4(src)) return true;
    return false;
  }
}

/** The underlay family of a public IP option (the device name flannel-v6.<VNI> needs it before the core parses it). */
function vxlanFamily(publicIp: string): 4 | 6 {
  return typeof publicIp === 'string' && publicIp.includes(':') ? 6 : 4;
}

registerBackend('vxlan', { mtuOverhead: VXLAN_OVERHEAD, mtuOverheadV6: VXLAN_V6_OVERHEAD, defaultPort: VXLAN_PORT_LINUX, create: (c) => new VxlanBackend({ ...c, mode: 'l3' }) });
