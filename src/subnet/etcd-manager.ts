/**
 * flanneld's etcd subnet manager: the network config from `<prefix>/config`, this host's lease
 * under `<prefix>/subnets/<ip>-<len>` (dual stack: `<ip>-<len>&<ipv6>-<len>`; acquired in flannel's order, created by a transaction
 * that succeeds only if the key does not exist, bound to an etcd lease of 24 h and renewed
 * ahead of expiry by re-writing the key under a new lease), and a watch of `<prefix>/subnets/`
 * that keeps a peer map (subnet -> lease) current: adds, changes, removals and expiries, a fresh
 * listing after a compaction, reconnection with exponential backoff. Data in etcd is untrusted:
 * a key that does not parse is skipped and logged once.
 */
import { AddrError, IpPrefix, ipPrefix, parsePrefix } from '../codec/addr.js';
import type { Lease } from '../vtep/backend.js';
import type { Logger } from '../overlayd/daemon.js';
import { SLICE_MS, slicePause } from '../overlayd/slices.js';
import { addrToBig, bigToAddr, ConfigError, leaseKey, leaseNetworks, leaseToEtcd, parseLeaseAttrs, parseLeaseKey, parseNetConf, quoteUntrusted, type LeaseKey, type NetConf, type SubnetRange } from '../overlayd/config.js';
import { EtcdError, parseWatchEvent, type EtcdClient, type EtcdKv, type Parsed, type WatchEvent, type WatchHandle, type WatchMessage } from './etcd-client.js';

/** flanneld's default key prefix. */
export const DEFAULT_ETCD_PREFIX = '/coreos.com/network';
/** TTL of a lease, seconds (flannel's subnetTTL: 24 h). */
export const SUBNET_TTL_SECONDS = 24 * 3600;
/** Largest lease or config value read from etcd, bytes; larger ones are skipped. */
export const MAX_ETCD_VALUE_BYTES = 64 << 10;
/** Attempts at creating a lease when another host takes the chosen subnet first (flannel's raceRetries). */
const RACE_RETRIES = 10;
/** Keys read per request when listing the subnets to watch. */
const LIST_PAGE = 500;
/** Free subnets collected before picking one at random (as flannel). */
const FREE_CANDIDATES = 100;

/** Who gets the peer map: all peers, why, and (after watch events) the subnets that changed since the last report. */
export type PeersHandler = (all: ReadonlyMap<string, Lease>, why: string, changed?: ReadonlySet<string>) => void;

/** Run `f` on each item, pausing (src/overlayd/slices.ts) whenever a slice has taken SLICE_MS; false if `stop()` became true. */
async function sliced<T>(items: readonly T[], f: (x: T) => void, stop: () => boolean): Promise<boolean> {
  let t0 = performance.now();
  for (let i = 0; i < items.length; i++) {
    f(items[i]!);
    if ((i & 7) === 7 && performance.now() - t0 > SLICE_MS) {
      await slicePause();
      if (stop()) return false;
      t0 = performance.now();
    }
  }
  return true;
}

/** Options of {@link EtcdSubnetManager}. */
export interface EtcdManagerOptions {
  /** The etcd client. */
  client: EtcdClient;
  /** Key prefix (default {@link DEFAULT_ETCD_PREFIX}). */
  prefix?: string;
  /** This host's public IP (PublicIP of its lease). */
  publicIp: string;
  /** This host's public IPv6 address (PublicIPv6): on an IPv6-only network our leases are known by it. */
  publicIpv6?: string;
  /** The subnet of the previous run (FLANNEL_SUBNET of subnet.env), network form. */
  previousSubnet?: string;
  /** The IPv6 subnet of the previous run (FLANNEL_IPV6_SUBNET), network form. */
  previousIpv6Subnet?: string;
  /** Lease TTL, seconds (default 24 h). */
  ttlSeconds?: number;
  /** Renew this long before the lease expires, seconds (default 3600: flanneld's 60 minutes). */
  renewMarginSeconds?: number;
  /** Retry a failed renewal after this long, ms (default 60000, as flannel). */
  renewRetryMs?: number;
  /** Reconnection backoff: first delay and cap, ms (default 100 and 5000, as flannel's watch). */
  backoffMs?: { initial: number; max: number };
  /** Largest value read (default {@link MAX_ETCD_VALUE_BYTES}). */
  maxValueBytes?: number;
  /** Log lines. */
  log: Logger;
  /** Random source for picking a free subnet (tests). */
  random?: () => number;
}

/** The lease this host holds. */
export interface HeldLease {
  /** Our subnet, network form. */
  subnet: string;
  /** Our lease as peers see it. */
  lease: Lease;
  /** The etcd lease the key is bound to; "0" for a reservation (a key without a TTL). */
  etcdLease: string;
  /** When the key expires unless renewed (ms since the epoch); Infinity for a reservation. */
  expiresAt: number;
  /** How it was got. */
  how: 'existing' | 'reservation' | 'previous' | 'new';
}

/** What the manager reports for /readyz and /metrics. */
export interface EtcdStatus {
  /** The watch stream is established. */
  connected: boolean;
  /** Our lease is in etcd (as far as we know). */
  leaseHeld: boolean;
  /** When our lease expires (ms since the epoch; Infinity for a reservation, 0 when none). */
  leaseExpiresAt: number;
  /** Last revision seen. */
  revision: number;
  /** Watch reconnections after a failure. */
  reconnects: number;
  /** Re-listings after the watch's revision was compacted. */
  compactions: number;
  /** Keys skipped because their data is unusable (each logged once). */
  skippedKeys: number;
  /** Watch events applied. */
  events: number;
  /** Lease renewals done. */
  renewals: number;
  /** Peers known from etcd. */
  peers: number;
}

/** Our lease's etcd value: flannel's JSON (see leaseToEtcd). */
function leaseValue(l: Lease): string {
  return JSON.stringify(leaseToEtcd(l).value);
}

/** A lease key's subnets (parsed; `subnet` the one it is known by, network form), or why it is not a lease key. */
function subnetOfKey(key: string): Parsed<{ subnet: string; prefix: IpPrefix; k: LeaseKey }> {
  try {
    const k = parseLeaseKey(key);
    return { ok: true, value: { subnet: k.primary.toString(), prefix: k.primary, k } };
  } catch (e) {
    return { ok: false, reason: (e as Error).message };
  }
}

/** First and last address of a prefix, as numbers. */
function span(p: IpPrefix): [bigint, bigint] {
  const a = addrToBig(p.addr);
  return [a, a + (1n << BigInt(p.addr.bits - p.len)) - 1n];
}

/**
 * Free subnets of `range` (SubnetLen long, between SubnetMin and SubnetMax; IPv4 or IPv6) not
 * overlapping any of `taken` (prefixes of the other family are ignored), in address order, at
 * most `limit`. Linear in the candidates plus n log n in `taken`.
 */
export function freeSubnets(range: SubnetRange, taken: readonly IpPrefix[], limit = FREE_CANDIDATES): string[] {
  const family = range.networkCidr.family;
  // disjoint, sorted [start, end] intervals of what is taken
  const iv = taken.filter((p) => p.family === family).map(span).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const merged: [bigint, bigint][] = [];
  for (const [s, e] of iv) {
    const last = merged[merged.length - 1];
    if (last && s <= last[1] + 1n) last[1] = last[1] > e ? last[1] : e;
    else merged.push([s, e]);
  }
  const step = 1n << BigInt(range.networkCidr.addr.bits - range.subnetLen);
  const min = addrToBig(ipPrefix(range.subnetMin).addr);
  const max = addrToBig(ipPrefix(range.subnetMax).addr);
  const out: string[] = [];
  let j = 0;
  for (let n = min; n <= max && out.length < limit; n += step) {
    while (j < merged.length && merged[j]![1] < n) j++;
    const m = merged[j];
    if (m !== undefined && m[0] <= n + step - 1n) {
      // jump past the taken interval (to the first aligned candidate after it)
      n = ((m[1] + 1n - min + step - 1n) / step) * step + min - step;
      continue;
    }
    out.push(`${bigToAddr(n, family).toString()}/${range.subnetLen}`);
  }
  return out;
}

/** True when `subnet` may be leased under `range`: its family, SubnetLen long, between SubnetMin and SubnetMax (flannel's isSubnetConfigCompat). */
export function subnetFits(range: SubnetRange, subnet: string | undefined): boolean {
  const p = subnet === undefined ? undefined : parsePrefix(subnet, { family: range.networkCidr.family });
  if (p === undefined || p instanceof AddrError || p.len !== range.subnetLen) return false;
  const n = addrToBig(p.addr);
  return n >= addrToBig(ipPrefix(range.subnetMin).addr) && n <= addrToBig(ipPrefix(range.subnetMax).addr);
}

/**
 * The etcd subnet manager. Use: {@link networkConfig}, {@link acquire}, then {@link watchPeers}
 * (which also renews the lease); {@link release} on a leave for good; {@link close} always.
 */
export class EtcdSubnetManager {
  readonly prefix: string;
  private readonly client: EtcdClient;
  private readonly log: Logger;
  private readonly ttl: number;
  private readonly marginMs: number;
  private readonly renewRetryMs: number;
  private readonly backoff: { initial: number; max: number };
  private readonly maxValue: number;
  private readonly random: () => number;
  private conf: NetConf | undefined;
  private held: HeldLease | undefined;
  /** `held.subnet`, parsed. */
  private heldPrefix: IpPrefix | undefined;
  private leaseHeld = false;
  /** The peer map; a listing builds a new one and replaces it when complete (one being applied is never cleared under it). */
  private peers = new Map<string, Lease>();
  /** Keys skipped, with the reason logged (a key is logged again only when its reason changes). */
  private readonly bad = new Map<string, string>();
  /** Keys used without their IPv6 half, with the reason logged (likewise). */
  private readonly partial = new Map<string, string>();
  private onPeers: PeersHandler | undefined;
  /** Subnets changed since the last report; undefined: report everything (after a listing). */
  private changed: Set<string> | undefined;
  /** Watch events not yet applied, unchecked (checked and applied in slices, in order). */
  private readonly queue: unknown[] = [];
  private draining = false;
  /** Bumped by each listing: a slice of older work stops. */
  private generation = 0;
  private watch: WatchHandle | undefined;
  private revision = 0;
  private connected = false;
  private delay: number;
  private retryTimer: NodeJS.Timeout | undefined;
  private renewTimer: NodeJS.Timeout | undefined;
  private emitTimer: NodeJS.Immediate | undefined;
  private emitWhy = '';
  private closed = false;
  private lostSince = 0;
  private readonly counts = { reconnects: 0, compactions: 0, events: 0, renewals: 0 };

  constructor(private readonly opts: EtcdManagerOptions) {
    this.client = opts.client;
    this.prefix = (opts.prefix ?? DEFAULT_ETCD_PREFIX).replace(/\/+$/, '');
    this.log = opts.log;
    this.ttl = opts.ttlSeconds ?? SUBNET_TTL_SECONDS;
    this.marginMs = (opts.renewMarginSeconds ?? 3600) * 1000;
    this.renewRetryMs = opts.renewRetryMs ?? 60_000;
    this.backoff = opts.backoffMs ?? { initial: 100, max: 5000 };
    this.delay = this.backoff.initial;
    this.maxValue = opts.maxValueBytes ?? MAX_ETCD_VALUE_BYTES;
    this.random = opts.random ?? Math.random;
  }

  /** `<prefix>/subnets/`. */
  get subnetsPrefix(): string {
    return `${this.prefix}/subnets/`;
  }

  /** The etcd key of a lease (flannel's: `<prefix>/subnets/<ip>-<len>`, dual stack `...&<ipv6>-<len>`). */
  keyOf(lease: Lease): string {
    return `${this.subnetsPrefix}${leaseKey(lease)}`;
  }

  /**
   * Read and parse `<prefix>/config` (net-conf.json). A missing, oversized or invalid config is
   * a ConfigError; an unreachable etcd an EtcdError.
   */
  async networkConfig(): Promise<NetConf> {
    const where = `etcd ${this.prefix}/config`;
    const r = await this.client.range(`${this.prefix}/config`);
    const kv = r.kvs[0];
    if (kv === undefined) throw new ConfigError(`${where}: not found (write the network config there, e.g. etcdctl put ${this.prefix}/config '{"Network": "198.19.0.0/16", "Backend": {"Type": "vxlan"}}')`);
    if (kv.value.length > this.maxValue) throw new ConfigError(`${where}: ${kv.value.length} bytes, over the ${this.maxValue} byte limit`);
    this.conf = parseNetConf(kv.value.toString('utf8'), where);
    return this.conf;
  }

  /** A lease value read from etcd, or why it is unusable; why its IPv6 half is not used goes to `notes`. */
  parseKv(kv: EtcdKv, conf: NetConf, notes?: string[]): Parsed<Lease> {
    if (kv.value.length > this.maxValue) return { ok: false, reason: `value of ${kv.value.length} bytes, over the ${this.maxValue} byte limit` };
    let v: unknown;
    try {
      v = JSON.parse(kv.value.toString('utf8'));
    } catch {
      return { ok: false, reason: `value is not JSON: ${quoteUntrusted(kv.value.toString('utf8'))}` };
    }
    try {
      return { ok: true, value: parseLeaseAttrs(kv.key, v, 'etcd', leaseNetworks(conf), notes) };
    } catch (e) {
      return { ok: false, reason: (e as Error).message.replace(/^etcd: "[^"]*"(?:\.\.\.")?:? ?/, '') };
    }
  }

  /**
   * Acquire our lease in flannel's order: the lease with our public IP if it still fits the
   * config (a reservation stays a reservation; otherwise it is re-written under a new etcd
   * lease, its VTEP MACs kept by `make`); else the previous subnet (and, dual stack, the previous
   * IPv6 subnet) if free and fitting; else a random free subnet between SubnetMin and SubnetMax
   * (dual stack: and a random free one between IPv6SubnetMin and IPv6SubnetMax), created only if
   * the key does not exist (another host racing for it makes us list again and pick anew).
   * `make` builds our lease for a subnet and, dual stack or IPv6-only, an IPv6 subnet (given the
   * lease found there, if ours); its key is {@link leaseKey} of that lease.
   */
  async acquire(make: (subnet: string, existing?: Lease, ipv6Subnet?: string) => Lease): Promise<HeldLease> {
    const conf = this.conf ?? (await this.networkConfig());
    const pub = this.ourPublicIp();
    // the second family: the IPv6 range of a dual-stack network (an IPv6-only one has it as its primary)
    const dual = conf.enableIPv4 ? conf.ipv6 : undefined;
    const fits = (l: Lease): boolean => subnetFits(conf, l.subnet) && (dual ? subnetFits(dual, l.ipv6Subnet) : conf.enableIPv4 ? l.ipv6Subnet === undefined : true);
    const build = (sn: string, sn6: string | undefined, existing?: Lease): Lease => make(sn, existing, conf.enableIPv4 ? sn6 : sn);
    const ranges = conf.enableIPv4 ? 'Network' : 'IPv6Network';
    for (let attempt = 0; attempt < RACE_RETRIES; attempt++) {
      const r = await this.client.range(this.subnetsPrefix, { prefix: true });
      const taken: IpPrefix[] = [];
      let mine: { kv: EtcdKv; lease: Lease } | undefined;
      for (const kv of r.kvs) {
        const s = subnetOfKey(kv.key);
        if (!s.ok) continue;
        // a key with a bad value still holds its subnets
        if (s.value.k.v4) taken.push(s.value.k.v4);
        if (s.value.k.v6) taken.push(s.value.k.v6);
        const l = this.parseKv(kv, conf);
        if (l.ok && l.value.publicIp === pub && mine === undefined) mine = { kv, lease: l.value };
      }
      if (mine !== undefined) {
        const sn = mine.lease.subnet;
        if (fits(mine.lease) && mine.kv.key === this.keyOf(mine.lease)) {
          const lease = build(sn, mine.lease.ipv6Subnet, mine.lease);
          const value = leaseValue(lease);
          if (mine.kv.lease === '0') {
            await this.client.put(mine.kv.key, value);
            return this.hold({ subnet: sn, lease, etcdLease: '0', expiresAt: Infinity, how: 'reservation' });
          }
          const g = await this.client.grant(this.ttl);
          await this.client.put(mine.kv.key, value, g.id);
          void this.client.revoke(mine.kv.lease).catch(() => undefined); // the previous run's lease now holds nothing
          return this.hold({ subnet: sn, lease, etcdLease: g.id, expiresAt: Date.now() + g.ttl * 1000, how: 'existing' });
        }
        const cfg = [conf, ...(dual ? [dual] : [])].map((c) => `${c.network}, /${c.subnetLen} ${c.subnetMin}..${c.subnetMax}`).join('; ');
        this.log.info(`etcd: lease ${quoteUntrusted(mine.kv.key.slice(this.subnetsPrefix.length))} of our public IP ${pub} does not fit the network config (${cfg}${conf.enableIPv4 && !dual ? '; IPv4 only' : ''}); deleting it`);
        await this.client.delete(mine.kv.key);
        continue;
      }
      let sn: string | undefined;
      let sn6: string | undefined;
      let how: HeldLease['how'] = 'new';
      const prev = conf.enableIPv4 ? this.opts.previousSubnet : this.opts.previousIpv6Subnet;
      const prev6 = dual ? this.opts.previousIpv6Subnet : undefined;
      if (prev !== undefined && attempt === 0) {
        const free = (x: string): boolean => !taken.some((t) => t.overlaps(ipPrefix(x)));
        if (!subnetFits(conf, prev) || (dual !== undefined && !subnetFits(dual, prev6))) {
          this.log.error(`etcd: previous subnet ${prev}${dual ? ` and IPv6 subnet ${prev6 ?? '(none)'}` : ''} (subnet.env) do not fit the network config; ignored`);
        } else if (free(prev) && (prev6 === undefined || free(prev6))) {
          sn = prev;
          sn6 = prev6;
          how = 'previous';
        }
      }
      if (sn === undefined) {
        const pick = (range: SubnetRange, what: string): string => {
          const free = freeSubnets(range, taken);
          if (free.length === 0) throw new ConfigError(`etcd: out of subnets: every /${range.subnetLen} in ${what} ${range.subnetMin}..${range.subnetMax} is leased`);
          return free[Math.floor(this.random() * free.length)]!;
        };
        sn = pick(conf, ranges);
        if (dual) sn6 = pick(dual, 'IPv6Network');
      }
      const lease = build(sn, sn6);
      const g = await this.client.grant(this.ttl);
      if (await this.client.create(this.keyOf(lease), leaseValue(lease), g.id)) {
        // a dual-stack key names two subnets: another host may have created a key with one of them at once
        if (dual === undefined || !(await this.lostRace(lease))) return this.hold({ subnet: sn, lease, etcdLease: g.id, expiresAt: Date.now() + g.ttl * 1000, how });
        await this.client.delete(this.keyOf(lease));
      }
      void this.client.revoke(g.id).catch(() => undefined);
    }
    throw new EtcdError('server', `etcd: no subnet acquired after ${RACE_RETRIES} attempts (other hosts took each one first)`);
  }

  /**
   * After creating our dual-stack key: true when another key holding one of its subnets was
   * created before it (create-if-absent guards one key, and two hosts racing can pick the same
   * IPv4 subnet with different IPv6 ones, or the reverse; flanneld lets both stand). The first
   * created wins; the loser deletes its key and picks again.
   */
  private async lostRace(lease: Lease): Promise<boolean> {
    const r = await this.client.range(this.subnetsPrefix, { prefix: true });
    const key = this.keyOf(lease);
    const ours = r.kvs.find((kv) => kv.key === key);
    if (ours === undefined) return true;
    const mine = [ipPrefix(lease.subnet), ...(lease.ipv6Subnet !== undefined ? [ipPrefix(lease.ipv6Subnet)] : [])];
    return r.kvs.some((kv) => {
      if (kv.key === key || kv.createRevision > ours.createRevision) return false;
      const s = subnetOfKey(kv.key);
      return s.ok && [s.value.k.v4, s.value.k.v6].some((p) => p !== undefined && mine.some((m) => m.overlaps(p)));
    });
  }

  /** The public IP our leases are known by: PublicIP, or PublicIPv6 on an IPv6-only network. */
  private ourPublicIp(): string {
    return this.conf?.enableIPv4 === false ? this.opts.publicIpv6 ?? this.opts.publicIp : this.opts.publicIp;
  }

  private hold(h: HeldLease): HeldLease {
    this.held = h;
    this.heldPrefix = ipPrefix(h.subnet);
    this.leaseHeld = true;
    return h;
  }

  /** The lease held, if any. */
  lease(): HeldLease | undefined {
    return this.held;
  }

  /**
   * Start watching `<prefix>/subnets/`: lists them, reports the peer map (our own lease, other
   * backend types and unusable keys left out) and then every change, coalesced per event-loop
   * turn; renews our lease ahead of expiry. Resolves after the first listing was reported, or
   * after it failed (then it is retried with backoff in the background).
   */
  async watchPeers(onPeers: PeersHandler): Promise<void> {
    this.onPeers = onPeers;
    this.scheduleRenew();
    try {
      await this.resync('etcd', true);
    } catch (e) {
      // not reachable right after the lease was acquired: run without peers for now, list again in the background
      this.lost(e as Error);
      this.retry(() => this.relist());
    }
  }

  /**
   * List the subnets, replace the peer map with them, and watch from the listing's revision + 1.
   * `now`: report the peers within this call (the first listing), not on the next turn.
   */
  private async resync(why: string, now = false): Promise<void> {
    const conf = this.conf!;
    // in pages: one answer of 10,000 leases takes tens of ms to parse, all at once
    let r = await this.client.range(this.subnetsPrefix, { prefix: true, limit: LIST_PAGE });
    if (this.closed) return;
    const gen = ++this.generation;
    const revision = r.revision;
    this.queue.length = 0; // the listing supersedes events not yet applied
    this.watch?.close();
    this.watch = undefined;
    const seen = new Set<string>();
    const peers = new Map<string, Lease>();
    this.changed = undefined;
    const stop = (): boolean => this.closed || gen !== this.generation;
    for (;;) {
      if (!(await sliced(r.kvs, (kv) => { seen.add(kv.key); this.upsertKv(kv, conf, peers); }, stop))) return;
      if (r.next === undefined) break;
      r = await this.client.range(this.subnetsPrefix, { prefix: true, limit: LIST_PAGE, revision, from: r.next });
      if (stop()) return;
    }
    this.peers = peers;
    for (const m of [this.bad, this.partial]) for (const k of m.keys()) if (!seen.has(k)) m.delete(k);
    if (this.held !== undefined && this.held.etcdLease !== '0' && !seen.has(this.keyOf(this.held.lease))) this.ownLost();
    this.revision = revision;
    if (now) {
      this.changed = new Set();
      this.onPeers?.(this.peers, why);
    } else {
      this.emit(why);
    }
    this.openWatch();
  }

  /** Apply one key's current value to the peer map (`s`: its subnet, when parsed already). */
  private upsertKv(kv: EtcdKv, conf: NetConf, peers = this.peers, s = subnetOfKey(kv.key)): void {
    if (!s.ok) return this.skip(kv.key, s.reason);
    const own = this.held?.subnet;
    const sn = s.value.subnet;
    if (sn === own) {
      const l = this.parseKv(kv, conf);
      if (l.ok && l.value.publicIp !== this.ourPublicIp()) this.skip(kv.key, `claims our subnet ${own} for PublicIP ${l.value.publicIp}`);
      else this.bad.delete(kv.key);
      return;
    }
    peers.delete(sn);
    const notes: string[] = [];
    const l = this.parseKv(kv, conf, notes);
    if (!l.ok) return this.skip(kv.key, l.reason);
    if (l.value.backendType !== conf.backend.type) return this.skip(kv.key, `runs backend ${l.value.backendType}, we run ${conf.backend.type}`);
    if (l.value.publicIp === this.ourPublicIp()) return this.skip(kv.key, `has our public IP ${l.value.publicIp} (a stale lease of ours?)`);
    if (this.heldPrefix?.overlaps(s.value.prefix)) return this.skip(kv.key, `overlaps our subnet ${own}`);
    const lease = l.value;
    const own6 = this.held?.lease.ipv6Subnet;
    if (lease.ipv6Subnet !== undefined && own6 !== undefined && lease.subnet !== lease.ipv6Subnet && ipPrefix(own6).overlaps(ipPrefix(lease.ipv6Subnet))) {
      notes.push(`its IPv6 subnet ${lease.ipv6Subnet} overlaps ours, ${own6}; its IPv6 half is not used`);
      for (const f of ['ipv6Subnet', 'publicIpv6', 'v6Vni', 'v6VtepMac'] as const) delete lease[f];
    }
    this.bad.delete(kv.key);
    this.note(kv.key, notes);
    peers.set(sn, lease);
  }

  private skip(key: string, reason: string): void {
    this.partial.delete(key);
    if (this.bad.get(key) === reason) return;
    this.bad.set(key, reason);
    this.log.error(`etcd: skipped ${quoteUntrusted(key, 128)}: ${reason}`);
  }

  /** A key used without its IPv6 half: why, logged once (again only when the reason changes). */
  private note(key: string, notes: readonly string[]): void {
    if (notes.length === 0) {
      this.partial.delete(key);
      return;
    }
    const why = notes.join('; ').replace(/^etcd: "[^"]*"(?:\.\.\.")?:? ?/, '');
    if (this.partial.get(key) === why) return;
    this.partial.set(key, why);
    this.log.error(`etcd: ${quoteUntrusted(key, 128)}: ${why}`);
  }

  private emit(why: string): void {
    this.emitWhy = why;
    if (this.emitTimer !== undefined) return;
    this.emitTimer = setImmediate(() => {
      this.emitTimer = undefined;
      const changed = this.changed;
      this.changed = new Set();
      if (!this.closed) this.onPeers?.(this.peers, this.emitWhy, changed);
    });
  }

  private openWatch(): void {
    this.watch?.close();
    const from = this.revision + 1;
    this.watch = this.client.watch(this.subnetsPrefix, from, {
      // each event is checked when the drain gets to it: a message of thousands never holds the thread
      rawEvents: true,
      onMessage: (m) => this.onWatch(m),
      onEnd: (e) => {
        this.watch = undefined;
        this.lost(e);
        this.retry(() => this.openWatch());
      },
    });
  }

  private onWatch(m: WatchMessage): void {
    if (this.closed) return;
    switch (m.kind) {
      case 'created':
        if (!this.connected && this.lostSince !== 0) this.log.info(`etcd: watch re-established at ${this.client.endpoint} from revision ${this.revision + 1} after ${Date.now() - this.lostSince} ms`);
        this.connected = true;
        this.lostSince = 0;
        this.delay = this.backoff.initial;
        return;
      case 'progress':
        this.revision = Math.max(this.revision, m.revision);
        return;
      case 'canceled':
        this.watch?.close();
        this.watch = undefined;
        this.connected = false;
        if (m.compactRevision > 0) {
          this.counts.compactions++;
          this.log.info(`etcd: watch revision ${this.revision + 1} was compacted (now ${m.compactRevision}); listing again`);
          this.relist();
        } else {
          this.lost(new EtcdError('server', `watch canceled: ${m.reason}`));
          this.retry(() => this.openWatch());
        }
        return;
      case 'raw-events':
        for (const ev of m.events) this.queue.push(ev);
        if (!this.draining) void this.drain();
        return;
      case 'events': // not asked for (rawEvents)
    }
  }

  /** Apply queued watch events in slices, in order; report once the queue is empty. */
  private async drain(): Promise<void> {
    this.draining = true;
    const gen = this.generation;
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0);
        if (!(await sliced(batch, (ev) => this.applyEvent(ev), () => this.closed || gen !== this.generation))) return;
      }
      this.emit('etcd');
    } finally {
      this.draining = false;
      // events of a newer watch queued while an older batch was being cut short
      if (this.queue.length > 0 && !this.closed) void this.drain();
    }
  }

  private applyEvent(raw: unknown): void {
    const p = parseWatchEvent(raw);
    if (!p.ok) return this.badEvent(p.reason);
    const ev = p.value;
    this.counts.events++;
    this.revision = Math.max(this.revision, ev.kv.modRevision);
    const s = subnetOfKey(ev.kv.key);
    if (s.ok) this.changed?.add(s.value.subnet);
    if (ev.type === 'put') return this.upsertKv(ev.kv, this.conf!, this.peers, s);
    this.bad.delete(ev.kv.key);
    this.partial.delete(ev.kv.key);
    if (!s.ok) return;
    if (this.held !== undefined && ev.kv.key === this.keyOf(this.held.lease)) this.ownLost();
    else if (s.value.subnet === this.held?.subnet) return; // another key of our subnet (a stale one) went
    else this.peers.delete(s.value.subnet);
  }

  /**
   * A watch event that does not parse (etcd's framing, not a value someone wrote): the rest of
   * its revision cannot be trusted, so drop the watch and the events queued, and list again.
   */
  private badEvent(reason: string): void {
    this.generation++; // the drain stops
    this.queue.length = 0;
    this.watch?.close();
    this.watch = undefined;
    this.lost(new EtcdError('protocol', `${this.client.endpoint} watch: ${reason}`));
    this.retry(() => this.relist());
  }

  /** List again (after a compaction), retried with backoff. */
  private relist(): void {
    this.resync('etcd re-list').catch((e: Error) => {
      this.lost(e);
      this.retry(() => this.relist());
    });
  }

  private lost(e: Error): void {
    if (this.closed) return;
    if (this.connected || this.lostSince === 0) {
      this.log.error(`etcd: ${e.message}; forwarding goes on with the ${this.peers.size} peers known; reconnecting with backoff`);
      this.lostSince = Date.now();
    }
    this.connected = false;
  }

  private nextDelay(): number {
    const d = this.delay;
    this.delay = Math.min(this.delay * 2, this.backoff.max);
    return d;
  }

  private retry(f: () => void): void {
    if (this.closed) return;
    this.counts.reconnects++;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => { this.retryTimer = undefined; if (!this.closed) f(); }, this.nextDelay());
  }

  /** Our key disappeared (expired, or deleted by someone): write it again if it is still free. */
  private ownLost(): void {
    const h = this.held;
    if (h === undefined || !this.leaseHeld || this.closed) return;
    this.leaseHeld = false;
    this.log.error(`etcd: our lease ${h.subnet} was removed from etcd; creating it again`);
    if (this.renewTimer) clearTimeout(this.renewTimer);
    this.renewTimer = setTimeout(() => this.renew(true), 0);
  }

  private scheduleRenew(): void {
    const h = this.held;
    if (this.renewTimer) clearTimeout(this.renewTimer);
    if (h === undefined || h.etcdLease === '0' || this.closed) return;
    const due = Math.max(200, h.expiresAt - this.marginMs - Date.now());
    this.renewTimer = setTimeout(() => this.renew(false), due);
  }

  /**
   * Renew: grant a new etcd lease and write our key under it (as flannel), then revoke the old
   * one. After our key was removed (`recreate`), create it only if it does not exist.
   */
  private async renew(recreate: boolean): Promise<void> {
    const h = this.held;
    if (h === undefined || this.closed) return;
    try {
      const g = await this.client.grant(this.ttl);
      const value = leaseValue(h.lease);
      if (recreate) {
        if (!(await this.client.create(this.keyOf(h.lease), value, g.id))) {
          void this.client.revoke(g.id).catch(() => undefined);
          throw new EtcdError('server', `subnet ${h.subnet} was taken by another host`);
        }
      } else {
        await this.client.put(this.keyOf(h.lease), value, g.id);
      }
      const old = h.etcdLease;
      h.etcdLease = g.id;
      h.expiresAt = Date.now() + g.ttl * 1000;
      this.leaseHeld = true;
      this.counts.renewals++;
      if (old !== '0' && old !== g.id) void this.client.revoke(old).catch(() => undefined);
      this.log.info(`etcd: lease ${h.subnet} ${recreate ? 'created again' : 'renewed'}, expires ${new Date(h.expiresAt).toISOString()}`);
      this.scheduleRenew();
    } catch (e) {
      if (this.closed) return;
      this.log.error(`etcd: ${recreate ? 'creating our lease again' : 'renewing our lease'} failed (${(e as Error).message}); trying again in ${Math.round(this.renewRetryMs / 1000)} s`);
      this.renewTimer = setTimeout(() => this.renew(recreate), this.renewRetryMs);
    }
  }

  /**
   * Our public IP changed (the underlay address moved, issue #14; `ipv6`: our PublicIPv6, the
   * IPv6 underlay of dual stack): write our lease again with the new PublicIP, under the etcd lease it has, as flanneld would write it on a restart. A
   * failed write is logged; the next renewal writes the new value anyway.
   */
  async updatePublicIp(publicIp: string, ipv6 = false): Promise<void> {
    const h = this.held;
    // an IPv6-only lease's PublicIP is its IPv6 address (both fields)
    const only6 = h !== undefined && h.lease.subnet.includes(':');
    if (!ipv6 || only6) this.opts.publicIp = publicIp;
    if (ipv6) this.opts.publicIpv6 = publicIp;
    if (h === undefined || this.closed) return;
    h.lease = { ...h.lease, ...(!ipv6 || only6 ? { publicIp } : {}), ...(ipv6 && h.lease.publicIpv6 !== undefined ? { publicIpv6: publicIp } : {}) };
    const what = ipv6 ? 'PublicIPv6' : 'PublicIP';
    try {
      await this.client.put(this.keyOf(h.lease), leaseValue(h.lease), h.etcdLease);
      this.log.info(`etcd: lease ${h.subnet} now has ${what} ${publicIp}`);
    } catch (e) {
      this.log.error(`etcd: writing ${what} ${publicIp} into our lease failed (${(e as Error).message}); the next renewal writes it`);
    }
  }

  /** Status for /readyz and /metrics. */
  status(): EtcdStatus {
    return {
      connected: this.connected,
      leaseHeld: this.leaseHeld,
      leaseExpiresAt: this.held?.expiresAt ?? 0,
      revision: this.revision,
      ...this.counts,
      skippedKeys: this.bad.size,
      peers: this.peers.size,
    };
  }

  /** Stop watching and renewing (the lease stays in etcd until it expires, as flanneld leaves it). */
  close(): void {
    this.closed = true;
    this.watch?.close();
    this.watch = undefined;
    for (const t of [this.retryTimer, this.renewTimer]) if (t) clearTimeout(t);
    if (this.emitTimer) clearImmediate(this.emitTimer);
    this.client.close();
  }

  /**
   * Give our lease back: delete our key and revoke its etcd lease (a reservation, a key without
   * a TTL that an operator wrote, is left). Then {@link close}.
   */
  async release(): Promise<void> {
    this.closed = true;
    this.watch?.close();
    const h = this.held;
    try {
      if (h !== undefined && h.etcdLease !== '0') {
        await this.client.delete(this.keyOf(h.lease));
        await this.client.revoke(h.etcdLease);
        this.log.info(`etcd: released lease ${h.subnet}`);
      }
    } finally {
      this.leaseHeld = false;
      this.close();
    }
  }
}
