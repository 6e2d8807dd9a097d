/**
 * overlay-dataplane: userspace VXLAN / flannel-UDP dataplane for Linux.
 * The single public entry point; every public type and function is exported here.
 */
export * from './codec/addr.js';
export * from './tun/types.js';
export * from './vtep/backend.js';
