/**
 * IPv6 neighbour (NDP) table: the IPv6 counterpart of NeighbourTable, keyed by
 * 16-byte addresses. Same states, ageing, rate-limited `l3miss`, proxy answers
 * from the table, printing (`ip -6 neigh`) and JSON. Lookups allocate nothing and
 * return a view reused by the next lookup.
 */
import { WordsMap, Slots, MissLimiter, TWO32, growTo, toV6, toUnicastMac, checkDev, formatMac, formatIpv6 } from './internal.js';
import type { NeighState, NeighbourOptions, NeighbourJson } from './neigh.js';

/** An IPv6 neighbour entry. */
export interface Neighbour6Entry {
  /** IPv6 address (16 bytes; in a lookup view, a buffer reused by the table). */
  readonly ip: Uint8Array;
  /** Link-layer address as a 48-bit number. */
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

/** Input for NeighbourTable6.add/replace. */
export interface Neighbour6Input {
  /** IPv6 address, string or 16 bytes. */
  ip: string | Uint8Array;
  /** MAC; required unless state is incomplete/failed. */
  lladdr?: string | number;
  /** Device. */
  dev: string;
  /** Default 'permanent'. */
  state?: NeighState;
  /** `router` flag. */
  router?: boolean;
}

/** Listener for the IPv6 `l3miss`: the address (a fresh copy). */
export type L3Miss6Listener = (ip: Uint8Array) => void;

const ST_NAMES: readonly NeighState[] = ['permanent', 'noarp', 'reachable', 'stale', 'incomplete', 'failed'];
const S_NOARP = 1;
const S_PERMANENT = 0;
const S_REACHABLE = 2;
const S_STALE = 3;
const S_INCOMPLETE = 4;
const S_FAILED = 5;
/** Record stride (int32 words): [a0, a1, a2, a3, macLo, macHi, state | router << 8 | devIndex << 16, 0]. */
const W = 8;

class View6 implements Neighbour6Entry {
  readonly ip = new Uint8Array(16);
  mac = 0;
  state: NeighState = 'permanent';
  dev = '';
  router = false;
  updated = 0;
}

/** IPv6 neighbour (NDP) table. */
export class NeighbourTable6 {
  private readonly map = new WordsMap(4);
  private readonly slots = new Slots();
  private r = new Int32Array(16 * W);
  private upd = new Float64Array(16);
  private readonly k = new Int32Array(4);
  private readonly devs: string[] = [];
  private readonly devByName = new Map<string, number>();
  private readonly view = new View6();
  private readonly limiter: MissLimiter;
  private readonly listeners: L3Miss6Listener[] = [];
  private readonly clock: () => number;
  private readonly reachableTime: number;
  private readonly gcStale: number;
  private readonly incompleteTime: number;
  private readonly proxyOn: boolean;
  private readonly max: number;

  constructor(opts: NeighbourOptions = {}) {
    this.clock = opts.clock ?? Date.now;
    this.reachableTime = opts.reachableTimeMs ?? 30_000;
    this.gcStale = opts.gcStaleTimeMs ?? 60_000;
    this.incompleteTime = opts.incompleteTimeMs ?? 3_000;
    this.limiter = new MissLimiter(opts.missIntervalMs ?? 1000, opts.missBurst ?? 100);
    this.proxyOn = opts.proxy ?? true;
    this.max = opts.maxEntries ?? Infinity;
  }

  /** Number of entries. */
  get size(): number {
    return this.map.size;
  }

  /** Subscribe to `l3miss` (rate-limited). Returns an unsubscribe function. */
  on(event: 'l3miss', fn: L3Miss6Listener): () => void {
    if (event !== 'l3miss') throw new Error(`unknown event "${String(event)}"`);
    this.listeners.push(fn);
    return () => {
      const i = this.listeners.indexOf(fn);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }

  /** Hot path: the usable entry for the address at `addr[off..off+16)`, or undefined (then `l3miss`). Allocation-free on hit. */
  lookup(addr: Uint8Array, off = 0): Neighbour6Entry | undefined {
    this.key(addr, off);
    const s = this.map.get(this.k, 0);
    if (s >= 0) {
      let st = this.r[s * W + 6]! & 255;
      if (st === S_REACHABLE && this.clock() - this.upd[s]! > this.reachableTime) {
        st = S_STALE;
        this.setSt(s, st);
      }
      if (st < S_INCOMPLETE) return this.fill(s);
    }
    this.miss();
    return undefined;
  }

  /** Answer a neighbour solicitation on the VTEP's behalf (when the `proxy` option is on). */
  proxyLookup(addr: Uint8Array, off = 0): Neighbour6Entry | undefined {
    return this.proxyOn ? this.lookup(addr, off) : undefined;
  }

  /** A stable copy of the entry in any state (control plane). */
  get(ip: string | Uint8Array): Neighbour6Entry | undefined {
    const a = toV6(ip);
    this.key(a, 0);
    const s = this.map.get(this.k, 0);
    if (s < 0 || this.ageSlot(s, this.clock())) return undefined;
    const v = this.fill(s);
    return { ...v, ip: Uint8Array.from(v.ip) };
  }

  /** `ip -6 neigh add`: throws "RTNETLINK answers: File exists" when present. */
  add(n: Neighbour6Input): void {
    const a = toV6(n.ip);
    this.key(a, 0);
    if (this.map.get(this.k, 0) >= 0) throw new Error(`RTNETLINK answers: File exists (${formatIpv6(a)})`);
    this.replace(n);
  }

  /** `ip -6 neigh replace`: add or overwrite. */
  replace(n: Neighbour6Input): void {
    const a = toV6(n.ip);
    const dev = checkDev(n.dev);
    const state = n.state ?? 'permanent';
    const st = ST_NAMES.indexOf(state);
    if (st < 0) throw new Error(`invalid neighbour state "${String(state)}"`);
    let mac = 0;
    if (n.lladdr !== undefined) mac = toUnicastMac(n.lladdr, 'neighbour lladdr');
    else if (st < S_INCOMPLETE) throw new Error(`neighbour ${formatIpv6(a)}: lladdr required for state ${state}`);
    this.set(a, mac, st, dev, n.router === true, this.clock());
  }

  /** Record a confirmation (NA received): creates or refreshes a reachable entry; permanent/noarp left alone. */
  confirm(ip: Uint8Array, mac: number, dev: string): boolean {
    this.key(ip, 0);
    const s = this.map.get(this.k, 0);
    const st = s >= 0 ? this.r[s * W + 6]! & 255 : -1;
    if (st === S_PERMANENT || st === S_NOARP) return false;
    this.set(toV6(ip), toUnicastMac(mac, 'neighbour lladdr'), S_REACHABLE, checkDev(dev), s >= 0 && (this.r[s * W + 6]! & 256) !== 0, this.clock());
    return true;
  }

  /** `ip -6 neigh del`: false when absent. */
  delete(ip: string | Uint8Array): boolean {
    this.key(toV6(ip), 0);
    const s = this.map.delete(this.k, 0);
    if (s < 0) return false;
    this.slots.release(s);
    return true;
  }

  /** Age entries like NeighbourTable.sweep; returns entries removed. */
  sweep(now: number = this.clock()): number {
    let n = 0;
    for (const s of this.liveSlots()) if (this.ageSlot(s, now)) n++;
    return n;
  }

  /** Snapshot of all entries, sorted by address. */
  list(): Neighbour6Entry[] {
    const now = this.clock();
    for (const s of this.liveSlots()) this.ageSlot(s, now);
    const out: Neighbour6Entry[] = [];
    for (const s of this.liveSlots()) {
      const v = this.fill(s);
      out.push({ ...v, ip: Uint8Array.from(v.ip) });
    }
    return out.sort((a, b) => Buffer.compare(a.ip, b.ip));
  }

  /** The table in the shape of `ip -6 neigh show`. */
  show(): string {
    return this.list()
      .map((e) => `${formatIpv6(e.ip)} dev ${e.dev}${e.state === 'incomplete' || e.state === 'failed' ? '' : ` lladdr ${formatMac(e.mac)}`}${e.router ? ' router' : ''} ${e.state.toUpperCase()}`)
      .join('\n');
  }

  /** JSON export. */
  toJSON(): NeighbourJson[] {
    return this.list().map((e) => {
      const j: NeighbourJson = { dst: formatIpv6(e.ip), dev: e.dev, state: e.state };
      if (e.state !== 'incomplete' && e.state !== 'failed') j.lladdr = formatMac(e.mac);
      if (e.router) j.router = true;
      return j;
    });
  }

  /** Import from JSON (replace semantics). */
  importJSON(rows: readonly NeighbourJson[]): void {
    for (const j of rows) this.replace({ ip: j.dst, dev: j.dev, lladdr: j.lladdr, state: j.state, router: j.router });
  }

  /** Build a table from JSON. */
  static fromJSON(rows: readonly NeighbourJson[], opts?: NeighbourOptions): NeighbourTable6 {
    const t = new NeighbourTable6(opts);
    t.importJSON(rows);
    return t;
  }

  private key(a: Uint8Array, off: number): void {
    const k = this.k;
    for (let w = 0; w < 4; w++) {
      const o = off + w * 4;
      k[w] = (a[o]! << 24) | (a[o + 1]! << 16) | (a[o + 2]! << 8) | a[o + 3]!;
    }
  }

  private liveSlots(): number[] {
    const out: number[] = [];
    for (let s = 0; s < this.slots.high; s++) if (this.map.get(this.r, s * W) === s) out.push(s);
    return out;
  }

  private set(a: Uint8Array, mac: number, st: number, dev: string, router: boolean, now: number): void {
    this.key(a, 0);
    let s = this.map.get(this.k, 0);
    if (s < 0) {
      if (this.map.size >= this.max) throw new Error(`neighbour table full (${this.max} entries): cannot add ${formatIpv6(a)}`);
      s = this.slots.alloc();
      if (s + 1 > this.upd.length) {
        this.upd = growTo(this.upd, s + 1);
        this.r = growTo(this.r, this.upd.length * W);
      }
      this.r.set(this.k, s * W);
      this.map.set(this.k, s, 0);
    }
    const b = s * W;
    this.r[b + 4] = mac | 0;
    this.r[b + 5] = Math.floor(mac / TWO32);
    this.r[b + 6] = st | (router ? 256 : 0) | (this.devIndex(dev) << 16);
    this.upd[s] = now;
  }

  private fill(s: number): View6 {
    const v = this.view;
    const r = this.r;
    const b = s * W;
    for (let w = 0; w < 4; w++) {
      const x = r[b + w]!;
      v.ip[w * 4] = x >>> 24;
      v.ip[w * 4 + 1] = (x >>> 16) & 255;
      v.ip[w * 4 + 2] = (x >>> 8) & 255;
      v.ip[w * 4 + 3] = x & 255;
    }
    const meta = r[b + 6]!;
    v.mac = r[b + 5]! * TWO32 + (r[b + 4]! >>> 0);
    v.state = ST_NAMES[meta & 255]!;
    v.dev = this.devs[meta >>> 16]!;
    v.router = (meta & 256) !== 0;
    v.updated = this.upd[s]!;
    return v;
  }

  private setSt(s: number, st: number): void {
    const b = s * W + 6;
    this.r[b] = (this.r[b]! & ~255) | st;
  }

  private ageSlot(s: number, now: number): boolean {
    const st = this.r[s * W + 6]! & 255;
    const age = now - this.upd[s]!;
    if (st === S_REACHABLE && age > this.reachableTime) this.setSt(s, S_STALE);
    else if (st === S_INCOMPLETE && age > this.incompleteTime) this.setSt(s, S_FAILED);
    const st2 = this.r[s * W + 6]! & 255;
    if ((st2 === S_STALE || st2 === S_FAILED) && age > this.gcStale + (st2 === S_STALE ? this.reachableTime : this.incompleteTime)) {
      this.map.delete(this.r, s * W);
      this.slots.release(s);
      return true;
    }
    return false;
  }

  private miss(): void {
    if (this.listeners.length === 0) return;
    const k = this.k;
    if (!this.limiter.allow((k[0]! ^ k[1]! ^ k[2]! ^ k[3]!) | 0, this.clock())) return;
    const a = new Uint8Array(16);
    for (let w = 0; w < 4; w++) {
      a[w * 4] = k[w]! >>> 24;
      a[w * 4 + 1] = (k[w]! >>> 16) & 255;
      a[w * 4 + 2] = (k[w]! >>> 8) & 255;
      a[w * 4 + 3] = k[w]! & 255;
    }
    for (const fn of this.listeners) fn(a);
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
}
