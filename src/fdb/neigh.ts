/**
 * IPv4 neighbour (ARP) table: IP -> MAC with NUD states, ageing on an injectable
 * clock, rate-limited `l3miss` events, and proxy answers (the VXLAN `proxy` flag).
 * The table itself is the family-generic NeighbourCore (shared with the IPv6
 * NeighbourTable6); this file is the IPv4 family: one-word keys, uint32 addresses.
 *
 * Lookups allocate nothing and return a view object owned by the table that is
 * overwritten by the next lookup; use `get()` for a stable copy.
 */
import { NeighbourCore, type NeighEntry, type NeighFamily, type NeighInput, type NeighbourOptions } from './neigh-core.js';
import { toU32, u32ToIpv4 } from './internal.js';

export type { NeighState, NeighbourJson, NeighbourOptions } from './neigh-core.js';

/** An IPv4 neighbour entry (`ip` is a uint32). */
export type NeighbourEntry = NeighEntry<number>;

/** Input for NeighbourTable.add/replace; `ip` is a dotted quad or uint32. */
export type NeighbourInput = NeighInput<number>;

/** Listener for `l3miss`: the IPv4 address (uint32) that had no usable entry. */
export type L3MissListener = (ip: number) => void;

/** IPv4 as a neighbour-table family: the key is the address as one int32 word. */
const IPV4: NeighFamily<number> = {
  words: 1,
  load(a, _off, k) {
    k[0] = a;
  },
  parse(v, k) {
    k[0] = toU32(v);
  },
  addr: (k, ko) => k[ko]! >>> 0,
  toView(v, k, ko) {
    v.ip = k[ko]! >>> 0;
  },
  format: (k, ko) => u32ToIpv4(k[ko]! >>> 0),
};

/** IPv4 neighbour (ARP) table. Hot-path addresses are uint32 (or int32) numbers. */
export class NeighbourTable extends NeighbourCore<number> {
  constructor(opts: NeighbourOptions = {}) {
    super(IPV4, opts);
  }
}
