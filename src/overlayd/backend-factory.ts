/**
 * Creating the dataplane: overlayd only talks to the {@link Backend} contract
 * (src/vtep/backend.ts); this module maps overlayd's resolved configuration onto the
 * backend registry (src/vtep/registry.ts), which knows every backend type.
 *
 * Tests and experiments can substitute any factory: a module given with
 * `--backend-module` whose default export is a {@link BackendFactory}.
 */
import { pathToFileURL } from 'node:url';
import { resolve } from 'node:path';
import type { Backend } from '../vtep/backend.js';
import { DualStackBackend } from '../vtep/dual.js';
import { defaultIo, isIpv6Cidr, lookupBackend, type BackendConfig, type DataplaneIo } from '../vtep/index.js';
import { addrToBig, ConfigError, parseNetworkPrefix, type BackendType, type NetConf } from './config.js';
import { deviceNameFor } from './ownership.js';
import { tapIo } from './tap-io.js';
import type { PacketTap } from './pcap.js';

/** Everything overlayd knows when it creates the dataplane. */
export interface BackendParams {
  /** "udp", "vxlan" or "host-gw". */
  type: BackendType;
  /** This host's lease, network form ("198.19.1.0/24"). */
  subnet: string;
  /** The overlay network, network form ("198.19.0.0/16"). */
  network: string;
  /** Underlay interface name. */
  iface: string;
  /** Local underlay address (bind address, VTEP source). */
  localIp: string;
  /** Address advertised in the lease (differs from localIp behind NAT). */
  publicIp: string;
  /** UDP port. */
  port: number;
  /** VXLAN VNI. */
  vni: number;
  /** VXLAN GBP extension. */
  gbp: boolean;
  /** VXLAN direct routing for same-subnet peers. */
  directRouting: boolean;
  /** VXLAN Learning (net-conf `Learning`). */
  learning?: boolean;
  /** Tunnel device MTU. */
  mtu: number;
  /** Underlay interface MTU. */
  underlayMtu: number;
  /** UDP transport implementation. */
  transport: 'dgram' | 'mmsg';
  /** Kernel offloads (`--offload`; absent: the dataplane's default). */
  offload?: 'auto' | 'off';
  /** Timing mode (`--timing`): per-stage latency histograms in stats(). */
  timing?: boolean;
  /** Busy-poll window (`--busy-poll-us`), microseconds. */
  busyPollUs?: number;
  /** Source-port pool size (`--source-ports`; absent: the backend's default). */
  sourcePorts?: number;
  /** Informational dataplane messages (an offload the kernel refused): logged by overlayd. */
  onLog?: (msg: string) => void;
  /** VXLAN: our VTEP MAC, stable across restarts (see {@link stableVtepMac}). */
  vtepMac?: string;
  /** Failures outside the packet path after start (kernel route updates): logged by overlayd. */
  onError?: (e: Error) => void;
  /** Optional capture hook (`--pcap`). */
  tap?: PacketTap;
  /** Device name (default: the backend's, flannel0 / flannel.<VNI>). */
  deviceName?: string;
  /** Mark the device with this alias and make it persistent (src/overlayd/ownership.ts). */
  deviceAlias?: string;
  /** Device/socket I/O (default: src/vtep's defaultIo); the packet process's adopts inherited descriptors. */
  io?: DataplaneIo;
  /**
   * net-conf EnableIPv6: the IPv6 half, for a factory that runs it ({@link BackendFactory}'s
   * `ipv6`): IPv6Network, our IPv6 subnet, PublicIPv6, the local IPv6 address, and (vxlan) the
   * VTEP MAC of the second device, flannel-v6.<VNI>. The peers' IPv6 halves come in their
   * leases (Lease.ipv6Subnet, publicIpv6, v6Vni, v6VtepMac).
   */
  ipv6?: {
    network: string; subnet: string; publicIp: string; localIp: string; vtepMac?: string;
    /** VXLAN: the IPv6 device's name (default flannel-v6.<VNI>) and mark (src/overlayd/ownership.ts). */
    deviceName?: string; deviceAlias?: string;
  };
}

/**
 * Creates (but does not start) a backend. `ipv6: true` on the function: its backends run the
 * IPv6 half of a dual-stack or IPv6-only network (BackendParams.ipv6), as the default factory
 * does; overlayd refuses EnableIPv6 with a factory without it (see {@link ipv6Refusal}).
 */
export type BackendFactory = ((p: BackendParams) => Backend | Promise<Backend>) & { ipv6?: boolean };

/**
 * Why `factory` cannot run `conf` (one line, for a ConfigError), or undefined when it can: an
 * IPv6 network with a factory that does not declare `ipv6` (a --backend-module's).
 */
export function ipv6Refusal(conf: NetConf, factory: BackendFactory, source: string): string | undefined {
  if (conf.ipv6 === undefined || factory.ipv6 === true) return undefined;
  const what = conf.enableIPv4 ? `EnableIPv6 is true (dual stack, IPv6Network ${conf.ipv6.network})` : `EnableIPv4 is false (IPv6 only, IPv6Network ${conf.ipv6.network})`;
  const dev = conf.backend.type === 'vxlan' ? `the ${deviceNameFor('vxlan', conf.backend.vni, true)} device, ` : '';
  return `${source}: ${what}, but the --backend-module's ${conf.backend.type} factory does not run IPv6 (it has no \`ipv6: true\`): ${dev}IPv6 routes and the IPv6 underlay need it; set EnableIPv6 false (and EnableIPv4 true), or use the built-in dataplane`;
}

/** The registry's backend configuration (src/vtep/registry.ts) for overlayd's parameters. */
export function toBackendOptions(p: BackendParams): BackendConfig {
  const o: BackendConfig = {
    subnet: p.subnet,
    network: p.network,
    publicIp: p.publicIp,
    port: p.port,
    mtu: p.underlayMtu,
    deviceMtu: p.mtu,
    transport: p.transport,
    bindAddress: p.localIp,
  };
  if (p.onError) o.onError = p.onError;
  if (p.offload !== undefined) o.offload = p.offload;
  if (p.timing === true) o.timing = true;
  if (p.busyPollUs) o.busyPollUs = p.busyPollUs;
  if (p.onLog) o.onLog = p.onLog;
  if (p.deviceName !== undefined) o.deviceName = p.deviceName;
  if (p.deviceAlias !== undefined) o.deviceAlias = p.deviceAlias;
  if (p.sourcePorts !== undefined && p.type !== 'host-gw') o.sourcePorts = p.sourcePorts;
  if (p.type === 'udp') return o;
  if (p.type === 'host-gw') return { ...o, underlayIface: p.iface };
  const v: BackendConfig = { ...o, vni: p.vni, gbp: p.gbp };
  if (p.learning === true) v.learning = true;
  if (p.directRouting) {
    v.directRouting = true;
    v.underlayIface = p.iface;
  }
  if (p.vtepMac) v.vtepMac = p.vtepMac;
  return v;
}

/**
 * A VTEP MAC derived from the lease's subnet, 0a:58:a:b:c:d for subnet a.b.c.d/len
 * (the locally administered prefix Kubernetes uses for pod MACs). flanneld keeps its
 * flannel.1 device, and so its MAC, across restarts; overlayd removes its device on
 * stop, so it derives the MAC instead: a restarted overlayd comes back with the same
 * lease and peers' neighbour entries stay valid. For an IPv6 subnet (the flannel-v6.<VNI>
 * device) the four bytes are the subnet's last 32 prefix bits (0a:58 and bits len-32..len),
 * which differ between any two subnets of an IPv6Network up to 32 bits wider than them.
 */
export function stableVtepMac(subnet: string): string {
  let n: bigint;
  if (isIpv6Cidr(subnet)) {
    const p = parseNetworkPrefix(subnet, 'subnet', 6);
    n = (addrToBig(p.addr) >> BigInt(128 - Math.max(p.len, 32))) & 0xffffffffn;
  } else {
    n = BigInt(subnet.split('/')[0]!.split('.').reduce((a, o) => a * 256 + Number(o), 0));
  }
  const b = [24n, 16n, 8n, 0n].map((sh) => ((n >> sh) & 0xffn).toString(16).padStart(2, '0'));
  return ['0a', '58', ...b].join(':');
}

/**
 * The parameters of the IPv6 half (BackendParams.ipv6) as a backend of their own: the IPv6
 * subnet and network, over the IPv6 underlay (public and bind address), its device (VXLAN:
 * flannel-v6.<VNI>, MTU underlay - 70, its own VTEP MAC), no direct routing.
 */
function v6Half(p: BackendParams, v6: NonNullable<BackendParams['ipv6']>): BackendParams {
  const q: BackendParams = {
    ...p, subnet: v6.subnet, network: v6.network, publicIp: v6.publicIp, localIp: v6.localIp, directRouting: false,
    mtu: Math.min(p.mtu, p.underlayMtu - (lookupBackend(p.type)?.mtuOverheadV6 ?? 0)),
  };
  delete q.ipv6;
  if (p.type === 'vxlan') {
    q.vtepMac = v6.vtepMac ?? stableVtepMac(v6.subnet);
    q.deviceName = v6.deviceName ?? deviceNameFor('vxlan', p.vni, true);
    if (v6.deviceAlias !== undefined) q.deviceAlias = v6.deviceAlias;
    else delete q.deviceAlias;
  }
  return q;
}

/** One backend of the registry for `p` (its IPv4 or IPv6 half, or the UDP backend with both). */
function createOne(p: BackendParams, extra: Partial<BackendConfig> = {}): Backend {
  const opts: BackendConfig = { ...toBackendOptions(p), ...extra };
  if (p.tap) {
    // Wrap the device/socket I/O so both sides of the tunnel are captured.
    opts.io = tapIo(p.io ?? defaultIo, p.tap, p.localIp);
  } else if (p.io) {
    opts.io = p.io;
  }
  const reg = lookupBackend(p.type);
  if (reg === undefined) throw new ConfigError(`backend type "${p.type}" is not registered`);
  return reg.create(opts);
}

/**
 * The default factory: the backend registered for the type (src/vtep/registry.ts). With a
 * capture tap, the backend's device/socket I/O is wrapped by {@link tapIo}. It runs IPv6
 * (`ipv6: true`), as flanneld does:
 *  - vxlan: dual stack = flannel.<VNI> over the IPv4 underlay for IPv4 and flannel-v6.<VNI> over
 *    the IPv6 underlay for IPv6, one {@link DualStackBackend}; IPv6 only = flannel-v6.<VNI> alone;
 *  - udp: one flannel0 device; dual stack carries inner IPv6 over the IPv4 underlay (flanneld's
 *    UDP backend has no IPv6), IPv6 only the IPv6 subnet over the IPv6 underlay;
 *  - host-gw: IPv6 routes via the peers' PublicIPv6 beside the IPv4 ones.
 */
export const defaultBackendFactory: BackendFactory = Object.assign(async (p: BackendParams): Promise<Backend> => {
  const v6 = p.ipv6;
  if (v6 === undefined) return createOne(p);
  const only6 = isIpv6Cidr(p.subnet);
  if (p.type === 'vxlan') {
    const b6 = createOne(v6Half(p, v6));
    return only6 ? b6 : new DualStackBackend(createOne(p), b6);
  }
  if (only6) return createOne(v6Half(p, v6));
  if (p.type === 'udp') return createOne(p, { ipv6Subnet: v6.subnet, ipv6Network: v6.network });
  return createOne(p, { ipv6Subnet: v6.subnet, ipv6Network: v6.network, publicIpv6: v6.publicIp });
}, { ipv6: true });

/** Load a factory from an ES module whose default export (or `createBackend` export) is a BackendFactory. */
export async function loadBackendModule(path: string): Promise<BackendFactory> {
  let mod: Record<string, unknown>;
  try {
    mod = (await import(pathToFileURL(resolve(path)).href)) as Record<string, unknown>;
  } catch (e) {
    throw new ConfigError(`--backend-module ${path}: cannot load: ${(e as Error).message}`);
  }
  const f = mod.default ?? mod.createBackend;
  if (typeof f !== 'function') throw new ConfigError(`--backend-module ${path}: no default export or createBackend function`);
  return f as BackendFactory;
}
