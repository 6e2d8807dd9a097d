/**
 * flannel's VXLAN host model: each remote host (a subnet lease) is exactly
 *
 *   route:  <subnet> via <subnet network address> dev flannel.N onlink
 *   neigh:  <subnet network address> dev flannel.N lladdr <vtepMac> PERMANENT
 *   fdb:    <vtepMac> dev flannel.N dst <publicIp> self permanent
 *
 * ("1 route, 1 ARP entry and 1 FDB entry per remote host"). The host record is
 * the three entries themselves; nothing else is stored per host.
 */
import { RouteTable4, Route4 } from './route.js';
import { NeighbourTable } from './neigh.js';
import { Fdb, type FdbEntry } from './fdb.js';
import { ipv6Equal } from '../codec/addr.js';
import { parseCidr4, toU32, toV6, toUnicastMac, checkVni, checkPort, checkDev, u32ToIpv4, formatMac, formatIpv6 } from './internal.js';

/** A remote host, as in a flannel VXLAN lease. */
export interface HostSpec<P = unknown> {
  /** The host's overlay subnet, CIDR (host bits must be zero), e.g. "198.19.2.0/24". */
  subnet: string;
  /** The host's underlay address: dotted quad or uint32, or IPv6 (text or 16 bytes) for an IPv6 underlay. */
  publicIp: string | number | Uint8Array;
  /** The host's VTEP MAC, string or 48-bit number; must be unicast. */
  vtepMac: string | number;
  /** VNI to send to this host with; default the model's VNI. */
  vni?: number;
  /** UDP port of the host's VTEP; default 0 (the device's port). */
  port?: number;
  /** Value for the route's opaque `peer` slot, set together with the entries. */
  peer?: P;
}

/** A host as read back from the tables (JSON form). */
export interface HostJson {
  /** Overlay subnet CIDR. */
  subnet: string;
  /** Underlay address. */
  publicIp: string;
  /** VTEP MAC. */
  vtepMac: string;
  /** Wire VNI. */
  vni: number;
  /** UDP port, 0 = device default. */
  port: number;
}

/** What addHost() did. */
export type AddHostResult = 'added' | 'unchanged' | 'moved';

/** Options of a HostModel. */
export interface HostModelOptions<P = unknown> {
  /** The VXLAN device's VNI (FDB key VNI). Default 1. */
  vni?: number;
  /** Device name. Default `flannel.<vni>`. */
  dev?: string;
  /** Use these tables instead of fresh ones (they may hold other entries too). */
  routes?: RouteTable4<P>;
  /** Neighbour table to use. */
  neigh?: NeighbourTable;
  /** FDB to use. */
  fdb?: Fdb;
}

/** flannel's VXLAN host model over a route table, neighbour table and FDB. */
export class HostModel<P = unknown> {
  /** The route table. */
  readonly routes: RouteTable4<P>;
  /** The neighbour table. */
  readonly neigh: NeighbourTable;
  /** The FDB. */
  readonly fdb: Fdb;
  /** The device VNI. */
  readonly vni: number;
  /** The device name. */
  readonly dev: string;
  private count = 0;
  /** resolve()'s neighbour MAC. */
  private readonly macScratch = new Uint8Array(6);
  /** MAC -> number of hosts beyond the first sharing its FDB entry (rare: two subnets, one VTEP). */
  private readonly sharedMacs = new Map<number, number>();

  constructor(opts: HostModelOptions<P> = {}) {
    this.vni = checkVni(opts.vni ?? 1);
    this.dev = checkDev(opts.dev ?? `flannel.${this.vni}`);
    this.routes = opts.routes ?? new RouteTable4<P>();
    this.neigh = opts.neigh ?? new NeighbourTable();
    this.fdb = opts.fdb ?? new Fdb({ vni: this.vni, dev: this.dev });
  }

  /** Number of hosts. */
  get size(): number {
    return this.count;
  }

  /**
   * Add or update a host. Installs one route, one permanent neighbour and one
   * permanent FDB entry. Identical re-add: 'unchanged' (nothing touched except
   * `peer` when given). A subnet now owned by a different public IP / MAC / VNI /
   * port: 'moved', swapped in one synchronous step (all input and capacity
   * checks happen before the first write), the old host's FDB entry removed.
   * Throws on invalid input, leaving the tables untouched.
   */
  addHost(h: HostSpec<P>): AddHostResult {
    if (h === null || typeof h !== 'object') throw new Error(`invalid host ${String(h)}`);
    const { prefix, prefixLen } = parseCidr4(h.subnet);
    const v6 = h.publicIp instanceof Uint8Array || (typeof h.publicIp === 'string' && h.publicIp.includes(':'));
    const ip = v6 ? 0 : toU32(h.publicIp as string | number, 'public IP');
    const ip6 = v6 ? toV6(h.publicIp as string | Uint8Array, 'public IP') : null;
    const mac = toUnicastMac(h.vtepMac, 'VTEP');
    const wireVni = checkVni(h.vni ?? this.vni);
    const port = checkPort(h.port ?? 0);
    const gw = prefix;
    if (gw === 0) throw new Error(`invalid subnet "${h.subnet}": network address 0.0.0.0 cannot be a gateway`);

    const old = this.routes.getExact(prefix, prefixLen);
    const oldN = old ? this.neigh.get(gw) : undefined;
    const oldMac = oldN && oldN.state !== 'incomplete' && oldN.state !== 'failed' ? oldN.mac : -1;
    if (old && this.isOurs(old) && oldMac === mac) {
      const f = this.fdb.get(this.vni, mac);
      const d = f && f.dests.length === 1 ? f.dests[0]! : undefined;
      if (oldN!.state === 'permanent' && f && f.state === 'permanent' && d && sameDst(d, ip, ip6) && d.port === port && d.vni === wireVni) {
        if (h.peer !== undefined) old.peer = h.peer;
        return 'unchanged';
      }
    }
    // Capacity checks before any write.
    if (!this.neigh.has(gw) && this.neigh.size >= this.neigh.maxEntries) throw new Error(`neighbour table full: cannot add host ${h.subnet}`);
    const ours = old !== undefined && this.isOurs(old);
    const macChanges = !ours || oldMac !== mac;
    const oldShared = ours && oldMac >= 0 && macChanges && (this.sharedMacs.get(oldMac) ?? 0) > 0;
    const freesOld = ours && oldMac >= 0 && macChanges && !oldShared && this.fdb.has(this.vni, oldMac) ? 1 : 0;
    const newShared = macChanges && this.fdb.has(this.vni, mac);
    if (!newShared && this.fdb.size - freesOld >= this.fdb.maxEntries) throw new Error(`FDB full: cannot add host ${h.subnet}`);
    const route = this.routes.build({ dst: { prefix, prefixLen }, via: gw, onlink: true, dev: this.dev, peer: h.peer });

    // Writes: none of these can throw now.
    this.routes.put(route);
    this.neigh.replace({ ip: gw, lladdr: mac, dev: this.dev, state: 'permanent' });
    if (oldShared) this.unshare(oldMac);
    if (freesOld) this.fdb.delete(this.vni, oldMac);
    if (newShared) this.sharedMacs.set(mac, (this.sharedMacs.get(mac) ?? 0) + 1);
    this.fdb.replace({ mac, vni: this.vni, dev: this.dev, dst: ip6 ?? ip, port, dstVni: wireVni, state: 'permanent' });
    if (!ours) {
      this.count++;
      return 'added';
    }
    return 'moved';
  }

  /** Remove the host owning `subnet` (CIDR): its route, neighbour and FDB entry. False when unknown. */
  removeHost(subnet: string): boolean {
    const { prefix, prefixLen } = parseCidr4(subnet);
    const r = this.routes.getExact(prefix, prefixLen);
    if (!r || !this.isOurs(r)) return false;
    const n = this.neigh.get(r.gateway);
    this.routes.deleteExact(prefix, prefixLen);
    this.neigh.delete(r.gateway);
    if (n && n.state !== 'incomplete' && n.state !== 'failed') {
      if ((this.sharedMacs.get(n.mac) ?? 0) > 0) this.unshare(n.mac);
      else this.fdb.delete(this.vni, n.mac);
    }
    this.count--;
    return true;
  }

  /** The host owning `subnet`, read back from the tables. */
  getHost(subnet: string): HostJson | undefined {
    const { prefix, prefixLen } = parseCidr4(subnet);
    const r = this.routes.getExact(prefix, prefixLen);
    return r && this.isOurs(r) ? this.readHost(r) : undefined;
  }

  /**
   * Hot path: route -> neighbour -> FDB for an overlay destination (uint32).
   * Returns the FDB view (see Fdb.lookup) or undefined; misses fire the tables'
   * l3miss/l2miss events. Allocation-free.
   */
  resolve(dst: number): FdbEntry | undefined {
    const r = this.routes.lookup(dst);
    if (r === undefined || r._g === 0) return undefined;
    // the MAC travels as bytes, not as a 48-bit number: a number beyond the small-integer range
    // crossing a call V8 does not inline is boxed, one allocation per lookup in some runs
    const m = this.macScratch;
    if (!this.neigh.lookupMacInto(r._g | 0, m, 0)) return undefined;
    return this.fdb.lookupBytes(this.vni, m, 0);
  }

  /** All hosts, sorted by subnet. */
  hosts(): HostJson[] {
    const out: HostJson[] = [];
    for (const r of this.routes.list()) {
      if (!this.isOurs(r)) continue;
      const h = this.readHost(r);
      if (h) out.push(h);
    }
    return out;
  }

  /**
   * Invariant check (tests, debugging): every host has exactly its route, a
   * permanent neighbour for its gateway and a permanent FDB entry for that MAC.
   * Returns a list of problems (empty when consistent).
   */
  check(): string[] {
    const problems: string[] = [];
    let n = 0;
    for (const r of this.routes.list()) {
      if (!this.isOurs(r)) continue;
      n++;
      const ne = this.neigh.get(r.gateway);
      if (!ne || ne.state !== 'permanent') {
        problems.push(`${r.dst}: no permanent neighbour for ${u32ToIpv4(r.gateway)}`);
        continue;
      }
      const f = this.fdb.get(this.vni, ne.mac);
      if (!f || f.state !== 'permanent' || f.dests.length !== 1) problems.push(`${r.dst}: no single-destination permanent FDB entry for ${formatMac(ne.mac)}`);
    }
    if (n !== this.count) problems.push(`host count ${this.count} but ${n} host routes`);
    return problems;
  }

  /** The three tables in `ip route` / `ip neigh` / `bridge fdb show` shape. */
  show(): { route: string; neigh: string; fdb: string } {
    return { route: this.routes.show(), neigh: this.neigh.show(), fdb: this.fdb.show() };
  }

  /** JSON export of the hosts. */
  toJSON(): HostJson[] {
    return this.hosts();
  }

  /** Import hosts from JSON (addHost each). */
  importJSON(rows: readonly HostJson[]): void {
    for (const h of rows) this.addHost({ subnet: h.subnet, publicIp: h.publicIp, vtepMac: h.vtepMac, vni: h.vni, port: h.port });
  }

  private unshare(mac: number): void {
    const n = this.sharedMacs.get(mac) ?? 0;
    if (n <= 1) this.sharedMacs.delete(mac);
    else this.sharedMacs.set(mac, n - 1);
  }

  private isOurs(r: Route4<P>): boolean {
    return r.dev === this.dev && r.onlink && r._g === r._p && r.kind === 'unicast';
  }

  private readHost(r: Route4<P>): HostJson | undefined {
    const ne = this.neigh.get(r.gateway);
    if (!ne || ne.state === 'incomplete' || ne.state === 'failed') return undefined;
    const f = this.fdb.get(this.vni, ne.mac);
    const d = f?.dests[0];
    if (!d) return undefined;
    return { subnet: `${u32ToIpv4(r.prefix)}/${r.prefixLen}`, publicIp: d.family === 4 ? u32ToIpv4(d.ip) : formatIpv6(d.ip6!), vtepMac: formatMac(ne.mac), vni: d.vni, port: d.port };
  }
}

/** True when FDB destination `d` is the IPv4 `ip` (ip6 null) or the IPv6 `ip6`. */
function sameDst(d: { family: 4 | 6; ip: number; ip6: Uint8Array | null }, ip: number, ip6: Uint8Array | null): boolean {
  if (ip6 === null) return d.family === 4 && d.ip === ip;
  return d.family === 6 && d.ip6 !== null && ipv6Equal(d.ip6, 0, ip6, 0);
}
