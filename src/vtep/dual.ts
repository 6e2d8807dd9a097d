/**
 * flannel's dual stack (net-conf EnableIPv4 + EnableIPv6) as one Backend: two backends of the
 * same type, one per family, as flanneld runs two VXLAN devices: `flannel.<VNI>` over the IPv4
 * underlay carrying inner IPv4, and `flannel-v6.<VNI>` over the IPv6 underlay carrying inner IPv6
 * (an IPv6-only backend: `subnet`/`network` IPv6, see TunnelCore.ipv4). A dual-stack lease
 * carries both halves (`subnet`/`publicIp`/`vni`/`vtepMac` and `ipv6Subnet`/`publicIpv6`/
 * `v6Vni`/`v6VtepMac`); {@link leaseHalves} cuts it into the lease each device knows.
 */
import type { Backend, BackendTypeName, DataplaneStats, Lease, StopOptions } from './backend.js';
import { ipPrefix } from '../codec/addr.js';
import { isIpv6Cidr, SUBNET, SUBNET6 } from './core.js';

/** The halves of a lease each device of a dual-stack host knows: v4 (flannel.<VNI>), v6 (flannel-v6.<VNI>). */
export function leaseHalves(l: Lease): { v4?: Lease; v6?: Lease } {
  if (isIpv6Cidr(l.subnet)) return { v6: l }; // an IPv6-only lease: its own fields are the IPv6 values
  const { ipv6Subnet, publicIpv6, v6Vni, v6VtepMac, ...v4 } = l;
  if (ipv6Subnet === undefined || publicIpv6 === undefined || (l.backendType === 'vxlan' && v6VtepMac === undefined)) return { v4 };
  const v6: Lease = { subnet: ipv6Subnet, publicIp: publicIpv6, backendType: l.backendType };
  const vni = v6Vni ?? l.vni;
  if (vni !== undefined) v6.vni = vni;
  if (v6VtepMac !== undefined) v6.vtepMac = v6VtepMac;
  return { v4, v6 };
}

/** A subnet as a map key: host bits cleared, either family (unparsable text stays as given: the backend reports it). */
function subnetKey(s: string): string {
  try {
    return ipPrefix(s, isIpv6Cidr(s) ? SUBNET6 : SUBNET).toString();
  } catch {
    return s;
  }
}

/** One error naming every failed half (the first as its cause), or nothing. */
function oneError(what: string, errs: [string, unknown][]): void {
  if (errs.length === 0) return;
  const msg = errs.map(([half, e]) => `${half}: ${e instanceof Error ? e.message : String(e)}`).join('; ');
  throw new Error(`${what}: ${msg}`, { cause: errs[0]![1] });
}

/** Add `src` into `dst` key by key. */
function addCounts(dst: Record<string, number>, src: Record<string, number> | undefined): void {
  if (src === undefined) return;
  for (const [k, n] of Object.entries(src)) dst[k] = (dst[k] ?? 0) + n;
}

/**
 * Two backends' stats as one: packets and bytes summed, drops by reason summed, peers merged by
 * public IP (a host on both underlays appears under each of its addresses), offload counters
 * summed, errors merged (the IPv6 backend's last message wins). Timing is not merged.
 */
export function mergeStats(a: DataplaneStats, b: DataplaneStats): DataplaneStats {
  const s: DataplaneStats = {
    txPackets: a.txPackets + b.txPackets, txBytes: a.txBytes + b.txBytes,
    rxPackets: a.rxPackets + b.rxPackets, rxBytes: a.rxBytes + b.rxBytes,
    drops: {}, peers: {},
  };
  addCounts(s.drops, a.drops);
  addCounts(s.drops, b.drops);
  for (const src of [a.peers, b.peers]) {
    for (const [ip, p] of Object.entries(src)) {
      const d = (s.peers[ip] ??= { txPackets: 0, txBytes: 0, rxPackets: 0, rxBytes: 0 });
      d.txPackets += p.txPackets;
      d.txBytes += p.txBytes;
      d.rxPackets += p.rxPackets;
      d.rxBytes += p.rxBytes;
    }
  }
  if (a.offload !== undefined || b.offload !== undefined) {
    const o = { ...(a.offload ?? b.offload!) };
    if (a.offload !== undefined && b.offload !== undefined) {
      for (const k of Object.keys(o) as (keyof typeof o)[]) o[k] = a.offload[k] + b.offload[k];
    }
    s.offload = o;
  }
  if (a.errors !== undefined || b.errors !== undefined) {
    const e: NonNullable<DataplaneStats['errors']> = { kernel: (a.errors?.kernel ?? 0) + (b.errors?.kernel ?? 0) };
    for (const x of [a.errors, b.errors]) {
      if (x === undefined) continue;
      if (x.lastKernel !== undefined) e.lastKernel = x.lastKernel;
      if (x.device !== undefined) addCounts((e.device ??= {}), x.device);
      if (x.send !== undefined) addCounts((e.send ??= {}), x.send);
      if (x.rejectedPeers !== undefined) e.rejectedPeers = (e.rejectedPeers ?? 0) + x.rejectedPeers;
      if (x.lastRejectedPeer !== undefined) e.lastRejectedPeer = x.lastRejectedPeer;
    }
    s.errors = e;
  }
  return s;
}

/**
 * One Backend made of two: the IPv4 one (flannel.<VNI>) and the IPv6 one (flannel-v6.<VNI>).
 *
 * Both must be of the same type; the IPv6 one is an IPv6-only backend (its `subnet`, `network`
 * and `publicIp` IPv6). Peers are split with {@link leaseHalves}: each backend gets its half, a
 * lease that loses its IPv6 half leaves the IPv6 backend, and a failing half never stops the
 * other from being applied (one error naming both is thrown after). {@link rebind} rebinds the
 * IPv4 underlay; the IPv6 underlay is rebound with {@link rebind6}.
 */
export class DualStackBackend implements Backend {
  /** The type of both backends. */
  readonly type: BackendTypeName;
  /** Each peer's IPv6 subnet on the IPv6 backend, by its lease key (its IPv4 subnet; an IPv6-only lease: its own). */
  private readonly v6Of = new Map<string, string>();

  /**
   * @param v4 the IPv4 backend (flannel.<VNI>: IPv4 subnet over the IPv4 underlay)
   * @param v6 the IPv6 backend (flannel-v6.<VNI>: IPv6-only, over the IPv6 underlay)
   */
  constructor(readonly v4: Backend, readonly v6: Backend) {
    if (v4.type !== v6.type) throw new Error(`dual stack: the IPv4 backend is ${v4.type} but the IPv6 one is ${v6.type} (both must be the same type)`);
    this.type = v4.type;
  }

  /** Start the IPv4 backend, then the IPv6 one; when the IPv6 one fails the IPv4 one is stopped again (nothing half set up) and its error rethrown. */
  async start(): Promise<void> {
    await this.v4.start();
    try {
      await this.v6.start();
    } catch (e) {
      await this.v4.stop().catch(() => undefined);
      throw e;
    }
  }

  /** The IPv4 backend's lease with the IPv6 backend's as its IPv6 half (ipv6Subnet, publicIpv6, v6Vni, v6VtepMac). */
  localLease(): Lease {
    const l = this.v4.localLease();
    const h = this.v6.localLease();
    l.ipv6Subnet = h.subnet;
    l.publicIpv6 = h.publicIp;
    if (h.vni !== undefined) l.v6Vni = h.vni;
    if (h.vtepMac !== undefined) l.v6VtepMac = h.vtepMac;
    return l;
  }

  /**
   * Each backend its half of `lease` ({@link leaseHalves}); a lease whose IPv6 half changed
   * subnet, or is gone, is removed from the IPv6 backend first. When a half fails the other is
   * still applied, then one error naming the failed half (or both) is thrown.
   */
  addPeer(lease: Lease): void {
    const h = leaseHalves(lease);
    const errs: [string, unknown][] = [];
    if (h.v4 !== undefined) {
      try { this.v4.addPeer(h.v4); } catch (e) { errs.push(['IPv4', e]); }
    }
    const key = subnetKey(lease.subnet);
    const was = this.v6Of.get(key);
    const now = h.v6 === undefined ? undefined : subnetKey(h.v6.subnet);
    if (was !== undefined && was !== now) {
      this.v6Of.delete(key);
      try { this.v6.removePeer(was); } catch (e) { errs.push(['IPv6', e]); }
    }
    if (h.v6 !== undefined) {
      try {
        this.v6.addPeer(h.v6);
        this.v6Of.set(key, now!);
      } catch (e) { errs.push(['IPv6', e]); }
    }
    oneError(`dual stack: lease ${lease.subnet}`, errs);
  }

  /** Remove the peer owning `subnet` (its lease key) from both backends. */
  removePeer(subnet: string): void {
    const key = subnetKey(subnet);
    const v6 = this.v6Of.get(key);
    this.v6Of.delete(key);
    const errs: [string, unknown][] = [];
    if (!isIpv6Cidr(subnet)) {
      try { this.v4.removePeer(subnet); } catch (e) { errs.push(['IPv4', e]); }
    }
    if (v6 !== undefined || isIpv6Cidr(subnet)) {
      try { this.v6.removePeer(v6 ?? subnet); } catch (e) { errs.push(['IPv6', e]); }
    }
    oneError(`dual stack: remove ${subnet}`, errs);
  }

  /** Both backends' queued kernel updates done. */
  async settled(): Promise<void> {
    await Promise.all([this.v4.settled?.(), this.v6.settled?.()]);
  }

  /**
   * The IPv4 underlay's address changed: the IPv4 backend's {@link Backend.rebind}. (The IPv6
   * underlay is rebound with {@link rebind6}.) Rejects when that backend cannot rebind.
   */
  rebind(bindAddress: string | undefined, publicIp: string): Promise<void> {
    if (this.v4.rebind === undefined) return Promise.reject(new Error(`dual stack: the IPv4 ${this.type} backend cannot rebind`));
    return this.v4.rebind(bindAddress, publicIp);
  }

  /** The IPv6 underlay's address changed: the IPv6 backend's {@link Backend.rebind} (`publicIp`: the new PublicIPv6). */
  rebind6(bindAddress: string | undefined, publicIp: string): Promise<void> {
    if (this.v6.rebind === undefined) return Promise.reject(new Error(`dual stack: the IPv6 ${this.type} backend cannot rebind`));
    return this.v6.rebind(bindAddress, publicIp);
  }

  /** Both backends' counters as one ({@link mergeStats}). */
  stats(): DataplaneStats {
    return mergeStats(this.v4.stats(), this.v6.stats());
  }

  /** Stop the IPv6 backend, then the IPv4 one (both, even when the first fails); one error names every failure. */
  async stop(opts?: StopOptions): Promise<void> {
    const errs: [string, unknown][] = [];
    await this.v6.stop(opts).catch((e: unknown) => { errs.push(['IPv6', e]); });
    await this.v4.stop(opts).catch((e: unknown) => { errs.push(['IPv4', e]); });
    oneError('dual stack: stop', errs);
  }
}
