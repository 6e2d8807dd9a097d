/**
 * flannel's host-gw backend: no tunnel, no device, no socket. Each peer's subnet is routed
 * via the peer's public IP on the underlay interface (`<subnet> via <public IP> dev <underlay>`),
 * so the kernel forwards overlay packets as they are. That only works when every peer is on
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
import { SUBNET } from './core.js';
import { UnderlayView } from './underlay.js';

/** Options of the host-gw backend. */
export interface HostGwBackendOptions {
  /** This host's overlay subnet (its lease), CIDR. */
  subnet: string;
  /** The whole overlay network, CIDR. */
  network: string;
  /** This host's public IPv4 address (must be the underlay interface's own: host-gw cannot work behind NAT). */
  publicIp: string;
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

interface GwPeer { lease: Lease; subnet: IpPrefix }

/** The host-gw backend. See the module comment. */
export class HostGwBackend implements Backend {
  readonly type = 'host-gw' as const;
  private readonly subnet: IpPrefix;
  private readonly kernel: KernelNet;
  private readonly view = new UnderlayView();
  private readonly peersBySubnet = new Map<string, GwPeer>();
  /** Subnets whose route we asked the kernel for (removed again on removePeer and stop). */
  private readonly routed = new Set<string>();
  private running = false;
  private kernelErrors = 0;
  private lastKernel: string | undefined;
  private rejected = 0;
  private lastRejected: string | undefined;

  constructor(private readonly opts: HostGwBackendOptions) {
    this.subnet = ipPrefix(opts.subnet, SUBNET);
    ipPrefix(opts.network, SUBNET);
    if (parseIp(opts.publicIp, { family: 4 }) instanceof AddrError) throw new Error(`host-gw: public IP "${opts.publicIp}" is not an IPv4 address`);
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
      const why = this.offSegment(p.lease);
      if (why !== undefined) {
        this.peersBySubnet.delete(p.subnet.toString());
        this.report(this.reject(why));
      } else this.route(p);
    }
    await this.kernel.flush();
  }

  localLease(): Lease {
    return { subnet: this.subnet.toString(), publicIp: this.opts.publicIp, backendType: 'host-gw' };
  }

  /**
   * Route `lease.subnet` via its public IP on the underlay. Throws (and counts) when the public
   * IP is not directly connected on the underlay interface; the peer is then not kept (a
   * previous lease of the same subnet is removed).
   */
  addPeer(lease: Lease): void {
    const subnet = ipPrefix(lease.subnet, SUBNET);
    if (subnet.equals(this.subnet)) return;
    const key = subnet.toString();
    if (parseIp(lease.publicIp, { family: 4 }) instanceof AddrError) throw new Error(`host-gw: peer ${key}: public IP "${lease.publicIp}" is not an IPv4 address`);
    const old = this.peersBySubnet.get(key);
    if (old !== undefined && old.lease.publicIp === lease.publicIp) {
      this.peersBySubnet.set(key, { lease: { ...lease, subnet: key }, subnet });
      return;
    }
    if (this.running) {
      const why = this.offSegment(lease);
      if (why !== undefined) {
        if (old !== undefined) this.removePeer(key);
        throw this.reject(why);
      }
    }
    const p = { lease: { ...lease, subnet: key }, subnet };
    this.peersBySubnet.set(key, p);
    if (this.running) this.route(p);
  }

  removePeer(subnet: string): void {
    const key = ipPrefix(subnet, SUBNET).toString();
    if (!this.peersBySubnet.delete(key)) return;
    if (this.routed.delete(key) && this.running) this.kernel.deleteRoute(key, this.opts.underlayIface).catch(() => undefined);
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

  /** Why `lease`'s public IP cannot be a host-gw next hop (undefined: it can). */
  private offSegment(lease: Lease): string | undefined {
    const dev = this.opts.underlayIface;
    const ix = this.view.ifindex(dev);
    const path = this.view.pathTo(lease.publicIp);
    if (path.direct && path.oif === ix) return undefined;
    const onLink = ix === undefined ? [] : this.view.onLink(ix);
    return `host-gw: peer ${lease.subnet} (public IP ${lease.publicIp}) is not on the L2 segment of ${dev}` +
      ` (on-link there: ${onLink.length ? onLink.join(', ') : 'nothing'}; the kernel reaches ${lease.publicIp} by ${path.via});` +
      ' host-gw needs every host on one segment (use vxlan with DirectRouting for mixed networks); peer skipped';
  }

  /** Count a refused peer; the error to throw or report. */
  private reject(why: string): Error {
    this.rejected++;
    this.lastRejected = why;
    return new Error(why);
  }

  private route(p: GwPeer): void {
    const key = p.subnet.toString();
    this.routed.add(key);
    const what = `route ${key} via ${p.lease.publicIp} dev ${this.opts.underlayIface}`;
    this.kernel.replaceRoute(key, p.lease.publicIp, this.opts.underlayIface, { onlink: false }).catch((e: unknown) => {
      this.kernelErrors++;
      const err = new Error(`${what}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
      this.lastKernel = err.message;
      this.report(err);
    });
  }

  private report(e: Error): void {
    try {
      this.opts.onError?.(e);
    } catch { /* a control plane's handler must not break the dataplane */ }
  }
}

registerBackend('host-gw', {
  mtuOverhead: 0,
  defaultPort: 0,
  create: (c) => {
    if (c.underlayIface === undefined) throw new Error('host-gw: the underlay interface (underlayIface) is required');
    const o: HostGwBackendOptions = { subnet: c.subnet, network: c.network, publicIp: c.publicIp, underlayIface: c.underlayIface };
    if (c.bindAddress !== undefined) o.bindAddress = c.bindAddress;
    if (c.kernel !== undefined) o.kernel = c.kernel;
    if (c.onError !== undefined) o.onError = c.onError;
    if (c.onLog !== undefined) o.onLog = c.onLog;
    return new HostGwBackend(o);
  },
});
