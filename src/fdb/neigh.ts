/**
 * IPv4 neighbour (ARP) table: IP -> MAC with NUD states, ageing on an injectable
 * clock, rate-limited `l3miss` events, and proxy answers (the VXLAN `proxy` flag).
 *
 * Storage is a 16-byte record per entry in one Int32Array (plus a Float64 update
 * time), found through an open-addressing hash from IP to slot, so an entry costs
 * about 40-60 bytes and lookups allocate nothing. `lookup()` returns a view object owned by the table that is
 * overwritten by the next lookup; use `get()` for a stable copy.
 */
import { writeMacHL } from '../codec/addr.js';
import { I32Map, Slots, MissLimiter, TWO32, growTo, toU32, toMac, toUnicastMac, checkDev, formatU32, formatMac, COARSE_NOW, coarseNow, startCoarseClock } from './internal.js';

/** Neighbour Unreachability Detection state, as `ip neigh` names them. */
export type NeighState = 'permanent' | 'noarp' | 'reachable' | 'stale' | 'incomplete' | 'failed';

/** A neighbour entry. */
export interface NeighbourEntry {
  /** IPv4 address as uint32. */
  readonly ip: number;
  /** Link-layer address as a 48-bit number (0 when state is incomplete/failed without one). */
  readonly mac: number;
  /** NUD state. */
  readonly state: NeighState;
  /** Device name. */
  readonly dev: string;
  /** `router` flag. */
  readonly router: boolean;
  /** Clock time (ms) of the last add/confirm. */
  readonly updated: number;
}

/** Input for NeighbourTable.add/replace (`ip neigh add <ip> lladdr <mac> dev <dev> nud <state>`). */
export interface NeighbourInput {
  /** IPv4 address, dotted quad or uint32. */
  ip: string | number;
  /** MAC, "aa:bb:cc:dd:ee:ff" or 48-bit number. Required unless state is incomplete/failed. */
  lladdr?: string | number;
  /** Device. */
  dev: string;
  /** Default 'permanent'. */
  state?: NeighState;
  /** `router` flag. */
  router?: boolean;
}

/** JSON form of a neighbour or proxy entry. */
export interface NeighbourJson {
  /** IPv4 address. */
  dst: string;
  /** Device. */
  dev: string;
  /** MAC, absent when none. */
  lladdr?: string;
  /** State (absent for proxy entries). */
  state?: NeighState;
  /** Router flag. */
  router?: boolean;
  /** A proxy (`ip neigh add proxy`) entry. */
  proxy?: boolean;
}

/** Options of a NeighbourTable. */
export interface NeighbourOptions {
  /** Clock in ms. Default: Date.now, read on hot paths through a shared 10 ms coarse clock so that lookups allocate no heap number; an injected clock is called as is. */
  clock?: () => number;
  /** reachable -> stale after this long without confirmation (kernel base_reachable_time 30 s). */
  reachableTimeMs?: number;
  /** stale/failed non-permanent entries are removed by sweep() after this long (kernel gc_stale_time 60 s). */
  gcStaleTimeMs?: number;
  /** incomplete -> failed after this long (kernel ~3 probes x 1 s). */
  incompleteTimeMs?: number;
  /** l3miss rate limit: at most one event per IP per interval (default 1000 ms)... */
  missIntervalMs?: number;
  /** ...and at most this many events per interval in total (default 100). */
  missBurst?: number;
  /** Answer ARP from this table in proxyLookup() (the VXLAN device's `proxy` flag). Default true. */
  proxy?: boolean;
  /** MAC used to answer for explicit proxy entries (`ip neigh add proxy`), e.g. the VTEP's own MAC. */
  proxyMac?: string | number;
  /** Maximum entries (kernel gc_thresh3-like); add() throws beyond it. Default unlimited. */
  maxEntries?: number;
}

const ST_NAMES: readonly NeighState[] = ['permanent', 'noarp', 'reachable', 'stale', 'incomplete', 'failed'];
const S_PERMANENT = 0;
const S_NOARP = 1;
const S_REACHABLE = 2;
const S_STALE = 3;
const S_INCOMPLETE = 4;
const S_FAILED = 5;

class View implements NeighbourEntry {
  ip = 0;
  mac = 0;
  state: NeighState = 'permanent';
  dev = '';
  router = false;
  updated = 0;
}

/** Listener for `l3miss`: the IPv4 address (uint32) that had no usable entry. */
export type L3MissListener = (ip: number) => void;

/** IPv4 neighbour table. */
export class NeighbourTable {
  private readonly map = new I32Map();
  private readonly slots = new Slots();
  /** Records, stride 4: [ip, macLo, macHi, state | router << 8 | devIndex << 16] (one cache line per lookup). */
  private r = new Int32Array(64);
  private upd = new Float64Array(16);
  private readonly devs: string[] = [];
  private readonly devByName = new Map<string, number>();
  /** Explicit proxy entries, keyed by int32 IP (Smi keys: no boxing on lookup). */
  private readonly proxies = new Map<number, string>();
  private readonly view = new View();
  private readonly limiter: MissLimiter;
  private readonly listeners: L3MissListener[] = [];
  private readonly clock: () => number;
  /** No clock injected: hot paths read the shared coarse clock (no heap number per call). */
  private readonly coarse: boolean;
  private readonly reachableTime: number;
  private readonly gcStale: number;
  private readonly incompleteTime: number;
  private readonly proxyOn: boolean;
  private readonly proxyMac: number;
  private readonly max: number;

  constructor(opts: NeighbourOptions = {}) {
    this.coarse = opts.clock === undefined;
    this.clock = opts.clock ?? coarseNow;
    if (this.coarse) startCoarseClock();
    this.reachableTime = opts.reachableTimeMs ?? 30_000;
    this.gcStale = opts.gcStaleTimeMs ?? 60_000;
    this.incompleteTime = opts.incompleteTimeMs ?? 3_000;
    this.limiter = new MissLimiter(opts.missIntervalMs ?? 1000, opts.missBurst ?? 100);
    this.proxyOn = opts.proxy ?? true;
    this.proxyMac = opts.proxyMac === undefined ? 0 : toMac(opts.proxyMac);
    this.max = opts.maxEntries ?? Infinity;
  }

  /** Configured maximum number of entries (Infinity when unlimited). */
  get maxEntries(): number {
    return this.max;
  }

  /** True when an entry for `ip` (uint32) exists in any state. */
  has(ip: number): boolean {
    return this.map.get(ip | 0) >= 0;
  }

  /** Number of (non-proxy) entries. */
  get size(): number {
    return this.map.size;
  }

  /** Subscribe to `l3miss` (rate-limited). Returns an unsubscribe function. */
  on(event: 'l3miss', fn: L3MissListener): () => void {
    if (event !== 'l3miss') throw new Error(`unknown event "${String(event)}"`);
    this.listeners.push(fn);
    return () => {
      const i = this.listeners.indexOf(fn);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }

  /**
   * Hot path: the usable entry for `ip` (uint32), i.e. permanent/noarp/reachable/stale,
   * or undefined (then `l3miss` fires, rate-limited). The returned object is a view
   * reused by the next lookup/proxyLookup on this table. Allocation-free on hit.
   */
  lookup(ip: number): NeighbourEntry | undefined {
    const s = this.usable(ip);
    if (s >= 0) return this.fill(s);
    this.miss(ip);
    return undefined;
  }

  /**
   * Hot path for an encapsulating dataplane: write the link-layer address of the usable
   * entry for `ip` (uint32 or int32) into `buf[off..off+6)` and return true; or return
   * false (then `l3miss` fires, rate-limited) and leave `buf` alone. Allocation-free:
   * the MAC goes from the int32 record to the bytes without ever being a 48-bit double.
   */
  lookupMacInto(ip: number, buf: Uint8Array, off: number): boolean {
    const s = this.usable(ip);
    if (s < 0) {
      this.miss(ip);
      return false;
    }
    const b = s << 2;
    writeMacHL(buf, off, this.r[b + 2]!, this.r[b + 1]!);
    return true;
  }

  /** Slot of the usable (permanent/noarp/reachable/stale) entry for `ip`, or -1; ages reachable -> stale on the way. */
  private usable(ip: number): number {
    const s = this.map.get(ip | 0);
    if (s < 0) return -1;
    let st = this.r[(s << 2) + 3]! & 255;
    if (st === S_REACHABLE && (this.coarse ? COARSE_NOW[0]! : this.clock()) - this.upd[s]! > this.reachableTime) {
      st = S_STALE;
      this.setSt(s, st);
    }
    return st < S_INCOMPLETE ? s : -1;
  }

  /**
   * Answer an ARP request for `ip` on the VTEP's behalf: an explicit proxy entry
   * (answered with `proxyMac`), or, when the `proxy` option is on, a usable
   * neighbour entry. Misses fire `l3miss`. Same view semantics as lookup().
   */
  proxyLookup(ip: number): NeighbourEntry | undefined {
    if (this.proxies.size > 0) {
      const dev = this.proxies.get(ip | 0);
      if (dev !== undefined) {
        const v = this.view;
        v.ip = ip >>> 0;
        v.mac = this.proxyMac;
        v.state = 'permanent';
        v.dev = dev;
        v.router = false;
        v.updated = 0;
        return v;
      }
    }
    if (!this.proxyOn) return undefined;
    return this.lookup(ip);
  }

  /** A stable copy of the entry for `ip` in any state (control plane; no events). */
  get(ip: string | number): NeighbourEntry | undefined {
    const s = this.map.get(toU32(ip) | 0);
    if (s < 0) return undefined;
    if (this.ageSlot(s, this.clock())) return undefined;
    return { ...this.fill(s) };
  }

  /** `ip neigh add`: throws "RTNETLINK answers: File exists" when present. */
  add(n: NeighbourInput): void {
    const ip = toU32(n.ip);
    if (this.map.get(ip | 0) >= 0) throw new Error(`RTNETLINK answers: File exists (${formatU32(ip)})`);
    this.replace(n);
  }

  /** `ip neigh replace`: add or overwrite. */
  replace(n: NeighbourInput): void {
    const ip = toU32(n.ip);
    const dev = checkDev(n.dev);
    const state = n.state ?? 'permanent';
    const st = ST_NAMES.indexOf(state);
    if (st < 0) throw new Error(`invalid neighbour state "${String(state)}"`);
    let mac = 0;
    if (n.lladdr !== undefined) mac = toUnicastMac(n.lladdr, 'neighbour lladdr');
    else if (st < S_INCOMPLETE) throw new Error(`neighbour ${formatU32(ip)}: lladdr required for state ${state}`);
    this.set(ip, mac, st, dev, n.router === true, this.clock());
  }

  /** Install a validated entry. */
  private set(ip: number, mac: number, st: number, dev: string, router: boolean, now: number): void {
    let s = this.map.get(ip | 0);
    if (s < 0) {
      if (this.map.size >= this.max) throw new Error(`neighbour table full (${this.max} entries): cannot add ${formatU32(ip)}`);
      s = this.slots.alloc();
      this.ensure(s + 1);
      this.map.set(ip | 0, s);
    }
    const b = s << 2;
    const r = this.r;
    r[b] = ip | 0;
    r[b + 1] = mac | 0;
    r[b + 2] = Math.floor(mac / TWO32);
    r[b + 3] = st | (router ? 256 : 0) | (this.devIndex(dev) << 16);
    this.upd[s] = now;
  }

  /**
   * Record a confirmation (e.g. an ARP reply or learned packet): creates or refreshes
   * a reachable entry. Permanent/noarp entries are left alone. Returns true if changed.
   */
  confirm(ip: number, mac: number, dev: string): boolean {
    const s = this.map.get(ip | 0);
    const st = s >= 0 ? this.r[(s << 2) + 3]! & 255 : -1;
    if (st === S_PERMANENT || st === S_NOARP) return false;
    this.set(ip >>> 0, toUnicastMac(mac, 'neighbour lladdr'), S_REACHABLE, checkDev(dev), s >= 0 && (this.r[(s << 2) + 3]! & 256) !== 0, this.clock());
    return true;
  }

  /** `ip neigh del`: false when absent. */
  delete(ip: string | number): boolean {
    const s = this.map.delete(toU32(ip) | 0);
    if (s < 0) return false;
    this.slots.release(s);
    return true;
  }

  /** `ip neigh add proxy <ip> dev <dev>`. */
  addProxy(ip: string | number, dev: string): void {
    this.proxies.set(toU32(ip) | 0, checkDev(dev));
  }

  /** `ip neigh del proxy <ip>`. */
  deleteProxy(ip: string | number): boolean {
    return this.proxies.delete(toU32(ip) | 0);
  }

  /** Age entries: reachable -> stale, incomplete -> failed, and drop stale/failed older than gcStaleTime. Returns entries removed. */
  sweep(now: number = this.clock()): number {
    let removed = 0;
    for (const [, s] of [...this.map.entries()]) if (this.ageSlot(s, now)) removed++;
    return removed;
  }

  /** Remove all entries (not proxies). */
  flush(): void {
    for (const [k, s] of [...this.map.entries()]) {
      this.map.delete(k);
      this.slots.release(s);
    }
  }

  /** Snapshot of all entries (control plane), sorted by IP. */
  list(): NeighbourEntry[] {
    const now = this.clock();
    for (const [, s] of [...this.map.entries()]) this.ageSlot(s, now);
    const out: NeighbourEntry[] = [];
    for (const [, s] of this.map.entries()) out.push({ ...this.fill(s) });
    return out.sort((a, b) => a.ip - b.ip);
  }

  /** The table in the shape of `ip neigh show`. */
  show(): string {
    return this.list()
      .map((e) => `${formatU32(e.ip)} dev ${e.dev}${e.state === 'incomplete' || e.state === 'failed' ? '' : ` lladdr ${formatMac(e.mac)}`}${e.router ? ' router' : ''} ${e.state.toUpperCase()}`)
      .join('\n');
  }

  /** Proxy entries in the shape of `ip neigh show proxy`. */
  showProxy(): string {
    return [...this.proxies].sort((a, b) => (a[0] >>> 0) - (b[0] >>> 0)).map(([ip, dev]) => `${formatU32(ip >>> 0)} dev ${dev} proxy`).join('\n');
  }

  /** JSON export (entries then proxies). */
  toJSON(): NeighbourJson[] {
    const rows: NeighbourJson[] = this.list().map((e) => {
      const j: NeighbourJson = { dst: formatU32(e.ip), dev: e.dev, state: e.state };
      if (e.state !== 'incomplete' && e.state !== 'failed') j.lladdr = formatMac(e.mac);
      if (e.router) j.router = true;
      return j;
    });
    for (const [ip, dev] of [...this.proxies].sort((a, b) => (a[0] >>> 0) - (b[0] >>> 0))) rows.push({ dst: formatU32(ip >>> 0), dev, proxy: true });
    return rows;
  }

  /** Import from JSON (replace semantics). */
  importJSON(rows: readonly NeighbourJson[]): void {
    for (const j of rows) {
      if (j.proxy) this.addProxy(j.dst, j.dev);
      else this.replace({ ip: j.dst, dev: j.dev, lladdr: j.lladdr, state: j.state, router: j.router });
    }
  }

  /** Build a table from JSON. */
  static fromJSON(rows: readonly NeighbourJson[], opts?: NeighbourOptions): NeighbourTable {
    const t = new NeighbourTable(opts);
    t.importJSON(rows);
    return t;
  }

  private fill(s: number): View {
    const v = this.view;
    const r = this.r;
    const b = s << 2;
    const meta = r[b + 3]!;
    v.ip = r[b]! >>> 0;
    v.mac = r[b + 2]! * TWO32 + (r[b + 1]! >>> 0);
    v.state = ST_NAMES[meta & 255]!;
    v.dev = this.devs[meta >>> 16]!;
    v.router = (meta & 256) !== 0;
    v.updated = this.upd[s]!;
    return v;
  }

  /** Apply ageing to one slot; returns true if it was removed. */
  private ageSlot(s: number, now: number): boolean {
    const st = this.r[(s << 2) + 3]! & 255;
    const age = now - this.upd[s]!;
    if (st === S_REACHABLE && age > this.reachableTime) this.setSt(s, S_STALE);
    else if (st === S_INCOMPLETE && age > this.incompleteTime) this.setSt(s, S_FAILED);
    const st2 = this.r[(s << 2) + 3]! & 255;
    if ((st2 === S_STALE || st2 === S_FAILED) && age > this.gcStale + (st2 === S_STALE ? this.reachableTime : this.incompleteTime)) {
      this.map.delete(this.r[s << 2]!);
      this.slots.release(s);
      return true;
    }
    return false;
  }

  private miss(ip: number): void {
    if (this.listeners.length === 0) return;
    if (!this.limiter.allow(ip | 0, this.coarse ? COARSE_NOW[0]! : this.clock())) return;
    for (const fn of this.listeners) fn(ip >>> 0);
  }

  private devIndex(dev: string): number {
    let i = this.devByName.get(dev);
    if (i === undefined) {
      i = this.devs.length;
      if (i > 0xffff) throw new Error('too many devices');
      this.devs.push(dev);
      this.devByName.set(dev, i);
    }
    return i;
  }

  private ensure(n: number): void {
    if (n <= this.upd.length) return;
    this.upd = growTo(this.upd, n);
    this.r = growTo(this.r, this.upd.length * 4);
  }

  private setSt(s: number, st: number): void {
    const b = (s << 2) + 3;
    this.r[b] = (this.r[b]! & ~255) | st;
  }
}
