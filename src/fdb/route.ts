/**
 * Route tables (IPv4 and IPv6) with longest-prefix match.
 *
 * Layout: one open-addressing hash (typed arrays) per prefix length actually
 * present, probed longest first. Flannel tables have one or two lengths (/24 per
 * host, maybe /32 and a default), so a lookup is one or two hash probes and
 * allocates nothing. Routes are small immutable objects held in a dense array.
 */
import {
  WordsMap, Slots, MASK4, h32,
  toU32, toV6, parseCidr4, parseCidr6, checkPrefix4, checkHostBits6, checkDev, u32ToIpv4, formatIpv6,
} from './internal.js';

/** What a route does with matching packets: forward (`unicast`) or deliver locally (`local`, as in `ip route add local`). */
export type RouteKind = 'unicast' | 'local';

/** An IPv4 route. Immutable except for the opaque `peer` slot. */
export class Route4<P = unknown> {
  /** @internal int32 form of prefix. */
  readonly _p: number;
  /** @internal int32 form of gateway. */
  readonly _g: number;
  /** @internal bit 0 onlink, bit 1 local. */
  readonly _f: number;
  /** Prefix length 0..32. */
  readonly prefixLen: number;
  /** Output device name (e.g. "flannel.1"). */
  readonly dev: string;
  /** Opaque per-route slot for the dataplane's per-host state (not printed or serialized). */
  peer: P | undefined;

  /** @internal use RouteTable4.add/replace. */
  constructor(prefix: number, prefixLen: number, gateway: number, onlink: boolean, local: boolean, dev: string, peer: P | undefined) {
    this._p = prefix | 0;
    this._g = gateway | 0;
    this._f = (onlink ? 1 : 0) | (local ? 2 : 0);
    this.prefixLen = prefixLen;
    this.dev = dev;
    this.peer = peer;
  }
  /** Network address as uint32. */
  get prefix(): number {
    return this._p >>> 0;
  }
  /** Next hop as uint32, 0 when the route has none (directly connected or local). */
  get gateway(): number {
    return this._g >>> 0;
  }
  /** `onlink`: the gateway is reachable on `dev` without a covering connected route (flannel's VXLAN routes). */
  get onlink(): boolean {
    return (this._f & 1) !== 0;
  }
  /** Route kind. */
  get kind(): RouteKind {
    return (this._f & 2) !== 0 ? 'local' : 'unicast';
  }
  /** Destination as printed by ip-route: "default", "a.b.c.d" for /32, else "a.b.c.d/len". */
  get dst(): string {
    if (this.prefixLen === 0) return 'default';
    return this.prefixLen === 32 ? u32ToIpv4(this.prefix) : `${u32ToIpv4(this.prefix)}/${this.prefixLen}`;
  }
  /** One line in the shape of `ip route show` (trailing space trimmed). */
  toString(): string {
    if (this.kind === 'local') return `local ${this.dst} dev ${this.dev} scope host`;
    if (this._g === 0) return `${this.dst} dev ${this.dev} scope link`;
    return `${this.dst} via ${u32ToIpv4(this.gateway)} dev ${this.dev}${this.onlink ? ' onlink' : ''}`;
  }
  /** JSON form (peer omitted). */
  toJSON(): RouteJson {
    const j: RouteJson = { dst: this.dst, dev: this.dev };
    if (this._g !== 0) j.via = u32ToIpv4(this.gateway);
    if (this.onlink) j.onlink = true;
    if (this.kind === 'local') j.kind = 'local';
    return j;
  }
}

/** JSON form of a route (IPv4 or IPv6), as produced by `toJSON()` and accepted by `importJSON()`. */
export interface RouteJson {
  /** "default", an address, or "addr/len". */
  dst: string;
  /** Gateway address, if any. */
  via?: string;
  /** Output device. */
  dev: string;
  /** Gateway is on-link. */
  onlink?: boolean;
  /** Route kind; absent means unicast. */
  kind?: RouteKind;
}

/** Input for RouteTable4.add/replace (`ip route add <dst> [via <gw>] dev <dev> [onlink]`). */
export interface RouteInput4<P = unknown> {
  /** "a.b.c.d/len", "a.b.c.d" (= /32), "default", or numeric {prefix (uint32), prefixLen}. Host bits must be zero. */
  dst: string | { prefix: number; prefixLen: number };
  /** Next hop: dotted quad or uint32. Omit for a directly connected (scope link) route. */
  via?: string | number;
  /** Mark the gateway on-link. */
  onlink?: boolean;
  /** Output device. */
  dev: string;
  /** Default 'unicast'. A 'local' route takes no `via`. */
  kind?: RouteKind;
  /** Initial value of the route's `peer` slot. */
  peer?: P;
}

/**
 * Open-addressing hash of IPv4 routes of one prefix length, keyed by the int32
 * prefix stored in the route itself: a hit touches the slot and the route only.
 */
class PrefixHash4<P> {
  private a: (Route4<P> | undefined)[];
  private mask: number;
  private shift: number;
  size = 0;

  constructor() {
    this.a = new Array<Route4<P> | undefined>(16).fill(undefined);
    this.mask = 15;
    this.shift = 28;
  }

  get(k: number): Route4<P> | undefined {
    const a = this.a;
    const mask = this.mask;
    let i = h32(k, this.shift);
    for (;;) {
      const r = a[i];
      if (r === undefined || r._p === k) return r;
      i = (i + 1) & mask;
    }
  }

  /** Insert or replace; returns the replaced route. */
  set(route: Route4<P>): Route4<P> | undefined {
    if ((this.size + 1) * 10 > (this.mask + 1) * 7) this.grow();
    const a = this.a;
    const k = route._p;
    let i = h32(k, this.shift);
    for (;;) {
      const r = a[i];
      if (r === undefined) {
        a[i] = route;
        this.size++;
        return undefined;
      }
      if (r._p === k) {
        a[i] = route;
        return r;
      }
      i = (i + 1) & this.mask;
    }
  }

  delete(k: number): Route4<P> | undefined {
    const a = this.a;
    const mask = this.mask;
    let i = h32(k, this.shift);
    for (;;) {
      const r = a[i];
      if (r === undefined) return undefined;
      if (r._p === k) break;
      i = (i + 1) & mask;
    }
    const old = a[i];
    let j = i;
    for (;;) {
      j = (j + 1) & mask;
      const r = a[j];
      if (r === undefined) break;
      const home = h32(r._p, this.shift);
      if (i <= j ? home <= i || home > j : home <= i && home > j) {
        a[i] = r;
        i = j;
      }
    }
    a[i] = undefined;
    this.size--;
    return old;
  }

  values(): Route4<P>[] {
    return this.a.filter((r): r is Route4<P> => r !== undefined);
  }

  private grow(): void {
    const old = this.a;
    const cap = (this.mask + 1) * 2;
    this.a = new Array<Route4<P> | undefined>(cap).fill(undefined);
    this.mask = cap - 1;
    this.shift = 32 - Math.log2(cap);
    this.size = 0;
    for (const r of old) if (r !== undefined) this.set(r);
  }
}

/** IPv4 route table with longest-prefix match; one route per prefix (no metrics). */
export class RouteTable4<P = unknown> {
  private maps: (PrefixHash4<P> | undefined)[] = new Array<PrefixHash4<P> | undefined>(33).fill(undefined);
  /** Present prefix lengths, longest first, `nlens` valid. */
  private lens = new Int32Array(33);
  private nlens = 0;
  private count = 0;

  /** Number of routes. */
  get size(): number {
    return this.count;
  }

  /** Longest-prefix match for destination `dst` (uint32). Allocation-free. */
  lookup(dst: number): Route4<P> | undefined {
    const lens = this.lens;
    const maps = this.maps;
    const n = this.nlens;
    for (let i = 0; i < n; i++) {
      const l = lens[i]!;
      const r = maps[l]!.get(dst & MASK4[l]!);
      if (r !== undefined) return r;
    }
    return undefined;
  }

  /** Exact-match get (control plane). `dst` as in RouteInput4. */
  get(dst: string | { prefix: number; prefixLen: number }): Route4<P> | undefined {
    const { prefix, prefixLen } = this.parseDst(dst);
    return this.getExact(prefix, prefixLen);
  }

  /** Exact-match get by numbers (no validation). */
  getExact(prefix: number, prefixLen: number): Route4<P> | undefined {
    const m = this.maps[prefixLen];
    return m ? m.get(prefix | 0) : undefined;
  }

  /** `ip route add`: throws "RTNETLINK answers: File exists" if the prefix is present. Returns the new route. */
  add(r: RouteInput4<P>): Route4<P> {
    const route = this.build(r);
    if (this.getExact(route.prefix, route.prefixLen)) throw new Error(`RTNETLINK answers: File exists (${route.dst})`);
    this.put(route);
    return route;
  }

  /** `ip route replace`: add or atomically swap the route for the prefix. Returns the new route. */
  replace(r: RouteInput4<P>): Route4<P> {
    const route = this.build(r);
    this.put(route);
    return route;
  }

  /** Install a route made by {@link build}, replacing any route for its prefix in one step. */
  put(route: Route4<P>): void {
    const l = route.prefixLen;
    let m = this.maps[l];
    if (!m) {
      m = this.maps[l] = new PrefixHash4<P>();
      this.rebuildLens();
    }
    if (m.set(route) === undefined) this.count++;
  }

  /** `ip route del`: returns false when there was no such route. */
  delete(dst: string | { prefix: number; prefixLen: number }): boolean {
    const { prefix, prefixLen } = this.parseDst(dst);
    return this.deleteExact(prefix, prefixLen);
  }

  /** Delete by numbers (no validation). */
  deleteExact(prefix: number, prefixLen: number): boolean {
    const m = this.maps[prefixLen];
    if (!m || m.delete(prefix | 0) === undefined) return false;
    this.count--;
    if (m.size === 0) {
      this.maps[prefixLen] = undefined;
      this.rebuildLens();
    }
    return true;
  }

  /** Remove every route. */
  clear(): void {
    this.maps.fill(undefined);
    this.count = 0;
    this.rebuildLens();
  }

  /** Validate input and build a route without installing it. */
  build(r: RouteInput4<P>): Route4<P> {
    const { prefix, prefixLen } = this.parseDst(r.dst);
    const dev = checkDev(r.dev);
    const kind = r.kind ?? 'unicast';
    if (kind !== 'unicast' && kind !== 'local') throw new Error(`invalid route kind "${String(kind)}"`);
    let gw = 0;
    if (r.via !== undefined) {
      if (kind === 'local') throw new Error(`local route ${u32ToIpv4(prefix)}/${prefixLen} cannot have a gateway`);
      gw = toU32(r.via, 'gateway');
      if (gw === 0) throw new Error(`invalid gateway "${String(r.via)}": 0.0.0.0`);
    }
    return new Route4<P>(prefix, prefixLen, gw, r.onlink === true, kind === 'local', dev, r.peer);
  }

  /** All routes, sorted like ip-route (by prefix, then length). */
  list(): Route4<P>[] {
    const out: Route4<P>[] = [];
    for (const m of this.maps) if (m) out.push(...m.values());
    return out.sort((a, b) => a.prefix - b.prefix || a.prefixLen - b.prefixLen);
  }

  /** The table in the shape of `ip route show`, one route per line. */
  show(): string {
    return this.list().map((r) => r.toString()).join('\n');
  }

  /** JSON export (peers are not exported). */
  toJSON(): RouteJson[] {
    return this.list().map((r) => r.toJSON());
  }

  /** Import routes from JSON (replacing existing routes with the same prefix). */
  importJSON(rows: readonly RouteJson[]): void {
    for (const j of rows) this.replace({ dst: j.dst, via: j.via, onlink: j.onlink, dev: j.dev, kind: j.kind });
  }

  /** Build a table from JSON. */
  static fromJSON<P = unknown>(rows: readonly RouteJson[]): RouteTable4<P> {
    const t = new RouteTable4<P>();
    t.importJSON(rows);
    return t;
  }

  private parseDst(dst: string | { prefix: number; prefixLen: number }): { prefix: number; prefixLen: number } {
    if (typeof dst === 'string') return parseCidr4(dst);
    if (dst === null || typeof dst !== 'object') throw new Error(`any valid prefix is expected rather than "${String(dst)}".`);
    return { prefix: checkPrefix4(dst.prefix, dst.prefixLen), prefixLen: dst.prefixLen };
  }

  private rebuildLens(): void {
    let n = 0;
    for (let l = 32; l >= 0; l--) if (this.maps[l]) this.lens[n++] = l;
    this.nlens = n;
  }
}

/** An IPv6 route. Immutable except for the opaque `peer` slot. */
export class Route6<P = unknown> {
  /** Network address, 16 bytes (do not mutate). */
  readonly prefix: Uint8Array;
  /** Prefix length 0..128. */
  readonly prefixLen: number;
  /** Next hop, 16 bytes, or null for none. */
  readonly gateway: Uint8Array | null;
  /** Gateway is on-link. */
  readonly onlink: boolean;
  /** Route kind. */
  readonly kind: RouteKind;
  /** Output device. */
  readonly dev: string;
  /** Opaque per-route slot for the dataplane. */
  peer: P | undefined;

  /** @internal use RouteTable6.add/replace. */
  constructor(prefix: Uint8Array, prefixLen: number, gateway: Uint8Array | null, onlink: boolean, kind: RouteKind, dev: string, peer: P | undefined) {
    this.prefix = prefix;
    this.prefixLen = prefixLen;
    this.gateway = gateway;
    this.onlink = onlink;
    this.kind = kind;
    this.dev = dev;
    this.peer = peer;
  }
  /** Destination as printed by ip-route: "default", "addr" for /128, else "addr/len". */
  get dst(): string {
    if (this.prefixLen === 0) return 'default';
    return this.prefixLen === 128 ? formatIpv6(this.prefix) : `${formatIpv6(this.prefix)}/${this.prefixLen}`;
  }
  /** One line in the shape of `ip -6 route show` (metric 1024, pref medium as the kernel prints for static routes). */
  toString(): string {
    if (this.kind === 'local') return `local ${this.dst} dev ${this.dev} metric 0 pref medium`;
    const via = this.gateway ? ` via ${formatIpv6(this.gateway)}` : '';
    return `${this.dst}${via} dev ${this.dev} metric 1024${this.onlink ? ' onlink' : ''} pref medium`;
  }
  /** JSON form (peer omitted). */
  toJSON(): RouteJson {
    const j: RouteJson = { dst: this.dst, dev: this.dev };
    if (this.gateway) j.via = formatIpv6(this.gateway);
    if (this.onlink) j.onlink = true;
    if (this.kind === 'local') j.kind = 'local';
    return j;
  }
}

/** Input for RouteTable6.add/replace. */
export interface RouteInput6<P = unknown> {
  /** "addr/len", "addr" (= /128), "default", or {prefix (16 bytes), prefixLen}. Host bits must be zero. */
  dst: string | { prefix: Uint8Array; prefixLen: number };
  /** Next hop, string or 16 bytes. */
  via?: string | Uint8Array;
  /** Gateway is on-link. */
  onlink?: boolean;
  /** Output device. */
  dev: string;
  /** Default 'unicast'. */
  kind?: RouteKind;
  /** Initial peer slot value. */
  peer?: P;
}

/** IPv6 route table with longest-prefix match over 16-byte keys. */
export class RouteTable6<P = unknown> {
  private routes: (Route6<P> | undefined)[] = [];
  private slots = new Slots();
  private maps: (WordsMap | undefined)[] = new Array<WordsMap | undefined>(129).fill(undefined);
  private lens = new Int32Array(129);
  private nlens = 0;
  private count = 0;
  /** Scratch: the 4 words of the address being looked up, then masked words. */
  private readonly a = new Int32Array(4);
  private readonly k = new Int32Array(4);

  /** Number of routes. */
  get size(): number {
    return this.count;
  }

  /** Longest-prefix match for the 16-byte address at `addr[off..off+16)`. Allocation-free. */
  lookup(addr: Uint8Array, off = 0): Route6<P> | undefined {
    const a = this.a;
    const k = this.k;
    for (let w = 0; w < 4; w++) {
      const o = off + w * 4;
      a[w] = (addr[o]! << 24) | (addr[o + 1]! << 16) | (addr[o + 2]! << 8) | addr[o + 3]!;
    }
    const n = this.nlens;
    for (let i = 0; i < n; i++) {
      const l = this.lens[i]!;
      for (let w = 0; w < 4; w++) {
        const bits = l - w * 32;
        k[w] = bits >= 32 ? a[w]! : bits <= 0 ? 0 : a[w]! & MASK4[bits]!;
      }
      const id = this.maps[l]!.get(k, 0);
      if (id >= 0) return this.routes[id];
    }
    return undefined;
  }

  /** Exact-match get. */
  get(dst: string | { prefix: Uint8Array; prefixLen: number }): Route6<P> | undefined {
    const { prefix, prefixLen } = this.parseDst(dst);
    const m = this.maps[prefixLen];
    if (!m) return undefined;
    const id = m.get(this.words(prefix), 0);
    return id >= 0 ? this.routes[id] : undefined;
  }

  /** `ip -6 route add`: throws if present. */
  add(r: RouteInput6<P>): Route6<P> {
    const route = this.build(r);
    if (this.get({ prefix: route.prefix, prefixLen: route.prefixLen })) throw new Error(`RTNETLINK answers: File exists (${route.dst})`);
    this.put(route);
    return route;
  }

  /** `ip -6 route replace`: add or atomically swap. */
  replace(r: RouteInput6<P>): Route6<P> {
    const route = this.build(r);
    this.put(route);
    return route;
  }

  /** `ip -6 route del`: false when absent. */
  delete(dst: string | { prefix: Uint8Array; prefixLen: number }): boolean {
    const { prefix, prefixLen } = this.parseDst(dst);
    const m = this.maps[prefixLen];
    if (!m) return false;
    const id = m.delete(this.words(prefix), 0);
    if (id < 0) return false;
    this.routes[id] = undefined;
    this.slots.release(id);
    this.count--;
    if (m.size === 0) {
      this.maps[prefixLen] = undefined;
      this.rebuildLens();
    }
    return true;
  }

  /** Remove every route. */
  clear(): void {
    this.routes = [];
    this.slots.clear();
    this.maps.fill(undefined);
    this.count = 0;
    this.rebuildLens();
  }

  /** All routes sorted by prefix bytes then length. */
  list(): Route6<P>[] {
    const out: Route6<P>[] = [];
    for (const r of this.routes) if (r) out.push(r);
    return out.sort((x, y) => Buffer.compare(x.prefix, y.prefix) || x.prefixLen - y.prefixLen);
  }

  /** The table in the shape of `ip -6 route show`. */
  show(): string {
    return this.list().map((r) => r.toString()).join('\n');
  }

  /** JSON export. */
  toJSON(): RouteJson[] {
    return this.list().map((r) => r.toJSON());
  }

  /** Import from JSON (replace semantics). */
  importJSON(rows: readonly RouteJson[]): void {
    for (const j of rows) this.replace({ dst: j.dst, via: j.via, onlink: j.onlink, dev: j.dev, kind: j.kind });
  }

  /** Build a table from JSON. */
  static fromJSON<P = unknown>(rows: readonly RouteJson[]): RouteTable6<P> {
    const t = new RouteTable6<P>();
    t.importJSON(rows);
    return t;
  }

  private build(r: RouteInput6<P>): Route6<P> {
    const { prefix, prefixLen } = this.parseDst(r.dst);
    const dev = checkDev(r.dev);
    const kind = r.kind ?? 'unicast';
    if (kind !== 'unicast' && kind !== 'local') throw new Error(`invalid route kind "${String(kind)}"`);
    let gw: Uint8Array | null = null;
    if (r.via !== undefined) {
      if (kind === 'local') throw new Error(`local route ${formatIpv6(prefix)}/${prefixLen} cannot have a gateway`);
      gw = toV6(r.via, 'gateway');
    }
    return new Route6<P>(prefix, prefixLen, gw, r.onlink === true, kind, dev, r.peer);
  }

  private put(route: Route6<P>): void {
    const l = route.prefixLen;
    let m = this.maps[l];
    if (!m) {
      m = this.maps[l] = new WordsMap(4);
      this.rebuildLens();
    }
    const key = this.words(route.prefix);
    const old = m.get(key, 0);
    if (old >= 0) {
      this.routes[old] = route;
      return;
    }
    const id = this.slots.alloc();
    this.routes[id] = route;
    m.set(key, id, 0);
    this.count++;
  }

  private words(p: Uint8Array): Int32Array {
    const k = new Int32Array(4);
    for (let w = 0; w < 4; w++) k[w] = (p[w * 4]! << 24) | (p[w * 4 + 1]! << 16) | (p[w * 4 + 2]! << 8) | p[w * 4 + 3]!;
    return k;
  }

  private parseDst(dst: string | { prefix: Uint8Array; prefixLen: number }): { prefix: Uint8Array; prefixLen: number } {
    if (typeof dst === 'string') return parseCidr6(dst);
    if (dst === null || typeof dst !== 'object') throw new Error(`any valid prefix is expected rather than "${String(dst)}".`);
    const { prefixLen } = dst;
    if (!Number.isInteger(prefixLen) || prefixLen < 0 || prefixLen > 128) throw new Error(`invalid prefix length ${String(prefixLen)} (0..128).`);
    const prefix = toV6(dst.prefix, 'IPv6 prefix');
    checkHostBits6(prefix, prefixLen, `${formatIpv6(prefix)}/${prefixLen}`);
    return { prefix, prefixLen };
  }

  private rebuildLens(): void {
    let n = 0;
    for (let l = 128; l >= 0; l--) if (this.maps[l]) this.lens[n++] = l;
    this.nlens = n;
  }
}

