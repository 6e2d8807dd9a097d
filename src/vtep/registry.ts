/**
 * The backend registry, after flannel's `RegisterNetwork`: a backend type name maps to
 * how to build it and what it costs on the wire. overlayd, the benchmark and library
 * users create backends only through it, so a new backend is one file in src/vtep that
 * implements {@link Backend} (a tunnel backend by extending the core, src/vtep/core.ts)
 * and calls {@link registerBackend} at its end, plus one export line in src/vtep/index.ts.
 */
import type { Backend } from './backend.js';
import type { CommonBackendOptions } from './options.js';

/** Everything a registered backend may be built from: the common options plus the net-conf.json knobs. */
export interface BackendConfig extends CommonBackendOptions {
  /** VXLAN network identifier (VXLAN). */
  vni?: number;
  /** VXLAN Group Based Policy (VXLAN). */
  gbp?: boolean;
  /** Our VTEP MAC, stable across restarts (VXLAN). */
  vtepMac?: string;
  /** host-gw dual stack: this host's IPv6 public address on the underlay interface (with ipv6Subnet/ipv6Network). */
  publicIpv6?: string;
  /** The underlay interface (host-gw's routes; VXLAN DirectRouting's direct routes). */
  underlayIface?: string;
  /** VXLAN: route peers on the underlay's segment directly, without encapsulation (flannel's DirectRouting). */
  directRouting?: boolean;
  /** VXLAN: learn senders' VTEP MACs, accept senders without a lease (flannel's Learning). */
  learning?: boolean;
}

/** A backend type as registered. */
export interface BackendRegistration {
  /** Per-packet encapsulation overhead in bytes over an IPv4 underlay: device MTU = underlay MTU - overhead (0: no tunnel). */
  readonly mtuOverhead: number;
  /** The same over an IPv6 underlay (VXLAN 70, UDP 48); absent: as over IPv4. */
  readonly mtuOverheadV6?: number;
  /** flannel's default UDP port for this type (0: no socket). */
  readonly defaultPort: number;
  /** Build an unstarted backend. Throws on invalid options. */
  create(config: BackendConfig): Backend;
}

const registry = new Map<string, BackendRegistration>();

/** Register (or replace) backend type `type` (lower case, as in net-conf.json's Backend.Type). */
export function registerBackend(type: string, reg: BackendRegistration): void {
  registry.set(type.toLowerCase(), reg);
}

/** The registration of `type` (case-insensitive), or undefined when no such backend exists. */
export function lookupBackend(type: string): BackendRegistration | undefined {
  return registry.get(type.toLowerCase());
}

/** Registered type names, sorted. */
export function backendTypes(): string[] {
  return [...registry.keys()].sort();
}
