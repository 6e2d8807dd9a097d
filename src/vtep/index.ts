/** Public exports of src/vtep (re-exported by src/index.ts). */
export * from './backend.js';
export { TunnelCore, IcmpKind, isIpv6Cidr, ICMP_RATE, ICMP_BURST, finishPartialChecksum, publicAddress, underlayOverhead, GSO_SEND_MAX_SEGMENTS, GSO_SEND_MAX_BYTES, type CoreStats, type ErrorStats } from './core.js';
export { PeerAddrMap, isIpv4Mapped } from './peer-addr.js';
export { registerBackend, lookupBackend, backendTypes, type BackendConfig, type BackendRegistration } from './registry.js';
export { UdpBackend, UDP_OVERHEAD, UDP_IPV6_OVERHEAD } from './udp.js';
export { VxlanBackend, VXLAN_OVERHEAD, VXLAN_V6_OVERHEAD, type VxlanStats } from './vxlan.js';
export { HostGwBackend, type HostGwBackendOptions } from './hostgw.js';
export { DualStackBackend, leaseHalves, mergeStats } from './dual.js';
export { UnderlayView, type UnderlayPath } from './underlay.js';
export type { CommonBackendOptions, UdpBackendOptions, VxlanBackendOptions, MissEvent, DataplaneIo, OpenDeviceOptions, CreateTransportOptions } from './options.js';
export { DEFAULT_OFFLOAD } from './options.js';
export type { DeviceConfig, KernelNet } from './kernel.js';
export { defaultIo } from './io.js';
export { RtnlNet } from './kernel.js';
export { DROP_REASONS, type DropReason, type OffloadStats } from './counters.js';
export { StageTimer, TIMING_STAGES, type StageSummary, type TimingStage } from './timing.js';
