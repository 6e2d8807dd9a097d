/**
 * flanneld's etcd subnet manager: the network config from `<prefix>/config`, this host's lease
 * under `<prefix>/subnets/<ip>-<len>` (acquired in flannel's order, created by a transaction
 * that succeeds only if the key does not exist, bound to an etcd lease of 24 h and renewed
 * ahead of expiry by re-writing the key under a new lease), and a watch of `<prefix>/subnets/`
 * that keeps a peer map (subnet -> lease) current: adds, changes, removals and expiries, a fresh
 * listing after a compaction, reconnection with exponential backoff. Data in etcd is untrusted:
 * a key that does not parse is skipped and logged once.
 */
import { AddrError, IpPrefix, ipPrefix, parsePrefix, u32ToIpv4 } from '../codec/addr.js';
import type { Lease } from '../vtep/backend.js';
import type { Logger } from '../overlayd/daemon.js';
import { SLICE_MS, slicePause } from '../overlayd/slices.js';
import { ConfigError, keyToSubnet, leaseToEtcd, parseLeaseAttrs, parseNetConf, quoteUntrusted, type NetConf } from '../overlayd/config.js';
import { EtcdError, parseWatchEvent, type EtcdClient, type EtcdKv, type Parsed, type WatchHandle, type WatchMessage } from './etcd-client.js';

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
  /** The subnet of the previous run (from subnet.env), network form. */
  previousSubnet?: string;
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

/** A lease key's subnet (network form, and parsed), or why it is not one (IPv6 dual-stack keys too: not supported). */
function subnetOfKey(key: string): Parsed<{ subnet: string; prefix: IpPrefix }> {
  try {
    const s = keyToSubnet(key);
    const p = parsePrefix(s, { family: 4 });
    if (p instanceof AddrError || p.toString() !== s) return { ok: false, reason: 'not a subnet in network form' };
    return { ok: true, value: { subnet: s, prefix: p } };
  } catch (e) {
    return { ok: false, reason: (e as Error).message };
  }
}

/**
 * Free subnets of `conf` (SubnetLen long, between SubnetMin and SubnetMax) not overlapping any
 * of `taken`, in address order, at most `limit`. Linear in the candidates plus n log n in `taken`.
 */
export function freeSubnets(conf: NetConf, taken: readonly IpPrefix[], limit = FREE_CANDIDATES): string[] {
  // disjoint, sorted [start, end] intervals of what is taken
  const iv = taken.map((p) => [p.net, p.net + 2 ** (32 - p.len) - 1] as [number, number]).sort((a, b) => a[0] - b[0]);
  const merged: [number, number][] = [];
  for (const [s, e] of iv) {
    const last = merged[merged.length - 1];
    if (last && s <= last[1] + 1) last[1] = Math.max(last[1], e);
    else merged.push([s, e]);
  }
  const step = 2 ** (32 - conf.subnetLen);
  const min = ipPrefix(conf.subnetMin).net;
  const max = ipPrefix(conf.subnetMax).net;
  const out: string[] = [];
  let j = 0;
  for (let n = min; n <= max && out.length < limit; n += step) {
    while (j < merged.length && merged[j]![1] < n) j++;
    const m = merged[j];
    if (m !== undefined && m[0] <= n + step - 1) {
      // jump past the taken interval (to the first aligned candidate after it)
      n = Math.ceil((m[1] + 1 - min) / step) * step + min - step;
      continue;
    }
    out.push(`${u32ToIpv4(n)}/${conf.subnetLen}`);
  }
  return out;
}

/** True when `subnet` may be leased under `conf`: SubnetLen long, between SubnetMin and SubnetMax (flannel's isSubnetConfigCompat). */
export function subnetFits(conf: NetConf, subnet: string): boolean {
  const p = parsePrefix(subnet, { family: 4 });
  if (p instanceof AddrError || p.len !== conf.subnetLen) return false;
  return p.net >= ipPrefix(conf.subnetMin).net && p.net <= ipPrefix(conf.subnetMax).net;
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

  /** The etcd key of a subnet. */
  keyOf(subnet: string): string {
    return `${this.subnetsPrefix}${subnet.replace('/', '-')}`;
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

  /** A lease value read from etcd, or why it is unusable. */
  parseKv(kv: EtcdKv, conf: NetConf): Parsed<Lease> {
    if (kv.value.length > this.maxValue) return { ok: false, reason: `value of ${kv.value.length} bytes, over the ${this.maxValue} byte limit` };
    let v: unknown;
    try {
      v = JSON.parse(kv.value.toString('utf8'));
    } catch {
      return { ok: false, reason: `value is not JSON: ${quoteUntrusted(kv.value.toString('utf8'))}` };
    }
    try {
      return { ok: true, value: parseLeaseAttrs(kv.key, v, 'etcd', conf.networkCidr) };
    } catch (e) {
      return { ok: false, reason: (e as Error).message.replace(/^etcd: "[^"]*"(?:\.\.\.")?:? ?/, '') };
    }
  }

  /**
   * Acquire our lease in flannel's order: the lease with our public IP if it still fits the
   * config (a reservation stays a reservation; otherwise it is re-written under a new etcd
   * lease, its VTEP MAC kept by `make`); else the previous subnet if free and fitting; else a
   * random free subnet between SubnetMin and SubnetMax, created only if the key does not exist
   * (another host racing for it makes us list again and pick anew). `make` builds our lease for
   * a subnet (given the lease found there, if ours).
   */
  async acquire(make: (subnet: string, existing?: Lease) => Lease): Promise<HeldLease> {
    const conf = this.conf ?? (await this.networkConfig());
    const pub = this.opts.publicIp;
    for (let attempt = 0; attempt < RACE_RETRIES; attempt++) {
      const r = await this.client.range(this.subnetsPrefix, { prefix: true });
      const taken: IpPrefix[] = [];
      let mine: { kv: EtcdKv; lease: Lease } | undefined;
      for (const kv of r.kvs) {
        const s = subnetOfKey(kv.key);
        if (!s.ok) continue;
        taken.push(s.value.prefix); // a key with a bad value still holds its subnet
        const l = this.parseKv(kv, conf);
        if (l.ok && l.value.publicIp === pub && mine === undefined) mine = { kv, lease: l.value };
      }
      if (mine !== undefined) {
        const sn = mine.lease.subnet;
        if (subnetFits(conf, sn) && mine.kv.key === this.keyOf(sn)) {
          const lease = make(sn, mine.lease);
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
        this.log.info(`etcd: lease ${quoteUntrusted(mine.kv.key.slice(this.subnetsPrefix.length))} of our public IP ${pub} does not fit the network config (Network ${conf.network}, SubnetLen ${conf.subnetLen}, ${conf.subnetMin}..${conf.subnetMax}; IPv4 only); deleting it`);
        await this.client.delete(mine.kv.key);
        continue;
      }
      let sn: string | undefined;
      let how: HeldLease['how'] = 'new';
      const prev = this.opts.previousSubnet;
      if (prev !== undefined && attempt === 0) {
        const p = ipPrefix(prev);
        if (!subnetFits(conf, prev)) this.log.error(`etcd: previous subnet ${prev} (subnet.env) does not fit the network config; ignored`);
        else if (!taken.some((t) => t.overlaps(p))) {
          sn = prev;
          how = 'previous';
        }
      }
      if (sn === undefined) {
        const free = freeSubnets(conf, taken);
        if (free.length === 0) throw new ConfigError(`etcd: out of subnets: every /${conf.subnetLen} in ${conf.subnetMin}..${conf.subnetMax} is leased`);
        sn = free[Math.floor(this.random() * free.length)]!;
      }
      const lease = make(sn);
      const g = await this.client.grant(this.ttl);
      if (await this.client.create(this.keyOf(sn), leaseValue(lease), g.id)) {
        return this.hold({ subnet: sn, lease, etcdLease: g.id, expiresAt: Date.now() + g.ttl * 1000, how });
      }
      void this.client.revoke(g.id).catch(() => undefined);
    }
    throw new EtcdError('server', `etcd: no subnet acquired after ${RACE_RETRIES} attempts (other hosts took each one first)`);
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
    for (const k of this.bad.keys()) if (!seen.has(k)) this.bad.delete(k);
    if (this.held !== undefined && this.held.etcdLease !== '0' && !seen.has(this.keyOf(this.held.subnet))) this.ownLost();
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
      if (l.ok && l.value.publicIp !== this.opts.publicIp) this.skip(kv.key, `claims our subnet ${own} for PublicIP ${l.value.publicIp}`);
      else this.bad.delete(kv.key);
      return;
    }
    peers.delete(sn);
    const l = this.parseKv(kv, conf);
    if (!l.ok) return this.skip(kv.key, l.reason);
    if (l.value.backendType !== conf.backend.type) return this.skip(kv.key, `runs backend ${l.value.backendType}, we run ${conf.backend.type}`);
    if (l.value.publicIp === this.opts.publicIp) return this.skip(kv.key, `has our public IP ${l.value.publicIp} (a stale lease of ours?)`);
    if (this.heldPrefix?.overlaps(s.value.prefix)) return this.skip(kv.key, `overlaps our subnet ${own}`);
    this.bad.delete(kv.key);
    peers.set(sn, l.value);
  }

  private skip(key: string, reason: string): void {
    if (this.bad.get(key) === reason) return;
    this.bad.set(key, reason);
    this.log.error(`etcd: skipped ${quoteUntrusted(key, 128)}: ${reason}`);
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
    if (!s.ok) return;
    if (s.value.subnet === this.held?.subnet) this.ownLost();
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
        if (!(await this.client.create(this.keyOf(h.subnet), value, g.id))) {
          void this.client.revoke(g.id).catch(() => undefined);
          throw new EtcdError('server', `subnet ${h.subnet} was taken by another host`);
        }
      } else {
        await this.client.put(this.keyOf(h.subnet), value, g.id);
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
   * Our public IP changed (the underlay address moved, issue #14): write our lease again with
   * the new PublicIP, under the etcd lease it has, as flanneld would write it on a restart. A
   * failed write is logged; the next renewal writes the new value anyway.
   */
  async updatePublicIp(publicIp: string): Promise<void> {
    this.opts.publicIp = publicIp;
    const h = this.held;
    if (h === undefined || this.closed) return;
    h.lease = { ...h.lease, publicIp };
    try {
      await this.client.put(this.keyOf(h.subnet), leaseValue(h.lease), h.etcdLease);
      this.log.info(`etcd: lease ${h.subnet} now has PublicIP ${publicIp}`);
    } catch (e) {
      this.log.error(`etcd: writing PublicIP ${publicIp} into our lease failed (${(e as Error).message}); the next renewal writes it`);
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
        await this.client.delete(this.keyOf(h.subnet));
        await this.client.revoke(h.etcdLease);
        this.log.info(`etcd: released lease ${h.subnet}`);
      }
    } finally {
      this.leaseHeld = false;
      this.close();
    }
  }
}
