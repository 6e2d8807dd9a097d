/**
 * Public exports of src/fdb (re-exported by src/index.ts): route tables (IPv4/IPv6,
 * longest-prefix match), the ARP neighbour table, the VXLAN FDB, and flannel's
 * host model (1 route + 1 neighbour + 1 FDB entry per remote host).
 */
export { RouteTable4, RouteTable6, Route4, Route6 } from './route.js';
export type { RouteKind, RouteInput4, RouteInput6, RouteJson } from './route.js';
export { NeighbourTable } from './neigh.js';
export type { NeighState, NeighbourEntry, NeighbourInput, NeighbourJson, NeighbourOptions, L3MissListener } from './neigh.js';
export { Fdb } from './fdb.js';
export type { FdbDest, FdbState, FdbEntry, FdbInput, FdbJson, FdbOptions, LearnResult, L2MissListener } from './fdb.js';
export { HostModel } from './host.js';
export type { HostSpec, HostJson, AddHostResult, HostModelOptions } from './host.js';
export { NeighbourTable6 } from './neigh6.js';
export type { Neighbour6Entry, Neighbour6Input, L3Miss6Listener } from './neigh6.js';
