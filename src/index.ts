/**
 * overlay-dataplane: userspace VXLAN / flannel-UDP dataplane for Linux.
 * The single public entry point; every public type and function is exported here.
 * Each folder owns its own index.ts; this file only re-exports them.
 */
export * from './codec/index.js';
export * from './fdb/index.js';
export * from './tun/index.js';
export * from './vtep/index.js';
export * from './overlayd/index.js';
export * from './subnet/index.js';
