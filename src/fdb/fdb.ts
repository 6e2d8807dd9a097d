/**
 * VXLAN forwarding database: (VNI, MAC) -> one or more remote destinations
 * (underlay IP, UDP port, VNI), as the kernel's vxlan FDB (`bridge fdb ... self`).
 *
 * The all-zeros MAC holds the default destinations used for broadcast, multicast
 * and unknown unicast (head-end replication). Entries are permanent, static or
 * learned; learned entries age out (default 300 s). A lookup that finds neither
 * the MAC nor a default fires a rate-limited `l2miss`.
 *
 * Storage is struct-of-arrays on typed arrays with the common single IPv4
 * destination inline; entries with several (or IPv6) destinations keep an array.
 * `lookup()` returns a view owned by the table, overwritten by the next lookup.
 */
import { WordsMap, Slots, MissLimiter, TWO32, growTo, toU32, toV6, toMac, toUnicastMac, checkVni, checkPort, checkDev, u32ToIpv4, formatMac, formatIpv6, COARSE_NOW, coarseNow, startCoarseClock } from './internal.js';

/** One remote destination of an FDB entry. */
export interface FdbDest {
  /** Address family of the underlay destination. */
  readonly family: 4 | 6;
  /** IPv4 destination as uint32 (0 when family is 6). */
  readonly ip: number;
  /** IPv6 destination (16 bytes) when family is 6, else null. */
  readonly ip6: Uint8Array | null;
  /** UDP destination port; 0 means the device's default port. */
  readonly port: number;
  /** VNI to put on the wire. */
  readonly vni: number;
}

/** FDB entry state: `permanent` and `static` are user-added (never aged or moved by learning); `learned` entries age. */
export type FdbState = 'permanent' | 'static' | 'learned';

/** An FDB entry. */
export interface FdbEntry {
  /** Key VNI. */
  readonly vni: number;
  /** Key MAC as a 48-bit number (0 for the default entry). */
  readonly mac: number;
  /** Device name. */
  readonly dev: string;
  /** State. */
  readonly state: FdbState;
  /** Clock time (ms) of the last add/learn. */
  readonly updated: number;
  /** Destinations (at least one). */
  readonly dests: readonly FdbDest[];
}

/** Input for Fdb.add/replace/append (`bridge fdb add <mac> dev <dev> dst <ip> [port p] [vni v] self permanent`). */
export interface FdbInput {
  /** MAC ("aa:bb:..", 48-bit number); "00:00:00:00:00:00" is the default entry. Multicast MACs are refused. */
  mac: string | number;
  /** Key VNI (the device's VNI for a non-external device). Default: the table's `vni` option. */
  vni?: number;
  /** Device. Default: the table's `dev` option. */
  dev?: string;
  /** Underlay destination: IPv4 (dotted quad or uint32) or IPv6 (string with ':' or 16 bytes). */
  dst: string | number | Uint8Array;
  /** UDP port, 0 = device default. */
  port?: number;
  /** VNI on the wire; default the key VNI. */
  dstVni?: number;
  /** Default 'permanent'. */
  state?: FdbState;
}

/** JSON form of one (entry, destination) pair, one row per destination as `bridge fdb show` prints. */
export interface FdbJson {
  /** MAC. */
  mac: string;
  /** Key VNI. */
  vni: number;
  /** Device. */
  dev: string;
  /** Destination IP. */
  dst: string;
  /** Port when not 0. */
  port?: number;
  /** Wire VNI when it differs from the key VNI. */
  dstVni?: number;
  /** State. */
  state: FdbState;
}

/** Options of an Fdb. */
export interface FdbOptions {
  /** Clock in ms. Default: Date.now, read on hot paths through a shared 10 ms coarse clock so that lookups allocate no heap number; an injected clock is called as is. */
  clock?: () => number;
  /** Learned entries expire after this long (kernel vxlan ageing, default 300 s). */
  ageingMs?: number;
  /** Learn source MACs in learn() (kernel `learning`). Default true. */
  learning?: boolean;
  /** Maximum entries (kernel `maxaddress`); default unlimited. */
  maxEntries?: number;
  /** Default key VNI for add() input without `vni`. Default 1 (flannel.1). */
  vni?: number;
  /** Default device name. Default "flannel.1". */
  dev?: string;
  /** The device's default destination port, omitted when printing. Default 0. */
  dstPort?: number;
  /**
   * Also fire `l2miss` when a unicast MAC has no entry of its own (whether or not it falls back to the
   * all-zeros entry; a dataplane that reports unknown unicast even while flooding it). Group MACs never miss then.
   * Default false: like the kernel, only when neither exists.
   */
  missOnDefault?: boolean;
  /** l2miss rate limit: one event per (VNI, MAC) per interval (default 1000 ms)... */
  missIntervalMs?: number;
  /** ...and at most this many per interval (default 100). */
  missBurst?: number;
}

/** Result of Fdb.learn(). */
export type LearnResult = 'new' | 'moved' | 'refreshed' | 'ignored';

/** Listener for `l2miss`: key VNI and destination MAC (48-bit number) with no entry and no default. */
export type L2MissListener = (vni: number, mac: number) => void;

const S_PERMANENT = 0;
const S_STATIC = 1;
const S_LEARNED = 2;
const ST_NAMES: readonly FdbState[] = ['permanent', 'static', 'learned'];

class Dest implements FdbDest {
  family: 4 | 6 = 4;
  ip = 0;
  ip6: Uint8Array | null = null;
  port = 0;
  vni = 0;
}

class View implements FdbEntry {
  vni = 0;
  mac = 0;
  dev = '';
  state: FdbState = 'permanent';
  updated = 0;
  dests: readonly FdbDest[] = [];
}

/** The VXLAN forwarding database. */
export class Fdb {
  private readonly map = new WordsMap(3);
  private readonly slots = new Slots();
  private readonly key = new Int32Array(3);
  /**
   * Records, stride 8 (32 bytes, one cache line per lookup):
   * [vni, macHi, macLo, state | multi << 4 | devIndex << 16, dstIp, dstPort, dstVni, 0].
   * The inline destination is the single IPv4 one; `multi` holds the rest.
   */
  private r = new Int32Array(128);
  private upd = new Float64Array(16);
  private readonly multi = new Map<number, Dest[]>();
  private readonly devs: string[] = [];
  private readonly devByName = new Map<string, number>();
  private readonly view = new View();
  private readonly one = new Dest();
  private readonly oneArr: readonly FdbDest[] = [this.one];
  private readonly listeners: L2MissListener[] = [];
  private readonly limiter: MissLimiter;
  private readonly clock: () => number;
  /** No clock injected: hot paths read the shared coarse clock (no heap number per call). */
  private readonly coarse: boolean;
  private readonly ageing: number;
  /** Whether learn() learns. */
  learning: boolean;
  private readonly max: number;
  private readonly defVni: number;
  private readonly defDev: string;
  private readonly dstPort: number;
  private readonly missOnDefault: boolean;

  constructor(opts: FdbOptions = {}) {
    this.coarse = opts.clock === undefined;
    this.clock = opts.clock ?? coarseNow;
    if (this.coarse) startCoarseClock();
    this.ageing = opts.ageingMs ?? 300_000;
    this.learning = opts.learning ?? true;
    this.max = opts.maxEntries ?? Infinity;
    this.defVni = checkVni(opts.vni ?? 1);
    this.defDev = checkDev(opts.dev ?? 'flannel.1');
    this.dstPort = checkPort(opts.dstPort ?? 0);
    this.missOnDefault = opts.missOnDefault ?? false;
    this.limiter = new MissLimiter(opts.missIntervalMs ?? 1000, opts.missBurst ?? 100);
  }

  /** Configured maximum number of entries (Infinity when unlimited). */
  get maxEntries(): number {
    return this.max;
  }

  /** True when an entry for exactly (vni, mac) exists (expired learned entries count until swept). */
  has(vni: number, mac: number): boolean {
    return this.map.get3(vni, (mac / TWO32) | 0, mac | 0) >= 0;
  }

  /** Number of entries (an entry with several destinations counts once). */
  get size(): number {
    return this.map.size;
  }

  /** Subscribe to `l2miss` (rate-limited). Returns an unsubscribe function. */
  on(event: 'l2miss', fn: L2MissListener): () => void {
    if (event !== 'l2miss') throw new Error(`unknown event "${String(event)}"`);
    this.listeners.push(fn);
    return () => {
      const i = this.listeners.indexOf(fn);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }

  /**
   * Hot path, the kernel's vxlan_xmit lookup: the entry for (vni, mac); failing that
   * the all-zeros default entry of `vni` (broadcast / unknown unicast, head-end
   * replication to every destination); failing that undefined and `l2miss`.
   * Expired learned entries are dropped on the way. Returns a view reused by the
   * next lookup on this table. Allocation-free.
   */
  lookup(vni: number, mac: number): FdbEntry | undefined {
    return this.lookupHL(vni, (mac / TWO32) | 0, mac | 0);
  }

  /**
   * lookup() with the MAC read from `buf[off..off+6)` (e.g. an inner Ethernet destination),
   * as two small integers: no 48-bit double is formed unless an `l2miss` is emitted.
   */
  lookupBytes(vni: number, buf: Uint8Array, off: number): FdbEntry | undefined {
    return this.lookupHL(vni, (buf[off]! << 8) | buf[off + 1]!, (buf[off + 2]! << 24) | (buf[off + 3]! << 16) | (buf[off + 4]! << 8) | buf[off + 5]!);
  }

  /** lookup() by MAC halves: `hi` the top 16 bits, `lo` the low 32 bits as int32. */
  private lookupHL(vni: number, hi: number, lo: number): FdbEntry | undefined {
    let s = this.map.get3(vni, hi, lo);
    if (s >= 0 && (this.r[(s << 3) + 3]! & 15) === S_LEARNED) s = this.expireCheck(s);
    return s >= 0 ? this.fill(s) : this.lookupDefault(vni, hi, lo);
  }

  /** No entry of its own for (vni, hi, lo): the all-zeros entry, else undefined; l2miss as configured. (Kept out of lookupHL so the hit path stays small enough to inline.) */
  private lookupDefault(vni: number, hi: number, lo: number): FdbEntry | undefined {
    let s = -1;
    if ((hi | lo) !== 0) {
      if (this.missOnDefault && ((hi >>> 8) & 1) === 0) this.miss(vni, hi, lo); // unicast only
      s = this.map.get3(vni, 0, 0);
      if (s >= 0 && (this.r[(s << 3) + 3]! & 15) === S_LEARNED) s = this.expireCheck(s);
    }
    if (s >= 0) return this.fill(s);
    if (!this.missOnDefault) this.miss(vni, hi, lo);
    return undefined;
  }

  /** Exact entry for (vni, mac) as a stable copy; no default fallback, no events (control plane). */
  get(vni: number, mac: string | number): FdbEntry | undefined {
    const m = toMac(mac);
    const k = this.key;
    k[0] = checkVni(vni);
    k[1] = (m / TWO32) | 0;
    k[2] = m | 0;
    const s = this.find(k);
    if (s < 0) return undefined;
    const v = this.fill(s);
    return { ...v, dests: v.dests.map((d) => ({ ...d })) };
  }

  /**
   * Learn from a received packet (kernel vxlan_snoop): source `mac` seen from
   * `srcIp:srcPort` on `vni`. Creates a learned entry, moves a learned entry whose
   * source changed, or refreshes it. Permanent/static entries, multicast or zero
   * source MACs, learning off, or a full table: 'ignored'. Allocation-free except
   * when growing.
   */
  learn(vni: number, mac: number, srcIp: number, srcPort: number, dev?: string): LearnResult {
    if (mac < 0 || mac > 0xffffffffffff) return 'ignored';
    return this.learnHL(vni, (mac / TWO32) | 0, mac | 0, srcIp, srcPort, dev);
  }

  /** learn() with the source MAC read from `buf[off..off+6)` (e.g. an inner Ethernet source). Allocation-free on refresh. */
  learnBytes(vni: number, buf: Uint8Array, off: number, srcIp: number, srcPort: number, dev?: string): LearnResult {
    return this.learnHL(vni, (buf[off]! << 8) | buf[off + 1]!, (buf[off + 2]! << 24) | (buf[off + 3]! << 16) | (buf[off + 4]! << 8) | buf[off + 5]!, srcIp, srcPort, dev);
  }

  private learnHL(vni: number, hi: number, lo: number, srcIp: number, srcPort: number, dev: string | undefined): LearnResult {
    if (!this.learning || (hi | lo) === 0 || ((hi >>> 8) & 1) === 1) return 'ignored';
    const k = this.key;
    k[0] = vni;
    k[1] = hi;
    k[2] = lo;
    const s = this.map.get(k, 0);
    const now = this.coarse ? COARSE_NOW[0]! : this.clock();
    if (s >= 0) {
      if (this.stOf(s) !== S_LEARNED) return 'ignored';
      this.upd[s] = now;
      const b = s << 3;
      if ((this.r[b + 3]! & 16) === 0 && this.r[b + 4] === (srcIp | 0) && this.r[b + 5] === srcPort) return 'refreshed';
      this.setSingle(s, srcIp, srcPort, vni);
      return 'moved';
    }
    if (this.map.size >= this.max) return 'ignored';
    if (vni < 0 || vni > 0xffffff || srcPort < 0 || srcPort > 65535) return 'ignored';
    this.insert(k, S_LEARNED, now, dev === undefined ? this.defDev : dev, srcIp, srcPort, vni);
    return 'new';
  }

  /** `bridge fdb add`: throws "RTNETLINK answers: File exists" when the entry exists. */
  add(e: FdbInput): void {
    const p = this.parse(e);
    if (this.map.get(p.key, 0) >= 0) throw new Error(`RTNETLINK answers: File exists (${formatMac(p.mac)} vni ${p.vni})`);
    this.install(p, false);
  }

  /** `bridge fdb replace`: create or overwrite the entry with this single destination. */
  replace(e: FdbInput): void {
    this.install(this.parse(e), false);
  }

  /** `bridge fdb append`: add a destination to the entry (creating it). Used for the all-zeros default (HER). */
  append(e: FdbInput): void {
    this.install(this.parse(e), true);
  }

  /** `bridge fdb del`: delete the entry, or only destination `dst` (with `port`) of it. False when absent. */
  delete(vni: number, mac: string | number, dst?: string | number | Uint8Array, port?: number): boolean {
    const m = toMac(mac);
    const k = new Int32Array([checkVni(vni), (m / TWO32) | 0, m | 0]);
    const s = this.map.get(k, 0);
    if (s < 0) return false;
    if (dst !== undefined) {
      const d = parseDest(dst, port ?? 0, 0);
      const cur = this.destsOf(s);
      const keep = cur.filter((x) => !(x.family === d.family && x.ip === d.ip && sameV6(x.ip6, d.ip6) && (port === undefined || x.port === d.port)));
      if (keep.length === cur.length) return false;
      if (keep.length > 0) {
        this.setDests(s, keep);
        return true;
      }
    }
    this.remove(s, k);
    return true;
  }

  /** Remove expired learned entries. Returns how many were removed. */
  sweep(now: number = this.clock()): number {
    let n = 0;
    for (let s = 0; s < this.slots.high; s++) {
      if (this.stOf(s) === S_LEARNED && this.live(s) && now - this.upd[s]! > this.ageing) {
        this.remove(s, this.keyOf(s));
        n++;
      }
    }
    return n;
  }

  /** Remove all entries, or only learned ones (`bridge fdb flush ... dynamic`). */
  flush(learnedOnly = false): void {
    for (let s = 0; s < this.slots.high; s++) {
      if (this.live(s) && (!learnedOnly || this.stOf(s) === S_LEARNED)) this.remove(s, this.keyOf(s));
    }
  }

  /** Snapshot of all entries (control plane), sorted by VNI then MAC (default entries last per VNI, as the kernel lists them after unicast ones is not guaranteed). */
  list(): FdbEntry[] {
    const now = this.clock();
    const out: FdbEntry[] = [];
    for (let s = 0; s < this.slots.high; s++) {
      if (!this.live(s)) continue;
      if (this.stOf(s) === S_LEARNED && now - this.upd[s]! > this.ageing) continue;
      const v = this.fill(s);
      out.push({ ...v, dests: v.dests.map((d) => ({ ...d })) });
    }
    return out.sort((a, b) => a.vni - b.vni || (a.mac === 0 ? 1 : 0) - (b.mac === 0 ? 1 : 0) || a.mac - b.mac);
  }

  /** The table in the shape of `bridge fdb show` (one line per destination). */
  show(): string {
    const lines: string[] = [];
    for (const e of this.list()) {
      for (const d of e.dests) {
        const ip = d.family === 4 ? u32ToIpv4(d.ip) : formatIpv6(d.ip6!);
        const port = d.port !== 0 && d.port !== this.dstPort ? ` port ${d.port}` : '';
        const vni = d.vni !== e.vni ? ` vni ${d.vni}` : '';
        const st = e.state === 'learned' ? '' : ` ${e.state}`;
        lines.push(`${formatMac(e.mac)} dev ${e.dev} dst ${ip}${port}${vni} self${st}`);
      }
    }
    return lines.join('\n');
  }

  /** JSON export: one row per destination. */
  toJSON(): FdbJson[] {
    const rows: FdbJson[] = [];
    for (const e of this.list()) {
      for (const d of e.dests) {
        const r: FdbJson = { mac: formatMac(e.mac), vni: e.vni, dev: e.dev, dst: d.family === 4 ? u32ToIpv4(d.ip) : formatIpv6(d.ip6!), state: e.state };
        if (d.port !== 0) r.port = d.port;
        if (d.vni !== e.vni) r.dstVni = d.vni;
        rows.push(r);
      }
    }
    return rows;
  }

  /** Import JSON rows (append semantics, so multi-destination entries round-trip). */
  importJSON(rows: readonly FdbJson[]): void {
    for (const r of rows) this.append({ mac: r.mac, vni: r.vni, dev: r.dev, dst: r.dst, port: r.port, dstVni: r.dstVni, state: r.state });
  }

  /** Build a table from JSON. */
  static fromJSON(rows: readonly FdbJson[], opts?: FdbOptions): Fdb {
    const t = new Fdb(opts);
    t.importJSON(rows);
    return t;
  }

  // ---- internals ----

  /** Find a live slot; drops an expired learned entry. */
  private find(k: Int32Array): number {
    const s = this.map.get(k, 0);
    if (s >= 0 && (this.r[(s << 3) + 3]! & 15) === S_LEARNED && this.clock() - this.upd[s]! > this.ageing) {
      this.remove(s, k);
      return -1;
    }
    return s;
  }

  /** Slot `s` (a learned entry) or -1 if it expired (then it is removed). */
  private expireCheck(s: number): number {
    if ((this.coarse ? COARSE_NOW[0]! : this.clock()) - this.upd[s]! > this.ageing) {
      this.remove(s, this.keyOf(s));
      return -1;
    }
    return s;
  }

  private live(s: number): boolean {
    return this.map.get(this.r, s << 3) === s;
  }

  private keyOf(s: number): Int32Array {
    return this.r.slice(s << 3, (s << 3) + 3);
  }

  private stOf(s: number): number {
    return this.r[(s << 3) + 3]! & 15;
  }

  private fill(s: number): View {
    const v = this.view;
    const r = this.r;
    const b = s << 3;
    const meta = r[b + 3]!;
    v.vni = r[b]!;
    v.mac = r[b + 1]! * TWO32 + (r[b + 2]! >>> 0);
    v.dev = this.devs[meta >>> 16]!;
    v.state = ST_NAMES[meta & 15]!;
    v.updated = this.upd[s]!;
    if ((meta & 16) !== 0) {
      v.dests = this.multi.get(s)!;
    } else {
      const d = this.one;
      d.ip = r[b + 4]! >>> 0;
      d.port = r[b + 5]!;
      d.vni = r[b + 6]!;
      v.dests = this.oneArr;
    }
    return v;
  }

  private destsOf(s: number): Dest[] {
    const b = s << 3;
    if ((this.r[b + 3]! & 16) !== 0) return this.multi.get(s)!.slice();
    const d = new Dest();
    d.ip = this.r[b + 4]! >>> 0;
    d.port = this.r[b + 5]!;
    d.vni = this.r[b + 6]!;
    return [d];
  }

  private setSingle(s: number, ip: number, port: number, vni: number): void {
    const b = s << 3;
    this.r[b + 3] = this.r[b + 3]! & ~16;
    this.multi.delete(s);
    this.r[b + 4] = ip | 0;
    this.r[b + 5] = port;
    this.r[b + 6] = vni;
  }

  private setDests(s: number, ds: Dest[]): void {
    if (ds.length === 1 && ds[0]!.family === 4) {
      this.setSingle(s, ds[0]!.ip, ds[0]!.port, ds[0]!.vni);
    } else {
      this.r[(s << 3) + 3] = this.r[(s << 3) + 3]! | 16;
      this.multi.set(s, ds);
    }
  }

  private insert(k: Int32Array, st: number, now: number, dev: string, ip: number, port: number, dvni: number): number {
    const s = this.slots.alloc();
    this.ensure(s + 1);
    const b = s << 3;
    this.r[b] = k[0]!;
    this.r[b + 1] = k[1]!;
    this.r[b + 2] = k[2]!;
    this.r[b + 3] = st | (this.devIndex(dev) << 16);
    this.upd[s] = now;
    this.setSingle(s, ip, port, dvni);
    this.map.set(k, s, 0);
    return s;
  }

  private remove(s: number, k: Int32Array): void {
    this.map.delete(k, 0);
    this.multi.delete(s);
    this.r[(s << 3) + 3] = 0;
    this.slots.release(s);
  }

  private parse(e: FdbInput): Parsed {
    if (e === null || typeof e !== 'object') throw new Error(`invalid FDB entry ${String(e)}`);
    const mac = toUnicastMac(e.mac, 'FDB', true);
    const vni = checkVni(e.vni ?? this.defVni);
    const dev = checkDev(e.dev ?? this.defDev);
    const state = e.state ?? 'permanent';
    const st = ST_NAMES.indexOf(state);
    if (st < 0) throw new Error(`invalid FDB state "${String(state)}"`);
    const dest = parseDest(e.dst, checkPort(e.port ?? 0), checkVni(e.dstVni ?? vni));
    return { key: new Int32Array([vni, (mac / TWO32) | 0, mac | 0]), mac, vni, dev, st, dest };
  }

  /** Validate capacity, then install (no exception after the first mutation). */
  private install(p: Parsed, append: boolean): void {
    const s = this.map.get(p.key, 0);
    const now = this.clock();
    if (s < 0) {
      if (this.map.size >= this.max) throw new Error(`FDB full (${this.max} entries): cannot add ${formatMac(p.mac)} vni ${p.vni}`);
      const ns = this.insert(p.key, p.st, now, p.dev, 0, 0, p.vni);
      this.setDests(ns, [p.dest]);
      return;
    }
    let ds: Dest[] = [p.dest];
    if (append) {
      const cur = this.destsOf(s);
      const d = p.dest;
      if (cur.some((x) => x.family === d.family && x.ip === d.ip && sameV6(x.ip6, d.ip6) && x.port === d.port && x.vni === d.vni)) {
        throw new Error(`RTNETLINK answers: File exists (${formatMac(p.mac)} dst ${d.family === 4 ? u32ToIpv4(d.ip) : formatIpv6(d.ip6!)})`);
      }
      ds = [...cur, d];
    }
    this.r[(s << 3) + 3] = p.st | (this.r[(s << 3) + 3]! & 16) | (this.devIndex(p.dev) << 16);
    this.upd[s] = now;
    this.setDests(s, ds);
  }

  private miss(vni: number, hi: number, lo: number): void {
    if (this.listeners.length === 0) return;
    // Key folds VNI and MAC; collisions only make the limiter stricter.
    if (!this.limiter.allow((lo ^ Math.imul(vni, 0x9e3779b1)) | 0, this.coarse ? COARSE_NOW[0]! : this.clock())) return;
    const mac = (hi & 0xffff) * TWO32 + (lo >>> 0);
    for (const fn of this.listeners) fn(vni, mac);
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
    this.r = growTo(this.r, this.upd.length * 8);
  }
}

/** A validated FDB input. */
interface Parsed {
  key: Int32Array;
  mac: number;
  vni: number;
  dev: string;
  st: number;
  dest: Dest;
}

function parseDest(dst: string | number | Uint8Array, port: number, vni: number): Dest {
  const d = new Dest();
  if (dst instanceof Uint8Array || (typeof dst === 'string' && dst.includes(':'))) {
    d.family = 6;
    d.ip6 = toV6(dst, 'FDB destination');
  } else {
    d.ip = toU32(dst, 'FDB destination');
  }
  d.port = port;
  d.vni = vni;
  return d;
}

function sameV6(a: Uint8Array | null, b: Uint8Array | null): boolean {
  if (a === null || b === null) return a === b;
  for (let i = 0; i < 16; i++) if (a[i] !== b[i]) return false;
  return true;
}
