/**
 * The overlayd daemon: validates everything first, then creates (in order) the
 * healthz/metrics server, the capture file, the backend, subnet.env and the lease
 * file; applies and watches the peers file; and undoes what it created on stop.
 */
import { createSocket } from 'node:dgram';
import { mkdirSync, readFileSync, renameSync, statSync, unlinkSync, watch, writeFileSync, type FSWatcher } from 'node:fs';
import type { Server } from 'node:http';
import type { Registry } from 'prom-client';
import { basename, dirname } from 'node:path';
import type { Backend, DataplaneStats, Lease } from '../vtep/backend.js';
import type { DataplaneIo } from '../vtep/options.js';
import { defaultBackendFactory, ipv6Refusal, loadBackendModule, stableVtepMac, type BackendFactory, type BackendParams } from './backend-factory.js';
import type { CliOptions } from './cli.js';
import { nextSlice, SLICE_MS } from './slices.js';
import {
  ConfigError,
  parseEnvFile,
  encapOverhead,
  leaseEquals,
  leaseToJson,
  MAX_PEERS_FILE_BYTES,
  isIpv4,
  isIpv6OnlyLease,
  leaseKey,
  leaseNetworks,
  parseNetConf,
  PeersParse,
  renderSubnetEnv,
  subnetToKey,
  validateSubnet,
  type NetConf,
} from './config.js';
import { ipPrefix, type IpPrefix } from '../codec/addr.js';
import { EtcdClient, EtcdError } from '../subnet/etcd-client.js';
import { EtcdSubnetManager } from '../subnet/etcd-manager.js';
import { ifaceIpv6, ifaceMtu, pickInterface, type IfaceInfo, type IfacePick, type IfaceRequest } from './iface.js';
import { PcapWriter } from './pcap.js';
import { DeviceOwnership, deviceNameFor, devicesFor, type OwnedDevice } from './ownership.js';
import { UnderlayWatch } from './underlay.js';
import { IpMasq, IPMASQ_TABLE, masqTables } from './ipmasq.js';

/** Where log lines go. */
export interface Logger {
  info(msg: string): void;
  error(msg: string): void;
}

/** Log to stderr with a timestamp. */
export const stderrLogger: Logger = {
  info: (m) => process.stderr.write(`${new Date().toISOString()} overlayd[${process.pid}]: ${m}\n`),
  error: (m) => process.stderr.write(`${new Date().toISOString()} overlayd[${process.pid}]: error: ${m}\n`),
};

/** Fully validated configuration. */
export interface DaemonConfig {
  /** Parsed net-conf.json. */
  netConf: NetConf;
  /** This host's lease, network form (its IPv6 subnet on an IPv6-only network). */
  subnet: string;
  /**
   * net-conf EnableIPv6: our IPv6 subnet (network form), PublicIPv6, the local IPv6 address on
   * the underlay interface, and (vxlan) the flannel-v6.<VNI> device's VTEP MAC (etcd mode: the
   * one in our existing lease).
   */
  ipv6?: { subnet: string; publicIp: string; localIp: string; vtepMac?: string };
  /** The underlay interface choice. */
  iface: IfacePick;
  /** Tunnel device MTU. */
  mtu: number;
  /** Underlay interface MTU. */
  underlayMtu: number;
  /** Peers file path, if any. */
  peersPath?: string;
  /** Peers as read at validation time. */
  initialPeers: Map<string, Lease>;
  /** Leases of the peers file used without their IPv6 half, and why (logged at start). */
  initialPeerNotes?: string[];
  /** subnet.env path. */
  subnetFile: string;
  /** Lease output file. */
  leaseOut?: string;
  /** UDP transport. */
  transport: 'dgram' | 'mmsg';
  /** Kernel offloads (absent: the dataplane's default). */
  offload?: 'auto' | 'off';
  /** --timing: per-stage latency histograms. */
  timing?: boolean;
  /** --busy-poll-us (absent or 0: off). */
  busyPollUs?: number;
  /** --source-ports (absent: the backend's default). */
  sourcePorts?: number;
  /** Stats log interval, seconds (0 = off). */
  statsInterval: number;
  /** Healthz/metrics server, if enabled. */
  healthz?: { ip: string; port: number };
  /** Capture file. */
  pcap?: string;
  /** Peers file reload debounce, ms. */
  peersDebounceMs: number;
  /** Longest wait for a peers file reload while changes keep coming, ms (the debounce's maximum). */
  peersMaxWaitMs: number;
  /** VXLAN: our VTEP MAC (etcd mode: the one in our existing lease); default {@link stableVtepMac} of the subnet. */
  vtepMac?: string;
  /** --public-ip was given: the advertised address is never changed by an underlay event. */
  publicIpPinned?: boolean;
  /** --public-ipv6 was given: the same for PublicIPv6. */
  publicIpv6Pinned?: boolean;
  /** --keep-device-on-exit: stop() leaves the device, its address and routes for the next start. */
  keepDeviceOnExit?: boolean;
  /** --ip-masq: our nftables masquerade table (src/overlayd/ipmasq.ts). */
  ipMasq?: { fullyRandom: boolean; resyncSeconds: number };
  /** etcd mode: where the lease lives, and whether to delete it on stop. */
  etcd?: { endpoints: string[]; prefix: string; releaseOnExit: boolean };
}

function readConfigFile(path: string, flag: string, maxBytes = MAX_PEERS_FILE_BYTES): string {
  try {
    const size = statSync(path).size;
    if (size > maxBytes) throw new ConfigError(`${flag} ${path}: ${size} bytes, over the ${maxBytes >> 20} MiB limit`);
    return readFileSync(path, 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new ConfigError(`${flag} ${path}: ${err.code === 'ENOENT' ? 'no such file' : err.message}`);
  }
}

/** The configuration both modes share: everything but the network config and the subnets. */
type BaseConfig = Omit<DaemonConfig, 'netConf' | 'subnet' | 'mtu' | 'initialPeers' | 'ipv6'> & { publicIpv6?: string };

/** Validate the flags both modes share (healthz address, underlay interface). Throws ConfigError. */
function resolveBase(o: CliOptions, ifaces?: IfaceInfo[], routeTable?: string): BaseConfig {
  if (o.healthzPort && !isIpv4(o.healthzIp)) throw new ConfigError(`--healthz-ip "${o.healthzIp}" is not an IPv4 address`);
  const req: IfaceRequest = { iface: o.iface, ifaceRegex: o.ifaceRegex };
  if (o.publicIp !== undefined) req.publicIp = o.publicIp;
  if (o.ifaceCanReach !== undefined) req.canReach = o.ifaceCanReach;
  const iface = pickInterface(req, ifaces, routeTable);
  const cfg: BaseConfig = {
    iface,
    underlayMtu: ifaceMtu(iface.name) ?? 1500,
    subnetFile: o.subnetFile,
    transport: o.transport,
    statsInterval: o.statsInterval,
    peersDebounceMs: o.peersDebounceMs,
    peersMaxWaitMs: o.peersMaxWaitMs,
  };
  if (o.leaseOut !== undefined) cfg.leaseOut = o.leaseOut;
  if (o.healthzPort) cfg.healthz = { ip: o.healthzIp, port: o.healthzPort };
  if (o.pcap !== undefined) cfg.pcap = o.pcap;
  if (o.offload !== undefined) cfg.offload = o.offload;
  if (o.timing === true) cfg.timing = true;
  if (o.busyPollUs) cfg.busyPollUs = o.busyPollUs;
  if (o.sourcePorts !== undefined) cfg.sourcePorts = o.sourcePorts;
  if (o.keepDeviceOnExit === true) cfg.keepDeviceOnExit = true;
  if (o.publicIp !== undefined) cfg.publicIpPinned = true;
  if (o.publicIpv6 !== undefined) {
    cfg.publicIpv6 = o.publicIpv6;
    cfg.publicIpv6Pinned = true;
  }
  if (o.ipMasq) cfg.ipMasq = o.ipMasq;
  return cfg;
}

/**
 * PublicIPv6 and the local IPv6 address: --public-ipv6, else the underlay interface's first
 * global IPv6 address. `need`: throw a ConfigError when there is none.
 */
function ipv6Addresses(base: BaseConfig, need: true): { publicIp: string; localIp: string };
function ipv6Addresses(base: BaseConfig, need: false): { publicIp: string; localIp: string } | undefined;
function ipv6Addresses(base: BaseConfig, need: boolean): { publicIp: string; localIp: string } | undefined {
  const local = ifaceIpv6(base.iface.name);
  const pub = base.publicIpv6 ?? local;
  if (pub === undefined) {
    if (need) throw new ConfigError(`EnableIPv6: interface ${base.iface.name} has no global IPv6 address to advertise as PublicIPv6; give --public-ipv6`);
    return undefined;
  }
  return { publicIp: pub, localIp: local ?? pub };
}

/**
 * The base configuration completed with a network config and the subnets (the tunnel MTU
 * follows from them): `subnet` the one leases are known by, `ipv6` the IPv6 half (EnableIPv6).
 */
function withNetwork(base: BaseConfig, netConf: NetConf, subnet: string, initialPeers: Map<string, Lease>, ipv6?: DaemonConfig['ipv6']): DaemonConfig {
  const { publicIpv6: _, ...rest } = base;
  // an IPv6-only network tunnels over the IPv6 underlay (its larger headers); dual stack: the IPv4 device's MTU, as flanneld writes it
  const cfg: DaemonConfig = { ...rest, netConf, subnet, mtu: netConf.backend.mtu ?? base.underlayMtu - encapOverhead(netConf.backend.type, !netConf.enableIPv4), initialPeers };
  if (ipv6) cfg.ipv6 = ipv6;
  return cfg;
}

/** Validate a static command line (--net-conf, --subnet) into a DaemonConfig. Reads files; creates nothing. Throws ConfigError. */
export function resolveConfig(o: CliOptions, ifaces?: IfaceInfo[], routeTable?: string): DaemonConfig {
  if (o.netConf === undefined || (o.subnet === undefined && o.ipv6Subnet === undefined)) throw new ConfigError('--net-conf and --subnet are required without --etcd-endpoints');
  const netConf = parseNetConf(readConfigFile(o.netConf, '--net-conf'), o.netConf);
  const v6 = netConf.ipv6;
  if (netConf.enableIPv4 && o.subnet === undefined) throw new ConfigError('--subnet CIDR is required (see --help), or --etcd-endpoints for etcd mode');
  if (!netConf.enableIPv4 && o.subnet !== undefined) throw new ConfigError(`--subnet is an IPv4 subnet, but ${o.netConf} has EnableIPv4 false (IPv6 only): give --ipv6-subnet alone`);
  if (v6 !== undefined && o.ipv6Subnet === undefined) throw new ConfigError(`--ipv6-subnet CIDR is required: ${o.netConf} has EnableIPv6 true (IPv6Network ${v6.network})`);
  if (v6 === undefined && o.ipv6Subnet !== undefined) throw new ConfigError(`--ipv6-subnet needs "EnableIPv6": true (and an IPv6Network) in ${o.netConf}`);
  const subnet6 = v6 !== undefined ? validateSubnet(o.ipv6Subnet!, v6, '--ipv6-subnet').toString() : undefined;
  const subnet = netConf.enableIPv4 ? validateSubnet(o.subnet!, netConf).toString() : subnet6!;
  let initialPeers = new Map<string, Lease>();
  let notes: string[] = [];
  if (o.peers !== undefined) {
    const p = new PeersParse(readConfigFile(o.peers, '--peers'), o.peers, leaseNetworks(netConf));
    p.step();
    initialPeers = p.result();
    notes = p.notes;
  }
  const base = resolveBase(o, ifaces, routeTable);
  const cfg = withNetwork(base, netConf, subnet, initialPeers, subnet6 !== undefined ? { subnet: subnet6, ...ipv6Addresses(base, true) } : undefined);
  if (o.peers !== undefined) cfg.peersPath = o.peers;
  if (notes.length > 0) cfg.initialPeerNotes = notes;
  return cfg;
}

/**
 * The subnet in a previous subnet.env (`key`: FLANNEL_SUBNET, or FLANNEL_IPV6_SUBNET; gateway
 * form), network form; undefined when none or not an address of the key's family.
 */
export function previousSubnet(subnetFile: string, key: 'FLANNEL_SUBNET' | 'FLANNEL_IPV6_SUBNET' = 'FLANNEL_SUBNET'): string | undefined {
  let text: string;
  try {
    text = readFileSync(subnetFile, 'utf8');
  } catch {
    return undefined;
  }
  const s = parseEnvFile(text.slice(0, 4096))[key];
  if (s === undefined) return undefined;
  try {
    return ipPrefix(s, { hostBits: 'clear', family: key === 'FLANNEL_SUBNET' ? 4 : 6 }).toString();
  } catch {
    return undefined;
  }
}

/** Options of {@link resolveEtcdConfig}. */
export interface EtcdResolveOptions {
  log?: Logger;
  /** Manager tuning (tests: short TTLs and backoff). */
  tune?: { ttlSeconds?: number; renewMarginSeconds?: number; renewRetryMs?: number; backoffMs?: { initial: number; max: number } };
  ifaces?: IfaceInfo[];
  routeTable?: string;
  /** The backend factory the daemon will use: a network it cannot run (IPv6, {@link ipv6Refusal}) is refused before a lease is taken. */
  factory?: BackendFactory;
}

/**
 * etcd mode: validate the shared flags, then read the network config from etcd and acquire our
 * lease (retried with backoff while etcd is unreachable, as flanneld waits for it). Returns the
 * DaemonConfig and the manager, which {@link Overlayd} then uses to watch peers and renew. A bad
 * config (flags, TLS files, `<prefix>/config`) is a ConfigError; nothing is left open then.
 */
export async function resolveEtcdConfig(o: CliOptions, opts: EtcdResolveOptions = {}): Promise<{ cfg: DaemonConfig; manager: EtcdSubnetManager }> {
  const e = o.etcd;
  if (e === undefined) throw new ConfigError('--etcd-endpoints is required for etcd mode');
  const log = opts.log ?? stderrLogger;
  const base = resolveBase(o, opts.ifaces, opts.routeTable);
  let client: EtcdClient;
  try {
    client = new EtcdClient({ endpoints: e.endpoints, ...pick(e, ['caFile', 'certFile', 'keyFile', 'username', 'password']) });
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
  const prev = previousSubnet(o.subnetFile);
  const prev6 = previousSubnet(o.subnetFile, 'FLANNEL_IPV6_SUBNET');
  const v6addr = ipv6Addresses(base, false);
  const manager = new EtcdSubnetManager({
    client, prefix: e.prefix, publicIp: base.iface.publicIp, log, renewMarginSeconds: e.renewMarginMinutes * 60, ...opts.tune,
    ...(prev !== undefined ? { previousSubnet: prev } : {}), ...(prev6 !== undefined ? { previousIpv6Subnet: prev6 } : {}), ...(v6addr ? { publicIpv6: v6addr.publicIp } : {}),
  });
  try {
    const netConf = await untilReachable(() => manager.networkConfig(), log, opts.tune?.backoffMs);
    const refused = ipv6Refusal(netConf, opts.factory ?? defaultBackendFactory, `etcd ${e.prefix}/config`);
    if (refused !== undefined) throw new ConfigError(refused);
    if (netConf.ipv6) ipv6Addresses(base, true); // no IPv6 address: a ConfigError before a lease is taken
    const held = await untilReachable(() => manager.acquire((subnet, existing, subnet6) => {
      const l: Lease = { subnet, publicIp: netConf.enableIPv4 ? base.iface.publicIp : v6addr!.publicIp, backendType: netConf.backend.type };
      if (subnet6 !== undefined) {
        l.ipv6Subnet = subnet6;
        l.publicIpv6 = v6addr!.publicIp;
      }
      if (l.backendType === 'vxlan') {
        l.vni = netConf.backend.vni;
        l.vtepMac = existing?.backendType === 'vxlan' && existing.vtepMac ? existing.vtepMac : stableVtepMac(subnet);
        if (subnet6 !== undefined) {
          l.v6Vni = netConf.backend.vni;
          l.v6VtepMac = existing?.backendType === 'vxlan' && existing.v6VtepMac ? existing.v6VtepMac : stableVtepMac(subnet6);
        }
      }
      return l;
    }), log, opts.tune?.backoffMs);
    const h6 = held.lease.ipv6Subnet !== undefined && held.lease.ipv6Subnet !== held.subnet ? ` and ${held.lease.ipv6Subnet}` : '';
    log.info(`etcd: lease ${held.subnet}${h6} (${held.how === 'new' ? 'new' : held.how === 'previous' ? 'the previous subnet in subnet.env' : held.how === 'reservation' ? 'a reservation for our public IP' : 'our existing lease'}) at ${client.endpoint}${e.prefix}`);
    const ipv6 = held.lease.ipv6Subnet !== undefined ? { subnet: held.lease.ipv6Subnet, ...v6addr!, ...(held.lease.v6VtepMac !== undefined ? { vtepMac: held.lease.v6VtepMac } : {}) } : undefined;
    const cfg = withNetwork(base, netConf, held.subnet, new Map(), ipv6);
    if (held.lease.vtepMac !== undefined) cfg.vtepMac = held.lease.vtepMac;
    cfg.etcd = { endpoints: e.endpoints, prefix: e.prefix, releaseOnExit: e.releaseOnExit };
    return { cfg, manager };
  } catch (err) {
    manager.close();
    throw err instanceof EtcdError && err.kind !== 'unreachable' ? new ConfigError(err.message) : err;
  }
}

function pick<T extends object, K extends keyof T>(o: T, keys: K[]): Partial<Pick<T, K>> {
  const out: Partial<Pick<T, K>> = {};
  for (const k of keys) if (o[k] !== undefined) out[k] = o[k];
  return out;
}

/** Run `f` until it does not fail with an unreachable etcd, with exponential backoff (one log line per outage). */
async function untilReachable<T>(f: () => Promise<T>, log: Logger, backoff = { initial: 100, max: 5000 }): Promise<T> {
  let delay = backoff.initial;
  let logged = false;
  for (;;) {
    try {
      return await f();
    } catch (e) {
      if (!(e instanceof EtcdError) || e.kind !== 'unreachable') throw e;
      if (!logged) log.error(`etcd: ${e.message}; waiting for etcd (retrying with backoff up to ${backoff.max} ms)`);
      logged = true;
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, backoff.max);
    }
  }
}

/** CAP_NET_ADMIN (bit 12) in this process's effective capability set, from /proc/self/status. */
export function hasNetAdmin(status?: string): boolean {
  let text = status;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/self/status', 'utf8');
    } catch {
      return process.getuid?.() === 0;
    }
  }
  const m = /^CapEff:\s*([0-9a-fA-F]+)$/m.exec(text);
  if (!m) return false;
  return (BigInt(`0x${m[1]}`) & (1n << 12n)) !== 0n;
}

/**
 * Check that `port` can be bound for UDP on all addresses of `family` (nothing else, e.g. a
 * kernel VXLAN device, holds it).
 */
export function checkUdpPortFree(port: number, flagDesc: string, family: 4 | 6 = 4): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = family === 4 ? createSocket({ type: 'udp4', reuseAddr: false }) : createSocket({ type: 'udp6', reuseAddr: false, ipv6Only: true });
    const what = `UDP port ${port}${family === 6 ? ' (IPv6)' : ''} (${flagDesc})`;
    s.once('error', (e: NodeJS.ErrnoException) => {
      s.close();
      reject(new ConfigError(e.code === 'EADDRINUSE' ? `${what} is already in use` : `${what}: ${e.message}`));
    });
    s.bind(port, family === 4 ? '0.0.0.0' : '::', () => s.close(() => resolve()));
  });
}

/** The devices `c` runs (src/overlayd/ownership.ts devicesFor): one, or flannel.<VNI> and flannel-v6.<VNI>. */
export function devicesOf(c: DaemonConfig): OwnedDevice[] {
  return devicesFor(c.netConf.backend.type, c.netConf.backend.vni, c.netConf.enableIPv4, c.ipv6 !== undefined);
}

/**
 * The underlay UDP sockets `c` runs (none for host-gw): the IPv4 one on the local address, and
 * the IPv6 one on the local IPv6 address for VXLAN's flannel-v6.<VNI> (dual stack, IPv6 only)
 * or the UDP backend on an IPv6-only network (dual-stack UDP carries IPv6 over its IPv4 socket).
 */
export function underlaySockets(c: DaemonConfig): { family: 4 | 6; address: string; port: number }[] {
  const b = c.netConf.backend;
  if (b.type === 'host-gw' || b.port <= 0) return [];
  const out: { family: 4 | 6; address: string; port: number }[] = [];
  if (c.netConf.enableIPv4) out.push({ family: 4, address: c.iface.localIp, port: b.port });
  if (c.ipv6 && (b.type === 'vxlan' || !c.netConf.enableIPv4)) out.push({ family: 6, address: c.ipv6.localIp, port: b.port });
  return out;
}

/**
 * The checks before anything is created: CAP_NET_ADMIN, the device of our name absent or ours to
 * adopt (src/overlayd/ownership.ts), the backend's UDP port free. `takeover`: the device and port
 * are held by the overlayd we take over from (not checked; no ownership returned). Throws ConfigError.
 */
export async function preflight(c: DaemonConfig, takeover = false): Promise<DeviceOwnership | undefined> {
  if (!hasNetAdmin()) throw new ConfigError('CAP_NET_ADMIN is required to create the tunnel device (run as root or grant cap_net_admin)');
  if (takeover) return undefined;
  // a device in the way: ConfigError, nothing touched (host-gw has no device)
  const owner = c.netConf.backend.type !== 'host-gw' ? await DeviceOwnership.check(c.netConf.backend.type, devicesOf(c)) : undefined;
  for (const s of underlaySockets(c)) await checkUdpPortFree(s.port, `Backend.Port of ${c.netConf.backend.type}`, s.family);
  return owner;
}

/** Write a file atomically (temp file + rename), creating its directory. */
function writeAtomic(path: string, data: string): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${dirname(path)}/.${basename(path)}.${process.pid}.tmp`;
  writeFileSync(tmp, data, { mode: 0o644 });
  renameSync(tmp, path);
}

/** Options of {@link Overlayd}. */
export interface OverlaydOptions {
  /** Backend factory (default: src/vtep's classes). */
  factory?: BackendFactory;
  /** Logger (default: stderr). */
  log?: Logger;
  /** Where the lease line goes (default: stdout). */
  printLease?: (line: string) => void;
  /** Skip the CAP_NET_ADMIN and UDP port checks (tests with a fake backend). */
  skipPreflight?: boolean;
  /** etcd mode: the subnet manager holding our lease (from {@link resolveEtcdConfig}); its peers are applied like a peers file's. */
  subnets?: EtcdSubnetManager;
  /** Device/socket I/O for the backend (the supervisor's packet process: inherited descriptors). */
  io?: DataplaneIo;
  /** Serve healthz/metrics on this already listening socket (held by the supervisor) instead of binding. */
  httpFd?: number;
  /** With skipPreflight: the device ownership the supervisor checked (src/overlayd/supervisor.ts). */
  owner?: DeviceOwnership;
  /** Register more metrics (the packet process: its restarts). */
  metrics?: (reg: Registry) => void | Promise<void>;
}

/** Up to this many changes at once are logged one line each; more get one summary line. */
const PEER_LOG_LINES = 50;

/** A peer set being applied (see Overlayd.applyPeers): first compared, then applied, both in slices. */
interface ApplyJob {
  be: Backend;
  /** The peer set. */
  all: ReadonlyMap<string, Lease>;
  /**
   * Subnets still to compare: 'set', those of `all` (or only the changed ones); 'applied' (a
   * full comparison), then the applied ones that `all` lacks; undefined once the diff is complete.
   */
  scan: Iterator<string> | undefined;
  phase: 'set' | 'applied';
  /** A full comparison (no hint of what changed): the 'applied' phase follows. */
  full: boolean;
  own: IpPrefix;
  remove: string[];
  upsert: Lease[];
  /** Changes applied so far (removals first). */
  done: number;
  why: string;
  /** Too many changes for a line each: one summary line at the end. */
  quiet: boolean;
}

/** A running overlayd. */
export class Overlayd {
  private backend: Backend | undefined;
  private server: Server | undefined;
  private pcap: PcapWriter | undefined;
  private watcher: FSWatcher | undefined;
  private debounce: NodeJS.Timeout | undefined;
  /** When the first change of the pending debounce was seen (0: none pending). */
  private debounceSince = 0;
  /** The peer set being applied in slices, the next one to apply, and who waits for both. */
  private applyJob: ApplyJob | undefined;
  private applyNext: { all: ReadonlyMap<string, Lease>; why: string; changed?: ReadonlySet<string> } | undefined;
  private applyTimer: NodeJS.Timeout | undefined;
  /** A reloaded peers file being validated in slices. */
  private parseJob: { p: PeersParse; why: string; sliced: boolean; ready: boolean } | undefined;
  private parseTimer: NodeJS.Timeout | undefined;
  private readonly appliedWaiters: (() => void)[] = [];
  private statsTimer: NodeJS.Timeout | undefined;
  private masq: IpMasq | undefined;
  private peers = new Map<string, Lease>();
  /** The peers file's notes logged (see notePeers). */
  private peerNotes = new Set<string>();
  /** Our own subnet's entry as last seen among the peers (logged once per value). */
  private ownSeen: string | undefined;
  private stopping = false;
  /** subnet.env written (ready, with the lease held). */
  private upAndWritten = false;
  private readonly log: Logger;
  private readonly factory: BackendFactory;
  /** The underlay interface's watch (absent with skipPreflight: a test backend). */
  private underlay: UnderlayWatch | undefined;
  /** Dual-stack VXLAN: the watch of the IPv6 underlay (flannel-v6.<VNI>'s socket). */
  private underlay6: UnderlayWatch | undefined;
  /** Our device's mark and what it carried at adoption (absent with skipPreflight: a test backend). */
  private owner: DeviceOwnership | undefined;
  /** Number of completed peer reloads (tests wait on it). */
  reloads = 0;

  constructor(readonly cfg: DaemonConfig, private readonly opts: OverlaydOptions = {}) {
    this.log = opts.log ?? stderrLogger;
    this.factory = opts.factory ?? defaultBackendFactory;
  }

  /** The running backend (after start()). */
  get dataplane(): Backend | undefined {
    return this.backend;
  }

  /** Peers currently applied (subnet -> lease). */
  currentPeers(): ReadonlyMap<string, Lease> {
    return this.peers;
  }

  /**
   * Preflight, then create everything. On any failure, undoes what it created and
   * throws ConfigError (the CLI exits 2).
   */
  async start(): Promise<void> {
    const c = this.cfg;
    const refused = ipv6Refusal(c.netConf, this.factory, 'net-conf');
    if (refused !== undefined) throw new ConfigError(refused);
    if (!this.opts.skipPreflight) this.owner = await preflight(c);
    else this.owner = this.opts.owner;
    let wroteSubnetFile = false;
    // Start-up log lines are held until the backend runs: a failed start prints only its one-line error.
    const held: string[] = [];
    const say = (m: string): void => { held.push(m); };
    try {
      if (c.healthz) {
        const sub = this.opts.subnets;
        // loaded only when asked for: prom-client alone takes ~85 ms to load, most of a restart's start-up
        const { createMetrics, startHttp } = await import('./metrics.js');
        const reg = createMetrics(() => this.stats(), {
          backend: c.netConf.backend.type, subnet: c.subnet, public_ip: c.iface.publicIp, iface: c.iface.name, transport: c.transport,
        }, () => this.peers.size, { ...(sub ? { etcd: () => sub.status() } : {}), underlay: () => this.underlay?.status() });
        await this.opts.metrics?.(reg);
        this.server = await startHttp(c.healthz.ip, c.healthz.port, reg, () => this.health(), () => this.ready(), this.opts.httpFd);
      }
      if (c.pcap) {
        try {
          this.pcap = new PcapWriter(c.pcap);
        } catch (e) {
          throw new ConfigError(`--pcap ${c.pcap}: ${(e as Error).message}`);
        }
      }
      say(`underlay interface ${c.iface.name} (${c.iface.localIp}): picked because ${c.iface.reason}`);
      say(c.netConf.backend.type === 'host-gw'
        ? `backend host-gw: network ${c.netConf.network}, subnet ${c.subnet}, peers routed via their public IPs on ${c.iface.name}, MTU ${c.mtu}`
        : `backend ${c.netConf.backend.type}: network ${c.netConf.network}, subnet ${c.subnet}, port ${c.netConf.backend.port}${c.netConf.backend.type === 'vxlan' ? `, VNI ${c.netConf.backend.vni}` : ''}, MTU ${c.mtu}, transport ${c.transport}`);
      for (const w of c.netConf.warnings) say(`warning: ${w}`);
      const fits = c.underlayMtu - encapOverhead(c.netConf.backend.type);
      if (c.mtu > fits) say(`Backend.MTU ${c.mtu} is above what ${c.iface.name} carries without fragmenting (${fits}): larger packets are fragmented on the underlay`);
      if (c.netConf.backend.directRouting && c.netConf.backend.type === 'vxlan') say('DirectRouting: peers directly connected to this host (no gateway on the route to their public IP) are routed without encapsulation');
      const params: BackendParams = {
        type: c.netConf.backend.type, subnet: c.subnet, network: c.netConf.network, iface: c.iface.name, localIp: c.iface.localIp,
        publicIp: c.iface.publicIp, port: c.netConf.backend.port, vni: c.netConf.backend.vni, gbp: c.netConf.backend.gbp,
        directRouting: c.netConf.backend.directRouting, mtu: c.mtu, underlayMtu: c.underlayMtu, transport: c.transport,
      };
      if (this.pcap) params.tap = this.pcap;
      if (this.opts.io) params.io = this.opts.io;
      if (c.offload !== undefined) params.offload = c.offload;
      if (c.timing === true) params.timing = true;
      if (c.busyPollUs) params.busyPollUs = c.busyPollUs;
      if (c.sourcePorts !== undefined) params.sourcePorts = c.sourcePorts;
      params.onLog = (m) => this.log.info(m);
      params.onError = (e) => this.log.error(`dataplane: ${e.message}${e.cause instanceof Error && !e.message.includes(e.cause.message) ? ` (${e.cause.message})` : ''}`);
      if (params.type === 'vxlan') params.vtepMac = c.vtepMac ?? stableVtepMac(c.subnet);
      if (c.ipv6) {
        params.ipv6 = { network: c.netConf.ipv6!.network, subnet: c.ipv6.subnet, publicIp: c.ipv6.publicIp, localIp: c.ipv6.localIp };
        if (params.type === 'vxlan') params.ipv6.vtepMac = c.ipv6.vtepMac ?? stableVtepMac(c.ipv6.subnet);
        const type = params.type;
        const how = type === 'vxlan' ? `device ${deviceNameFor(type, params.vni, true)} over ${c.ipv6.localIp}`
          : type === 'udp' ? (c.netConf.enableIPv4 ? `inner IPv6 on ${deviceNameFor(type, params.vni)} over the IPv4 underlay` : `over ${c.ipv6.localIp}`)
          : `routes via the peers' PublicIPv6 on ${c.iface.name}`;
        say(`IPv6: IPv6Network ${c.netConf.ipv6!.network}, subnet ${c.ipv6.subnet}, PublicIPv6 ${c.ipv6.publicIp}, ${how}${c.netConf.enableIPv4 ? '' : ' (IPv6 only)'}`);
      }
      if (this.owner) this.owner.prepare(params, say);
      if (c.netConf.backend.learning) params.learning = true;
      const be = await this.factory(params);
      this.backend = be;
      try {
        await be.start();
      } catch (e) {
        const err = e as NodeJS.ErrnoException;
        if (err.code === 'EADDRINUSE') throw new ConfigError(`UDP port ${c.netConf.backend.port} is already in use`);
        if (err.code === 'EPERM' || err.code === 'EACCES') throw new ConfigError(`backend start failed: ${err.message} (CAP_NET_ADMIN required)`);
        throw new ConfigError(`backend ${c.netConf.backend.type} failed to start: ${err.message}`);
      }
      const lease = this.localLease(be);
      if (c.ipMasq) {
        const m = new IpMasq({ network: c.netConf.network, subnet: c.subnet, ...c.ipMasq, log: this.log, ...(c.ipv6 ? { ipv6: { network: c.netConf.ipv6!.network, subnet: c.ipv6.subnet } } : {}) });
        try {
          await m.start();
        } catch (e) {
          throw new ConfigError(`--ip-masq: ${(e as Error).message}`);
        }
        this.masq = m;
        const tables = masqTables({ network: c.netConf.network, subnet: c.subnet, fullyRandom: true, ...(c.ipv6 ? { ipv6: { network: c.netConf.ipv6!.network, subnet: c.ipv6.subnet } } : {}) });
        say(`ip-masq: nftables table${tables.length > 1 ? 's' : ''} ${tables.map((t) => `${t.family} ${IPMASQ_TABLE}`).join(' and ')} applied (${c.ipMasq.fullyRandom ? 'masquerade fully-random' : 'masquerade'}; checked every ${c.ipMasq.resyncSeconds} s)`);
      }
      const env = renderSubnetEnv({
        ...(c.netConf.enableIPv4 ? { network: c.netConf.network, subnet: c.subnet } : {}),
        ...(c.ipv6 ? { ipv6Network: c.netConf.ipv6!.network, ipv6Subnet: c.ipv6.subnet } : {}),
        mtu: c.mtu, ipMasq: c.ipMasq !== undefined,
      });
      try {
        writeAtomic(c.subnetFile, env);
        wroteSubnetFile = true;
      } catch (e) {
        throw new ConfigError(`--subnet-file ${c.subnetFile}: cannot write: ${(e as Error).message}`);
      }
      const leaseLine = leaseToJson(lease);
      if (c.leaseOut) {
        try {
          writeAtomic(c.leaseOut, leaseLine + '\n');
        } catch (e) {
          throw new ConfigError(`--lease-out ${c.leaseOut}: cannot write: ${(e as Error).message}`);
        }
      }
      for (const m of held) this.log.info(m);
      (this.opts.printLease ?? ((l: string) => process.stdout.write(l + '\n')))(leaseLine);
      this.log.info(`lease ${subnetToKey(c.subnet)} ${leaseLine}; wrote ${c.subnetFile}${c.leaseOut ? ` and ${c.leaseOut}` : ''}`);
      this.upAndWritten = true;
      this.notePeers(c.initialPeerNotes ?? []);
      this.applyPeers(c.initialPeers, 'start');
      await this.peersApplied();
      if (this.opts.subnets) {
        await this.opts.subnets.watchPeers((all, why, changed) => this.applyPeers(all, why, changed));
        await this.peersApplied();
      }
      if (this.owner) await this.owner.reconcile(this.peers, c, (m) => this.log.info(m));
      this.startWatching();
      if (!this.opts.skipPreflight || this.opts.owner !== undefined) await this.watchUnderlay(be); // the supervisor's packet process watches too
      if (c.statsInterval > 0) {
        const { formatStatsLine } = await import('./metrics.js');
        let prev: DataplaneStats | undefined;
        let prevAt = Date.now();
        this.statsTimer = setInterval(() => {
          const s = this.stats();
          const now = Date.now();
          this.log.info(formatStatsLine(s, prev, (now - prevAt) / 1000, this.peers.size));
          prev = s;
          prevAt = now;
        }, c.statsInterval * 1000);
      }
    } catch (e) {
      await this.teardown();
      if (wroteSubnetFile) { try { unlinkSync(c.subnetFile); } catch { /* gone */ } }
      if (this.pcap && c.pcap) { try { unlinkSync(c.pcap); } catch { /* gone */ } }
      throw e instanceof ConfigError ? e : new ConfigError((e as Error).message);
    }
  }

  /** Ready: running, subnet.env written, the underlay address there, and (etcd mode) our lease held in etcd. */
  ready(): boolean {
    return !this.stopping && this.backend !== undefined && this.upAndWritten && (this.underlay?.ready() ?? true) && (this.underlay6?.ready() ?? true) && (this.opts.subnets?.status().leaseHeld ?? true);
  }

  /** /healthz: true, or why not ("stopping", "underlay address missing"). */
  private health(): true | string {
    if (this.stopping) return 'stopping';
    if (this.backend === undefined) return 'not running';
    if (this.underlay?.ready() === false || this.underlay6?.ready() === false) return 'underlay address missing';
    return true;
  }

  /**
   * Watch the underlay interface (src/overlayd/underlay.ts): its IPv4 addresses (the backend's
   * `rebind`) and, when an IPv6 underlay socket runs, its IPv6 ones (IPv6 only: `rebind`; dual-stack
   * VXLAN: the composite's `rebind6`, flannel-v6.<VNI>'s socket). A failure to watch is logged, not fatal.
   */
  private async watchUnderlay(be: Backend): Promise<void> {
    const c = this.cfg;
    const only6 = !c.netConf.enableIPv4;
    if (!only6 && be.rebind !== undefined) {
      const rebind = be.rebind.bind(be);
      this.underlay = await this.watchOne(be, 4, c.iface.localIp, c.iface.publicIp, c.publicIpPinned === true, rebind);
    }
    const v6 = c.ipv6;
    if (v6 === undefined || !underlaySockets(c).some((s) => s.family === 6)) return;
    const rebind6 = only6 ? be.rebind?.bind(be) : (be as Backend & { rebind6?: Backend['rebind'] }).rebind6?.bind(be);
    if (rebind6 === undefined) return;
    const w = await this.watchOne(be, 6, v6.localIp, v6.publicIp, c.publicIpv6Pinned === true, rebind6);
    if (only6) this.underlay = w;
    else this.underlay6 = w;
  }

  /** One underlay watch (family 4 or 6); undefined when it cannot watch (logged). */
  private async watchOne(be: Backend, family: 4 | 6, localIp: string, publicIp: string, pinned: boolean,
    rebind: NonNullable<Backend['rebind']>): Promise<UnderlayWatch | undefined> {
    const c = this.cfg;
    const w = new UnderlayWatch({
      iface: c.iface.name, localIp, publicIp, pinned, log: this.log, family,
      rebind: (local, pub) => rebind(local, pub),
      publicIpChanged: async (pub) => {
        if (family === 6 && c.ipv6) c.ipv6 = { ...c.ipv6, publicIp: pub, localIp: w.status().localIp };
        const line = leaseToJson(this.localLease(be));
        if (c.leaseOut) { try { writeAtomic(c.leaseOut, line + '\n'); } catch (e) { this.log.error(`--lease-out ${c.leaseOut}: ${(e as Error).message}`); } }
        if (this.opts.subnets) await this.opts.subnets.updatePublicIp(pub, family === 6);
        else this.log.info(`our lease is now ${line}${c.leaseOut ? ` (rewrote ${c.leaseOut})` : ''}: the other hosts' peers files must list it`);
      },
    });
    try {
      await w.start();
      return w;
    } catch (e) {
      w.close();
      this.log.error(`cannot watch the underlay interface ${c.iface.name}${family === 6 ? ' (IPv6)' : ''}: ${(e as Error).message} (address changes will not be followed)`);
      return undefined;
    }
  }

  /**
   * Our lease as peers see it: the backend's, with the IPv6 half of the config (EnableIPv6) when
   * the backend's lease lacks it (PublicIPv6, the IPv6 subnet, the flannel-v6 VTEP MAC).
   */
  private localLease(be: Backend): Lease {
    const l = be.localLease();
    const v6 = this.cfg.ipv6;
    if (v6 === undefined) return l;
    if (isIpv6OnlyLease(l)) {
      // the IPv6 backend's own lease: its fields are the IPv6 values, which flannel's lease also
      // carries as the IPv6 half (PublicIPv6, BackendV6Data)
      const out: Lease = { ...l, ipv6Subnet: l.subnet, publicIpv6: l.publicIp };
      if (l.backendType === 'vxlan') {
        if (l.vni !== undefined) out.v6Vni = l.vni;
        if (l.vtepMac !== undefined) out.v6VtepMac = l.vtepMac;
      }
      return out;
    }
    // the UDP backend carrying inner IPv6 knows its IPv6 subnet but has no IPv6 underlay address
    const out: Lease = { ...l, ipv6Subnet: l.ipv6Subnet ?? v6.subnet, publicIpv6: l.publicIpv6 ?? v6.publicIp };
    if (l.backendType === 'vxlan') {
      out.v6Vni = l.v6Vni ?? this.cfg.netConf.backend.vni;
      out.v6VtepMac = l.v6VtepMac ?? v6.vtepMac ?? stableVtepMac(v6.subnet);
    }
    return out;
  }

  /** Backend counters (zeros before start). */
  stats(): DataplaneStats {
    return this.backend ? this.backend.stats() : { txPackets: 0, txBytes: 0, rxPackets: 0, rxBytes: 0, drops: {}, peers: {} };
  }

  /** Whether a peer may be applied: not our own subnet, not overlapping it, our backend type (else a log line). */
  private usableOne(subnet: string, lease: Lease, own: IpPrefix): boolean {
    if (subnet === this.cfg.subnet) {
      // our own lease (a peers file shared by all hosts lists it): said once, and again only if it changes
      const line = leaseToJson(lease);
      if (this.ownSeen !== line) this.log.info(`peer ${subnetToKey(subnet)} is our own subnet; skipped (${lease.publicIp === this.cfg.iface.publicIp ? 'our lease' : `its PublicIP ${lease.publicIp} is not ours, ${this.cfg.iface.publicIp}`})`);
      this.ownSeen = line;
      return false;
    }
    if (own.overlaps(ipPrefix(subnet))) {
      this.log.error(`peer ${subnetToKey(subnet)} overlaps our subnet ${this.cfg.subnet}; ignored`);
      return false;
    }
    const own6 = this.cfg.ipv6?.subnet;
    if (own6 !== undefined && lease.ipv6Subnet !== undefined && lease.ipv6Subnet !== subnet && ipPrefix(own6).overlaps(ipPrefix(lease.ipv6Subnet))) {
      this.log.error(`peer ${leaseKey(lease)} overlaps our IPv6 subnet ${own6}; ignored`);
      return false;
    }
    const type = this.cfg.netConf.backend.type;
    if (lease.backendType !== type) {
      this.log.error(`peer ${subnetToKey(subnet)} runs backend ${lease.backendType}, we run ${type}; ignored`);
      return false;
    }
    return true;
  }

  /**
   * Apply a new peer set: addPeer/removePeer only for what changed, in slices of at most about
   * SLICE_MS each (the comparison with the applied set too), pausing (src/overlayd/slices.ts)
   * between slices so that forwarding goes on while thousands of peers are compared and applied.
   * A small change completes within the call. A set given while another is being applied is
   * applied right after it (only the newest waits). `changed` (etcd's watch): only these subnets
   * can differ from the set applied before, so only they are compared (one change among 10,000
   * peers costs one lookup, not a pass over all). Peers that are our own subnet, overlap it or
   * run another backend type are left out (a log line each).
   */
  private applyPeers(all: ReadonlyMap<string, Lease>, why: string, changed?: ReadonlySet<string>): void {
    if (this.applyJob !== undefined) {
      const q = this.applyNext;
      // the hint holds for the newest set only if every set skipped over had one too
      const hint = q === undefined ? changed : q.changed !== undefined && changed !== undefined ? new Set([...q.changed, ...changed]) : undefined;
      this.applyNext = hint === undefined ? { all, why } : { all, why, changed: hint };
      return;
    }
    const be = this.backend;
    if (!be) return;
    this.applyJob = {
      be, all, scan: (changed ?? all).keys(), phase: 'set', full: changed === undefined, own: ipPrefix(this.cfg.subnet),
      remove: [], upsert: [], done: 0, why, quiet: false,
    };
    this.runApply();
  }

  /** Compare subnet `s` of the job's set with the applied peers (the diff's step). */
  private diffOne(j: ApplyJob, s: string): void {
    const l = j.all.get(s);
    const was = this.peers.get(s);
    if (l !== undefined && this.usableOne(s, l, j.own)) {
      if (was === undefined || !leaseEquals(was, l)) j.upsert.push(l);
    } else if (was !== undefined) {
      j.remove.push(s);
    }
  }

  /** Run the current apply job for one slice (the diff, then the changes); reschedules itself until done. */
  private readonly runApply = (): void => {
    this.applyTimer = undefined;
    const j = this.applyJob;
    if (j === undefined) return;
    if (this.stopping || this.backend !== j.be) {
      this.applyJob = undefined;
      this.applyNext = undefined;
      this.wakeApplied();
      return;
    }
    const t0 = performance.now();
    const due = (n: number): boolean => (n & 3) === 0 && performance.now() - t0 > SLICE_MS;
    for (let n = 1; j.scan !== undefined; n++) {
      const it = j.scan.next();
      if (it.done === true) {
        if (j.phase === 'set' && j.full) {
          // then the applied peers the set no longer has
          j.phase = 'applied';
          j.scan = this.peers.keys();
        } else {
          j.scan = undefined;
          j.quiet = j.remove.length + j.upsert.length > PEER_LOG_LINES;
        }
      } else if (j.phase === 'set' || !j.all.has(it.value)) {
        this.diffOne(j, it.value);
      }
      if (due(n)) {
        this.applyTimer = nextSlice(this.runApply);
        return;
      }
    }
    const nr = j.remove.length;
    const total = nr + j.upsert.length;
    while (j.done < total) {
      if (j.done < nr) this.removeOne(j.be, j.remove[j.done]!, j);
      else this.upsertOne(j.be, j.upsert[j.done - nr]!, j);
      j.done++;
      if (j.done < total && due(j.done)) {
        this.applyTimer = nextSlice(this.runApply);
        return;
      }
    }
    this.applyJob = undefined;
    this.reloads++;
    if (j.quiet) this.log.info(`peers: ${j.upsert.length} added or changed, ${nr} removed (${j.why}); ${this.peers.size} now`);
    else if (total === 0 && j.why !== 'start') this.log.info(`peers unchanged (${j.why})`);
    const q = this.applyNext;
    this.applyNext = undefined;
    if (q !== undefined) this.applyPeers(q.all, q.why, q.changed);
    if (this.applyJob === undefined && this.parseJob === undefined) this.wakeApplied();
  };

  private removeOne(be: Backend, subnet: string, j: ApplyJob): void {
    try {
      be.removePeer(subnet);
      this.peers.delete(subnet);
      if (!j.quiet) this.log.info(`peer removed: ${subnetToKey(subnet)} (${j.why})`);
    } catch (e) {
      this.log.error(`removing peer ${subnetToKey(subnet)}: ${(e as Error).message}`);
    }
  }

  private upsertOne(be: Backend, lease: Lease, j: ApplyJob): void {
    const was = this.peers.get(lease.subnet);
    try {
      be.addPeer(lease);
      this.peers.set(lease.subnet, lease);
      if (!j.quiet) this.log.info(`peer ${was ? 'changed' : 'added'}: ${leaseToJson(lease)} (${j.why})`);
    } catch (e) {
      // Not recorded as applied: the next reload retries it.
      this.log.error(`adding peer ${leaseToJson(lease)}: ${(e as Error).message}`);
    }
  }

  /** Log why leases of the peers file are used without their IPv6 half: each line once, while it holds. */
  private notePeers(notes: readonly string[]): void {
    for (const n of notes) if (!this.peerNotes.has(n)) this.log.error(`${n}`);
    this.peerNotes = new Set(notes);
  }

  /** Resolves once no peers file is being parsed and no peer set applied (at once when none is). */
  peersApplied(): Promise<void> {
    if (this.applyJob === undefined && this.parseJob === undefined) return Promise.resolve();
    return new Promise((r) => this.appliedWaiters.push(r));
  }

  private wakeApplied(): void {
    for (const w of this.appliedWaiters.splice(0)) w();
  }

  /** Re-read the peers file; on a read or parse error, keep the current peers and log. */
  reloadPeers(why: string): boolean {
    const path = this.cfg.peersPath;
    if (!path || this.stopping || !this.backend) return false;
    let text: string;
    try {
      const size = statSync(path).size;
      if (size > MAX_PEERS_FILE_BYTES) {
        this.log.error(`peers file ${path}: ${size} bytes, over the ${MAX_PEERS_FILE_BYTES >> 20} MiB limit; not read; keeping the ${this.peers.size} current peers`);
        return false;
      }
      text = readFileSync(path, 'utf8');
    } catch (e) {
      this.log.error(`peers file ${path}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : (e as Error).message}; keeping the ${this.peers.size} current peers`);
      return false;
    }
    let p: PeersParse;
    try {
      p = new PeersParse(text, path, leaseNetworks(this.cfg.netConf));
    } catch (e) {
      this.log.error(`${(e as Error).message}; keeping the ${this.peers.size} current peers`);
      return false;
    }
    // the leases are validated in slices like the apply (a newer read replaces a parse under way);
    // a small file is parsed and applied within this call
    if (this.parseTimer) clearTimeout(this.parseTimer);
    this.parseJob = { p, why, sliced: false, ready: false };
    return this.runParse();
  }

  /** Validate the file being reloaded for one slice; apply it when done. False when it failed. */
  private readonly runParse = (): boolean => {
    this.parseTimer = undefined;
    const j = this.parseJob;
    if (j === undefined) return false;
    if (this.stopping || !this.backend) {
      this.parseJob = undefined;
      this.wakeApplied();
      return false;
    }
    try {
      if (!j.p.step(performance.now() + SLICE_MS)) {
        j.sliced = true;
        this.parseTimer = nextSlice(this.runParse);
        return true;
      }
      if (j.sliced && !j.ready) {
        // a large file: the diff against the current peers gets a turn of its own
        j.ready = true;
        this.parseTimer = nextSlice(this.runParse);
        return true;
      }
    } catch (e) {
      this.parseJob = undefined;
      this.log.error(`${(e as Error).message}; keeping the ${this.peers.size} current peers`);
      if (this.applyJob === undefined) this.wakeApplied();
      return false;
    }
    this.parseJob = undefined;
    this.notePeers(j.p.notes);
    this.applyPeers(j.p.result(), j.why);
    if (this.applyJob === undefined) this.wakeApplied();
    return true;
  };

  private startWatching(): void {
    const path = this.cfg.peersPath;
    if (!path) return;
    // Watch the directory: editors and `mv` replace the file (a new inode), which a file watch would miss.
    const file = basename(path);
    try {
      this.watcher = watch(dirname(path), { persistent: false }, (_ev, name) => {
        if (name !== null && name !== file) return;
        // debounce, but never past peersMaxWaitMs from the first change: a steady stream of
        // edits (each within the debounce of the last) still gets applied
        const now = Date.now();
        if (this.debounce) clearTimeout(this.debounce);
        else this.debounceSince = now;
        const left = this.debounceSince + this.cfg.peersMaxWaitMs - now;
        this.debounce = setTimeout(() => {
          this.debounce = undefined;
          this.reloadPeers('file changed');
        }, Math.max(0, Math.min(this.cfg.peersDebounceMs, left)));
      });
      this.watcher.on('error', (e) => this.log.error(`watching ${path}: ${e.message} (SIGHUP still reloads)`));
    } catch (e) {
      this.log.error(`cannot watch ${path}: ${(e as Error).message} (SIGHUP still reloads)`);
    }
  }

  private async teardown(): Promise<void> {
    if (this.statsTimer) clearInterval(this.statsTimer);
    if (this.applyTimer) clearTimeout(this.applyTimer);
    this.applyTimer = undefined;
    if (this.parseTimer) clearTimeout(this.parseTimer);
    this.parseTimer = undefined;
    this.parseJob = undefined;
    this.applyJob = undefined;
    this.applyNext = undefined;
    this.wakeApplied();
    if (this.debounce) clearTimeout(this.debounce);
    this.underlay?.close();
    this.underlay = undefined;
    this.underlay6?.close();
    this.underlay6 = undefined;
    this.watcher?.close();
    this.watcher = undefined;
    const sub = this.opts.subnets;
    if (sub) {
      if (this.stopping && this.cfg.etcd?.releaseOnExit) {
        try {
          await sub.release();
        } catch (e) {
          this.log.error(`releasing our lease: ${(e as Error).message}`);
        }
      } else {
        sub.close(); // the lease stays in etcd for the next start (as flanneld)
      }
    }
    const masq = this.masq;
    this.masq = undefined;
    await masq?.stop();
    const be = this.backend;
    this.backend = undefined;
    if (be) {
      const keep = this.stopping && this.cfg.keepDeviceOnExit === true;
      const before = this.stopping ? await this.owner?.snapshot() : undefined;
      try {
        await be.stop(keep ? { keepDevice: true } : {});
      } catch (e) {
        this.log.error(`backend stop: ${(e as Error).message}`);
      }
      if (before !== undefined) await this.owner!.reportStop(before, keep, (m) => this.log.info(m));
    }
    this.pcap?.close();
    const srv = this.server;
    this.server = undefined;
    if (srv) await new Promise<void>((r) => { srv.close(() => r()); srv.closeAllConnections(); });
  }

  /** Stop: stop watching, stop the backend (it removes its device and routes), close the capture and the server. Idempotent. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    await this.teardown();
  }
}

/** Build the factory a command line asks for. */
export async function factoryFor(o: CliOptions): Promise<BackendFactory> {
  return o.backendModule ? loadBackendModule(o.backendModule) : defaultBackendFactory;
}
