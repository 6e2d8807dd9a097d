/**
 * Kernel-side configuration of a dataplane's device: MTU, MAC, address, up, and the
 * per-peer routes flannel installs. Operations are queued and run in order, so the
 * synchronous addPeer/removePeer can schedule route changes and stop() can wait for them.
 * Route changes are pipelined: each is handed to the netlink socket as soon as the ones before
 * it were, without waiting for their acknowledgements (the socket sends in order, several per
 * datagram, and the kernel applies them in order), so 10,000 routes cost a few round trips
 * instead of 10,000.
 *
 * The implementation is {@link RtnlNet} (src/tun's rtnetlink client); the library never
 * runs iproute2.
 */
import { writeFile } from 'node:fs/promises';
import { Rtnl, type RouteInfo } from '../tun/index.js';

/** What {@link KernelNet.configureDevice} sets on a dataplane's device. */
export interface DeviceConfig {
  mtu: number;
  /** The device's address: IPv4, or IPv6 on an IPv6-only device (flannel-v6.<VNI>: `<subnet address>/128`). */
  cidr: string;
  mac?: string;
  gsoMaxSegs?: number;
  /** An IPv6 address (inner IPv6) added beside `cidr` (without DAD); IPv6 then stays on. */
  cidr6?: string;
}

/** What a dataplane needs from the kernel. */
export interface KernelNet {
  /**
   * Set MTU, optional MAC, add `cidr` as address and bring the link up (an IPv4 `cidr`: with
   * IPv6 turned off on the link first, see `Rtnl.setIpv6`). `gsoMaxSegs`: cap the
   * segments of the GSO packets the stack hands the device (best effort: a kernel that refuses
   * it keeps its default).
   */
  configureDevice(dev: string, opts: DeviceConfig): Promise<void>;
  /**
   * `ip route replace <dst> via <via> dev <dev> onlink`; with `opts.onlink` false, without
   * `onlink` (the kernel then checks that `via` is reachable on `dev`, as for host-gw routes).
   */
  replaceRoute(dst: string, via: string, dev: string, opts?: { onlink?: boolean }): Promise<void>;
  /** Delete the route to `dst` on `dev` (ignored when missing). */
  deleteRoute(dst: string, dev: string): Promise<void>;
  /** Write a per-device IPv4 sysctl (net.ipv4.conf.<dev>.<key>); ignored when missing. */
  deviceSysctl(dev: string, key: string, value: string): Promise<void>;
  /** Set the interface alias of `dev` (IFLA_IFALIAS; the mark of a device a daemon owns). Optional. */
  setAlias?(dev: string, alias: string): Promise<void>;
  /** Wait for every queued operation. */
  flush(): Promise<void>;
  /**
   * The IPv4 and IPv6 routes of the main table and the ifindex of every link by name (to decide which
   * peers are on-link: src/vtep/underlay.ts). Optional: without it no peer counts as on-link.
   */
  readRoutes?(): Promise<{ routes: RouteInfo[]; links: Map<string, number> }>;
}

/**
 * Route changes in flight at once: their acknowledgements must fit the netlink socket's receive
 * buffer (about 200 KB by default, each ack taking about 1 KB of it), or the kernel drops them.
 */
const ROUTE_WINDOW = 128;

/** KernelNet over src/tun's rtnetlink client (this process's namespace), operations serialized in call order. */
export class RtnlNet implements KernelNet {
  /** Resolves when every operation queued so far has been started (routes) or finished (the others). */
  private chain: Promise<void> = Promise.resolve();
  /** Resolves when every operation queued so far has finished. */
  private tail: Promise<void> = Promise.resolve();
  private readonly rt: Rtnl;
  /** ifindex by device name, learned once per device (configureDevice refreshes it). */
  private readonly ifindex = new Map<string, number>();
  /** Completions of the last ROUTE_WINDOW route changes (ring): a change waits for the one issued ROUTE_WINDOW before it. */
  private readonly window: Promise<void>[] = new Array<Promise<void>>(ROUTE_WINDOW).fill(Promise.resolve());
  private issued = 0;

  constructor(rt?: Rtnl) {
    this.rt = rt ?? Rtnl.shared();
  }

  /** Run `fn` after everything queued before it has finished. */
  private enqueue(fn: () => Promise<void>): Promise<void> {
    const before = this.tail; // captured now: this.tail is this operation's own promise below
    const p = this.chain.then(() => before).then(fn);
    // a failure rejects its own promise (the caller reports it) and never stops the queue
    this.chain = p.catch(() => undefined);
    this.tail = this.chain;
    return p;
  }

  /**
   * Start route operation `op` once everything before it was started; the next one starts
   * right after, without waiting for this one's acknowledgement. Resolves with its outcome.
   */
  private pipeline(dev: string, op: (ifindex: number) => Promise<void>): Promise<void> {
    let done: Promise<void> = Promise.resolve();
    const slot = this.issued++ % ROUTE_WINDOW;
    const windowFree = this.window[slot]; // read now: the slot is this change's own below
    const started = this.chain.then(async () => {
      await windowFree;
      let ix = this.ifindex.get(dev);
      if (ix === undefined) {
        ix = await this.rt.linkIndex(dev);
        this.ifindex.set(dev, ix);
      }
      done = op(ix).catch((e: unknown) => {
        if ((e as { code?: string }).code === 'ENODEV') this.ifindex.delete(dev); // recreated: look it up again
        throw e;
      });
    });
    this.chain = started.catch(() => undefined);
    const finished = started.then(() => done);
    this.window[slot] = finished.then(() => undefined, () => undefined);
    const before = this.tail;
    this.tail = finished.then(() => before, () => before);
    return finished;
  }

  configureDevice(dev: string, opts: DeviceConfig): Promise<void> {
    return this.enqueue(async () => {
      this.ifindex.delete(dev);
      await this.rt.setLink(dev, opts.mac ? { mtu: opts.mtu, mac: opts.mac } : { mtu: opts.mtu });
      if (opts.gsoMaxSegs !== undefined) await this.rt.setLink(dev, { gsoMaxSegs: opts.gsoMaxSegs }).catch(() => undefined);
      // an IPv4-only device: IPv6 off before it goes up, or the kernel's own router
      // solicitations and MLD reports come back out of it as packets to drop (tx_not_ipv4)
      const v6only = opts.cidr.includes(':');
      if (!v6only && opts.cidr6 === undefined) await this.rt.setIpv6(dev, false);
      // inner IPv6: no link-local address (fewer router solicitations and MLD reports to drop as tx_ipv6_link_scope)
      else await this.rt.setLink(dev, { ipv6AddrGenMode: 'none' }).catch(() => undefined);
      // an IPv6 address without DAD: usable at once (the device is a point-to-point tunnel end)
      await this.rt.addAddress(dev, opts.cidr, v6only ? { replace: true, nodad: true } : { replace: true });
      if (opts.cidr6 !== undefined) await this.rt.addAddress(dev, opts.cidr6, { replace: true, nodad: true });
      await this.rt.linkUp(dev);
      this.ifindex.set(dev, await this.rt.linkIndex(dev));
    });
  }

  setAlias(dev: string, alias: string): Promise<void> {
    return this.enqueue(() => this.rt.setLink(dev, { alias }));
  }

  replaceRoute(dst: string, via: string, dev: string, opts?: { onlink?: boolean }): Promise<void> {
    const onlink = opts?.onlink ?? true;
    return this.pipeline(dev, (ix) => this.rt.replaceRoute({ dst, via, dev: ix, onlink }));
  }

  deleteRoute(dst: string, dev: string): Promise<void> {
    return this.pipeline(dev, (ix) => this.rt.delRoute({ dst, dev: ix })).catch(() => undefined);
  }

  deviceSysctl(dev: string, key: string, value: string): Promise<void> {
    return this.enqueue(() => writeFile(`/proc/sys/net/ipv4/conf/${dev}/${key}`, value).catch(() => undefined));
  }

  async readRoutes(): Promise<{ routes: RouteInfo[]; links: Map<string, number> }> {
    const [routes, links] = await Promise.all([this.rt.listRoutes(), this.rt.listLinks()]);
    return { routes, links: new Map(links.map((l) => [l.name, l.index])) };
  }

  flush(): Promise<void> {
    const tail = this.tail;
    return this.chain.then(() => tail);
  }
}
