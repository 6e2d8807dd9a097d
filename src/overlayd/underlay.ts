/**
 * Underlay events (issue #14): overlayd watches its underlay interface's link state and IPv4
 * (or, for the IPv6 underlay of dual stack, `family` 6: IPv6) addresses over rtnetlink
 * (RTNLGRP_LINK, RTNLGRP_IPV4_IFADDR / RTNLGRP_IPV6_IFADDR) and
 *   - logs link down / up (with how long it was down);
 *   - when the address the socket is bound to goes away: binds the socket again to the
 *     interface's other (or new) IPv4 address and, unless --public-ip pinned it, advertises
 *     that address as our public IP from then on (etcd mode: our lease's PublicIP is rewritten,
 *     as flanneld would write it on a restart); with no address left, or a pinned --public-ip
 *     that is gone, overlayd reports not ready (/readyz and /healthz 503) until it is back;
 *   - counts all of it for /metrics (overlayd_underlay_*).
 * Events are handled one at a time, in order; a lost notification (receive queue overflow)
 * makes it read the interface again.
 */
import { NlMonitor, Rtnl, type NlEvent } from '../tun/rtnl.js';
import { OsError } from '../tun/errors.js';

/** An IPv6 link-local address (fe80::/10): never an underlay address. */
function isLinkLocal6(a: string): boolean {
  return /^fe[89ab][0-9a-f]:/i.test(a);
}

/** IFF_LOWER_UP: the link has carrier. */
const IFF_LOWER_UP = 0x10000;

/** What the underlay watch reports (for /metrics and the health endpoints). */
export interface UnderlayStatus {
  iface: string;
  /** Administratively up and with carrier. */
  linkUp: boolean;
  /** The socket is bound to an address the interface has. */
  addressPresent: boolean;
  /** The address the socket is bound to, and the one advertised to peers. */
  localIp: string;
  publicIp: string;
  /** Events so far: link_down, link_up, address_lost, address_changed, address_back, rebind_failed, resync. */
  events: Record<string, number>;
}

/** Options of {@link UnderlayWatch}. */
export interface UnderlayOptions {
  iface: string;
  localIp: string;
  publicIp: string;
  /** --public-ip was given: the advertised address is the operator's, never changed here. */
  pinned: boolean;
  /** The underlay family watched (default 4; 6: global IPv6 addresses, link-local ones ignored). */
  family?: 4 | 6;
  log: { info(m: string): void; error(m: string): void };
  /** Bind the dataplane's socket again to `localIp` and advertise `publicIp`. */
  rebind(localIp: string, publicIp: string): Promise<void>;
  /** Our advertised public IP changed (not pinned): tell the peers (the etcd lease). */
  publicIpChanged?(publicIp: string, was: string): Promise<void>;
  /** rtnetlink client for the state reads (default: the shared one). */
  rtnl?: Rtnl;
}

/** The underlay watch of one overlayd. */
export class UnderlayWatch {
  private monitor: NlMonitor | undefined;
  private ifindex = 0;
  private linkUp = true;
  private downSince = 0;
  private present = true;
  private localIp: string;
  private publicIp: string;
  private chain: Promise<void> = Promise.resolve();
  private closed = false;
  private readonly events: Record<string, number> = {};
  private readonly rt: Rtnl;

  private get family(): 4 | 6 {
    return this.o.family ?? 4;
  }

  constructor(private readonly o: UnderlayOptions) {
    this.localIp = o.localIp;
    this.publicIp = o.publicIp;
    this.rt = o.rtnl ?? Rtnl.shared();
  }

  /** Subscribe, then read the interface's state once. */
  async start(): Promise<void> {
    this.monitor = NlMonitor.open(this.family === 4 ? { link: true, ipv4Addr: true } : { link: true, ipv6Addr: true }, (ev) => this.enqueue(ev));
    const l = await this.rt.getLink(this.o.iface);
    this.ifindex = l.index;
    this.linkUp = l.up && (l.flags & IFF_LOWER_UP) !== 0;
    this.downSince = this.linkUp ? 0 : Date.now();
    await this.evaluate('start');
  }

  /** Stop watching. */
  close(): void {
    this.closed = true;
    this.monitor?.close();
    this.monitor = undefined;
  }

  /** Ready: the socket is bound to an address the interface has. */
  ready(): boolean {
    return this.present;
  }

  /** State and counters. */
  status(): UnderlayStatus {
    return { iface: this.o.iface, linkUp: this.linkUp, addressPresent: this.present, localIp: this.localIp, publicIp: this.publicIp, events: { ...this.events } };
  }

  /** Resolves when every event seen so far has been handled (tests). */
  idle(): Promise<void> {
    return this.chain;
  }

  private count(ev: string): void {
    this.events[ev] = (this.events[ev] ?? 0) + 1;
  }

  private enqueue(ev: NlEvent): void {
    this.chain = this.chain.then(() => this.handle(ev)).catch((e: unknown) => this.o.log.error(`underlay ${this.o.iface}: ${(e as Error).message}`));
  }

  private async handle(ev: NlEvent): Promise<void> {
    if (this.closed) return;
    if (ev.kind === 'overrun') {
      this.count('resync');
      this.o.log.error(`underlay ${this.o.iface}: netlink notifications lost (${ev.why}); reading the interface again`);
      try {
        const l = await this.rt.getLink(this.o.iface);
        this.ifindex = l.index;
        this.onLink(l.up && (l.flags & IFF_LOWER_UP) !== 0);
      } catch (e) {
        if (!(e instanceof OsError && e.code === 'ENODEV')) throw e;
        this.onLink(false);
      }
      await this.evaluate('resync');
      return;
    }
    if (ev.kind === 'link') {
      const l = ev.link;
      if (ev.op === 'new' && l.name === this.o.iface && l.index !== this.ifindex) {
        this.o.log.info(`underlay ${this.o.iface}: appeared again (ifindex ${l.index})`);
        this.ifindex = l.index;
      }
      if (l.index !== this.ifindex) return;
      if (ev.op === 'del') {
        this.o.log.error(`underlay ${this.o.iface}: the interface was removed`);
        this.onLink(false);
        await this.evaluate('interface removed');
        return;
      }
      this.onLink(l.up && (l.flags & IFF_LOWER_UP) !== 0);
      return;
    }
    const a = ev.addr;
    if (a.family !== this.family || a.index !== this.ifindex || isLinkLocal6(a.address)) return;
    if (ev.op === 'del' && a.address === this.localIp) {
      this.present = false;
      this.count('address_lost');
      this.o.log.error(`underlay ${this.o.iface}: address ${this.localIp} was removed; the socket bound to it can neither send nor receive`);
      await this.evaluate(`address ${a.address} removed`);
    } else if (ev.op === 'new' && !this.present) {
      await this.evaluate(`address ${a.address} added`);
    }
  }

  private onLink(up: boolean): void {
    if (up === this.linkUp) return;
    this.linkUp = up;
    if (up) {
      this.count('link_up');
      this.o.log.info(`underlay ${this.o.iface}: link up (down for ${((Date.now() - this.downSince) / 1000).toFixed(1)} s)`);
    } else {
      this.downSince = Date.now();
      this.count('link_down');
      this.o.log.error(`underlay ${this.o.iface}: link down (no carrier or administratively down); packets to peers are lost until it is up`);
    }
  }

  /** Compare the interface's addresses with our bound address; rebind or report not ready. */
  private async evaluate(why: string): Promise<void> {
    let addrs: string[];
    try {
      addrs = (await this.rt.listAddresses(this.ifindex, this.family)).map((x) => x.address).filter((x) => !isLinkLocal6(x));
    } catch (e) {
      if (!(e instanceof OsError && e.code === 'ENODEV')) throw e;
      addrs = [];
    }
    if (addrs.includes(this.localIp)) {
      if (!this.present) {
        // the same address is back: a socket bound to it works again, but bind anew to be sure
        await this.switchTo(this.localIp, this.publicIp, why);
      }
      return;
    }
    if (why === 'start') return; // pickInterface just saw it; a race with a removal shows up as an event
    const pinnedHere = this.o.pinned && this.publicIp === this.localIp;
    if (pinnedHere) {
      if (this.present) this.present = false;
      this.o.log.error(`underlay ${this.o.iface}: --public-ip ${this.publicIp} is not on the interface (${why}); not ready until it is back (peers send to it)`);
      return;
    }
    const next = addrs[0];
    if (next === undefined) {
      this.present = false;
      this.o.log.error(`underlay ${this.o.iface}: no IPv${this.family} address left (${why}); not ready until one is added`);
      return;
    }
    await this.switchTo(next, this.o.pinned ? this.publicIp : next, why);
  }

  private async switchTo(local: string, pub: string, why: string): Promise<void> {
    const wasLocal = this.localIp;
    const wasPub = this.publicIp;
    try {
      await this.o.rebind(local, pub);
    } catch (e) {
      this.present = false;
      this.count('rebind_failed');
      this.o.log.error(`underlay ${this.o.iface}: binding the socket to ${local} failed: ${(e as Error).message}; not ready`);
      return;
    }
    this.localIp = local;
    this.publicIp = pub;
    this.present = true;
    if (local === wasLocal) {
      this.count('address_back');
      this.o.log.info(`underlay ${this.o.iface}: address ${local} is back (${why}); socket bound to it again`);
      return;
    }
    this.count('address_changed');
    const pubText = pub === wasPub ? `public IP stays ${pub} (--public-ip)` : `public IP is now ${pub} (was ${wasPub}): peers must send to it`;
    this.o.log.info(`underlay ${this.o.iface}: address changed ${wasLocal} -> ${local} (${why}); socket bound to ${local}; ${pubText}`);
    if (pub !== wasPub) await this.o.publicIpChanged?.(pub, wasPub);
  }
}
