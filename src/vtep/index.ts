/** Public exports of src/vtep (re-exported by src/index.ts). */
export * from './backend.js';
export { UdpBackend, FLANNEL_UDP_PORT, UDP_OVERHEAD } from './udp.js';
export { VxlanBackend, FLANNEL_VXLAN_PORT, IANA_VXLAN_PORT, VXLAN_OVERHEAD } from './vxlan.js';
export type { CommonBackendOptions, UdpBackendOptions, VxlanBackendOptions, MissEvent, DataplaneIo } from './options.js';
export type { KernelNet } from './kernel.js';
export { defaultIo } from './io.js';
export { IpCommandNet, RtnlNet } from './kernel.js';
export { DROP_REASONS, type DropReason } from './counters.js';
