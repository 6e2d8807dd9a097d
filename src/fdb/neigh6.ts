/**
 * IPv6 neighbour (NDP) table: the IPv6 family of the generic NeighbourCore (same
 * states, ageing, rate-limited `l3miss`, proxy answers, `ip -6 neigh` printing and
 * JSON as the IPv4 NeighbourTable), keyed by 16-byte addresses as four int32 words.
 * Hot-path lookups take the address inside a buffer (e.g. a packet) at an offset,
 * allocate nothing and return a view reused by the next lookup.
 */
import { NeighbourCore, type NeighEntry, type NeighFamily, type NeighInput, type NeighbourOptions } from './neigh-core.js';
import { toV6, formatIpv6 } from './internal.js';

/** An IPv6 neighbour entry (`ip`: 16 bytes; in a lookup view, a buffer reused by the table). */
export type Neighbour6Entry = NeighEntry<Uint8Array>;

/** Input for NeighbourTable6.add/replace; `ip` is text or 16 bytes. */
export type Neighbour6Input = NeighInput<Uint8Array>;

/** Listener for the IPv6 `l3miss`: the address (a fresh copy). */
export type L3Miss6Listener = (ip: Uint8Array) => void;

/** Big-endian words of the 16 bytes at `a[off..)` into `k[0..4)`; returns `k[0]`. */
function load6(a: Uint8Array, off: number, k: Int32Array): number {
  for (let w = 0; w < 4; w++) {
    const o = off + w * 4;
    k[w] = (a[o]! << 24) | (a[o + 1]! << 16) | (a[o + 2]! << 8) | a[o + 3]!;
  }
  return k[0]!;
}

/** The 16 bytes of the words `k[ko..ko+4)`, into `into` (default: a fresh array). */
function addr6(k: Int32Array, ko: number, into: Uint8Array = new Uint8Array(16)): Uint8Array {
  for (let w = 0; w < 4; w++) {
    const x = k[ko + w]!;
    into[w * 4] = x >>> 24;
    into[w * 4 + 1] = (x >>> 16) & 255;
    into[w * 4 + 2] = (x >>> 8) & 255;
    into[w * 4 + 3] = x & 255;
  }
  return into;
}

/** IPv6 as a neighbour-table family: the key is the address as four big-endian int32 words. */
const IPV6: NeighFamily<Uint8Array> = {
  words: 4,
  load: load6,
  parse(v, k) {
    load6(toV6(v), 0, k);
  },
  addr: (k, ko) => addr6(k, ko),
  toView(v, k, ko) {
    addr6(k, ko, v.ip);
  },
  format: (k, ko) => formatIpv6(addr6(k, ko)),
};

/** IPv6 neighbour (NDP) table. Hot-path addresses are 16 bytes at an offset in a buffer. */
export class NeighbourTable6 extends NeighbourCore<Uint8Array> {
  constructor(opts: NeighbourOptions = {}) {
    super(IPV6, opts);
  }
}
