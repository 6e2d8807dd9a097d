/**
 * Which peers a host reaches without a router: the decision behind the host-gw backend
 * (a peer must be on the underlay's segment) and VXLAN DirectRouting (a peer on it is
 * routed directly, without encapsulation).
 *
 * flannel asks the kernel (`ip route get <public IP>`) for every peer and calls it direct
 * when the answer has no gateway. We read the main routing table once (at start) and answer
 * the same question from it with a longest-prefix match, synchronously, so that a peer
 * change is decided where it is applied; {@link UnderlayView.refresh} reads the table again.
 */
import { AddrError, parseIp, parsePrefix, type IpPrefix } from '../codec/addr.js';
import type { RouteInfo } from '../tun/index.js';
import type { KernelNet } from './kernel.js';

/** RTN_UNICAST. */
const UNICAST = 1;

/** How a peer's public IP is reached. */
export interface UnderlayPath {
  /** Directly connected (the best route to it has no gateway): on our L2 segment. */
  direct: boolean;
  /** ifindex of the route's device (0: no route). */
  oif: number;
  /** The route that decided it, `ip route` style ("198.18.0.0/24 dev 2", "default via 198.18.0.254 dev 2"), or "no route". */
  via: string;
}

interface Row { dst: IpPrefix; gateway?: string; oif: number; metric: number; unicast: boolean }

/** A snapshot of the main routing table (IPv4 and IPv6), for on-link decisions. */
export class UnderlayView {
  private rows: Row[] = [];
  private links = new Map<string, number>();

  /** Read the table through `kernel` (a KernelNet without readRoutes leaves the view empty: nothing is direct). */
  async refresh(kernel: KernelNet): Promise<void> {
    if (!kernel.readRoutes) return;
    const { routes, links } = await kernel.readRoutes();
    this.load(routes, links);
  }

  /** Replace the snapshot (routes as src/tun's RouteInfo, links name -> ifindex). */
  load(routes: readonly RouteInfo[], links: ReadonlyMap<string, number>): void {
    const rows: Row[] = [];
    for (const r of routes) {
      if (r.family !== 4 && r.family !== 6) continue;
      const dst = parsePrefix(r.dst, { family: r.family });
      if (dst instanceof AddrError) continue;
      const row: Row = { dst, oif: r.oif ?? 0, metric: r.metric ?? 0, unicast: r.type === UNICAST };
      if (r.gateway !== undefined) row.gateway = r.gateway;
      rows.push(row);
    }
    // longest prefix first, then lowest metric: the first match is the kernel's choice
    rows.sort((a, b) => b.dst.len - a.dst.len || a.metric - b.metric);
    this.rows = rows;
    this.links = new Map(links);
  }

  /** ifindex of a link by name (undefined when it does not exist). */
  ifindex(name: string): number | undefined {
    return this.links.get(name);
  }

  /** Name of a link by ifindex (the number when unknown). */
  linkName(ix: number): string {
    for (const [n, i] of this.links) if (i === ix) return n;
    return String(ix);
  }

  /** How `ip` (IPv4 or IPv6) is reached: the best matching route of its family in the snapshot. */
  pathTo(ip: string): UnderlayPath {
    const a = parseIp(ip);
    if (a instanceof AddrError) return { direct: false, oif: 0, via: 'no route' };
    for (const r of this.rows) {
      if (!r.dst.contains(a)) continue;
      const via = `${r.dst.len === 0 ? 'default' : r.dst.toString()}${r.gateway ? ` via ${r.gateway}` : ''} dev ${this.linkName(r.oif)}`;
      return { direct: r.unicast && r.gateway === undefined && r.oif !== 0, oif: r.oif, via };
    }
    return { direct: false, oif: 0, via: 'no route' };
  }

  /** The directly connected prefixes on link `ix` ("198.18.0.0/24", "2001:2:0:1::/64"), for error messages. */
  onLink(ix: number): string[] {
    return this.rows.filter((r) => r.oif === ix && r.unicast && r.gateway === undefined).map((r) => r.dst.toString());
  }
}
