/**
 * Creating the dataplane: overlayd only talks to the {@link Backend} contract
 * (src/vtep/backend.ts); this module maps overlayd's resolved configuration onto the
 * concrete classes exported by src/vtep (`UdpBackend`, `VxlanBackend`).
 *
 * Tests and experiments can substitute any factory: a module given with
 * `--backend-module` whose default export is a {@link BackendFactory}.
 */
import { pathToFileURL } from 'node:url';
import { resolve } from 'node:path';
import type { Backend } from '../vtep/backend.js';
import { UdpBackend, VxlanBackend, defaultIo, type UdpBackendOptions, type VxlanBackendOptions } from '../vtep/index.js';
import { ConfigError, type BackendType } from './config.js';
import { tapIo } from './tap-io.js';
import type { PacketTap } from './pcap.js';

/** Everything overlayd knows when it creates the dataplane. */
export interface BackendParams {
  /** "udp" or "vxlan". */
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
  /** Tunnel device MTU. */
  mtu: number;
  /** Underlay interface MTU. */
  underlayMtu: number;
  /** UDP transport implementation. */
  transport: 'dgram' | 'mmsg';
  /** VXLAN: our VTEP MAC, stable across restarts (see {@link stableVtepMac}). */
  vtepMac?: string;
  /** Optional capture hook (`--pcap`). */
  tap?: PacketTap;
}

/** Creates (but does not start) a backend. */
export type BackendFactory = (p: BackendParams) => Backend | Promise<Backend>;

/** The constructor options for src/vtep's UdpBackend / VxlanBackend. */
export function toBackendOptions(p: BackendParams): UdpBackendOptions | VxlanBackendOptions {
  const o: UdpBackendOptions = {
    subnet: p.subnet,
    network: p.network,
    publicIp: p.publicIp,
    port: p.port,
    mtu: p.underlayMtu,
    deviceMtu: p.mtu,
    transport: p.transport,
    bindAddress: p.localIp,
  };
  if (p.type === 'udp') return o;
  const v: VxlanBackendOptions = { ...o, mode: 'l3', vni: p.vni, gbp: p.gbp };
  if (p.vtepMac) v.vtepMac = p.vtepMac;
  return v;
}

/**
 * A VTEP MAC derived from the lease's subnet, 0a:58:a:b:c:d for subnet a.b.c.d/len
 * (the locally administered prefix Kubernetes uses for pod MACs). flanneld keeps its
 * flannel.1 device, and so its MAC, across restarts; overlayd removes its device on
 * stop, so it derives the MAC instead: a restarted overlayd comes back with the same
 * lease and peers' neighbour entries stay valid.
 */
export function stableVtepMac(subnet: string): string {
  const ip = subnet.split('/')[0]!.split('.').map((o) => Number(o).toString(16).padStart(2, '0'));
  return ['0a', '58', ...ip].join(':');
}

/**
 * The default factory: `new UdpBackend(opts)` / `new VxlanBackend(opts)` from src/vtep.
 * With a capture tap, the backend's device/socket I/O is wrapped by {@link tapIo}.
 */
export const defaultBackendFactory: BackendFactory = async (p) => {
  const opts = toBackendOptions(p);
  if (p.tap) {
    // Wrap src/vtep's default device/socket I/O so both sides of the tunnel are captured.
    opts.io = tapIo(defaultIo, p.tap, p.localIp);
  }
  return p.type === 'udp' ? new UdpBackend(opts) : new VxlanBackend(opts);
};

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
