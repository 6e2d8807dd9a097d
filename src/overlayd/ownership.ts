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

/** The alias overlayd puts on its device: "overlayd:vxlan:<VNI>" or "overlayd:udp". */
export function ownerMark(type: BackendType, vni: number): string {
  return type === 'vxlan' ? `${OWNER_PREFIX}vxlan:${vni}` : `${OWNER_PREFIX}udp`;
}

/** The device name of a backend as flannel names it: flannel0 (udp), flannel.<VNI> (vxlan). */
export function deviceNameFor(type: BackendType, vni: number): string {
  return type === 'vxlan' ? `flannel.${vni}` : 'flannel0';
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

/** What a device carries: its IPv4 addresses and the IPv4 routes through it (main table). */
export interface DeviceState {
  link: LinkInfo;
  addresses: AddressInfo[];
  routes: RouteInfo[];
}

/** The device `name` with its IPv4 addresses and main-table routes; undefined when it does not exist. */
export async function describeDevice(name: string, rt: Rtnl = Rtnl.shared()): Promise<DeviceState | undefined> {
  let link: LinkInfo;
  try {
    link = await rt.getLink(name);
  } catch (e) {
    if (e instanceof OsError && e.code === 'ENODEV') return undefined;
    throw e;
  }
  const [addresses, routes] = await Promise.all([rt.listAddresses(link.index, 4), rt.listRoutes({ family: 4 })]);
  return { link, addresses, routes: routes.filter((r) => r.oif === link.index) };
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
  const now = await rt.listAddresses(before.link.index, 4);
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

/**
 * overlayd's side of device ownership for one run: the name and mark of our device, the check
 * at start ({@link DeviceOwnership.check}), what to tell the backend, the reconciliation of an
 * adopted device, and the stop report.
 */
export class DeviceOwnership {
  private constructor(
    /** The device name (flannel0, flannel.<VNI>). */
    readonly name: string,
    /** Our alias on it. */
    readonly mark: string,
    private readonly type: BackendType,
    /** The device as found at start, when adopted. */
    readonly adopted: DeviceState | undefined,
    private readonly rt: Rtnl,
  ) {}

  /**
   * Look at the device the backend will use. Absent: ours to create. Ours (mark, kind, nobody
   * attached): adopted. Anything else: a ConfigError naming what is in the way (exit 2).
   */
  static async check(type: BackendType, vni: number, rt: Rtnl = Rtnl.shared()): Promise<DeviceOwnership> {
    const name = deviceNameFor(type, vni);
    const mark = ownerMark(type, vni);
    const v = inspectDevice(name, mark, false, rt);
    if (v.state === 'refused') throw new ConfigError(v.message);
    const adopted = v.state === 'ours' ? await describeDevice(name, rt) : undefined;
    return new DeviceOwnership(name, mark, type, adopted, rt);
  }

  /**
   * The supervisor's packet process (src/overlayd/supervisor.ts): the supervisor checked the device
   * and holds it open. `adopt`: it existed before this process (left by an earlier overlayd, or by
   * the packet process before this one): reconcile it with the peers.
   */
  static async inherited(type: BackendType, vni: number, adopt: boolean, rt: Rtnl = Rtnl.shared()): Promise<DeviceOwnership> {
    const name = deviceNameFor(type, vni);
    const o = new DeviceOwnership(name, ownerMark(type, vni), type, adopt ? await describeDevice(name, rt) : undefined, rt);
    o.held = true;
    return o;
  }

  /** A supervisor holds the device open (see {@link inherited}): it goes when the supervisor closes it. */
  private held = false;

  /** Backend parameters: our device name and mark (the backend marks it and makes it persistent). */
  prepare(p: { deviceName?: string; deviceAlias?: string }, say: (m: string) => void): void {
    p.deviceName = this.name;
    p.deviceAlias = this.mark;
    if (this.adopted) say(`adopting ${this.name} (ifindex ${this.adopted.link.index}, alias "${this.mark}", left by an earlier overlayd): ${stateText(this.adopted)}`);
  }

  /**
   * After the first peer set is applied: an adopted device's routes and addresses brought in line
   * with it (stale removed, missing added by the backend), in one log line. No-op when created.
   */
  async reconcile(peers: ReadonlyMap<string, unknown>, own: { subnet: string; netConf: { network: string } }, log: (m: string) => void): Promise<void> {
    if (!this.adopted) return;
    const subnets = new Set<string>(this.type === 'vxlan' ? peers.keys() : []);
    const r = await reconcileAdopted(this.adopted, subnets, { subnet: own.subnet, network: own.netConf.network }, this.rt);
    log(`adopted ${this.name}: ${r.kept.length} route${r.kept.length === 1 ? '' : 's'} kept, ${r.removed.length} stale removed${r.removed.length ? ` (${listText(r.removed)})` : ''}, ${r.added.length} missing added${r.added.length ? ` (${listText(r.added)})` : ''}${r.removedAddresses.length ? `, stale address${r.removedAddresses.length > 1 ? 'es' : ''} removed (${r.removedAddresses.join(', ')})` : ''}`);
  }

  /** The device now (for the stop report); undefined when absent or unreadable. */
  async snapshot(): Promise<DeviceState | undefined> {
    try {
      return await describeDevice(this.name, this.rt);
    } catch {
      return undefined;
    }
  }

  /** Log what stop removed (the device is checked gone) or kept. */
  async reportStop(before: DeviceState, kept: boolean, log: (m: string) => void): Promise<void> {
    if (kept) {
      log(`kept device ${this.name} (persistent, alias "${this.mark}") with its ${stateText(before)} for the next start (--keep-device-on-exit)`);
      return;
    }
    if (this.held) {
      // its last descriptor is the supervisor's, which closes it right after this process exits and checks it went
      log(`removed device ${this.name} with its ${stateText(before)}`);
      return;
    }
    const after = await this.snapshot();
    if (after === undefined) log(`removed device ${this.name} with its ${stateText(before)}`);
    else log(`device ${this.name} is still there after stop (ifindex ${after.link.index}): ${stateText(after)}`);
  }
}
