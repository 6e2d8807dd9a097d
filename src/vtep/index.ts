/** Public exports of src/vtep (re-exported by src/index.ts). */
export * from './backend.js';
export { TunnelCore, IcmpKind, type CoreStats, type ErrorStats } from './core.js';
export { registerBackend, lookupBackend, backendTypes, type BackendConfig, type BackendRegistration } from './registry.js';
export { UdpBackend, UDP_OVERHEAD } from './udp.js';
export { VxlanBackend, VXLAN_OVERHEAD, type VxlanStats } from './vxlan.js';
export type { CommonBackendOptions, UdpBackendOptions, VxlanBackendOptions, MissEvent, DataplaneIo } from './options.js';
export type { KernelNet } from './kernel.js';
export { defaultIo } from './io.js';
export { RtnlNet } from './kernel.js';
export { DROP_REASONS, type DropReason } from './counters.js';
