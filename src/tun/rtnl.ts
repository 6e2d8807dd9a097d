/**
 * rtnetlink in TypeScript over the addon's raw NETLINK_ROUTE socket: links (MTU, up/down,
 * MAC, delete, vxlan create), IPv4/IPv6 addresses, routes (incl. `via GW onlink`),
 * neighbours and bridge FDB entries (`bridge fdb append MAC dev vx dst IP`). Never runs `ip`.
 *
 * This is the facade; the parts live in ./netlink/: message.ts (codec), socket.ts
 * (asynchronous seq-matched requests: nothing blocks the event loop), link.ts, addr.ts,
 * route.ts, neigh.ts (payloads and parsers per object kind), ip.ts (address literals).
 * The `...Sync` methods block the calling thread and are meant for start-up code only.
 */
import { writeFile } from 'node:fs/promises';
import { OsError } from './errors.js';
import { NLM_F_APPEND, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE, type NlMessage, type Parsed } from './netlink/message.js';
import { NlSocket, type NlSocketStats, type RequestOptions } from './netlink/socket.js';
import {
  RTM_DELLINK, RTM_GETLINK, RTM_NEWLINK, linkChangePayload, linkDumpPayload, linkRefPayload, parseLink, vxlanPayload,
  type LinkChange, type LinkInfo, type LinkRef, type VxlanSpec,
} from './netlink/link.js';
import { RTM_DELADDR, RTM_GETADDR, RTM_NEWADDR, addrDumpPayload, addrPayload, parseAddress, type AddressInfo } from './netlink/addr.js';
import {
  RTM_DELROUTE, RTM_GETROUTE, RTM_NEWROUTE, RT_TABLE_MAIN, parseRoute, routeDumpPayload, routeGetPayload, routePayload, routeWhat,
  type RouteInfo, type RouteSpec,
} from './netlink/route.js';
import {
  RTM_DELNEIGH, RTM_GETNEIGH, RTM_NEWNEIGH, fdbDumpPayload, fdbPayload, neighDumpPayload, neighPayload, parseFdb, parseNeigh,
  type FdbInfo, type FdbSpec, type NeighInfo, type NeighSpec,
} from './netlink/neigh.js';

export { ipToBytes, bytesToIp, macToBytes, bytesToMac } from './netlink/ip.js';
export { NUD, type NeighSpec, type NeighInfo, type FdbSpec, type FdbInfo } from './netlink/neigh.js';
export { RT_SCOPE, RTN, RT_TABLE_MAIN, type RouteSpec, type RouteInfo } from './netlink/route.js';
export type { LinkRef, LinkInfo, LinkChange, VxlanSpec, TunLinkInfo } from './netlink/link.js';
export type { AddressInfo } from './netlink/addr.js';
export type { NlSocketStats } from './netlink/socket.js';

const ENODEV = 19, EPROTO = 71;

/** Parse every message of `type` with `parse`; a malformed one rejects the whole reply (EPROTO). */
function collect<T>(msgs: NlMessage[], type: number, parse: (b: Buffer) => Parsed<T | null>, what: string): T[] {
  const out: T[] = [];
  for (const m of msgs) {
    if (m.type !== type) continue;
    const r = parse(m.body);
    if (!r.ok) throw new OsError(EPROTO, what, `malformed reply (${r.error.reason} at ${r.error.offset})`);
    if (r.value !== null) out.push(r.value);
  }
  return out;
}

/**
 * An rtnetlink client over one NETLINK_ROUTE socket in the caller's network namespace.
 * Every method rejects (or, for `...Sync`, throws) `OsError` (code = errno name) on a
 * kernel error; wrapped errors keep the original in `cause`. Any number of requests may be
 * in flight; each has its own timeout (`timeoutMs`).
 */
export class Rtnl {
  private static sharedInst: Rtnl | undefined;
  private closed = false;

  private constructor(private readonly sock: NlSocket) {}

  /** Open a new NETLINK_ROUTE socket. */
  static open(): Rtnl {
    return new Rtnl(NlSocket.open());
  }

  /** A process-wide shared client (opened on first use, closed on process exit). */
  static shared(): Rtnl {
    if (!Rtnl.sharedInst || Rtnl.sharedInst.closed) {
      const inst = Rtnl.open();
      Rtnl.sharedInst = inst;
      process.once('exit', () => inst.close());
    }
    return Rtnl.sharedInst;
  }

  /** Timeout for each kernel reply, ms (default 5000). A timeout rejects only that request. */
  get timeoutMs(): number { return this.sock.timeoutMs; }
  set timeoutMs(ms: number) { this.sock.timeoutMs = ms; }

  /** Request counters of the socket (requests, timeouts, unmatched and malformed replies). */
  get stats(): Readonly<NlSocketStats> { return this.sock.stats; }

  /** Requests waiting for their reply. */
  get inFlight(): number { return this.sock.inFlight; }

  /** Close the socket; pending requests reject with EBADF. Idempotent. */
  close(): void {
    this.closed = true;
    this.sock.close();
  }

  // --- transport helpers

  private ack(type: number, flags: number, payload: Buffer, what: string): Promise<void> {
    return this.sock.request(type, flags, payload, { what }).then(() => undefined);
  }

  private dump<T>(type: number, payload: Buffer, replyType: number, parse: (b: Buffer) => Parsed<T | null>, what: string): Promise<T[]> {
    return this.sock.request(type, 0, payload, { what, dump: true }).then((msgs) => collect(msgs, replyType, parse, what));
  }

  private dumpSync<T>(type: number, payload: Buffer, replyType: number, parse: (b: Buffer) => Parsed<T | null>, what: string): T[] {
    return collect(this.sock.requestSync(type, 0, payload, { what, dump: true }), replyType, parse, what);
  }

  // --- links

  private static linkReply(msgs: NlMessage[], what: string): LinkInfo {
    const links = collect(msgs, RTM_NEWLINK, parseLink, what);
    if (!links.length) throw new OsError(ENODEV, what, 'no RTM_NEWLINK in the reply');
    return links[0];
  }

  private static noDevice(e: unknown, ref: LinkRef, what: string): unknown {
    return e instanceof OsError && e.code === 'ENODEV' ? new OsError(ENODEV, what, `no such device '${ref}'`, { cause: e }) : e;
  }

  /** Look a link up by name or ifindex (ENODEV when missing). */
  async getLink(ref: LinkRef): Promise<LinkInfo> {
    const what = `RTM_GETLINK ${ref}`;
    const opts: RequestOptions = { what, reply: true };
    try {
      return Rtnl.linkReply(await this.sock.request(RTM_GETLINK, 0, linkRefPayload(ref), opts), what);
    } catch (e) {
      throw Rtnl.noDevice(e, ref, what);
    }
  }

  /** Synchronous variant of getLink (blocks the thread: start-up code only). */
  getLinkSync(ref: LinkRef): LinkInfo {
    const what = `RTM_GETLINK ${ref}`;
    try {
      return Rtnl.linkReply(this.sock.requestSync(RTM_GETLINK, 0, linkRefPayload(ref), { what, reply: true }), what);
    } catch (e) {
      throw Rtnl.noDevice(e, ref, what);
    }
  }

  private async index(ref: LinkRef): Promise<number> {
    return typeof ref === 'number' ? ref : (await this.getLink(ref)).index;
  }

  private indexSync(ref: LinkRef): number {
    return typeof ref === 'number' ? ref : this.getLinkSync(ref).index;
  }

  /** The ifindex of a link by name (ENODEV when missing). */
  linkIndex(ref: LinkRef): Promise<number> {
    return this.index(ref);
  }

  /** All links of this namespace. */
  listLinks(): Promise<LinkInfo[]> {
    return this.dump(RTM_GETLINK, linkDumpPayload(), RTM_NEWLINK, parseLink, 'RTM_GETLINK dump');
  }

  /** Synchronous variant of listLinks (configuration-time callers that cannot await). */
  listLinksSync(): LinkInfo[] {
    return this.dumpSync(RTM_GETLINK, linkDumpPayload(), RTM_NEWLINK, parseLink, 'RTM_GETLINK dump');
  }

  /** Change MTU, up/down state, MAC, txqlen and/or name of a link. */
  async setLink(ref: LinkRef, change: LinkChange): Promise<void> {
    const payload = linkChangePayload(await this.index(ref), change);
    await this.ack(RTM_NEWLINK, 0, payload, `RTM_NEWLINK ${ref}`);
  }

  /** Synchronous variant of setLink (blocks the thread: start-up code only). */
  setLinkSync(ref: LinkRef, change: LinkChange): void {
    this.sock.requestSync(RTM_NEWLINK, 0, linkChangePayload(this.indexSync(ref), change), { what: `RTM_NEWLINK ${ref}` });
  }

  /** Set a link's MTU. */
  setMtu(ref: LinkRef, mtu: number): Promise<void> { return this.setLink(ref, { mtu }); }
  /** Set a link's MAC address. */
  setMac(ref: LinkRef, mac: string): Promise<void> { return this.setLink(ref, { mac }); }
  /** Bring a link up. */
  linkUp(ref: LinkRef): Promise<void> { return this.setLink(ref, { up: true }); }
  /** Bring a link down. */
  linkDown(ref: LinkRef): Promise<void> { return this.setLink(ref, { up: false }); }

  /**
   * Turn IPv6 off on a link that carries IPv4 only, before it goes up: no link-local address
   * (addrgenmode none, through rtnetlink) and net.ipv6.conf.<dev>.disable_ipv6 = 1 (through
   * /proc/sys, which shows this process's namespace: the one the link lives in). Then the kernel
   * sends nothing IPv6 through it (router solicitations, MLD reports). `on: true` sets
   * disable_ipv6 back to 0 (addresses added then work; no link-local address is made). Best
   * effort: a kernel without IPv6, or a link whose MTU is under IPv6's 1280, has none to turn off.
   * Resolves with what took effect.
   */
  async setIpv6(ref: LinkRef, on: boolean): Promise<{ addrGenNone: boolean; disabled: boolean }> {
    const name = typeof ref === 'string' ? ref : (await this.getLink(ref)).name;
    let addrGenNone = false;
    if (!on) {
      try {
        await this.setLink(ref, { ipv6AddrGenMode: 'none' });
        addrGenNone = true;
      } catch { /* no IPv6 on this link or kernel */ }
    }
    let disabled = false;
    try {
      await writeFile(`/proc/sys/net/ipv6/conf/${name}/disable_ipv6`, on ? '0' : '1');
      disabled = !on;
    } catch { /* no such sysctl (no IPv6), or /proc/sys read-only */ }
    return { addrGenNone, disabled };
  }

  /** Delete a link. */
  deleteLink(ref: LinkRef): Promise<void> {
    return this.ack(RTM_DELLINK, 0, linkRefPayload(ref), `RTM_DELLINK ${ref}`);
  }

  /** Create a kernel VXLAN device (`ip link add NAME type vxlan id VNI dstport PORT local IP dev DEV nolearning`). */
  async addVxlan(spec: VxlanSpec): Promise<void> {
    const dev = spec.dev === undefined ? undefined : await this.index(spec.dev);
    await this.ack(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, vxlanPayload(spec, dev), `RTM_NEWLINK vxlan ${spec.name}`);
  }

  // --- addresses

  /** Add an address ('198.19.0.1/24', 'fd00::1/64') to a link. `replace`: no EEXIST; `nodad`: IPv6 usable at once. */
  async addAddress(ref: LinkRef, cidr: string, opts: { replace?: boolean; nodad?: boolean } = {}): Promise<void> {
    const payload = addrPayload(await this.index(ref), cidr, opts.nodad);
    await this.ack(RTM_NEWADDR, NLM_F_CREATE | (opts.replace ? NLM_F_REPLACE : NLM_F_EXCL), payload, `RTM_NEWADDR ${cidr} dev ${ref}`);
  }

  /** Delete an address from a link. */
  async delAddress(ref: LinkRef, cidr: string): Promise<void> {
    const payload = addrPayload(await this.index(ref), cidr);
    await this.ack(RTM_DELADDR, 0, payload, `RTM_DELADDR ${cidr} dev ${ref}`);
  }

  /** List addresses, optionally of one link and/or one family. */
  async listAddresses(ref?: LinkRef, family?: 4 | 6): Promise<AddressInfo[]> {
    const index = ref === undefined ? 0 : await this.index(ref);
    const all = await this.dump(RTM_GETADDR, addrDumpPayload(family), RTM_NEWADDR, parseAddress, 'RTM_GETADDR dump');
    return index ? all.filter((a) => a.index === index) : all;
  }

  /** Synchronous variant of listAddresses (configuration-time callers that cannot await). */
  listAddressesSync(ref?: LinkRef, family?: 4 | 6): AddressInfo[] {
    const index = ref === undefined ? 0 : this.indexSync(ref);
    const all = this.dumpSync(RTM_GETADDR, addrDumpPayload(family), RTM_NEWADDR, parseAddress, 'RTM_GETADDR dump');
    return index ? all.filter((a) => a.index === index) : all;
  }

  // --- routes

  /** A route request; with `dev` as an ifindex (or none) it is queued on the socket before this returns, so calls keep their order. */
  private routeMsg(type: number, flags: number, r: RouteSpec): Promise<void> {
    if (typeof r.dev === 'string') return this.index(r.dev).then((oif) => this.routeTo(type, flags, r, oif));
    return this.routeTo(type, flags, r, r.dev);
  }

  private routeTo(type: number, flags: number, r: RouteSpec, oif: number | undefined): Promise<void> {
    try {
      return this.ack(type, flags, routePayload(type, r, oif), routeWhat(type, r));
    } catch (e) {
      return Promise.reject(e instanceof Error ? e : new Error(String(e)));
    }
  }

  /** Add a route (EEXIST if present). */
  addRoute(r: RouteSpec): Promise<void> { return this.routeMsg(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, r); }
  /** Add or replace a route (`ip route replace`). */
  replaceRoute(r: RouteSpec): Promise<void> { return this.routeMsg(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, r); }
  /** Delete a route (ESRCH if missing). */
  delRoute(r: RouteSpec): Promise<void> { return this.routeMsg(RTM_DELROUTE, 0, r); }

  /**
   * The route the kernel would use to reach the address `dst` (`ip route get ADDR`): output
   * device (`oif`), gateway when there is one, preferred source (`prefsrc`). ENETUNREACH when
   * there is none.
   */
  async getRoute(dst: string): Promise<RouteInfo> {
    const what = `RTM_GETROUTE ${dst}`;
    return Rtnl.routeReply(await this.sock.request(RTM_GETROUTE, 0, routeGetPayload(dst), { what, reply: true }), what);
  }

  /** Synchronous variant of getRoute (blocks the thread: start-up code only). */
  getRouteSync(dst: string): RouteInfo {
    const what = `RTM_GETROUTE ${dst}`;
    return Rtnl.routeReply(this.sock.requestSync(RTM_GETROUTE, 0, routeGetPayload(dst), { what, reply: true }), what);
  }

  private static routeReply(msgs: NlMessage[], what: string): RouteInfo {
    const r = collect(msgs, RTM_NEWROUTE, parseRoute, what);
    if (!r.length) throw new OsError(EPROTO, what, 'no RTM_NEWROUTE in the reply');
    return r[0]!;
  }

  /** List routes of a table (default main), optionally one family. */
  async listRoutes(opts: { family?: 4 | 6; table?: number } = {}): Promise<RouteInfo[]> {
    const table = opts.table ?? RT_TABLE_MAIN;
    const out: RouteInfo[] = [];
    for (const fam of opts.family ? [opts.family] : [4, 6] as const) {
      const routes = await this.dump(RTM_GETROUTE, routeDumpPayload(fam), RTM_NEWROUTE, parseRoute, 'RTM_GETROUTE dump');
      for (const r of routes) if (r.table === table && r.family === fam) out.push(r);
    }
    return out;
  }

  // --- neighbours and FDB

  private async neighMsg(type: number, flags: number, n: NeighSpec): Promise<void> {
    const payload = neighPayload(n, await this.index(n.dev));
    await this.ack(type, flags, payload, `${type === RTM_NEWNEIGH ? 'RTM_NEWNEIGH' : 'RTM_DELNEIGH'} ${n.address} dev ${n.dev}`);
  }

  /** Add a neighbour (EEXIST if present). Default state PERMANENT. */
  addNeighbour(n: NeighSpec): Promise<void> { return this.neighMsg(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_EXCL, n); }
  /** Add or replace a neighbour (`ip neigh replace`). */
  replaceNeighbour(n: NeighSpec): Promise<void> { return this.neighMsg(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, n); }
  /** Delete a neighbour. */
  delNeighbour(n: NeighSpec): Promise<void> { return this.neighMsg(RTM_DELNEIGH, 0, n); }

  /** List IPv4/IPv6 neighbours, optionally of one link / family. */
  async listNeighbours(opts: { dev?: LinkRef; family?: 4 | 6 } = {}): Promise<NeighInfo[]> {
    const index = opts.dev === undefined ? 0 : await this.index(opts.dev);
    const all = await this.dump(RTM_GETNEIGH, neighDumpPayload(opts.family), RTM_NEWNEIGH, parseNeigh, 'RTM_GETNEIGH dump');
    return index ? all.filter((n) => n.index === index) : all;
  }

  private async fdbMsg(type: number, flags: number, f: FdbSpec): Promise<void> {
    const payload = fdbPayload(f, await this.index(f.dev));
    await this.ack(type, flags, payload, `${type === RTM_NEWNEIGH ? 'RTM_NEWNEIGH' : 'RTM_DELNEIGH'} fdb ${f.mac} dev ${f.dev}${f.dst ? ` dst ${f.dst}` : ''}`);
  }

  /** `bridge fdb append MAC dev DEV dst IP`: add one more remote for a MAC (flood lists use 00:00:00:00:00:00). */
  appendFdb(f: FdbSpec): Promise<void> { return this.fdbMsg(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_APPEND, f); }
  /** `bridge fdb add` (EEXIST if present). */
  addFdb(f: FdbSpec): Promise<void> { return this.fdbMsg(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_EXCL, f); }
  /** `bridge fdb replace`. */
  replaceFdb(f: FdbSpec): Promise<void> { return this.fdbMsg(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, f); }
  /** `bridge fdb del` (with `dst`: only that remote). */
  delFdb(f: FdbSpec): Promise<void> { return this.fdbMsg(RTM_DELNEIGH, 0, f); }

  /** List bridge FDB entries, optionally of one device. */
  async listFdb(dev?: LinkRef): Promise<FdbInfo[]> {
    const index = dev === undefined ? 0 : await this.index(dev);
    const all = await this.dump(RTM_GETNEIGH, fdbDumpPayload(), RTM_NEWNEIGH, parseFdb, 'RTM_GETNEIGH fdb dump');
    return index ? all.filter((f) => f.index === index) : all;
  }
}
export { NlMonitor, RTMGRP_LINK, RTMGRP_IPV4_IFADDR, type NlEvent, type MonitorGroups } from './netlink/monitor.js';
