/**
 * Creating the dataplane: overlayd only talks to the {@link Backend} contract
 * (src/vtep/backend.ts); this module maps overlayd's resolved configuration onto the
 * concrete classes exported by src/vtep (`UdpBackend`, `VxlanBackend`).
 *
 * The classes are looked up at run time so overlayd builds and is testable (with a
 * fake Backend) independently of the dataplanes. A factory can also come from a
 * module given with `--backend-module` (its default export is a {@link BackendFactory}).
 */
import { pathToFileURL } from 'node:url';
import { resolve } from 'node:path';
import type { Backend } from '../vtep/backend.js';
import { ConfigError, type BackendType } from './config.js';
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
  /** UDP transport implementation. */
  transport: 'dgram' | 'mmsg';
  /** Optional capture hook (`--pcap`). */
  tap?: PacketTap;
}

/** Creates (but does not start) a backend. */
export type BackendFactory = (p: BackendParams) => Backend | Promise<Backend>;

/** Constructor shape overlayd expects from src/vtep's classes: one options object. */
type BackendCtor = new (opts: Record<string, unknown>) => Backend;

/**
 * The options object handed to the dataplane constructors. Field names follow the
 * BackendParams ones, plus common aliases, so either naming works.
 */
export function toBackendOptions(p: BackendParams): Record<string, unknown> {
  const o: Record<string, unknown> = {
    subnet: p.subnet,
    network: p.network,
    iface: p.iface,
    underlayIface: p.iface,
    localIp: p.localIp,
    publicIp: p.publicIp,
    port: p.port,
    mtu: p.mtu,
    transport: p.transport,
  };
  if (p.type === 'udp') o.deviceName = 'flannel0';
  else {
    o.vni = p.vni;
    o.gbp = p.gbp;
    o.directRouting = p.directRouting;
    o.deviceName = `flannel.${p.vni}`;
  }
  if (p.tap) o.tap = p.tap;
  return o;
}

/** True when src/vtep exports a class for `type`. */
export async function backendAvailable(type: BackendType): Promise<boolean> {
  const mod = (await import('../vtep/index.js')) as Record<string, unknown>;
  return typeof mod[type === 'udp' ? 'UdpBackend' : 'VxlanBackend'] === 'function';
}

/** The default factory: `new UdpBackend(opts)` / `new VxlanBackend(opts)` from src/vtep. */
export const defaultBackendFactory: BackendFactory = async (p) => {
  const mod = (await import('../vtep/index.js')) as Record<string, unknown>;
  const name = p.type === 'udp' ? 'UdpBackend' : 'VxlanBackend';
  const Ctor = mod[name];
  if (typeof Ctor !== 'function') throw new ConfigError(`backend "${p.type}" is not available in this build (src/vtep exports no ${name})`);
  return new (Ctor as BackendCtor)(toBackendOptions(p));
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
