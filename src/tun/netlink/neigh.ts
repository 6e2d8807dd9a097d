/**
 * rtnetlink neighbours and bridge FDB entries (struct ndmsg + NDA_* attributes): request
 * payloads and the parsers of RTM_NEWNEIGH replies. Pure: no I/O.
 */
import { AttrWriter, attrU16be, attrU32, fail, ok, parseAttrs, readI32, readU16, writeI32, writeU16, type Parsed } from './message.js';
import { bytesToIp, bytesToMac, ipToBytes, macToBytes } from './ip.js';
import { AF_BRIDGE, AF_INET, AF_INET6, type LinkRef } from './link.js';

export const RTM_NEWNEIGH = 28, RTM_DELNEIGH = 29, RTM_GETNEIGH = 30;
const NDA_DST = 1, NDA_LLADDR = 2, NDA_PORT = 6, NDA_VNI = 7, NDA_MASTER = 9;
const NTF_SELF = 0x02, NTF_MASTER = 0x04, NTF_ROUTER = 0x80;
/** Size of struct ndmsg. */
export const NDMSG_LEN = 12;

/** Neighbour states (NUD_*), usable as `state` in neighbour and FDB specs. */
export const NUD = {
  INCOMPLETE: 0x01, REACHABLE: 0x02, STALE: 0x04, DELAY: 0x08, PROBE: 0x10, FAILED: 0x20, NOARP: 0x40, PERMANENT: 0x80,
} as const;

/** A neighbour (ARP / NDP) entry to add, replace or delete. */
export interface NeighSpec {
  dev: LinkRef;
  /** IP address of the neighbour. */
  address: string;
  /** Link-layer address aa:bb:cc:dd:ee:ff (required to add). */
  lladdr?: string;
  /** NUD_* state, default NUD.PERMANENT. */
  state?: number;
  /** Mark as router (NTF_ROUTER, IPv6). */
  router?: boolean;
}

/** A neighbour as read back from the kernel. */
export interface NeighInfo {
  index: number;
  family: 4 | 6;
  address: string;
  lladdr?: string;
  state: number;
  flags: number;
}

/** A bridge FDB entry on a (vxlan) device: `bridge fdb append MAC dev DEV dst IP`. */
export interface FdbSpec {
  dev: LinkRef;
  /** MAC address, aa:bb:cc:dd:ee:ff (00:00:00:00:00:00 for the default/flood entry). */
  mac: string;
  /** Remote VTEP IP (NDA_DST). */
  dst?: string;
  /** VNI (NDA_VNI). */
  vni?: number;
  /** Remote UDP port (NDA_PORT). */
  port?: number;
  /** Entry on the device itself (NTF_SELF, default) rather than on its master bridge. */
  master?: boolean;
  /** NUD_* state, default NUD.PERMANENT | NUD.NOARP. */
  state?: number;
}

/** A bridge FDB entry as read back. */
export interface FdbInfo {
  index: number;
  mac: string;
  dst?: string;
  vni?: number;
  port?: number;
  master?: number;
  state: number;
  flags: number;
}

/** struct ndmsg. */
export function ndmsg(family: number, index: number, state: number, flags: number): Buffer {
  const b = Buffer.alloc(NDMSG_LEN);
  b[0] = family;
  writeI32(b, index, 4);
  writeU16(b, state, 8);
  b[10] = flags;
  return b;
}

/** RTM_NEWNEIGH / RTM_DELNEIGH payload for a neighbour on link `index`. */
export function neighPayload(n: NeighSpec, index: number): Buffer {
  const addr = ipToBytes(n.address);
  const attrs = new AttrWriter().add(NDA_DST, addr);
  if (n.lladdr) attrs.add(NDA_LLADDR, macToBytes(n.lladdr));
  const hdr = ndmsg(addr.length === 4 ? AF_INET : AF_INET6, index, n.state ?? NUD.PERMANENT, n.router ? NTF_ROUTER : 0);
  return Buffer.concat([hdr, attrs.bytes()]);
}

/** RTM_NEWNEIGH / RTM_DELNEIGH payload for an FDB entry on link `index`. */
export function fdbPayload(f: FdbSpec, index: number): Buffer {
  const attrs = new AttrWriter().add(NDA_LLADDR, macToBytes(f.mac));
  if (f.dst) attrs.add(NDA_DST, ipToBytes(f.dst));
  if (f.port !== undefined) attrs.u16be(NDA_PORT, f.port);
  if (f.vni !== undefined) attrs.u32(NDA_VNI, f.vni);
  const hdr = ndmsg(AF_BRIDGE, index, f.state ?? (NUD.PERMANENT | NUD.NOARP), f.master ? NTF_MASTER : NTF_SELF);
  return Buffer.concat([hdr, attrs.bytes()]);
}

/** RTM_GETNEIGH dump payload: IPv4/IPv6 neighbours (`family` 4, 6 or both). */
export function neighDumpPayload(family?: 4 | 6): Buffer {
  return ndmsg(family === 4 ? AF_INET : family === 6 ? AF_INET6 : 0, 0, 0, 0);
}

/** RTM_GETNEIGH dump payload: bridge FDB entries. */
export function fdbDumpPayload(): Buffer { return ndmsg(AF_BRIDGE, 0, 0, 0); }

/** Parse an RTM_NEWNEIGH body as an IPv4/IPv6 neighbour; `null` for other families or no address. */
export function parseNeigh(body: Buffer): Parsed<NeighInfo | null> {
  if (body.length < NDMSG_LEN) return fail('short-body', 0);
  const family = body[0] === AF_INET ? 4 : body[0] === AF_INET6 ? 6 : 0;
  if (family === 0) return ok(null);
  const parsed = parseAttrs(body, NDMSG_LEN, body.length);
  if (!parsed.ok) return parsed;
  const a = parsed.value;
  const dst = a.get(NDA_DST);
  if (!dst || dst.length !== (family === 4 ? 4 : 16)) return ok(null);
  const ni: NeighInfo = { index: readI32(body, 4), family, address: bytesToIp(dst), state: readU16(body, 8), flags: body[10] };
  const ll = a.get(NDA_LLADDR);
  if (ll && ll.length) ni.lladdr = bytesToMac(ll);
  return ok(ni);
}

/** Parse an RTM_NEWNEIGH body as a bridge FDB entry; `null` for other families or no MAC. */
export function parseFdb(body: Buffer): Parsed<FdbInfo | null> {
  if (body.length < NDMSG_LEN) return fail('short-body', 0);
  if (body[0] !== AF_BRIDGE) return ok(null);
  const parsed = parseAttrs(body, NDMSG_LEN, body.length);
  if (!parsed.ok) return parsed;
  const a = parsed.value;
  const ll = a.get(NDA_LLADDR);
  if (!ll) return ok(null);
  const fi: FdbInfo = { index: readI32(body, 4), mac: bytesToMac(ll), state: readU16(body, 8), flags: body[10] };
  const dst = a.get(NDA_DST);
  if (dst && (dst.length === 4 || dst.length === 16)) fi.dst = bytesToIp(dst);
  const vni = attrU32(a, NDA_VNI);
  if (vni !== undefined) fi.vni = vni;
  const port = attrU16be(a, NDA_PORT);
  if (port !== undefined) fi.port = port;
  const master = attrU32(a, NDA_MASTER);
  if (master !== undefined) fi.master = master;
  return ok(fi);
}
