/**
 * The neighbour table shared by IPv4 (ARP, `NeighbourTable`) and IPv6 (NDP,
 * `NeighbourTable6`): NUD states, ageing on an injectable clock (hot paths read the
 * shared coarse clock when none is injected), rate-limited `l3miss` events, proxy
 * answers (the VXLAN `proxy` flag and `ip neigh add proxy` entries), `ip neigh`
 * printing and JSON. The address family is a small {@link NeighFamily} descriptor:
 * the key width in int32 words and how addresses become key words and back.
 *
 * Storage: one Int32Array record per entry ([macLo, macHi, meta, key words]) plus a
 * Float64 update time, found through an open-addressing hash of the key words, so
 * lookups allocate nothing. Lookups return a view object owned by the table that is
 * overwritten by the next lookup; use `get()` for a stable copy.
 */
import { writeMacHL } from '../codec/addr.js';
import { I32Map, WordsMap, Slots, MissLimiter, TWO32, growTo, toMac, toUnicastMac, checkDev, formatMac, COARSE_NOW, coarseNow, startCoarseClock } from './internal.js';

/** Neighbour Unreachability Detection state, as `ip neigh` names them. */
export type NeighState = 'permanent' | 'noarp' | 'reachable' | 'stale' | 'incomplete' | 'failed';

/** A neighbour entry; `A` is the family's address type. */
export interface NeighEntry<A> {
  /** Address: a uint32 for IPv4; 16 bytes for IPv6 (in a lookup view, a buffer reused by the table). */
  readonly ip: A;
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

/** Input for add/replace (`ip neigh add <ip> lladdr <mac> dev <dev> nud <state>`). */
export interface NeighInput<A> {
  /** Address: text, or the family's address value (uint32 / 16 bytes). */
  ip: string | A;
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
  /** Address (text). */
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

/** Options of a neighbour table. */
export interface NeighbourOptions {
  /** Clock in ms. Default: Date.now, read on hot paths through a shared 10 ms coarse clock so that lookups allocate no heap number; an injected clock is called as is. */
  clock?: () => number;
  /** reachable -> stale after this long without confirmation (kernel base_reachable_time 30 s). */
  reachableTimeMs?: number;
  /** stale/failed non-permanent entries are removed by sweep() after this long (kernel gc_stale_time 60 s). */
  gcStaleTimeMs?: number;
  /** incomplete -> failed after this long (kernel ~3 probes x 1 s). */
  incompleteTimeMs?: number;
  /** l3miss rate limit: at most one event per address per interval (default 1000 ms)... */
  missIntervalMs?: number;
  /** ...and at most this many events per interval in total (default 100). */
  missBurst?: number;
  /** Answer ARP/NDP from this table in proxyLookup() (the VXLAN device's `proxy` flag). Default true. */
  proxy?: boolean;
  /** MAC used to answer for explicit proxy entries (`ip neigh add proxy`), e.g. the VTEP's own MAC. */
  proxyMac?: string | number;
  /** Maximum entries (kernel gc_thresh3-like); add() throws beyond it. Default unlimited. */
  maxEntries?: number;
}

/** Listener for `l3miss`: the address that had no usable entry (a fresh value). */
export type NeighMissListener<A> = (ip: A) => void;

/**
 * An address family as the neighbour table sees it. Keys are `words` int32 words
 * holding the address in network order, so sorting keys word by word (unsigned)
 * sorts addresses.
 */
export interface NeighFamily<A> {
  /** Key width in int32 words (1 for IPv4, 4 for IPv6). */
  readonly words: number;
  /**
   * Hot path: key words of `a` (for a byte address, the bytes at `off`) into
   * `k[0..words)`. Must not allocate. (A number address must be a one-word key, which
   * hot paths look up directly, so that it is never boxed to be passed to a call.)
   */
  load(a: A, off: number, k: Int32Array): void;
  /** Control plane: parse `v` into key words `k[0..words)`; throws naming the value. */
  parse(v: string | A, k: Int32Array): void;
  /** The address held in `k[ko..ko+words)`, as a fresh value. */
  addr(k: Int32Array, ko: number): A;
  /**
   * Hot path: set `v.ip` to the address held in `k[ko..ko+words)` without allocating
   * (a byte address is written into the existing `v.ip`). Storing inside the family's
   * own function keeps an IPv4 number unboxed on its way into the view.
   */
  toView(v: { ip: A }, k: Int32Array, ko: number): void;
  /** Text form of the address in `k[ko..ko+words)`. */
  format(k: Int32Array, ko: number): string;
}

const ST_NAMES: readonly NeighState[] = ['permanent', 'noarp', 'reachable', 'stale', 'incomplete', 'failed'];
const S_PERMANENT = 0;
const S_NOARP = 1;
const S_REACHABLE = 2;
const S_STALE = 3;
const S_INCOMPLETE = 4;
const S_FAILED = 5;
/** Entry record words: [macLo, macHi, meta, key words...]; meta = state | ROUTER | devIndex << 16. */
const MAC_LO = 0;
const MAC_HI = 1;
const META = 2;
const KEY = 3;
const ROUTER = 256;
/** Proxy record words: [devIndex, key words...]. */
const P_DEV = 0;
const P_KEY = 1;

/**
 * The lookup view. Fields are created in the constructor from typed first values (a
 * number `ip` starts as a number, not undefined) so that V8 keeps IPv4 addresses,
 * MACs and times as unboxed doubles and a lookup stores them without allocating.
 */
class View<A> implements NeighEntry<A> {
  declare ip: A;
  declare mac: number;
  declare state: NeighState;
  declare dev: string;
  declare router: boolean;
  declare updated: number;
  constructor(ip: A) {
    this.ip = ip;
    this.mac = 0;
    this.state = 'permanent';
    this.dev = '';
    this.router = false;
    this.updated = 0;
  }
}

/**
 * One View subclass per family, so that each family's views have their own hidden
 * class and a Uint8Array `ip` (IPv6) never turns the IPv4 views' unboxed `ip` into a
 * boxed one.
 */
const viewClasses = new WeakMap<object, unknown>();

function newView<A>(fam: NeighFamily<A>): View<A> {
  let C = viewClasses.get(fam) as (new (ip: A) => View<A>) | undefined;
  if (C === undefined) {
    C = class FamilyView extends View<A> {};
    viewClasses.set(fam, C);
  }
  return new C(fam.addr(new Int32Array(fam.words), 0));
}

/**
 * Keyed records: 2^sh int32 words a slot in `r`, the key words at `keyOff`, found
 * through an open-addressing hash of the key (an I32Map for one-word keys, else a
 * WordsMap). Slots are reused after removal.
 */
class Records {
  /** Index of one-word keys, else null. */
  readonly one: I32Map | null;
  /** Index of wider keys, else null. */
  private readonly many: WordsMap | null;
  private readonly slots = new Slots();
  /** log2 of the record stride. */
  readonly sh: number;
  /** Records held (a plain field: read on hot paths). */
  size = 0;
  /** The records. Replaced (grown) by insert(). */
  r: Int32Array;

  constructor(
    private readonly words: number,
    private readonly keyOff: number,
  ) {
    this.one = words === 1 ? new I32Map() : null;
    this.many = words === 1 ? null : new WordsMap(words);
    let sh = 0;
    while (1 << sh < keyOff + words) sh++;
    this.sh = sh;
    this.r = new Int32Array(16 << sh);
  }

  /** Slot of the key `k[ko..ko+words)`, or -1. Allocation-free. */
  find(k: Int32Array, ko = 0): number {
    return this.one !== null ? this.one.get(k[ko]!) : this.many!.get(k, ko);
  }

  /** Slot of the key `k[0..words)`, allocated (key copied in) when absent. */
  insert(k: Int32Array): number {
    let s = this.find(k);
    if (s >= 0) return s;
    s = this.slots.alloc();
    this.r = growTo(this.r, (s + 1) << this.sh);
    this.r.set(k, (s << this.sh) + this.keyOff);
    if (this.one !== null) this.one.set(k[0]!, s);
    else this.many!.set(k, s, 0);
    this.size++;
    return s;
  }

  /** Remove the record with the key `k[ko..ko+words)`; returns its slot or -1. */
  remove(k: Int32Array, ko = 0): number {
    const s = this.one !== null ? this.one.delete(k[ko]!) : this.many!.delete(k, ko);
    if (s >= 0) {
      this.slots.release(s);
      this.size--;
    }
    return s;
  }

  /** Remove the record in slot `s`. */
  removeSlot(s: number): void {
    this.remove(this.r, this.key(s));
  }

  /** Offset in `r` of the key words of slot `s`. */
  key(s: number): number {
    return (s << this.sh) + this.keyOff;
  }

  /** Live slots, sorted by key (control plane). */
  sorted(): number[] {
    const out: number[] = [];
    const r = this.r;
    for (let s = 0; s < this.slots.high; s++) if (this.find(r, this.key(s)) === s) out.push(s);
    return out.sort((a, b) => {
      const ka = this.key(a);
      const kb = this.key(b);
      for (let w = 0; w < this.words; w++) {
        const d = (r[ka + w]! >>> 0) - (r[kb + w]! >>> 0);
        if (d !== 0) return d;
      }
      return 0;
    });
  }
}

/**
 * A neighbour table over the address family `fam` (see NeighbourTable and
 * NeighbourTable6). `A` is the address type of entries and hot-path lookups.
 */
export class NeighbourCore<A> {
  /** Entries. */
  private readonly ent: Records;
  /** Explicit proxy entries (`ip neigh add proxy`). */
  private readonly prox: Records;
  /** Hot-path copies of `ent`'s one-word index (number addresses), records (refreshed whenever they may grow) and stride shift. */
  private readonly one: I32Map | null;
  private r: Int32Array;
  private readonly sh: number;
  private upd = new Float64Array(16);
  /** Scratch key words of the address being looked up / parsed. */
  private readonly k: Int32Array;
  private readonly devs: string[] = [];
  private readonly devByName = new Map<string, number>();
  private readonly view: View<A>;
  private readonly limiter: MissLimiter;
  private readonly listeners: NeighMissListener<A>[] = [];
  private readonly clock: () => number;
  /** No clock injected: hot paths read the shared coarse clock (no heap number per call). */
  private readonly coarse: boolean;
  private readonly reachableTime: number;
  private readonly gcStale: number;
  private readonly incompleteTime: number;
  private readonly proxyOn: boolean;
  private readonly proxyMac: number;
  private readonly max: number;

  constructor(
    private readonly fam: NeighFamily<A>,
    opts: NeighbourOptions = {},
  ) {
    this.ent = new Records(fam.words, KEY);
    this.prox = new Records(fam.words, P_KEY);
    this.one = this.ent.one;
    this.r = this.ent.r;
    this.sh = this.ent.sh;
    this.k = new Int32Array(fam.words);
    if (typeof fam.addr(this.k, 0) === 'number' && fam.words !== 1) throw new Error('a family of number addresses must have one-word keys');
    this.view = newView(fam);
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

  /** Number of (non-proxy) entries. */
  get size(): number {
    return this.ent.size;
  }

  /** True when an entry for `ip` exists in any state. */
  has(ip: string | A): boolean {
    this.fam.parse(ip, this.k);
    return this.ent.find(this.k) >= 0;
  }

  /** Subscribe to `l3miss` (rate-limited). Returns an unsubscribe function. */
  on(event: 'l3miss', fn: NeighMissListener<A>): () => void {
    if (event !== 'l3miss') throw new Error(`unknown event "${String(event)}"`);
    this.listeners.push(fn);
    return () => {
      const i = this.listeners.indexOf(fn);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }

  /**
   * Hot path: the usable entry for `ip` (permanent/noarp/reachable/stale), or
   * undefined (then `l3miss` fires, rate-limited). For a byte address, `off` is where
   * it starts in `ip` (e.g. inside a packet). The returned object is a view reused by
   * the next lookup/proxyLookup on this table. Allocation-free on hit.
   */
  lookup(ip: A, off = 0): NeighEntry<A> | undefined {
    const s = this.usable(typeof ip === 'number' ? this.one!.get(ip | 0) : this.slotOf(ip, off));
    if (s >= 0) return this.fill(s);
    this.miss(ip, off);
    return undefined;
  }

  /**
   * Hot path for an encapsulating dataplane: write the link-layer address of the usable
   * entry for `ip` into `buf[off..off+6)` and return true; or return false (then
   * `l3miss` fires, rate-limited) and leave `buf` alone. `ipOff` is where a byte
   * address starts in `ip`. Allocation-free: the MAC goes from the int32 record to the
   * bytes without ever being a 48-bit double.
   */
  lookupMacInto(ip: A, buf: Uint8Array, off: number, ipOff = 0): boolean {
    const s = this.usable(typeof ip === 'number' ? this.one!.get(ip | 0) : this.slotOf(ip, ipOff));
    if (s < 0) {
      this.miss(ip, ipOff);
      return false;
    }
    const b = s << this.sh;
    writeMacHL(buf, off, this.r[b + MAC_HI]!, this.r[b + MAC_LO]!);
    return true;
  }

  /**
   * Answer an ARP request / neighbour solicitation for `ip` on the VTEP's behalf: an
   * explicit proxy entry (answered with `proxyMac`), or, when the `proxy` option is
   * on, a usable neighbour entry. Misses of the latter fire `l3miss`. Same view
   * semantics and `off` as lookup().
   */
  proxyLookup(ip: A, off = 0): NeighEntry<A> | undefined {
    if (this.prox.size > 0 && this.proxyEntry(ip, off)) return this.view;
    if (!this.proxyOn) return undefined;
    return this.lookup(ip, off);
  }

  /** A stable copy of the entry for `ip` in any state (control plane; no events). */
  get(ip: string | A): NeighEntry<A> | undefined {
    this.fam.parse(ip, this.k);
    const s = this.ent.find(this.k);
    if (s < 0 || this.ageSlot(s, this.clock())) return undefined;
    return this.copy(s);
  }

  /** `ip neigh add`: throws "RTNETLINK answers: File exists" when present. */
  add(n: NeighInput<A>): void {
    this.fam.parse(n.ip, this.k);
    if (this.ent.find(this.k) >= 0) throw new Error(`RTNETLINK answers: File exists (${this.fam.format(this.k, 0)})`);
    this.replace(n);
  }

  /** `ip neigh replace`: add or overwrite. */
  replace(n: NeighInput<A>): void {
    this.fam.parse(n.ip, this.k);
    const dev = checkDev(n.dev);
    const state = n.state ?? 'permanent';
    const st = ST_NAMES.indexOf(state);
    if (st < 0) throw new Error(`invalid neighbour state "${String(state)}"`);
    let mac = 0;
    if (n.lladdr !== undefined) mac = toUnicastMac(n.lladdr, 'neighbour lladdr');
    else if (st < S_INCOMPLETE) throw new Error(`neighbour ${this.fam.format(this.k, 0)}: lladdr required for state ${state}`);
    this.set(mac, st, dev, n.router === true, this.clock());
  }

  /**
   * Record a confirmation (e.g. an ARP reply / NA or a learned packet): creates or
   * refreshes a reachable entry. Permanent/noarp entries are left alone. Returns true if changed.
   */
  confirm(ip: string | A, mac: number, dev: string): boolean {
    this.fam.parse(ip, this.k);
    const s = this.ent.find(this.k);
    const meta = s >= 0 ? this.r[(s << this.sh) + META]! : -1;
    const st = meta & 255;
    if (s >= 0 && (st === S_PERMANENT || st === S_NOARP)) return false;
    this.set(toUnicastMac(mac, 'neighbour lladdr'), S_REACHABLE, checkDev(dev), s >= 0 && (meta & ROUTER) !== 0, this.clock());
    return true;
  }

  /** `ip neigh del`: false when absent. */
  delete(ip: string | A): boolean {
    this.fam.parse(ip, this.k);
    return this.ent.remove(this.k) >= 0;
  }

  /** `ip neigh add proxy <ip> dev <dev>` (answered with the `proxyMac` option). */
  addProxy(ip: string | A, dev: string): void {
    this.fam.parse(ip, this.k);
    const d = this.devIndex(checkDev(dev));
    const p = this.prox.insert(this.k);
    this.prox.r[(p << this.prox.sh) + P_DEV] = d;
  }

  /** `ip neigh del proxy <ip>`. */
  deleteProxy(ip: string | A): boolean {
    this.fam.parse(ip, this.k);
    return this.prox.remove(this.k) >= 0;
  }

  /** Age entries: reachable -> stale, incomplete -> failed, and drop stale/failed older than gcStaleTime. Returns entries removed. */
  sweep(now: number = this.clock()): number {
    let removed = 0;
    for (const s of this.ent.sorted()) if (this.ageSlot(s, now)) removed++;
    return removed;
  }

  /** Remove all entries (not proxies). */
  flush(): void {
    for (const s of this.ent.sorted()) this.ent.removeSlot(s);
  }

  /** Snapshot of all entries (control plane), sorted by address. */
  list(): NeighEntry<A>[] {
    this.sweep();
    return this.ent.sorted().map((s) => this.copy(s));
  }

  /** The table in the shape of `ip neigh show` / `ip -6 neigh show`. */
  show(): string {
    return this.rows()
      .map((j) => `${j.dst} dev ${j.dev}${j.lladdr === undefined ? '' : ` lladdr ${j.lladdr}`}${j.router ? ' router' : ''} ${j.state!.toUpperCase()}`)
      .join('\n');
  }

  /** Proxy entries in the shape of `ip neigh show proxy`. */
  showProxy(): string {
    return this.proxyRows()
      .map((j) => `${j.dst} dev ${j.dev} proxy`)
      .join('\n');
  }

  /** JSON export (entries then proxies). */
  toJSON(): NeighbourJson[] {
    return [...this.rows(), ...this.proxyRows()];
  }

  /** Import from JSON (replace semantics). */
  importJSON(rows: readonly NeighbourJson[]): void {
    for (const j of rows) {
      if (j.proxy) this.addProxy(j.dst, j.dev);
      else this.replace({ ip: j.dst, dev: j.dev, lladdr: j.lladdr, state: j.state, router: j.router });
    }
  }

  /** Build a table from JSON (`NeighbourTable.fromJSON(rows)`, `NeighbourTable6.fromJSON(rows)`). */
  static fromJSON<T extends { importJSON(rows: readonly NeighbourJson[]): void }>(this: new (opts?: NeighbourOptions) => T, rows: readonly NeighbourJson[], opts?: NeighbourOptions): T {
    const t = new this(opts);
    t.importJSON(rows);
    return t;
  }

  /** Entries as JSON rows, sorted by address (after ageing). */
  private rows(): NeighbourJson[] {
    this.sweep();
    const r = this.r;
    return this.ent.sorted().map((s) => {
      const b = s << this.sh;
      const meta = r[b + META]!;
      const st = meta & 255;
      const j: NeighbourJson = { dst: this.fam.format(r, b + KEY), dev: this.devs[meta >>> 16]!, state: ST_NAMES[st]! };
      if (st < S_INCOMPLETE) j.lladdr = formatMac(r[b + MAC_HI]! * TWO32 + (r[b + MAC_LO]! >>> 0));
      if ((meta & ROUTER) !== 0) j.router = true;
      return j;
    });
  }

  /** Proxy entries as JSON rows, sorted by address. */
  private proxyRows(): NeighbourJson[] {
    const P = this.prox;
    return P.sorted().map((p) => ({ dst: this.fam.format(P.r, P.key(p)), dev: this.devs[P.r[(p << P.sh) + P_DEV]!]!, proxy: true }));
  }

  /** Fill the view from the explicit proxy entry for `ip` (answered with `proxyMac`); false when there is none. */
  private proxyEntry(ip: A, off: number): boolean {
    const P = this.prox;
    this.fam.load(ip, off, this.k);
    const p = P.find(this.k);
    if (p < 0) return false;
    const v = this.view;
    this.fam.toView(v, this.k, 0);
    v.mac = this.proxyMac;
    v.state = 'permanent';
    v.dev = this.devs[P.r[(p << P.sh) + P_DEV]!]!;
    v.router = false;
    v.updated = 0;
    return true;
  }

  /** Slot of the entry for a non-number (byte) address, or -1. */
  private slotOf(ip: A, off: number): number {
    this.fam.load(ip, off, this.k);
    return this.ent.find(this.k);
  }

  /** `s` if it is the slot of a usable (permanent/noarp/reachable/stale) entry, else -1; ages reachable -> stale on the way. */
  private usable(s: number): number {
    if (s < 0) return -1;
    const m = (s << this.sh) + META;
    const r = this.r;
    let st = r[m]! & 255;
    if (st === S_REACHABLE && (this.coarse ? COARSE_NOW[0]! : this.clock()) - this.upd[s]! > this.reachableTime) {
      st = S_STALE;
      r[m] = (r[m]! & ~255) | st;
    }
    return st < S_INCOMPLETE ? s : -1;
  }

  /** Install a validated entry for the key in `k`. */
  private set(mac: number, st: number, dev: string, router: boolean, now: number): void {
    const e = this.ent;
    if (e.find(this.k) < 0 && e.size >= this.max) throw new Error(`neighbour table full (${this.max} entries): cannot add ${this.fam.format(this.k, 0)}`);
    const d = this.devIndex(dev);
    const s = e.insert(this.k);
    this.r = e.r;
    this.upd = growTo(this.upd, s + 1);
    const b = s << this.sh;
    const r = this.r;
    r[b + MAC_LO] = mac | 0;
    r[b + MAC_HI] = Math.floor(mac / TWO32);
    r[b + META] = st | (router ? ROUTER : 0) | (d << 16);
    this.upd[s] = now;
  }

  /** The view filled from slot `s`. */
  private fill(s: number): View<A> {
    const v = this.view;
    const r = this.r;
    const b = s << this.sh;
    const meta = r[b + META]!;
    this.fam.toView(v, r, b + KEY);
    v.mac = r[b + MAC_HI]! * TWO32 + (r[b + MAC_LO]! >>> 0);
    v.state = ST_NAMES[meta & 255]!;
    v.dev = this.devs[meta >>> 16]!;
    v.router = (meta & ROUTER) !== 0;
    v.updated = this.upd[s]!;
    return v;
  }

  /** A stable copy of slot `s`. */
  private copy(s: number): NeighEntry<A> {
    return { ...this.fill(s), ip: this.fam.addr(this.r, (s << this.sh) + KEY) };
  }

  /** Apply ageing to one slot; returns true if it was removed. */
  private ageSlot(s: number, now: number): boolean {
    const r = this.r;
    const m = (s << this.sh) + META;
    const st = r[m]! & 255;
    const age = now - this.upd[s]!;
    if (st === S_REACHABLE && age > this.reachableTime) r[m] = (r[m]! & ~255) | S_STALE;
    else if (st === S_INCOMPLETE && age > this.incompleteTime) r[m] = (r[m]! & ~255) | S_FAILED;
    const st2 = r[m]! & 255;
    if ((st2 === S_STALE || st2 === S_FAILED) && age > this.gcStale + (st2 === S_STALE ? this.reachableTime : this.incompleteTime)) {
      this.ent.removeSlot(s);
      return true;
    }
    return false;
  }

  /** `l3miss` for `ip` (at `off`), rate-limited per address (key words folded) and in total. */
  private miss(ip: A, off: number): void {
    if (this.listeners.length === 0) return;
    const k = this.k;
    this.fam.load(ip, off, k);
    let h = 0;
    for (let w = 0; w < k.length; w++) h ^= k[w]!;
    if (!this.limiter.allow(h, this.coarse ? COARSE_NOW[0]! : this.clock())) return;
    const a = this.fam.addr(k, 0);
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
