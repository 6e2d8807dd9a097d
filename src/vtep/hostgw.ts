/**
 * flannel's host-gw backend: no tunnel, no device, no socket. Each peer's subnet is routed
 * via the peer's public IP on the underlay interface (`<subnet> via <public IP> dev <underlay>`),
 * so the kernel forwards overlay packets as they are. IPv6 as flanneld's host-gw does it: an
 * IPv6-only host (IPv6 subnet, network and public IP) routes IPv6 leases the same way; a dual-stack
 * host (ipv6Subnet, ipv6Network, publicIpv6 beside the IPv4 ones) also routes each peer's
 * `<ipv6Subnet> via <PublicIPv6> dev <underlay>`. That only works when every peer is on
 * the underlay's L2 segment: a peer whose public IP is not directly connected on the underlay
 * interface is refused with a clear error (thrown by addPeer, counted in
 * stats().errors.rejectedPeers) and gets no route.
 *
 * Routes go through the same kernel queue as the tunnel backends' (src/vtep/kernel.ts:
 * pipelined rtnetlink); stop() removes every route this backend added.
 */
import type { Backend, DataplaneStats, Lease } from './backend.js';
import { AddrError, ipPrefix, parseIp, type IpPrefix } from '../codec/addr.js';
import { RtnlNet, type KernelNet } from './kernel.js';
import { registerBackend } from './registry.js';
import { isIpv6Cidr, SUBNET, SUBNET6 } from './core.js';
import { UnderlayView } from './underlay.js';

/** Options of the host-gw backend. */
export interface HostGwBackendOptions {
  /** This host's overlay subnet (its lease), CIDR: IPv4, or IPv6 for an IPv6-only host (then `network` and `publicIp` IPv6 too). */
  subnet: string;
  /** The whole overlay network, CIDR. */
  network: string;
  /** This host's public IP address (must be the underlay interface's own: host-gw cannot work behind NAT). */
  publicIp: string;
  /**
   * Dual stack (beside an IPv4 `subnet`): this host's IPv6 subnet and the IPv6 network, and its
   * IPv6 public address on the underlay interface (the lease's PublicIPv6). All three together.
   * Peers whose lease has an ipv6Subnet and a publicIpv6 then also get the route
   * `<IPv6 subnet> via <PublicIPv6> dev <underlay>`, as flanneld's host-gw installs for dual stack.
   */
  ipv6Subnet?: string;
  ipv6Network?: string;
  publicIpv6?: string;
  /** The underlay interface the peer routes go out of (flannel's external interface). */
  underlayIface: string;
  /** The address on the underlay interface (default: publicIp). Must equal publicIp. */
  bindAddress?: string;
  /** Kernel configuration backend; defaults to src/tun's rtnetlink client (RtnlNet). */
  kernel?: KernelNet;
  /** Failures outside start() (a route the kernel refused, a peer refused at start). Never per packet. */
  onError?: (e: Error) => void;
  /** Informational messages. */
  onLog?: (msg: string) => void;
}

/** One kernel route of a peer: `<dst> via <via> dev <underlay>`. */
interface GwRoute { dst: string; via: string }

interface GwPeer { lease: Lease; subnet: IpPrefix; routes: GwRoute[] }

/** An address option or lease field of family `family`, or throw one clear line. */
function address(s: string | undefined, family: 4 | 6, what: string): string {
  if (s === undefined || parseIp(s, { family }) instanceof AddrError) throw new Error(`host-gw: ${what} "${String(s)}" is not an IPv${family} address`);
  return s;
}

/** The host-gw backend. See the module comment. */
export class HostGwBackend implements Backend {
  readonly type = 'host-gw' as const;
  private readonly subnet: IpPrefix;
  /** The family of our lease's subnet: 6 for an IPv6-only host. */
  private readonly family: 4 | 6;
  /** Dual stack: our IPv6 subnet and the IPv6 network. */
  private readonly subnet6: IpPrefix | undefined;
  private readonly network6: IpPrefix | undefined;
  private readonly kernel: KernelNet;
  private readonly view = new UnderlayView();
  private readonly peersBySubnet = new Map<string, GwPeer>();
  /** Destinations whose route we asked the kernel for (removed again on removePeer and stop). */
  private readonly routed = new Set<string>();
  private running = false;
  private kernelErrors = 0;
  private lastKernel: string | undefined;
  private rejected = 0;
  private lastRejected: string | undefined;

  constructor(private readonly opts: HostGwBackendOptions) {
    this.family = isIpv6Cidr(opts.subnet) ? 6 : 4;
    const sub = this.family === 6 ? SUBNET6 : SUBNET;
    this.subnet = ipPrefix(opts.subnet, sub);
    const net = ipPrefix(opts.network, sub);
    if (!net.covers(this.subnet)) throw new Error(`host-gw: subnet ${this.subnet.toString()} is not inside network ${net.toString()}`);
    address(opts.publicIp, this.family, 'public IP');
    const dual = [opts.ipv6Subnet, opts.ipv6Network, opts.publicIpv6].filter((x) => x !== undefined).length;
    if (dual > 0 && (dual < 3 || this.family === 6)) {
      throw new Error(this.family === 6 ? 'host-gw: an IPv6-only host (IPv6 subnet) takes no ipv6Subnet/ipv6Network/publicIpv6'
        : 'host-gw: ipv6Subnet, ipv6Network and publicIpv6 go together (dual stack)');
    }
    if (dual === 3) {
      this.subnet6 = ipPrefix(opts.ipv6Subnet!, SUBNET6);
      this.network6 = ipPrefix(opts.ipv6Network!, SUBNET6);
      if (!this.network6.covers(this.subnet6)) throw new Error(`host-gw: ipv6Subnet ${this.subnet6.toString()} is not inside ipv6Network ${this.network6.toString()}`);
      address(opts.publicIpv6, 6, 'publicIpv6');
    }
    if (!opts.underlayIface) throw new Error('host-gw: the underlay interface is required');
    if (opts.bindAddress !== undefined && opts.bindAddress !== opts.publicIp) {
      throw new Error(`host-gw: the public IP ${opts.publicIp} differs from the interface's address ${opts.bindAddress} (behind NAT?), which host-gw cannot route to`);
    }
    this.kernel = opts.kernel ?? new RtnlNet();
  }

  /** Read the underlay's routes (the on-link decision), then route every peer added so far. */
  async start(): Promise<void> {
    await this.view.refresh(this.kernel);
    if (this.kernel.readRoutes && this.view.ifindex(this.opts.underlayIface) === undefined) {
      throw new Error(`host-gw: underlay interface "${this.opts.underlayIface}" does not exist`);
    }
    this.running = true;
    for (const p of [...this.peersBySubnet.values()]) {
      const why = this.offSegment(p);
      if (why !== undefined) {
        this.peersBySubnet.delete(p.subnet.toString());
        this.report(this.reject(why));
      } else this.route(p, []);
    }
    await this.kernel.flush();
  }

  /** Our lease: subnet and public IP, and in dual stack the IPv6 half (ipv6Subnet, publicIpv6). */
  localLease(): Lease {
    const l: Lease = { subnet: this.subnet.toString(), publicIp: this.opts.publicIp, backendType: 'host-gw' };
    if (this.subnet6 !== undefined) {
      l.ipv6Subnet = this.subnet6.toString();
      l.publicIpv6 = this.opts.publicIpv6!;
    }
    return l;
  }

  /**
   * Route `lease.subnet` via its public IP on the underlay (and in dual stack its ipv6Subnet via
   * its publicIpv6, when the lease has both). Throws (and counts) when a next hop is not directly
   * connected on the underlay interface; the peer is then not kept (a previous lease of the same
   * subnet is removed).
   */
  addPeer(lease: Lease): void {
    const p = this.peerOf(lease);
    if (p === undefined) return;
    const key = p.subnet.toString();
    const old = this.peersBySubnet.get(key);
    if (old !== undefined && sameRoutes(old.routes, p.routes)) {
      this.peersBySubnet.set(key, p);
      return;
    }
    if (this.running) {
      const why = this.offSegment(p);
      if (why !== undefined) {
        if (old !== undefined) this.removePeer(key);
        throw this.reject(why);
      }
    }
    this.peersBySubnet.set(key, p);
    if (this.running) this.route(p, old?.routes ?? []);
  }

  /** Remove the peer owning `subnet` and its routes (a subnet of the other family than ours: no-op). */
  removePeer(subnet: string): void {
    if (isIpv6Cidr(subnet) !== (this.family === 6)) return;
    const key = ipPrefix(subnet, this.family === 6 ? SUBNET6 : SUBNET).toString();
    const p = this.peersBySubnet.get(key);
    if (p === undefined) return;
    this.peersBySubnet.delete(key);
    for (const r of p.routes) this.unroute(r.dst);
  }

  /** Peers currently routed. */
  peers(): Lease[] {
    return [...this.peersBySubnet.values()].map((p) => ({ ...p.lease }));
  }

  settled(): Promise<void> {
    return this.kernel.flush();
  }

  stats(): DataplaneStats {
    const s: DataplaneStats = { txPackets: 0, txBytes: 0, rxPackets: 0, rxBytes: 0, drops: {}, peers: {}, errors: { kernel: this.kernelErrors, rejectedPeers: this.rejected } };
    if (this.lastKernel !== undefined) s.errors!.lastKernel = this.lastKernel;
    if (this.lastRejected !== undefined) s.errors!.lastRejectedPeer = this.lastRejected;
    return s;
  }

  /** Remove every route this backend added, then stop. Idempotent. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    for (const key of this.routed) this.kernel.deleteRoute(key, this.opts.underlayIface).catch(() => undefined);
    this.routed.clear();
    await this.kernel.flush().catch(() => undefined);
  }

  /** A lease as a peer with its routes (undefined: our own), or throw one clear line on a malformed one. */
  private peerOf(lease: Lease): GwPeer | undefined {
    if (isIpv6Cidr(lease.subnet) !== (this.family === 6)) {
      throw new Error(`host-gw: peer ${String(lease.subnet)}: an IPv${this.family === 6 ? 4 : 6} subnet, but this host's lease is IPv${this.family}`);
    }
    const subnet = ipPrefix(lease.subnet, this.family === 6 ? SUBNET6 : SUBNET);
    if (subnet.equals(this.subnet)) return undefined;
    const key = subnet.toString();
    const routes: GwRoute[] = [{ dst: key, via: address(lease.publicIp, this.family, `peer ${key}: public IP`) }];
    if (this.subnet6 !== undefined && lease.ipv6Subnet !== undefined && lease.publicIpv6 !== undefined) {
      const s6 = ipPrefix(lease.ipv6Subnet, SUBNET6);
      if (!this.network6!.covers(s6)) throw new Error(`host-gw: peer ${key}: ipv6Subnet ${s6.toString()} is not inside the IPv6 network ${this.network6!.toString()}`);
      if (!s6.equals(this.subnet6)) routes.push({ dst: s6.toString(), via: address(lease.publicIpv6, 6, `peer ${key}: publicIpv6`) });
    }
    return { lease: { ...lease, subnet: key }, subnet, routes };
  }

  /** Why a next hop of peer `p` cannot be a host-gw next hop (undefined: all can). */
  private offSegment(p: GwPeer): string | undefined {
    const dev = this.opts.underlayIface;
    const ix = this.view.ifindex(dev);
    for (const r of p.routes) {
      const path = this.view.pathTo(r.via);
      if (path.direct && path.oif === ix) continue;
      // the on-link prefixes of the next hop's family
      const onLink = ix === undefined ? [] : this.view.onLink(ix).filter((x) => isIpv6Cidr(x) === isIpv6Cidr(r.via));
      return `host-gw: peer ${r.dst} (public IP ${r.via}) is not on the L2 segment of ${dev}` +
        ` (on-link there: ${onLink.length ? onLink.join(', ') : 'nothing'}; the kernel reaches ${r.via} by ${path.via});` +
        ' host-gw needs every host on one segment (use vxlan with DirectRouting for mixed networks); peer skipped';
    }
    return undefined;
  }

  /** Count a refused peer; the error to throw or report. */
  private reject(why: string): Error {
    this.rejected++;
    this.lastRejected = why;
    return new Error(why);
  }

  /** Install `p`'s routes (those already in `had` unchanged are not sent again) and remove those of `had` it no longer has. */
  private route(p: GwPeer, had: GwRoute[]): void {
    for (const r of had) if (!p.routes.some((n) => n.dst === r.dst)) this.unroute(r.dst);
    for (const r of p.routes) {
      if (had.some((o) => o.dst === r.dst && o.via === r.via) && this.routed.has(r.dst)) continue;
      this.routed.add(r.dst);
      const what = `route ${r.dst} via ${r.via} dev ${this.opts.underlayIface}`;
      this.kernel.replaceRoute(r.dst, r.via, this.opts.underlayIface, { onlink: false }).catch((e: unknown) => {
        this.kernelErrors++;
        const err = new Error(`${what}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
        this.lastKernel = err.message;
        this.report(err);
      });
    }
  }

  /** Delete the route to `dst` when we installed it. */
  private unroute(dst: string): void {
    if (this.routed.delete(dst) && this.running) this.kernel.deleteRoute(dst, this.opts.underlayIface).catch(() => undefined);
  }

  private report(e: Error): void {
    try {
      this.opts.onError?.(e);
    } catch { /* a control plane's handler must not break the dataplane */ }
  }
}

/** True when both route lists are the same (in order). */
function sameRoutes(a: GwRoute[], b: GwRoute[]): boolean {
  return a.length === b.length && a.every((r, i) => r.dst === b[i]!.dst && r.via === b[i]!.via);
}

registerBackend('host-gw', {
  mtuOverhead: 0,
  defaultPort: 0,
  create: (c) => {
    if (c.underlayIface === undefined) throw new Error('host-gw: the underlay interface (underlayIface) is required');
    const o: HostGwBackendOptions = { subnet: c.subnet, network: c.network, publicIp: c.publicIp, underlayIface: c.underlayIface };
    if (c.ipv6Subnet !== undefined) o.ipv6Subnet = c.ipv6Subnet;
    if (c.ipv6Network !== undefined) o.ipv6Network = c.ipv6Network;
    if (c.publicIpv6 !== undefined) o.publicIpv6 = c.publicIpv6;
    if (c.bindAddress !== undefined) o.bindAddress = c.bindAddress;
    if (c.kernel !== undefined) o.kernel = c.kernel;
    if (c.onError !== undefined) o.onError = c.onError;
    if (c.onLog !== undefined) o.onLog = c.onLog;
    return new HostGwBackend(o);
  },
});
