/**
 * Device ownership (issue #14): overlayd marks the device it creates with an interface alias
 * ("overlayd:vxlan:1", "overlayd:udp") and makes it persistent, so that a daemon that died
 * (SIGKILL, OOM) leaves the device, its address and routes in place: the kernel keeps the
 * routes and the next overlayd re-attaches to the device and forwards at once.
 *
 * At start, a device of the configured name that exists is
 *   - ours (our mark, the right kind, no process attached): adopted; after the peers are
 *     applied, its routes and addresses are reconciled with them (stale ones removed, missing
 *     ones added by the backend);
 *   - anything else (a kernel VXLAN flannel.1, another program's TUN, ours but held open by a
 *     running overlayd): refused with a one-line error naming what is in the way; nothing is
 *     touched.
 * At stop, {@link describeDevice} tells what the device carries, so the log can say exactly
 * what was removed (or kept, with --keep-device-on-exit).
 *
 * Read-only here except {@link reconcileAdopted}, which deletes only routes and addresses
 * on our own device.
 */
import { ipAddr, ipPrefix } from '../codec/addr.js';
import { Rtnl, type AddressInfo, type LinkInfo, type RouteInfo } from '../tun/rtnl.js';
import { OsError } from '../tun/errors.js';
import { ConfigError, type BackendType } from './config.js';

/** Every mark starts with this. */
export const OWNER_PREFIX = 'overlayd:';

/**
 * The alias overlayd puts on its device: "overlayd:vxlan:<VNI>", "overlayd:vxlan-v6:<VNI>" (the
 * IPv6 device of dual stack, `v6`) or "overlayd:udp".
 */
export function ownerMark(type: BackendType, vni: number, v6 = false): string {
  return type === 'vxlan' ? `${OWNER_PREFIX}vxlan${v6 ? '-v6' : ''}:${vni}` : `${OWNER_PREFIX}udp`;
}

/** The device name of a backend as flannel names it: flannel0 (udp), flannel.<VNI> (vxlan), flannel-v6.<VNI> (vxlan, `v6`). */
export function deviceNameFor(type: BackendType, vni: number, v6 = false): string {
  return type === 'vxlan' ? `flannel${v6 ? '-v6' : ''}.${vni}` : 'flannel0';
}

/**
 * One device overlayd runs: its name, mark, the address families it carries, and `v6`: it is
 * the IPv6 device of a dual-stack or IPv6-only VXLAN network (flannel-v6.<VNI>, BackendParams.ipv6).
 */
export interface OwnedDevice { name: string; mark: string; families: (4 | 6)[]; v6: boolean }

/**
 * The devices of a network (as flanneld makes them): vxlan flannel.<VNI> for IPv4 and
 * flannel-v6.<VNI> for IPv6 (either or both); udp one flannel0 carrying every enabled family;
 * host-gw none.
 */
export function devicesFor(type: BackendType, vni: number, ipv4: boolean, ipv6: boolean): OwnedDevice[] {
  if (type === 'host-gw') return [];
  if (type === 'udp') return [{ name: deviceNameFor(type, vni), mark: ownerMark(type, vni), families: [...(ipv4 ? [4 as const] : []), ...(ipv6 ? [6 as const] : [])], v6: false }];
  const out: OwnedDevice[] = [];
  if (ipv4) out.push({ name: deviceNameFor(type, vni), mark: ownerMark(type, vni), families: [4], v6: false });
  if (ipv6) out.push({ name: deviceNameFor(type, vni, true), mark: ownerMark(type, vni, true), families: [6], v6: true });
  return out;
}

/** What a device of our name is. */
export type DeviceVerdict =
  | { state: 'absent' }
  | { state: 'ours'; link: LinkInfo }
  | { state: 'refused'; link: LinkInfo; message: string };

/** A one-phrase description of a link for an error: "a kernel VXLAN device (VNI 1, UDP port 8472)". */
export function describeLink(l: LinkInfo): string {
  const alias = l.alias !== undefined ? `, alias "${l.alias}"` : '';
  if (l.kind === 'vxlan') {
    const v = l.vxlan ?? {};
    const parts = [v.vni !== undefined ? `VNI ${v.vni}` : '', v.port !== undefined ? `UDP port ${v.port}` : '', v.local ? `local ${v.local}` : ''].filter(Boolean);
    return `a kernel VXLAN device${parts.length ? ` (${parts.join(', ')}${alias})` : alias ? ` (${alias.slice(2)})` : ''}`;
  }
  if (l.kind === 'tun' && l.tun) {
    const t = l.tun;
    const held = t.queues > 0 ? `held open by ${t.queues === 1 ? 'a process' : `${t.queues} queues`}` : 'no process attached';
    return `a ${t.tap ? 'TAP' : 'TUN'} device (${t.persist ? 'persistent, ' : ''}${held}${t.owner !== undefined ? `, owner uid ${t.owner}` : ''}${alias})`;
  }
  if (l.kind === 'tun') return `a TUN/TAP device${alias ? ` (${alias.slice(2)})` : ''}`;
  return `${l.kind ? `a ${l.kind} device` : 'a device of no reported kind (physical?)'}${alias ? ` (${alias.slice(2)})` : ''}`;
}

/**
 * Classify the device `name` in this network namespace against our `mark` and device kind
 * (`tap`: TAP, else TUN). Synchronous (start-up code). Read-only.
 */
export function inspectDevice(name: string, mark: string, tap: boolean, rt: Rtnl = Rtnl.shared()): DeviceVerdict {
  let link: LinkInfo;
  try {
    link = rt.getLinkSync(name);
  } catch (e) {
    if (e instanceof OsError && e.code === 'ENODEV') return { state: 'absent' };
    throw e;
  }
  const what = describeLink(link);
  const refuse = (why: string): DeviceVerdict => ({ state: 'refused', link, message: `device ${name} already exists and ${why}: ${what}; nothing was changed` });
  if (link.alias === undefined || !link.alias.startsWith(OWNER_PREFIX)) {
    return refuse(`was not created by overlayd (no "${OWNER_PREFIX}" alias)`);
  }
  if (link.alias !== mark) return refuse(`was created by overlayd for another configuration (alias "${link.alias}", we would mark it "${mark}"); remove it if it is stale`);
  if (link.kind !== 'tun' || link.tun === undefined || link.tun.tap !== tap) return refuse(`carries overlayd's mark but is not a ${tap ? 'TAP' : 'TUN'} device`);
  if (link.tun.queues > 0) return refuse('is overlayd\'s but a process has it open (another overlayd running?)');
  return { state: 'ours', link };
}

/** What a device carries: its addresses and the routes through it (main table), of the families asked for. */
export interface DeviceState {
  link: LinkInfo;
  addresses: AddressInfo[];
  routes: RouteInfo[];
}

/**
 * The device `name` with its addresses and main-table routes of `families` (default IPv4;
 * IPv6 link-local addresses and routes left out); undefined when it does not exist.
 */
export async function describeDevice(name: string, rt: Rtnl = Rtnl.shared(), families: readonly (4 | 6)[] = [4]): Promise<DeviceState | undefined> {
  let link: LinkInfo;
  try {
    link = await rt.getLink(name);
  } catch (e) {
    if (e instanceof OsError && e.code === 'ENODEV') return undefined;
    throw e;
  }
  const out: DeviceState = { link, addresses: [], routes: [] };
  for (const f of families) {
    const [addresses, routes] = await Promise.all([rt.listAddresses(link.index, f), rt.listRoutes({ family: f })]);
    out.addresses.push(...addresses.filter((a) => !isLinkLocal(a.address)));
    out.routes.push(...routes.filter((r) => r.oif === link.index && !isLinkLocal(r.dst)));
  }
  return out;
}

/** fe80::/10 (an address or a prefix): the kernel's own on every IPv6 device. */
function isLinkLocal(a: string): boolean {
  return /^fe[89ab][0-9a-f]:/i.test(a);
}

/** "198.19.2.0/24 via 198.19.2.0 onlink" */
export function routeText(r: RouteInfo): string {
  return `${r.dst}${r.gateway ? ` via ${r.gateway}` : ''}${r.onlink ? ' onlink' : ''}`;
}

/** RTPROT_KERNEL: routes the kernel made itself (the connected route of an address). */
const RTPROT_KERNEL = 2;

/** What {@link reconcileAdopted} changed. */
export interface Reconciled {
  /** Routes kept (they matched a current peer). */
  kept: string[];
  /** Stale routes removed (no current peer). */
  removed: string[];
  /** Routes a current peer needed that the device did not have (added by the backend). */
  added: string[];
  /** Stale overlay addresses removed (not inside our subnet). */
  removedAddresses: string[];
}

/**
 * After an adopted device's peers are applied: remove the routes on it that no current peer
 * needs and the overlay addresses outside our subnet (left by an earlier lease). Only routes
 * overlayd makes are candidates (not the kernel's own; inside the overlay network); `before` is
 * the device's state at adoption, `peerSubnets` the subnets the backend routes through the
 * device now (empty for a backend without per-peer routes).
 */
export async function reconcileAdopted(before: DeviceState, peerSubnets: ReadonlySet<string>, own: { subnet: string; network: string },
  rt: Rtnl = Rtnl.shared()): Promise<Reconciled> {
  const net = ipPrefix(own.network);
  const mine = ipPrefix(own.subnet);
  const out: Reconciled = { kept: [], removed: [], added: [], removedAddresses: [] };
  const had = new Set<string>();
  for (const r of before.routes) {
    if (r.protocol === RTPROT_KERNEL || r.type !== 1) continue;
    let dst;
    try { dst = ipPrefix(r.dst); } catch { continue; }
    if (!net.covers(dst)) continue;
    had.add(r.dst);
    if (peerSubnets.has(r.dst)) { out.kept.push(r.dst); continue; }
    try {
      await rt.delRoute({ dst: r.dst, dev: before.link.index });
      out.removed.push(routeText(r));
    } catch (e) {
      if ((e as { code?: string }).code !== 'ESRCH') throw e;
    }
  }
  for (const s of peerSubnets) if (!had.has(s)) out.added.push(s);
  const now = await rt.listAddresses(before.link.index, net.addr.family);
  for (const a of now) {
    let p;
    try { p = ipAddr(a.address); } catch { continue; }
    if (mine.contains(p) || !net.contains(p)) continue;
    await rt.delAddress(before.link.index, a.cidr);
    out.removedAddresses.push(a.cidr);
  }
  return out;
}

/** At most this many items are listed in a log line; the rest are counted. */
const LIST_MAX = 10;

/** "a, b, c and 7 more" */
function listText(items: string[]): string {
  if (items.length <= LIST_MAX) return items.join(', ');
  return `${items.slice(0, LIST_MAX).join(', ')} and ${items.length - LIST_MAX} more`;
}

/** "address 198.19.1.0/32 and 2 routes (198.19.2.0/24 via 198.19.2.0 onlink, ...)" */
export function stateText(s: DeviceState): string {
  const a = s.addresses.map((x) => x.cidr);
  const r = s.routes.filter((x) => x.protocol !== RTPROT_KERNEL).map(routeText);
  const addr = a.length === 0 ? 'no address' : `address${a.length > 1 ? 'es' : ''} ${a.join(', ')}`;
  return `${addr} and ${r.length} route${r.length === 1 ? '' : 's'}${r.length ? ` (${listText(r)})` : ''}`;
}

/** One device of a {@link DeviceOwnership}, and what it carried at adoption. */
interface Owned extends OwnedDevice { adopted: DeviceState | undefined }

/** Our subnet and network for the device of `d` ({@link DeviceOwnership.reconcile}). */
export interface OwnNetworks { subnet: string; netConf: { network: string; ipv6?: { network: string } }; ipv6?: { subnet: string } }

/**
 * overlayd's side of device ownership for one run: the names and marks of our devices (one, or
 * two for dual-stack VXLAN: flannel.<VNI> and flannel-v6.<VNI>), the check at start
 * ({@link DeviceOwnership.check}), what to tell the backend, the reconciliation of an adopted
 * device, and the stop report.
 */
export class DeviceOwnership {
  private constructor(
    /** Our devices, with what each carried when adopted. */
    private readonly devs: Owned[],
    private readonly type: BackendType,
    private readonly rt: Rtnl,
  ) {}

  /** The device names (flannel0; flannel.<VNI>, flannel-v6.<VNI>). */
  get names(): string[] {
    return this.devs.map((d) => d.name);
  }

  /** The first device (flannel0, flannel.<VNI>; flannel-v6.<VNI> on an IPv6-only VXLAN network). */
  get name(): string {
    return this.devs[0]!.name;
  }

  /** Whether any device was there at start and is adopted. */
  get adopted(): boolean {
    return this.devs.some((d) => d.adopted !== undefined);
  }

  /**
   * Look at the devices the backend will use (`devices`: {@link devicesFor}). Absent: ours to
   * create. Ours (mark, kind, nobody attached): adopted. Anything else: a ConfigError naming what
   * is in the way (exit 2), for the first device in the way.
   */
  static async check(type: BackendType, devices: OwnedDevice[], rt: Rtnl = Rtnl.shared()): Promise<DeviceOwnership> {
    const out: Owned[] = [];
    for (const d of devices) {
      const v = inspectDevice(d.name, d.mark, false, rt);
      if (v.state === 'refused') throw new ConfigError(v.message);
      out.push({ ...d, adopted: v.state === 'ours' ? await describeDevice(d.name, rt, d.families) : undefined });
    }
    return new DeviceOwnership(out, type, rt);
  }

  /**
   * The supervisor's packet process (src/overlayd/supervisor.ts): the supervisor checked the devices
   * and holds them open. `adopt`: they existed before this process (left by an earlier overlayd, or by
   * the packet process before this one): reconcile them with the peers.
   */
  static async inherited(type: BackendType, devices: OwnedDevice[], adopt: boolean, rt: Rtnl = Rtnl.shared()): Promise<DeviceOwnership> {
    const out: Owned[] = [];
    for (const d of devices) out.push({ ...d, adopted: adopt ? await describeDevice(d.name, rt, d.families) : undefined });
    const o = new DeviceOwnership(out, type, rt);
    o.held = true;
    return o;
  }

  /** A supervisor holds the devices open (see {@link inherited}): they go when the supervisor closes them. */
  private held = false;

  /**
   * Backend parameters: our device names and marks (the backend marks each and makes it
   * persistent); the IPv6 VXLAN device's in `p.ipv6`.
   */
  prepare(p: { deviceName?: string; deviceAlias?: string; ipv6?: { deviceName?: string; deviceAlias?: string } }, say: (m: string) => void): void {
    for (const d of this.devs) {
      const to = d.v6 ? p.ipv6 : p;
      if (to === undefined) continue;
      to.deviceName = d.name;
      to.deviceAlias = d.mark;
      if (d.adopted) say(`adopting ${d.name} (ifindex ${d.adopted.link.index}, alias "${d.mark}", left by an earlier overlayd): ${stateText(d.adopted)}`);
    }
  }

  /**
   * After the first peer set is applied: an adopted device's routes and addresses brought in line
   * with it (stale removed, missing added by the backend), in one log line each. No-op when created.
   */
  async reconcile(peers: ReadonlyMap<string, { ipv6Subnet?: string }>, own: OwnNetworks, log: (m: string) => void): Promise<void> {
    for (const d of this.devs) {
      if (!d.adopted) continue;
      // the IPv6 device routes the peers' IPv6 halves inside IPv6Network (an IPv6-only network's leases are IPv6 already)
      const half = d.v6 && own.netConf.ipv6 !== undefined && own.ipv6 !== undefined && own.ipv6.subnet !== own.subnet;
      const subnets = new Set<string>();
      if (this.type === 'vxlan') for (const [s, l] of peers) { const x = half ? l.ipv6Subnet : s; if (x !== undefined) subnets.add(x); }
      const nets = half ? { subnet: own.ipv6!.subnet, network: own.netConf.ipv6!.network } : { subnet: own.subnet, network: own.netConf.network };
      const r = await reconcileAdopted(d.adopted, subnets, nets, this.rt);
      log(`adopted ${d.name}: ${r.kept.length} route${r.kept.length === 1 ? '' : 's'} kept, ${r.removed.length} stale removed${r.removed.length ? ` (${listText(r.removed)})` : ''}, ${r.added.length} missing added${r.added.length ? ` (${listText(r.added)})` : ''}${r.removedAddresses.length ? `, stale address${r.removedAddresses.length > 1 ? 'es' : ''} removed (${r.removedAddresses.join(', ')})` : ''}`);
    }
  }

  /** The devices now (for the stop report); an entry undefined when absent or unreadable. */
  async snapshot(): Promise<(DeviceState | undefined)[]> {
    const out: (DeviceState | undefined)[] = [];
    for (const d of this.devs) {
      try {
        out.push(await describeDevice(d.name, this.rt, d.families));
      } catch {
        out.push(undefined);
      }
    }
    return out;
  }

  /** Log what stop removed (each device is checked gone) or kept; `before`: {@link snapshot} before the stop. */
  async reportStop(before: (DeviceState | undefined)[], kept: boolean, log: (m: string) => void): Promise<void> {
    const after = kept || this.held ? [] : await this.snapshot();
    this.devs.forEach((d, i) => {
      const b = before[i];
      if (b === undefined) return;
      if (kept) {
        log(`kept device ${d.name} (persistent, alias "${d.mark}") with its ${stateText(b)} for the next start (--keep-device-on-exit)`);
      } else if (this.held || after[i] === undefined) {
        // held: its last descriptor is the supervisor's, which closes it right after this process exits and checks it went
        log(`removed device ${d.name} with its ${stateText(b)}`);
      } else {
        log(`device ${d.name} is still there after stop (ifindex ${after[i]!.link.index}): ${stateText(after[i]!)}`);
      }
    });
  }
}
