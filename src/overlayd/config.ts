/**
 * overlayd configuration in flannel's own formats: net-conf.json, the etcd lease
 * layout (peers file and our own lease), and /run/flannel/subnet.env.
 *
 * Every parser throws {@link ConfigError} with a single-line message that names the
 * offending file, key or value; the CLI prints it and exits with status 2.
 */
import type { BackendTypeName, Lease } from '../vtep/backend.js';
import { AddrError, IpAddr, IpPrefix, ipAddr, ipPrefix, parseIp, parsePrefix } from '../codec/addr.js';
import { backendTypes, lookupBackend } from '../vtep/registry.js';
import { isIpv6Cidr } from '../vtep/core.js';
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

/** Parse a prefix of `family` (default IPv4) in network form ("198.19.2.0/24", "2001:2:0:1::/64"); `what` names it in the one-line error. */
export function parseNetworkPrefix(s: string, what: string, family: 4 | 6 = 4): IpPrefix {
  const p = parsePrefix(s, { family });
  if (p instanceof AddrError) {
    if (p.reason === 'host-bits-set') throw new ConfigError(`${what} "${s}" has host bits set (did you mean ${ipPrefix(s, { hostBits: 'clear' }).toString()}?)`);
    throw new ConfigError(`${what} ${quoteUntrusted(s)} is not an IPv${family} CIDR`);
  }
  return p;
}

/** An address as a number (IPv4: 32 bits, IPv6: 128 bits), for subnet arithmetic on either family. */
export function addrToBig(a: IpAddr): bigint {
  let n = 0n;
  for (const b of a.bytes) n = (n << 8n) | BigInt(b);
  return n;
}

/** The address of `family` whose number is `n` (see {@link addrToBig}). */
export function bigToAddr(n: bigint, family: 4 | 6): IpAddr {
  if (family === 4) return IpAddr.fromV4(Number(n & 0xffffffffn));
  const b = new Uint8Array(16);
  for (let i = 15; i >= 0; i--, n >>= 8n) b[i] = Number(n & 0xffn);
  return IpAddr.fromBytes(b, 6);
}

/** True when `s` is an IPv6 address. */
export function isIpv6(s: unknown): s is string {
  return typeof s === 'string' && !(parseIp(s, { family: 6 }) instanceof AddrError);
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

/**
 * One address family's network in net-conf.json: Network, SubnetLen, SubnetMin and SubnetMax
 * (IPv4), or IPv6Network, IPv6SubnetLen, IPv6SubnetMin and IPv6SubnetMax.
 */
export interface SubnetRange {
  /** The overlay network, network form ("198.19.0.0/16", "2001:2:8000::/48"). */
  network: string;
  /** Parsed `network`. */
  networkCidr: IpPrefix;
  /** Prefix length of each host's lease. */
  subnetLen: number;
  /** First subnet a host may lease (network form; flannel's default: Network's second subnet). */
  subnetMin: string;
  /** Last subnet a host may lease (network form; flannel's default: Network's last subnet). */
  subnetMax: string;
}

/**
 * A parsed net-conf.json. The {@link SubnetRange} fields are the IPv4 network's; on an IPv6-only
 * network (EnableIPv4 false) they are the IPv6 network's (the same as `ipv6`): every host's
 * lease has exactly one subnet of that family, and leases are known by it.
 */
export interface NetConf extends SubnetRange {
  /** EnableIPv4 (flannel's default true); false: IPv6-only. */
  enableIPv4: boolean;
  /** EnableIPv6 true: the IPv6 network (IPv6Network, IPv6SubnetLen default 64, IPv6SubnetMin/Max). */
  ipv6?: SubnetRange;
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
const NETCONF_KEYS = ['Network', 'SubnetLen', 'SubnetMin', 'SubnetMax', 'Backend', 'EnableIPv4', 'EnableIPv6', 'IPv6Network', 'IPv6SubnetLen', 'IPv6SubnetMin', 'IPv6SubnetMax'] as const;
/** Top-level keys flanneld reads and overlayd does not (multiple networks, nftables masquerade). */
const NETCONF_FLANNEL_ONLY = ['Networks', 'IPv6Networks', 'EnableNFTables'] as const;
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

/** The net-conf keys of one family's network. */
const FAMILY_KEYS = {
  4: { net: 'Network', len: 'SubnetLen', min: 'SubnetMin', max: 'SubnetMax' },
  6: { net: 'IPv6Network', len: 'IPv6SubnetLen', min: 'IPv6SubnetMin', max: 'IPv6SubnetMax' },
} as const;

/**
 * SubnetMin or SubnetMax (or their IPv6 keys) of net-conf.json: an address of the network's
 * family inside it on a subnet-length boundary; `def` when absent. Returns the address's number.
 */
function subnetBound(root: GoStruct, field: string, lenKey: string, net: IpPrefix, subnetLen: number, def: bigint, source: string): bigint {
  const v = root.get(field);
  const key = root.key(field);
  if (v === undefined || v === null || v === '') return def;
  const a = typeof v === 'string' ? parseIp(v, { family: net.family }) : undefined;
  if (a === undefined || a instanceof AddrError) throw new ConfigError(`${source}: ${key} ${shown(v)} is not an IPv${net.family} address`);
  if (!net.contains(a)) throw new ConfigError(`${source}: ${key} ${a.toString()} is not in the range of the ${FAMILY_KEYS[net.family].net} ${net.toString()}`);
  const n = addrToBig(a);
  if ((n & ((1n << BigInt(a.bits - subnetLen)) - 1n)) !== 0n) throw new ConfigError(`${source}: ${key} ${a.toString()} is not on a ${lenKey} (/${subnetLen}) boundary`);
  return n;
}

/**
 * One family's network of net-conf.json, with flannel's defaults: SubnetLen 24 (IPv6: 64), or
 * the network's length + 2 for networks too small for that; SubnetMin the network's second
 * subnet and SubnetMax its last (flannel skips the first, whose address is the network's own).
 */
function familyRange(root: GoStruct, family: 4 | 6, source: string): SubnetRange {
  const k = FAMILY_KEYS[family];
  const bits = family === 4 ? 32 : 128;
  const netStr = root.get(k.net);
  if (typeof netStr !== 'string') {
    throw new ConfigError(`${source}: "${k.net}" (an IPv${family} CIDR) is required${family === 6 ? ' when EnableIPv6 is true' : ' (or EnableIPv4 false for IPv6 only)'}`);
  }
  const net = parseNetworkPrefix(netStr, `${source}: ${root.key(k.net)}`, family);
  const [dflt, smallest] = family === 4 ? [24, 28] : [64, 124];
  let subnetLen = optInt(root, k.len, `${source}: `, 0, bits);
  if (subnetLen === undefined || subnetLen === 0) {
    if (net.len > smallest) throw new ConfigError(`${source}: ${k.net} ${net.toString()} is too small (smaller than a /${smallest})`);
    subnetLen = net.len <= dflt - 2 ? dflt : net.len + 2;
  } else {
    if (subnetLen > bits - 2) throw new ConfigError(`${source}: ${root.key(k.len)} ${subnetLen} is too long (at most ${bits - 2})`);
    if (subnetLen < net.len + 2) {
      throw new ConfigError(`${source}: ${root.key(k.len)} ${subnetLen} must be at least ${k.net}'s length + 2 (${net.len + 2}) so ${k.net} holds at least four subnets`);
    }
  }
  const size = 1n << BigInt(bits - subnetLen);
  const base = addrToBig(net.addr);
  const min = subnetBound(root, k.min, k.len, net, subnetLen, base + size, source);
  const max = subnetBound(root, k.max, k.len, net, subnetLen, base + (1n << BigInt(bits - net.len)) - size, source);
  const show = (n: bigint): string => bigToAddr(n, family).toString();
  if (min > max) throw new ConfigError(`${source}: ${k.min} ${show(min)} is above ${k.max} ${show(max)}`);
  return { network: net.toString(), networkCidr: net, subnetLen, subnetMin: `${show(min)}/${subnetLen}`, subnetMax: `${show(max)}/${subnetLen}` };
}

/**
 * Parse flannel's net-conf.json. Applies flannel's defaults: Backend.Type "udp" when
 * absent, EnableIPv4 true and EnableIPv6 false, the subnet ranges of {@link familyRange},
 * udp Port 8285, vxlan VNI 1 and Port 8472. Unknown Backend types are an error.
 */
export function parseNetConf(text: string, source = 'net-conf.json'): NetConf {
  const json = parseJson(text, source);
  if (!isObject(json)) throw new ConfigError(`${source}: expected a JSON object`);
  const warnings: string[] = [];
  const root = new GoStruct(json, [...NETCONF_KEYS, ...NETCONF_FLANNEL_ONLY]);
  const top = `${source}: `;
  const v4 = optBool(root, 'EnableIPv4', top) ?? true;
  const v6 = optBool(root, 'EnableIPv6', top) ?? false;
  if (!v4 && !v6) throw new ConfigError(`${source}: ${root.key('EnableIPv4')} and ${root.key('EnableIPv6')} are both false: no network to run`);
  const ipv6 = v6 ? familyRange(root, 6, source) : undefined;
  const primary = v4 ? familyRange(root, 4, source) : ipv6!;
  const unread = (keys: readonly string[], why: string): void => {
    for (const f of keys) if (root.get(f) !== undefined) warnings.push(`${top}${quoteUntrusted(root.key(f))} is not used (${why}); ignored`);
  };
  if (!v4) unread(Object.values(FAMILY_KEYS[4]), `${root.key('EnableIPv4')} is false`);
  if (!v6) unread(Object.values(FAMILY_KEYS[6]), `${root.key('EnableIPv6')} is not true`);
  for (const f of NETCONF_FLANNEL_ONLY) {
    if (root.get(f) !== undefined) warnings.push(`${top}${quoteUntrusted(root.key(f))} is read by flanneld but not by overlayd (one Network per family); ignored`);
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
  return { ...primary, enableIPv4: v4, ...(ipv6 ? { ipv6 } : {}), backend, warnings };
}

/**
 * Validate this host's lease (`--subnet`): a CIDR of the network's family in network form,
 * exactly SubnetLen long, inside Network. Returns its network form. `range` and `flag`: the
 * IPv6 half (`conf.ipv6`, `--ipv6-subnet`).
 */
export function validateSubnet(subnet: string, conf: SubnetRange, flag = '--subnet'): IpPrefix {
  const c = parseNetworkPrefix(subnet, flag, conf.networkCidr.family);
  const lenKey = FAMILY_KEYS[conf.networkCidr.family].len;
  if (!conf.networkCidr.covers(c)) throw new ConfigError(`${flag} ${subnet} is outside ${FAMILY_KEYS[conf.networkCidr.family].net} ${conf.network}`);
  if (c.len !== conf.subnetLen) throw new ConfigError(`${flag} ${subnet} must be a /${conf.subnetLen} (${lenKey} in net-conf)`);
  return c;
}

// ---------------------------------------------------------------------------
// The etcd lease layout: a subnet key, "198.19.2.0-24" (dual stack "198.19.2.0-24&2001:2:0:2::-64",
// IPv6-only "0.0.0.0-0&2001:2:0:2::-64"), to {"PublicIP", "PublicIPv6", "BackendType",
// "BackendData", "BackendV6Data"}.

/** Convert a CIDR "198.19.2.0/24" (or "2001:2:0:2::/64") to flannel's subnet key form "198.19.2.0-24". */
export function subnetToKey(cidr: string): string {
  return cidr.replace('/', '-');
}

/** True when a lease is IPv6-only: its subnet (the one it is known by) is IPv6. */
export function isIpv6OnlyLease(lease: Lease): boolean {
  return isIpv6Cidr(lease.subnet);
}

/**
 * flannel's subnet key of a lease (pkg/subnet MakeSubnetKey): its IPv4 subnet, then "&" and its
 * IPv6 subnet on a dual-stack lease; an IPv6-only lease has the zero IPv4 subnet "0.0.0.0-0" first.
 */
export function leaseKey(lease: Lease): string {
  if (isIpv6OnlyLease(lease)) return `0.0.0.0-0&${subnetToKey(lease.subnet)}`;
  return lease.ipv6Subnet !== undefined ? `${subnetToKey(lease.subnet)}&${subnetToKey(lease.ipv6Subnet)}` : subnetToKey(lease.subnet);
}

/** A parsed subnet key. */
export interface LeaseKey {
  /** The subnet the lease is known by: its IPv4 subnet, or its IPv6 subnet on an IPv6-only key. */
  primary: IpPrefix;
  /** The IPv4 subnet (absent on an IPv6-only key). */
  v4?: IpPrefix;
  /** The IPv6 subnet after '&', when there is one and it parses. */
  v6?: IpPrefix;
  /** Why the part after '&' is not used (the key is then an IPv4 one). */
  v6Problem?: string;
}

/**
 * Parse a subnet key ("198.19.2.0-24", "198.19.2.0-24&2001:2:0:2::-64", "0.0.0.0-0&2001:2:0:2::-64",
 * or a full etcd key ending in one), both parts in network form as flannel writes them (IPv6 in
 * lower-case hex). A malformed part after '&' is reported in `v6Problem`, not thrown, unless
 * it is the key's only subnet. Throws a ConfigError naming the key otherwise.
 */
export function parseLeaseKey(key: string): LeaseKey {
  const last = key.slice(key.lastIndexOf('/') + 1);
  const m = /^(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})-(\d{1,3})(?:&([^]*))?$/.exec(last);
  if (!m) throw new ConfigError(`subnet key ${quoteUntrusted(key)} is not of the form a.b.c.d-len (or a.b.c.d-len&ipv6-len)`);
  const v4 = parsePrefix(`${m[1]}/${m[2]}`, { family: 4 });
  if (v4 instanceof AddrError) throw new ConfigError(`subnet key ${quoteUntrusted(key)} is not a subnet in network form`);
  if (m[3] === undefined) return { primary: v4, v4 };
  const m6 = /^([0-9a-f:]+)-(\d{1,3})$/.exec(m[3]);
  const v6 = m6 ? parsePrefix(`${m6[1]}/${m6[2]}`, { family: 6 }) : undefined;
  const zero4 = v4.len === 0 && v4.net === 0;
  if (v6 instanceof IpPrefix) return zero4 ? { primary: v6, v6 } : { primary: v4, v4, v6 };
  const v6Problem = `its IPv6 part ${quoteUntrusted(m[3])} is not an IPv6 subnet in network form`;
  if (zero4) throw new ConfigError(`subnet key ${quoteUntrusted(key)}: ${v6Problem}`);
  return { primary: v4, v4, v6Problem };
}

/**
 * The subnet (CIDR form) a subnet key is known by: its IPv4 subnet, or its IPv6 subnet on an
 * IPv6-only key (see {@link parseLeaseKey}).
 */
export function keyToSubnet(key: string): string {
  return parseLeaseKey(key).primary.toString();
}

/** BackendData / BackendV6Data of a VXLAN lease. */
export interface VxlanLeaseData {
  VNI: number;
  VtepMAC: string;
}

/**
 * A lease value as flannel stores it in etcd (pkg/lease LeaseAttrs, fields in Go's order):
 * PublicIPv6 null on IPv4-only hosts, PublicIP "0.0.0.0" and no BackendData on IPv6-only ones.
 */
export interface LeaseAttrs {
  PublicIP: string;
  PublicIPv6: string | null;
  BackendType: BackendType;
  BackendData?: VxlanLeaseData;
  BackendV6Data?: VxlanLeaseData;
}

/** Render a lease as flannel's etcd key and value. */
export function leaseToEtcd(lease: Lease): { key: string; value: LeaseAttrs } {
  const only6 = isIpv6OnlyLease(lease);
  const value: LeaseAttrs = { PublicIP: only6 ? '0.0.0.0' : lease.publicIp, PublicIPv6: lease.publicIpv6 ?? null, BackendType: lease.backendType };
  if (lease.backendType === 'vxlan') {
    if (!only6) value.BackendData = { VNI: lease.vni ?? DEFAULT_VNI, VtepMAC: lease.vtepMac ?? '' };
    if (lease.ipv6Subnet !== undefined && lease.v6VtepMac !== undefined) value.BackendV6Data = { VNI: lease.v6Vni ?? lease.vni ?? DEFAULT_VNI, VtepMAC: lease.v6VtepMac };
  }
  return { key: leaseKey(lease), value };
}

/** Render a lease as a one-entry peers-file object: `{"198.19.1.0-24": {...}}` (mergeable into a peers file). */
export function leaseToJson(lease: Lease): string {
  const { key, value } = leaseToEtcd(lease);
  return JSON.stringify({ [key]: value });
}

/** The networks leases must lie in: the IPv4 Network, and the IPv6Network of a dual-stack or IPv6-only config. */
export interface LeaseNetworks {
  v4?: IpPrefix;
  v6?: IpPrefix;
}

/** The networks of a net-conf for {@link parseLeaseAttrs}. */
export function leaseNetworks(conf: NetConf): LeaseNetworks {
  const n: LeaseNetworks = {};
  if (conf.enableIPv4) n.v4 = conf.networkCidr;
  if (conf.ipv6) n.v6 = conf.ipv6.networkCidr;
  return n;
}

/** BackendData or BackendV6Data (`field`) of a VXLAN lease value; throws a ConfigError after `where`. */
function vxlanData(v: { [k: string]: Json }, field: 'BackendData' | 'BackendV6Data', where: string): { vni: number; mac: string } {
  const bd = v[field];
  if (!isObject(bd)) throw new ConfigError(`${where}: vxlan lease needs ${field} {"VNI", "VtepMAC"}`);
  const vni = bd.VNI ?? DEFAULT_VNI;
  if (typeof vni !== 'number' || !Number.isInteger(vni) || vni < 0 || vni > 0xffffff) throw new ConfigError(`${where}: ${field}.VNI ${shown(vni)} is not a VNI`);
  const mac = typeof bd.VtepMAC === 'string' ? normalizeMac(bd.VtepMAC) : undefined;
  if (!mac) throw new ConfigError(`${where}: ${field}.VtepMAC ${shown(bd.VtepMAC ?? null)} is not a MAC address`);
  return { vni, mac };
}

/**
 * The IPv6 half of a lease value: PublicIPv6 and (vxlan) BackendV6Data, for the key's IPv6
 * subnet `v6`. Throws a ConfigError (after `where`) when it is unusable.
 */
function ipv6Half(v: { [k: string]: Json }, bt: BackendType, v6: IpPrefix, net6: IpPrefix | undefined, where: string): Pick<Lease, 'ipv6Subnet' | 'publicIpv6' | 'v6Vni' | 'v6VtepMac'> {
  if (net6 && !net6.covers(v6)) throw new ConfigError(`${where}: IPv6 subnet ${v6.toString()} is outside IPv6Network ${net6.toString()}`);
  const a = typeof v.PublicIPv6 === 'string' ? parseIp(v.PublicIPv6, { family: 6 }) : undefined;
  if (!(a instanceof IpAddr)) throw new ConfigError(`${where}: PublicIPv6 ${shown(v.PublicIPv6 ?? null)} is not an IPv6 address`);
  const half: Pick<Lease, 'ipv6Subnet' | 'publicIpv6' | 'v6Vni' | 'v6VtepMac'> = { ipv6Subnet: v6.toString(), publicIpv6: a.toString() };
  if (bt === 'vxlan') {
    const d = vxlanData(v, 'BackendV6Data', where);
    half.v6Vni = d.vni;
    half.v6VtepMac = d.mac;
  }
  return half;
}

/**
 * Parse one lease (`source` names it in errors). `network`: the networks its subnets must lie in
 * (an IpPrefix: the IPv4 Network only). A dual-stack lease whose IPv6 half is unusable (a
 * malformed IPv6 part of the key, PublicIPv6 or BackendV6Data, or a subnet outside IPv6Network)
 * is kept as an IPv4 lease, and the reason pushed to `notes` (one line, for the caller to log
 * once); an IPv6-only lease needs its IPv6 half. On an IPv6-only network (`network` with only v6)
 * a dual-stack lease is read as its IPv6 half.
 */
export function parseLeaseAttrs(key: string, v: unknown, source: string, network?: IpPrefix | LeaseNetworks, notes?: string[]): Lease {
  const where = `${source}: ${quoteUntrusted(key)}`;
  let k: LeaseKey;
  try {
    k = parseLeaseKey(key);
  } catch (e) {
    throw new ConfigError(`${source}: ${(e as Error).message}`);
  }
  const nets: LeaseNetworks = network instanceof IpPrefix ? { v4: network } : network ?? {};
  const only6 = k.v4 === undefined || (nets.v6 !== undefined && nets.v4 === undefined && k.v6 !== undefined);
  if (only6 && nets.v4 !== undefined) throw new ConfigError(`${where} is an IPv6-only lease (no IPv4 subnet), but Network ${nets.v4.toString()} is IPv4`);
  if (!only6 && nets.v4 === undefined && nets.v6 !== undefined) throw new ConfigError(`${where} has no IPv6 subnet, but the network is IPv6-only (${k.v6Problem ?? 'an IPv4 key'})`);
  if (k.v4 !== undefined && !only6 && nets.v4 && !nets.v4.covers(k.v4)) throw new ConfigError(`${where} is outside Network ${nets.v4.toString()}`);
  if (!isObject(v)) throw new ConfigError(`${where}: lease value must be an object`);
  const bt = typeof v.BackendType === 'string' ? v.BackendType.toLowerCase() : v.BackendType;
  if (bt !== 'udp' && bt !== 'vxlan' && bt !== 'host-gw') throw new ConfigError(`${where}: BackendType ${shown(v.BackendType ?? null)} is not "udp", "vxlan" or "host-gw"`);
  if (only6) {
    const h = ipv6Half(v, bt, k.v6!, nets.v6, where);
    const lease: Lease = { subnet: h.ipv6Subnet!, publicIp: h.publicIpv6!, backendType: bt, ...h };
    if (bt === 'vxlan') {
      lease.vni = h.v6Vni!;
      lease.vtepMac = h.v6VtepMac!;
    }
    return lease;
  }
  const pub = v.PublicIP;
  if (!isIpv4(pub)) throw new ConfigError(`${where}: PublicIP ${shown(pub ?? null)} is not an IPv4 address`);
  const lease: Lease = { subnet: k.v4!.toString(), publicIp: pub, backendType: bt };
  if (bt === 'vxlan') {
    const d = vxlanData(v, 'BackendData', where);
    lease.vni = d.vni;
    lease.vtepMac = d.mac;
  }
  if (k.v6Problem !== undefined) {
    notes?.push(`${where}: ${k.v6Problem}; used as an IPv4 lease`);
  } else if (k.v6 !== undefined) {
    try {
      Object.assign(lease, ipv6Half(v, bt, k.v6, nets.v6, where));
    } catch (e) {
      notes?.push(`${(e as Error).message}; its IPv6 half is not used`);
    }
  } else if (v.PublicIPv6 !== undefined && v.PublicIPv6 !== null) {
    // an IPv4 lease with an IPv6 underlay address
    if (isIpv6(v.PublicIPv6)) lease.publicIpv6 = ipAddr(v.PublicIPv6).toString();
    else notes?.push(`${where}: PublicIPv6 ${shown(v.PublicIPv6)} is not an IPv6 address; not used`);
  }
  return lease;
}

/**
 * Parse a peers file in flannel's etcd layout: a JSON object from subnet keys
 * ("198.19.2.0-24", or full etcd keys ending in one) to lease values. Returns a map
 * from subnet (CIDR) to lease. Overlapping subnets are an error.
 */
export function parsePeers(text: string, source = 'peers file', network?: IpPrefix | LeaseNetworks): Map<string, Lease> {
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
  /** Leases whose IPv6 half is not used, and why (one line each, see {@link parseLeaseAttrs}). */
  readonly notes: string[] = [];

  constructor(text: string, private readonly source = 'peers file', private readonly network?: IpPrefix | LeaseNetworks) {
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
      const lease = parseLeaseAttrs(key, v, this.source, this.network, this.notes);
      this.out.set(lease.subnet, lease);
      this.prefixes.push(ipPrefix(lease.subnet));
      if (lease.ipv6Subnet !== undefined && lease.ipv6Subnet !== lease.subnet) this.prefixes.push(ipPrefix(lease.ipv6Subnet));
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
 * Two prefixes of `ps` that overlap (the earlier-starting first), or undefined: per family, sorted
 * by network address, a prefix overlaps an earlier one exactly when it starts before the furthest
 * end seen so far (aligned prefixes either nest or are disjoint). O(n log n). Duplicates count.
 */
export function firstOverlap(ps: readonly IpPrefix[]): [IpPrefix, IpPrefix] | undefined {
  return overlapIn(ps.filter((p) => p.family === 4), (p) => p.net, (p) => p.net + 2 ** (32 - p.len) - 1)
    ?? overlapIn(ps.filter((p) => p.family === 6), (p) => addrToBig(p.addr), (p) => addrToBig(p.addr) + (1n << BigInt(128 - p.len)) - 1n);
}

/** {@link firstOverlap} within one family, the prefixes' first and last addresses given as numbers. */
function overlapIn<N extends number | bigint>(ps: readonly IpPrefix[], first: (p: IpPrefix) => N, last: (p: IpPrefix) => N): [IpPrefix, IpPrefix] | undefined {
  const sorted = ps.map((p) => ({ p, a: first(p), z: last(p) })).sort((x, y) => (x.a < y.a ? -1 : x.a > y.a ? 1 : x.p.len - y.p.len));
  let reach: IpPrefix | undefined;
  let reachEnd: N | undefined;
  for (const { p, a, z } of sorted) {
    if (reach !== undefined && a <= reachEnd!) return [reach, p];
    if (reachEnd === undefined || z > reachEnd) {
      reachEnd = z;
      reach = p;
    }
  }
  return undefined;
}

/** Two leases describe the same peer state (both halves). */
export function leaseEquals(a: Lease, b: Lease): boolean {
  return a.subnet === b.subnet && a.publicIp === b.publicIp && a.backendType === b.backendType && (a.vni ?? null) === (b.vni ?? null) && (a.vtepMac ?? null) === (b.vtepMac ?? null)
    && (a.ipv6Subnet ?? null) === (b.ipv6Subnet ?? null) && (a.publicIpv6 ?? null) === (b.publicIpv6 ?? null) && (a.v6Vni ?? null) === (b.v6Vni ?? null) && (a.v6VtepMac ?? null) === (b.v6VtepMac ?? null);
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
  /** FLANNEL_NETWORK, network form (absent on an IPv6-only network). */
  network?: string;
  /** This host's IPv4 lease, network form (written as the gateway form, first host address). */
  subnet?: string;
  /** FLANNEL_IPV6_NETWORK, network form (EnableIPv6). */
  ipv6Network?: string;
  /** This host's IPv6 lease, network form (FLANNEL_IPV6_SUBNET, gateway form). */
  ipv6Subnet?: string;
  /** FLANNEL_MTU. */
  mtu: number;
  /** FLANNEL_IPMASQ. */
  ipMasq: boolean;
}

/**
 * The gateway form flannel writes for FLANNEL_SUBNET and FLANNEL_IPV6_SUBNET: the first host
 * address with the lease's length ("198.19.1.1/24", "2001:2:0:1::1/64").
 */
export function gatewayForm(subnet: string): string {
  const c = parseNetworkPrefix(subnet, 'subnet', subnet.includes(':') ? 6 : 4);
  return `${bigToAddr(addrToBig(c.addr) + 1n, c.family).toString()}/${c.len}`;
}

/**
 * Render subnet.env exactly as flanneld writes it (pkg/subnet WriteSubnetFile; the flannel CNI
 * plugin reads it): the IPv4 pair, the IPv6 pair (EnableIPv6), then MTU and IPMASQ.
 */
export function renderSubnetEnv(e: SubnetEnv): string {
  let out = '';
  if (e.network !== undefined && e.subnet !== undefined) out += `FLANNEL_NETWORK=${e.network}\nFLANNEL_SUBNET=${gatewayForm(e.subnet)}\n`;
  if (e.ipv6Network !== undefined && e.ipv6Subnet !== undefined) out += `FLANNEL_IPV6_NETWORK=${e.ipv6Network}\nFLANNEL_IPV6_SUBNET=${gatewayForm(e.ipv6Subnet)}\n`;
  return `${out}FLANNEL_MTU=${e.mtu}\nFLANNEL_IPMASQ=${e.ipMasq}\n`;
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

/**
 * Encapsulation overhead in bytes the tunnel device's MTU must leave, from the backend registry
 * (udp 28, vxlan 50; over an IPv6 underlay, `v6`: udp 48, vxlan 70).
 */
export function encapOverhead(type: BackendType, v6 = false): number {
  const r = lookupBackend(type);
  return (v6 ? r?.mtuOverheadV6 : undefined) ?? r?.mtuOverhead ?? 0;
}
