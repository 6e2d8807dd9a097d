/**
 * overlayd configuration in flannel's own formats: net-conf.json, the etcd lease
 * layout (peers file and our own lease), and /run/flannel/subnet.env.
 *
 * Every parser throws {@link ConfigError} with a single-line message that names the
 * offending file, key or value; the CLI prints it and exits with status 2.
 */
import type { BackendTypeName, Lease } from '../vtep/backend.js';
import { AddrError, IpAddr, IpPrefix, ipPrefix, ipv4Network, parseIp, parsePrefix, u32ToIpv4 } from '../codec/addr.js';
import { backendTypes, lookupBackend } from '../vtep/registry.js';
import '../vtep/index.js'; // registers the built-in backends

/** A configuration problem. `message` is one line and names the problem. */
/**
 * Text from a file or from etcd, fit for a log line: control and other non-printing characters
 * escaped (as JSON does), at most `max` characters, quoted. Junk is never echoed raw.
 */
export function quoteUntrusted(s: string, max = 64): string {
  const cut = s.length > max ? s.slice(0, max) : s;
  const q = JSON.stringify(cut).replace(/[\u007f-\u009f\u00ad\u2028\u2029\ufffd]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  return s.length > max ? `${q.slice(0, -1)}..."` : q;
}

/** A JSON value from a file or etcd for a log line: {@link quoteUntrusted} on its JSON text. */
function shown(v: unknown): string {
  return typeof v === 'string' ? quoteUntrusted(v) : quoteUntrusted(JSON.stringify(v) ?? 'undefined').slice(1, -1);
}

/** Largest peers file read (bytes): 16 MiB holds about 100,000 leases; anything larger is refused, not parsed. */
export const MAX_PEERS_FILE_BYTES = 16 << 20;

export class ConfigError extends Error {
  constructor(message: string) {
    super(message.replace(/\s*\n\s*/g, ' '));
    this.name = 'ConfigError';
  }
}

// ---------------------------------------------------------------------------
// Addresses: src/codec's IpAddr / IpPrefix, with overlayd's wording in errors.

/** Parse an IPv4 prefix in network form ("198.19.2.0/24"); `what` names it in the one-line error. */
export function parseNetworkPrefix(s: string, what: string): IpPrefix {
  const p = parsePrefix(s, { family: 4 });
  if (p instanceof AddrError) {
    if (p.reason === 'host-bits-set') throw new ConfigError(`${what} "${s}" has host bits set (did you mean ${ipPrefix(s, { hostBits: 'clear' }).toString()}?)`);
    throw new ConfigError(`${what} "${s}" is not an IPv4 CIDR`);
  }
  return p;
}

/** True when `s` is an IPv4 dotted quad. */
export function isIpv4(s: unknown): s is string {
  return typeof s === 'string' && !(parseIp(s, { family: 4 }) instanceof AddrError);
}

/** Parse a MAC "aa:bb:cc:dd:ee:ff" (case-insensitive); returns the lower-case form or undefined. */
export function normalizeMac(s: string): string | undefined {
  return /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(s) ? s.toLowerCase() : undefined;
}

// ---------------------------------------------------------------------------
// net-conf.json

/** Backend types overlayd runs. */
export type BackendType = BackendTypeName;

/** Flannel's default VNI. */
export const DEFAULT_VNI = 1;

/** The `Backend` section of net-conf.json, with flannel's defaults applied. */
export interface BackendConf {
  /** "udp", "vxlan" or "host-gw". */
  type: BackendType;
  /** UDP port: default 8285 (udp) or 8472 (vxlan); 0 for host-gw (no socket). */
  port: number;
  /** VXLAN network identifier (vxlan; default 1). */
  vni: number;
  /** VXLAN Group Based Policy extension (vxlan; default false). */
  gbp: boolean;
  /** Skip encapsulation for peers on the same underlay subnet (vxlan; default false). */
  directRouting: boolean;
  /** VXLAN Learning: learn senders' VTEP MACs, accept senders without a lease (vxlan; default false; absent when false). */
  learning?: boolean;
  /** Device MTU; undefined means underlay MTU minus the encapsulation overhead. */
  mtu?: number;
}

/** A parsed net-conf.json. */
export interface NetConf {
  /** The overlay network, network form ("198.19.0.0/16"). */
  network: string;
  /** Parsed `network`. */
  networkCidr: IpPrefix;
  /** Prefix length of each host's lease. */
  subnetLen: number;
  /** First subnet a host may lease (network form; flannel's default: Network's second subnet). */
  subnetMin: string;
  /** Last subnet a host may lease (network form; flannel's default: Network's last subnet). */
  subnetMax: string;
  /** The backend section. */
  backend: BackendConf;
  /**
   * Keys nobody reads (typos, keys of other backends, flanneld-only keys) and keys given twice
   * in different case: one line each, for the daemon to log once at start.
   */
  warnings: string[];
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

function isObject(v: unknown): v is { [k: string]: Json } {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Non-ASCII letters that Go's encoding/json folds to an ASCII letter when it matches a key to a
 * field name (Go 1.21+ foldName: unicode.ToUpper(unicode.ToLower(r)); K and ſ in older Go too).
 */
const GO_FOLD_TO_ASCII: Readonly<Record<string, string>> = { '\u212a': 'K', '\u017f': 'S', '\u0131': 'I', '\u0130': 'I' };

/**
 * True when JSON key `key` names struct field `field` (an ASCII name) for Go's encoding/json:
 * equal, or equal after case folding (ASCII letters, plus the few non-ASCII letters that fold to
 * ASCII ones: the Kelvin sign matches K, the long s matches S).
 */
export function goKeyMatches(key: string, field: string): boolean {
  if (key === field) return true;
  let i = 0;
  for (const ch of key) {
    if (i >= field.length) return false;
    const f = field.charCodeAt(i++);
    const c = ch.length === 1 ? ch.charCodeAt(0) : -1;
    const up = c >= 0x61 && c <= 0x7a ? c - 32 : c >= 0 && c < 0x80 ? c : (GO_FOLD_TO_ASCII[ch] ?? '').charCodeAt(0);
    const fu = f >= 0x61 && f <= 0x7a ? f - 32 : f;
    if (up !== fu) return false;
  }
  return i === field.length;
}

/**
 * A JSON object read the way Go's encoding/json fills a struct with fields `fields`: a key names a
 * field when it equals it or matches it case-insensitively ({@link goKeyMatches}), and when several
 * keys name one field the last one in the object counts (each overwrites the one before, as in Go).
 * Keys that name no field are kept for a warning. JSON.parse has already merged keys spelled
 * exactly alike (the last value kept, at the first one's place).
 */
class GoStruct {
  private readonly got = new Map<string, { key: string; value: Json }>();
  /** Keys that name no field, in document order. */
  readonly unknown: string[] = [];
  /** Fields named by more than one key: the field and every key, in document order. */
  readonly repeated: { field: string; keys: string[] }[] = [];

  constructor(obj: { [k: string]: Json }, fields: readonly string[]) {
    const all = new Map<string, string[]>();
    for (const [k, v] of Object.entries(obj)) {
      const f = fields.find((x) => x === k) ?? fields.find((x) => goKeyMatches(k, x));
      if (f === undefined) {
        this.unknown.push(k);
        continue;
      }
      this.got.set(f, { key: k, value: v });
      all.set(f, [...(all.get(f) ?? []), k]);
    }
    for (const [field, keys] of all) if (keys.length > 1) this.repeated.push({ field, keys });
  }

  /** The value of field `f` (undefined when no key names it). */
  get(f: string): Json | undefined {
    return this.got.get(f)?.value;
  }

  /** The key as written that set field `f` (for messages; `f` itself when absent). */
  key(f: string): string {
    return this.got.get(f)?.key ?? f;
  }
}

/** Top-level net-conf keys overlayd reads. */
const NETCONF_KEYS = ['Network', 'SubnetLen', 'SubnetMin', 'SubnetMax', 'Backend', 'EnableIPv4', 'EnableIPv6'] as const;
/** Top-level keys flanneld reads and overlayd does not (IPv4 only, one Network). */
const NETCONF_FLANNEL_ONLY = ['IPv6Network', 'IPv6SubnetMin', 'IPv6SubnetMax', 'IPv6SubnetLen', 'Networks', 'IPv6Networks', 'EnableNFTables'] as const;
/** Backend keys overlayd reads, per backend type. */
const BACKEND_KEYS: Readonly<Record<BackendType, readonly string[]>> = {
  udp: ['Type', 'Port', 'MTU'],
  vxlan: ['Type', 'Port', 'VNI', 'GBP', 'DirectRouting', 'MTU', 'Learning'],
  'host-gw': ['Type'],
};
/** Backend keys flanneld reads and overlayd does not, per backend type. */
const BACKEND_FLANNEL_ONLY: Readonly<Record<BackendType, readonly string[]>> = {
  udp: [],
  vxlan: ['MacPrefix'],
  'host-gw': [],
};

/** Warnings for keys nobody reads and for fields named twice; `where` prefixes each key ("Backend."). */
function keyWarnings(st: GoStruct, source: string, where: string, flannelOnly: readonly string[], elsewhere: readonly string[], elsewhereWhy: string, out: string[]): void {
  for (const k of st.unknown) {
    const fo = flannelOnly.find((f) => goKeyMatches(k, f));
    const other = elsewhere.find((f) => goKeyMatches(k, f));
    const what = `${source}: ${where}${quoteUntrusted(k)}`;
    if (fo !== undefined) out.push(`${what} is read by flanneld but not by overlayd; ignored`);
    else if (other !== undefined) out.push(`${what} ${elsewhereWhy}; ignored`);
    else out.push(`${what} is not a key flanneld or overlayd reads (a typo?); ignored`);
  }
  for (const r of st.repeated) {
    out.push(`${source}: ${r.keys.map((k) => `${where}${quoteUntrusted(k)}`).join(' and ')} each set ${where}${r.field} (keys match case-insensitively, as in flanneld); the last, ${quoteUntrusted(r.keys.at(-1)!)}, counts`);
  }
}

function parseJson(text: string, source: string): Json {
  try {
    return JSON.parse(text) as Json;
  } catch (e) {
    // V8's message quotes a piece of the input: escape and shorten it
    throw new ConfigError(`${source}: invalid JSON: ${quoteUntrusted((e as Error).message, 160).slice(1, -1)}`);
  }
}

function optInt(obj: GoStruct, key: string, where: string, min: number, max: number): number | undefined {
  const v = obj.get(key);
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new ConfigError(`${where}${obj.key(key)} must be an integer in ${min}..${max}, got ${shown(v)}`);
  }
  return v;
}

function optBool(obj: GoStruct, key: string, where: string): boolean | undefined {
  const v = obj.get(key);
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw new ConfigError(`${where}${obj.key(key)} must be true or false, got ${shown(v)}`);
  return v;
}

/**
 * SubnetMin or SubnetMax of net-conf.json: an IPv4 address inside Network on a SubnetLen
 * boundary; `def` (a u32) when absent. Returns the u32.
 */
function subnetBound(root: GoStruct, field: 'SubnetMin' | 'SubnetMax', net: IpPrefix, subnetLen: number, def: number, source: string): number {
  const v = root.get(field);
  const key = root.key(field);
  if (v === undefined || v === null || v === '') return def;
  const a = typeof v === 'string' ? parseIp(v, { family: 4 }) : undefined;
  if (a === undefined || a instanceof AddrError) throw new ConfigError(`${source}: ${key} ${shown(v)} is not an IPv4 address`);
  if (!net.contains(a)) throw new ConfigError(`${source}: ${key} ${a.toString()} is not in the range of the Network ${net.toString()}`);
  if (ipv4Network(a.v4, subnetLen) !== a.v4) throw new ConfigError(`${source}: ${key} ${a.toString()} is not on a SubnetLen (/${subnetLen}) boundary`);
  return a.v4;
}

/**
 * Parse flannel's net-conf.json. Applies flannel's defaults: Backend.Type "udp" when
 * absent, SubnetLen 24 (or Network's length + 2 for networks smaller than a /22),
 * SubnetMin Network's second subnet and SubnetMax its last (flannel skips the first, whose
 * address is the network's own), udp Port 8285, vxlan VNI 1 and Port 8472. Unknown Backend
 * types are an error.
 */
export function parseNetConf(text: string, source = 'net-conf.json'): NetConf {
  const json = parseJson(text, source);
  if (!isObject(json)) throw new ConfigError(`${source}: expected a JSON object`);
  const warnings: string[] = [];
  const root = new GoStruct(json, [...NETCONF_KEYS, ...NETCONF_FLANNEL_ONLY]);
  const top = `${source}: `;
  const netStr = root.get('Network');
  if (typeof netStr !== 'string') throw new ConfigError(`${source}: "Network" (an IPv4 CIDR) is required`);
  const net = parseNetworkPrefix(netStr, `${top}${root.key('Network')}`);

  let subnetLen = optInt(root, 'SubnetLen', top, 0, 32);
  if (subnetLen === undefined || subnetLen === 0) {
    if (net.len > 28) throw new ConfigError(`${source}: Network ${netStr} is too small (smaller than a /28)`);
    subnetLen = net.len <= 22 ? 24 : net.len + 2;
  } else {
    if (subnetLen > 30) throw new ConfigError(`${source}: SubnetLen ${subnetLen} is too long (at most 30)`);
    if (subnetLen < net.len + 2) {
      throw new ConfigError(`${source}: SubnetLen ${subnetLen} must be at least Network's length + 2 (${net.len + 2}) so Network holds at least four subnets`);
    }
  }

  const size = 2 ** (32 - subnetLen);
  const min = subnetBound(root, 'SubnetMin', net, subnetLen, net.net + size, source);
  const max = subnetBound(root, 'SubnetMax', net, subnetLen, net.net + 2 ** (32 - net.len) - size, source);
  if (min > max) throw new ConfigError(`${source}: SubnetMin ${u32ToIpv4(min)} is above SubnetMax ${u32ToIpv4(max)}`);

  // flanneld's switches: IPv4 on (its default) and IPv6 off are what overlayd does
  const v4 = optBool(root, 'EnableIPv4', top);
  const v6 = optBool(root, 'EnableIPv6', top);
  if (v4 === false) warnings.push(`${top}${root.key('EnableIPv4')} is false, but overlayd is IPv4 only: it runs Network ${net.toString()} anyway`);
  if (v6 === true) warnings.push(`${top}${root.key('EnableIPv6')} is true, but overlayd is IPv4 only; the IPv6 settings are ignored`);
  for (const f of NETCONF_FLANNEL_ONLY) {
    if (root.get(f) !== undefined) warnings.push(`${top}${quoteUntrusted(root.key(f))} is read by flanneld but not by overlayd (IPv4 only, one Network); ignored`);
  }
  keyWarnings(root, source, '', [], [], '', warnings);

  const be = root.get('Backend') ?? {};
  if (!isObject(be)) throw new ConfigError(`${source}: "Backend" must be an object`);
  const bsrc = `${source}: Backend`;
  const typeRaw = new GoStruct(be, ['Type']).get('Type') ?? 'udp';
  if (typeof typeRaw !== 'string') throw new ConfigError(`${bsrc}.Type must be a string`);
  const type = typeRaw.toLowerCase();
  const reg = lookupBackend(type);
  if (reg === undefined || (type !== 'udp' && type !== 'vxlan' && type !== 'host-gw')) {
    throw new ConfigError(`${bsrc}.Type "${typeRaw}" is not supported by overlayd (supported: ${backendTypes().map((t) => `"${t}"`).join(', ')})`);
  }
  const reads = BACKEND_KEYS[type];
  const b = new GoStruct(be, reads);
  const bw = `${bsrc}.`;
  const port = optInt(b, 'Port', bw, 0, 65535);
  const vni = reads.includes('VNI') ? optInt(b, 'VNI', bw, 0, 0xffffff) : undefined;
  const mtu = optInt(b, 'MTU', bw, 0, 65535);
  if (mtu !== undefined && mtu !== 0 && mtu < 576) throw new ConfigError(`${bw}${b.key('MTU')} ${mtu} is too small (at least 576)`);
  const backend: BackendConf = {
    type,
    port: port || reg.defaultPort,
    vni: vni || DEFAULT_VNI,
    gbp: (reads.includes('GBP') ? optBool(b, 'GBP', bw) : undefined) ?? false,
    directRouting: (reads.includes('DirectRouting') ? optBool(b, 'DirectRouting', bw) : undefined) ?? false,
  };
  if (mtu) backend.mtu = mtu;
  if ((reads.includes('Learning') ? optBool(b, 'Learning', bw) : undefined) === true) backend.learning = true;
  const otherBackends = Object.entries(BACKEND_KEYS).filter(([t]) => t !== type).flatMap(([t, ks]) => [...ks, ...BACKEND_FLANNEL_ONLY[t as BackendType]]);
  keyWarnings(b, source, 'Backend.', BACKEND_FLANNEL_ONLY[type], otherBackends, `is not used by the ${type} backend`, warnings);
  return { network: net.toString(), networkCidr: net, subnetLen, subnetMin: `${u32ToIpv4(min)}/${subnetLen}`, subnetMax: `${u32ToIpv4(max)}/${subnetLen}`, backend, warnings };
}

/**
 * Validate this host's lease (`--subnet`): an IPv4 CIDR in network form, exactly
 * SubnetLen long, inside Network. Returns its network form.
 */
export function validateSubnet(subnet: string, conf: NetConf): IpPrefix {
  const c = parseNetworkPrefix(subnet, '--subnet');
  if (!conf.networkCidr.covers(c)) throw new ConfigError(`--subnet ${subnet} is outside Network ${conf.network}`);
  if (c.len !== conf.subnetLen) throw new ConfigError(`--subnet ${subnet} must be a /${conf.subnetLen} (SubnetLen in net-conf)`);
  return c;
}

// ---------------------------------------------------------------------------
// The etcd lease layout: "198.19.2.0-24" -> {"PublicIP", "BackendType", "BackendData"}

/** Convert a CIDR "198.19.2.0/24" to flannel's subnet key "198.19.2.0-24". */
export function subnetToKey(cidr: string): string {
  return cidr.replace('/', '-');
}

/**
 * Convert a subnet key ("198.19.2.0-24", or a full etcd key ".../subnets/198.19.2.0-24") to CIDR
 * form. A dual-stack flanneld's key ("198.19.2.0-24&fc00:0:0:2::-64") gives its IPv4 subnet.
 */
export function keyToSubnet(key: string): string {
  const last = key.slice(key.lastIndexOf('/') + 1);
  const m = /^(\d+\.\d+\.\d+\.\d+)-(\d+)(?:&[0-9a-f:]+-\d+)?$/.exec(last);
  if (!m) throw new ConfigError(`subnet key ${quoteUntrusted(key)} is not of the form a.b.c.d-len`);
  return `${m[1]}/${m[2]}`;
}

/** A lease value as flannel stores it in etcd (flanneld writes PublicIPv6 null on IPv4-only hosts). */
export interface LeaseAttrs {
  PublicIP: string;
  PublicIPv6: string | null;
  BackendType: BackendType;
  BackendData?: { VNI: number; VtepMAC: string };
}

/** Render a lease as flannel's etcd key and value. */
export function leaseToEtcd(lease: Lease): { key: string; value: LeaseAttrs } {
  const value: LeaseAttrs = { PublicIP: lease.publicIp, PublicIPv6: null, BackendType: lease.backendType };
  if (lease.backendType === 'vxlan') value.BackendData = { VNI: lease.vni ?? DEFAULT_VNI, VtepMAC: lease.vtepMac ?? '' };
  return { key: subnetToKey(lease.subnet), value };
}

/** Render a lease as a one-entry peers-file object: `{"198.19.1.0-24": {...}}` (mergeable into a peers file). */
export function leaseToJson(lease: Lease): string {
  const { key, value } = leaseToEtcd(lease);
  return JSON.stringify({ [key]: value });
}

/** Parse one lease value (`source` names it in errors). */
export function parseLeaseAttrs(key: string, v: unknown, source: string, network?: IpPrefix): Lease {
  const where = `${source}: ${quoteUntrusted(key)}`;
  let subnet: string;
  try {
    subnet = keyToSubnet(key);
  } catch (e) {
    throw new ConfigError(`${source}: ${(e as Error).message}`);
  }
  const sc = parsePrefix(subnet, { family: 4 });
  if (sc instanceof AddrError) throw new ConfigError(`${where} is not a subnet in network form`);
  if (network && !network.covers(sc)) throw new ConfigError(`${where} is outside Network ${network.toString()}`);
  if (!isObject(v)) throw new ConfigError(`${where}: lease value must be an object`);
  const pub = v.PublicIP;
  if (!isIpv4(pub)) throw new ConfigError(`${where}: PublicIP ${shown(pub ?? null)} is not an IPv4 address`);
  const bt = typeof v.BackendType === 'string' ? v.BackendType.toLowerCase() : v.BackendType;
  if (bt !== 'udp' && bt !== 'vxlan' && bt !== 'host-gw') throw new ConfigError(`${where}: BackendType ${shown(v.BackendType ?? null)} is not "udp", "vxlan" or "host-gw"`);
  const lease: Lease = { subnet: sc.toString(), publicIp: pub, backendType: bt };
  if (bt === 'vxlan') {
    const bd = v.BackendData;
    if (!isObject(bd)) throw new ConfigError(`${where}: vxlan lease needs BackendData {"VNI", "VtepMAC"}`);
    const vni = bd.VNI ?? DEFAULT_VNI;
    if (typeof vni !== 'number' || !Number.isInteger(vni) || vni < 0 || vni > 0xffffff) throw new ConfigError(`${where}: BackendData.VNI ${shown(vni)} is not a VNI`);
    const mac = typeof bd.VtepMAC === 'string' ? normalizeMac(bd.VtepMAC) : undefined;
    if (!mac) throw new ConfigError(`${where}: BackendData.VtepMAC ${shown(bd.VtepMAC ?? null)} is not a MAC address`);
    lease.vni = vni;
    lease.vtepMac = mac;
  }
  return lease;
}

/**
 * Parse a peers file in flannel's etcd layout: a JSON object from subnet keys
 * ("198.19.2.0-24", or full etcd keys ending in one) to lease values. Returns a map
 * from subnet (CIDR) to lease. Overlapping subnets are an error.
 */
export function parsePeers(text: string, source = 'peers file', network?: IpPrefix): Map<string, Lease> {
  const p = new PeersParse(text, source, network);
  p.step();
  return p.result();
}

/**
 * A peers file parsed a slice at a time, so that a daemon never holds its event loop (which
 * forwards packets) for the whole of a large file: the constructor checks the size and runs
 * JSON.parse (about 6 ms for 10,000 leases), then each {@link step} validates leases until a
 * deadline, and the last step checks overlaps. Errors are ConfigErrors, as from
 * {@link parsePeers} (which is this, run to the end).
 */
export class PeersParse {
  private readonly entries: [string, Json][];
  private readonly out = new Map<string, Lease>();
  private readonly prefixes: IpPrefix[] = [];
  private next = 0;
  private done = false;

  constructor(text: string, private readonly source = 'peers file', private readonly network?: IpPrefix) {
    if (text.length > MAX_PEERS_FILE_BYTES) throw new ConfigError(`${source}: ${text.length} bytes, over the ${MAX_PEERS_FILE_BYTES >> 20} MiB limit`);
    const root = parseJson(text, source);
    if (!isObject(root)) throw new ConfigError(`${source}: expected a JSON object of subnet keys to leases`);
    this.entries = Object.entries(root);
  }

  /**
   * Validate leases until all are done or `performance.now()` passes `deadline`; true once the
   * whole file is parsed (then {@link result} has it). Throws a ConfigError on the first bad lease.
   */
  step(deadline = Infinity): boolean {
    if (this.done) return true;
    const e = this.entries;
    while (this.next < e.length) {
      const [key, v] = e[this.next++]!;
      const lease = parseLeaseAttrs(key, v, this.source, this.network);
      this.out.set(lease.subnet, lease);
      this.prefixes.push(ipPrefix(lease.subnet));
      if ((this.next & 63) === 0 && performance.now() > deadline) return false;
    }
    if (this.next === e.length && this.prefixes.length > 0 && deadline !== Infinity && performance.now() > deadline) {
      this.next++; // the overlap check gets a slice of its own
      return false;
    }
    const clash = firstOverlap(this.prefixes);
    if (clash !== undefined) {
      throw new ConfigError(`${this.source}: "${subnetToKey(clash[1].toString())}" overlaps ${subnetToKey(clash[0].toString())}`);
    }
    this.done = true;
    return true;
  }

  /** The leases by subnet, once {@link step} returned true. */
  result(): Map<string, Lease> {
    if (!this.done) throw new Error('PeersParse.result() before the last step');
    return this.out;
  }
}

/**
 * Two IPv4 prefixes of `ps` that overlap (the earlier-starting first), or undefined: sorted by
 * network address, a prefix overlaps an earlier one exactly when it starts before the furthest
 * end seen so far (aligned prefixes either nest or are disjoint). O(n log n). Duplicates count.
 */
export function firstOverlap(ps: readonly IpPrefix[]): [IpPrefix, IpPrefix] | undefined {
  const sorted = [...ps].sort((a, b) => a.net - b.net || a.len - b.len);
  let reach: IpPrefix | undefined;
  let reachEnd = -1;
  for (const p of sorted) {
    if (reach !== undefined && p.net <= reachEnd) return [reach, p];
    const end = p.net + 2 ** (32 - p.len) - 1;
    if (end > reachEnd) {
      reachEnd = end;
      reach = p;
    }
  }
  return undefined;
}

/** Two leases describe the same peer state. */
export function leaseEquals(a: Lease, b: Lease): boolean {
  return a.subnet === b.subnet && a.publicIp === b.publicIp && a.backendType === b.backendType && (a.vni ?? null) === (b.vni ?? null) && (a.vtepMac ?? null) === (b.vtepMac ?? null);
}

/** What changed between two peer sets. */
export interface PeerDiff {
  /** New or changed leases (call addPeer). */
  upsert: Lease[];
  /** Subnets that disappeared (call removePeer). */
  remove: string[];
}

/** Diff two peer maps (subnet -> lease): only new, changed and removed peers appear. */
export function diffPeers(prev: ReadonlyMap<string, Lease>, next: ReadonlyMap<string, Lease>): PeerDiff {
  const upsert: Lease[] = [];
  const remove: string[] = [];
  for (const [subnet, lease] of next) {
    const old = prev.get(subnet);
    if (!old || !leaseEquals(old, lease)) upsert.push(lease);
  }
  for (const subnet of prev.keys()) if (!next.has(subnet)) remove.push(subnet);
  return { upsert, remove };
}

// ---------------------------------------------------------------------------
// subnet.env

/** Values of /run/flannel/subnet.env. */
export interface SubnetEnv {
  /** FLANNEL_NETWORK, network form. */
  network: string;
  /** This host's lease, network form (written as the gateway form, first host address). */
  subnet: string;
  /** FLANNEL_MTU. */
  mtu: number;
  /** FLANNEL_IPMASQ. */
  ipMasq: boolean;
}

/** The gateway form flannel writes for FLANNEL_SUBNET: first host address with the lease's length ("198.19.1.1/24"). */
export function gatewayForm(subnet: string): string {
  const c = parseNetworkPrefix(subnet, 'subnet');
  return `${IpAddr.fromV4(c.net + 1).toString()}/${c.len}`;
}

/** Render subnet.env exactly as flanneld writes it (the flannel CNI plugin reads it). */
export function renderSubnetEnv(e: SubnetEnv): string {
  return `FLANNEL_NETWORK=${e.network}\nFLANNEL_SUBNET=${gatewayForm(e.subnet)}\nFLANNEL_MTU=${e.mtu}\nFLANNEL_IPMASQ=${e.ipMasq}\n`;
}

/** Parse a subnet.env (KEY=VALUE lines) into a plain record. */
export function parseEnvFile(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line);
    if (m) out[m[1]!] = m[2]!.trim();
  }
  return out;
}

/** Encapsulation overhead in bytes the tunnel device's MTU must leave, from the backend registry (udp 28, vxlan 50). */
export function encapOverhead(type: BackendType): number {
  return lookupBackend(type)?.mtuOverhead ?? 0;
}
