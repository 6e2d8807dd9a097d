/**
 * rtnetlink links (struct ifinfomsg + IFLA_* attributes): request payloads for get, set,
 * delete and vxlan creation, and the parser of RTM_NEWLINK replies. Pure: no I/O.
 */
import { AttrWriter, attrStr, attrU16be, attrU32, attrU8, fail, ok, parseAttrs, readI32, readU32, writeI32, writeU32, type Parsed } from './message.js';
import { bytesToIp, bytesToMac, ipToBytes, macToBytes } from './ip.js';

export const RTM_NEWLINK = 16, RTM_DELLINK = 17, RTM_GETLINK = 18;
export const AF_UNSPEC = 0, AF_INET = 2, AF_BRIDGE = 7, AF_INET6 = 10;
const IFLA_ADDRESS = 1, IFLA_IFNAME = 3, IFLA_MTU = 4, IFLA_LINK = 5, IFLA_MASTER = 10, IFLA_TXQLEN = 13, IFLA_OPERSTATE = 16, IFLA_LINKINFO = 18;
const IFLA_AF_SPEC = 26, IFLA_INET6_ADDR_GEN_MODE = 8;
/** IN6_ADDR_GEN_MODE_* (linux/if_link.h): how the kernel makes a link's IPv6 link-local address. */
const ADDR_GEN_MODE = { eui64: 0, none: 1, 'stable-privacy': 2, random: 3 } as const;
const IFLA_IFALIAS = 20, IFLA_CARRIER = 33, IFLA_GSO_MAX_SEGS = 40;
const IFLA_TUN_OWNER = 1, IFLA_TUN_TYPE = 3, IFLA_TUN_PERSIST = 6, IFLA_TUN_MULTI_QUEUE = 7, IFLA_TUN_NUM_QUEUES = 8;
const IFF_TUN = 0x1;
const IFLA_INFO_KIND = 1, IFLA_INFO_DATA = 2;
const IFLA_VXLAN_ID = 1, IFLA_VXLAN_LINK = 3, IFLA_VXLAN_LOCAL = 4, IFLA_VXLAN_LEARNING = 7, IFLA_VXLAN_PORT = 15, IFLA_VXLAN_LOCAL6 = 17;
const IFF_UP = 0x1;
/** Size of struct ifinfomsg. */
export const IFINFOMSG_LEN = 16;

/** A link reference: interface name or ifindex. */
export type LinkRef = string | number;

/** A link (interface) as read back from the kernel. */
export interface LinkInfo {
  /** ifindex. */
  index: number;
  name: string;
  mtu: number;
  /** IFF_* flags. */
  flags: number;
  /** Administratively up (IFF_UP). */
  up: boolean;
  /** Link-layer address as aa:bb:cc:dd:ee:ff, when the link has one. */
  mac?: string;
  /** rtnl_link_ops kind ('veth', 'vxlan', 'tun', 'bridge'...), when reported. */
  kind?: string;
  /** ifindex of the master device (bridge), when enslaved. */
  master?: number;
  /** IF_OPER_* state. */
  operstate?: number;
  /** Transmit queue length. */
  txqlen?: number;
  /** Interface alias (IFLA_IFALIAS, `ip link set DEV alias TEXT`), when set. */
  alias?: string;
  /** Carrier (IFLA_CARRIER), whatever the admin state: a TUN/TAP has it while a process has it open. */
  carrier?: boolean;
  /** A TUN/TAP device (kind 'tun'): what the kernel reports of it (Linux 4.15+). */
  tun?: TunLinkInfo;
  /** A kernel VXLAN device (kind 'vxlan'): its VNI, UDP port and local address, when reported. */
  vxlan?: { vni?: number; port?: number; local?: string };
}

/** IFLA_INFO_DATA of a TUN/TAP device. */
export interface TunLinkInfo {
  /** A TAP (Ethernet frames) rather than a TUN (IP packets). */
  tap: boolean;
  /** TUNSETPERSIST: the device outlives the file descriptors attached to it. */
  persist: boolean;
  /** IFF_MULTI_QUEUE. */
  multiQueue: boolean;
  /**
   * File descriptors (queues) attached now: 0 means no process has the device open. The kernel
   * reports the count for multi-queue devices only; for the others it is 1 while the device has
   * carrier (a queue attached), else 0.
   */
  queues: number;
  /** Owner uid set with TUNSETOWNER, when set. */
  owner?: number;
}

/** Changes applied by `Rtnl.setLink`. */
export interface LinkChange {
  mtu?: number;
  /** true: set IFF_UP; false: clear it. */
  up?: boolean;
  /** New MAC, aa:bb:cc:dd:ee:ff. */
  mac?: string;
  /** Rename (link must be down). */
  name?: string;
  /** Transmit queue length (`ip link set DEV txqueuelen N`). */
  txqlen?: number;
  /** Interface alias (`ip link set DEV alias TEXT`); '' removes it. */
  alias?: string;
  /** Most segments in one GSO packet the stack hands the device (`ip link set DEV gso_max_segs N`). */
  gsoMaxSegs?: number;
  /**
   * IPv6 link-local address generation (`ip link set DEV addrgenmode none|eui64|...`): 'none'
   * gives the link no link-local address, so it sends no router solicitations. The kernel refuses
   * it (EAFNOSUPPORT) on a link without IPv6 (MTU under 1280, IPv6 disabled).
   */
  ipv6AddrGenMode?: keyof typeof ADDR_GEN_MODE;
}

/** Options of `Rtnl.addVxlan`. */
export interface VxlanSpec {
  name: string;
  vni: number;
  /** UDP destination port (default 4789; flannel uses 8472). */
  port?: number;
  /** Local VTEP address. */
  local?: string;
  /** Underlay device. */
  dev?: LinkRef;
  /** Learn remote MACs from received packets (default false). */
  learning?: boolean;
  mtu?: number;
}

/** struct ifinfomsg. */
export function ifinfomsg(family: number, index: number, flags: number, change: number): Buffer {
  const b = Buffer.alloc(IFINFOMSG_LEN);
  b[0] = family;
  writeI32(b, index, 4);
  writeU32(b, flags, 8);
  writeU32(b, change, 12);
  return b;
}

/** RTM_GETLINK / RTM_DELLINK payload selecting one link by name or ifindex. */
export function linkRefPayload(ref: LinkRef): Buffer {
  const attrs = new AttrWriter();
  let index = 0;
  if (typeof ref === 'number') index = ref; else attrs.str(IFLA_IFNAME, ref);
  return Buffer.concat([ifinfomsg(AF_UNSPEC, index, 0, 0), attrs.bytes()]);
}

/** RTM_GETLINK dump payload. */
export function linkDumpPayload(): Buffer { return ifinfomsg(AF_UNSPEC, 0, 0, 0); }

/** RTM_NEWLINK payload changing link `index`. */
export function linkChangePayload(index: number, change: LinkChange): Buffer {
  const attrs = new AttrWriter();
  if (change.mtu !== undefined) attrs.u32(IFLA_MTU, change.mtu);
  if (change.mac !== undefined) attrs.add(IFLA_ADDRESS, macToBytes(change.mac));
  if (change.name !== undefined) attrs.str(IFLA_IFNAME, change.name);
  if (change.txqlen !== undefined) attrs.u32(IFLA_TXQLEN, change.txqlen);
  if (change.alias !== undefined) attrs.str(IFLA_IFALIAS, change.alias);
  if (change.gsoMaxSegs !== undefined) attrs.u32(IFLA_GSO_MAX_SEGS, change.gsoMaxSegs);
  if (change.ipv6AddrGenMode !== undefined) {
    const inet6 = new AttrWriter().u8(IFLA_INET6_ADDR_GEN_MODE, ADDR_GEN_MODE[change.ipv6AddrGenMode]);
    attrs.nested(IFLA_AF_SPEC, new AttrWriter().nested(AF_INET6, inet6));
  }
  const flags = change.up ? IFF_UP : 0;
  const mask = change.up === undefined ? 0 : IFF_UP;
  return Buffer.concat([ifinfomsg(AF_UNSPEC, index, flags, mask), attrs.bytes()]);
}

/** RTM_NEWLINK payload creating a vxlan device (`devIndex`: the resolved underlay device). */
export function vxlanPayload(spec: VxlanSpec, devIndex?: number): Buffer {
  const data = new AttrWriter().u32(IFLA_VXLAN_ID, spec.vni).u16be(IFLA_VXLAN_PORT, spec.port ?? 4789).u8(IFLA_VXLAN_LEARNING, spec.learning ? 1 : 0);
  if (spec.local) {
    const l = ipToBytes(spec.local);
    data.add(l.length === 4 ? IFLA_VXLAN_LOCAL : IFLA_VXLAN_LOCAL6, l);
  }
  if (devIndex !== undefined) data.u32(IFLA_VXLAN_LINK, devIndex);
  const linkinfo = new AttrWriter().str(IFLA_INFO_KIND, 'vxlan').nested(IFLA_INFO_DATA, data);
  const attrs = new AttrWriter().str(IFLA_IFNAME, spec.name).nested(IFLA_LINKINFO, linkinfo);
  if (spec.mtu) attrs.u32(IFLA_MTU, spec.mtu);
  if (devIndex !== undefined) attrs.u32(IFLA_LINK, devIndex);
  return Buffer.concat([ifinfomsg(AF_UNSPEC, 0, 0, 0), attrs.bytes()]);
}

/** Parse the body of an RTM_NEWLINK message. */
export function parseLink(body: Buffer): Parsed<LinkInfo> {
  if (body.length < IFINFOMSG_LEN) return fail('short-body', 0);
  const parsed = parseAttrs(body, IFINFOMSG_LEN, body.length);
  if (!parsed.ok) return parsed;
  const a = parsed.value;
  const flags = readU32(body, 8);
  const info: LinkInfo = { index: readI32(body, 4), name: attrStr(a, IFLA_IFNAME) ?? '', mtu: attrU32(a, IFLA_MTU) ?? 0, flags, up: (flags & IFF_UP) !== 0 };
  const mac = a.get(IFLA_ADDRESS);
  if (mac && mac.length > 0) info.mac = bytesToMac(mac);
  const li = a.get(IFLA_LINKINFO);
  if (li) {
    const inner = parseAttrs(li);
    if (!inner.ok) return fail(inner.error.reason, inner.error.offset);
    const kind = attrStr(inner.value, IFLA_INFO_KIND);
    if (kind) info.kind = kind;
    const data = inner.value.get(IFLA_INFO_DATA);
    if (data && (kind === 'tun' || kind === 'vxlan')) {
      const d = parseAttrs(data);
      if (!d.ok) return fail(d.error.reason, d.error.offset);
      if (kind === 'tun') {
        const t: TunLinkInfo = {
          tap: (attrU8(d.value, IFLA_TUN_TYPE) ?? IFF_TUN) !== IFF_TUN, persist: attrU8(d.value, IFLA_TUN_PERSIST) === 1,
          multiQueue: attrU8(d.value, IFLA_TUN_MULTI_QUEUE) === 1, queues: attrU32(d.value, IFLA_TUN_NUM_QUEUES) ?? (attrU8(a, IFLA_CARRIER) === 1 ? 1 : 0),
        };
        const owner = attrU32(d.value, IFLA_TUN_OWNER);
        if (owner !== undefined && owner !== 0xffffffff) t.owner = owner;
        info.tun = t;
      } else {
        const v: { vni?: number; port?: number; local?: string } = {};
        const vni = attrU32(d.value, IFLA_VXLAN_ID);
        if (vni !== undefined) v.vni = vni;
        const port = attrU16be(d.value, IFLA_VXLAN_PORT);
        if (port !== undefined) v.port = port;
        const local = d.value.get(IFLA_VXLAN_LOCAL);
        if (local && local.length === 4) v.local = bytesToIp(local);
        info.vxlan = v;
      }
    }
  }
  const carrier = attrU8(a, IFLA_CARRIER);
  if (carrier !== undefined) info.carrier = carrier === 1;
  const alias = attrStr(a, IFLA_IFALIAS);
  if (alias) info.alias = alias;
  const master = attrU32(a, IFLA_MASTER);
  if (master !== undefined) info.master = master;
  const txqlen = attrU32(a, IFLA_TXQLEN);
  if (txqlen !== undefined) info.txqlen = txqlen;
  const oper = attrU8(a, IFLA_OPERSTATE);
  if (oper !== undefined) info.operstate = oper;
  return ok(info);
}
