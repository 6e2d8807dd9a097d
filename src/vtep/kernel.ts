/**
 * Kernel-side configuration of a dataplane's device: MTU, MAC, address, up, and the
 * per-peer routes flannel installs. Operations are queued and run in order, so the
 * synchronous addPeer/removePeer can schedule route changes and stop() can wait for them.
 *
 * The implementation is {@link RtnlNet} (src/tun's rtnetlink client); the library never
 * runs iproute2.
 */
import { writeFile } from 'node:fs/promises';
import { Rtnl } from '../tun/index.js';

/** What {@link KernelNet.configureDevice} sets on a dataplane's device. */
export interface DeviceConfig {
  mtu: number;
  cidr: string;
  mac?: string;
  gsoMaxSegs?: number;
}

/** What a dataplane needs from the kernel. */
export interface KernelNet {
  /**
   * Set MTU, optional MAC, add `cidr` as address and bring the link up. `gsoMaxSegs`: cap the
   * segments of the GSO packets the stack hands the device (best effort: a kernel that refuses
   * it keeps its default).
   */
  configureDevice(dev: string, opts: DeviceConfig): Promise<void>;
  /** `ip route replace <dst> via <via> dev <dev> onlink`. */
  replaceRoute(dst: string, via: string, dev: string): Promise<void>;
  /** Delete the route to `dst` on `dev` (ignored when missing). */
  deleteRoute(dst: string, dev: string): Promise<void>;
  /** Write a per-device IPv4 sysctl (net.ipv4.conf.<dev>.<key>); ignored when missing. */
  deviceSysctl(dev: string, key: string, value: string): Promise<void>;
  /** Wait for every queued operation. */
  flush(): Promise<void>;
}

/** KernelNet over src/tun's rtnetlink client (this process's namespace), operations serialized in call order. */
export class RtnlNet implements KernelNet {
  private chain: Promise<void> = Promise.resolve();
  private readonly rt: Rtnl;

  constructor(rt?: Rtnl) {
    this.rt = rt ?? Rtnl.shared();
  }

  private enqueue(fn: () => Promise<void>): Promise<void> {
    const p = this.chain.then(fn);
    // a failure rejects its own promise (the caller reports it) and never stops the queue
    this.chain = p.catch(() => undefined);
    return p;
  }

  configureDevice(dev: string, opts: DeviceConfig): Promise<void> {
    return this.enqueue(async () => {
      await this.rt.setLink(dev, opts.mac ? { mtu: opts.mtu, mac: opts.mac } : { mtu: opts.mtu });
      if (opts.gsoMaxSegs !== undefined) await this.rt.setLink(dev, { gsoMaxSegs: opts.gsoMaxSegs }).catch(() => undefined);
      await this.rt.addAddress(dev, opts.cidr, { replace: true });
      await this.rt.linkUp(dev);
    });
  }

  replaceRoute(dst: string, via: string, dev: string): Promise<void> {
    return this.enqueue(() => this.rt.replaceRoute({ dst, via, dev, onlink: true }));
  }

  deleteRoute(dst: string, dev: string): Promise<void> {
    return this.enqueue(() => this.rt.delRoute({ dst, dev }).catch(() => undefined));
  }

  deviceSysctl(dev: string, key: string, value: string): Promise<void> {
    return this.enqueue(() => writeFile(`/proc/sys/net/ipv4/conf/${dev}/${key}`, value).catch(() => undefined));
  }

  flush(): Promise<void> {
    return this.chain;
  }
}
