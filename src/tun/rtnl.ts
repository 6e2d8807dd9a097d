/**
 * rtnetlink in TypeScript over the addon's raw NETLINK_ROUTE socket: links (MTU, up/down,
 * MAC, delete, vxlan create), IPv4/IPv6 addresses, routes (incl. `via GW onlink`),
 * neighbours and bridge FDB entries (`bridge fdb append MAC dev vx dst IP`).
 * Never runs `ip`. Requests are synchronous syscalls under the hood (config is not a hot
 * path) but the API returns Promises so callers need not care.
 */
import { endianness } from 'node:os';
import { isIPv4, isIPv6 } from 'node:net';
import { native } from './native.js';
import { OsError } from './errors.js';

const LE = endianness() === 'LE';

// --- constants (linux/rtnetlink.h, linux/netlink.h, linux/if_link.h, linux/neighbour.h)
const NLMSG_ERROR = 2, NLMSG_DONE = 3;
const NLM_F_REQUEST = 0x1, NLM_F_MULTI = 0x2, NLM_F_ACK = 0x4, NLM_F_DUMP = 0x300;
const NLM_F_REPLACE = 0x100, NLM_F_EXCL = 0x200, NLM_F_CREATE = 0x400, NLM_F_APPEND = 0x800;
const NLM_F_CAPPED = 0x100, NLM_F_ACK_TLVS = 0x200;
const RTM_NEWLINK = 16, RTM_DELLINK = 17, RTM_GETLINK = 18;
const RTM_NEWADDR = 20, RTM_DELADDR = 21, RTM_GETADDR = 22;
const RTM_NEWROUTE = 24, RTM_DELROUTE = 25, RTM_GETROUTE = 26;
const RTM_NEWNEIGH = 28, RTM_DELNEIGH = 29, RTM_GETNEIGH = 30;
const AF_UNSPEC = 0, AF_INET = 2, AF_BRIDGE = 7, AF_INET6 = 10;
const IFLA_ADDRESS = 1, IFLA_IFNAME = 3, IFLA_MTU = 4, IFLA_TXQLEN = 13, IFLA_LINK = 5, IFLA_MASTER = 10, IFLA_OPERSTATE = 16, IFLA_LINKINFO = 18;
const IFLA_INFO_KIND = 1, IFLA_INFO_DATA = 2;
const IFLA_VXLAN_ID = 1, IFLA_VXLAN_LINK = 3, IFLA_VXLAN_LOCAL = 4, IFLA_VXLAN_LEARNING = 7, IFLA_VXLAN_PORT = 15, IFLA_VXLAN_LOCAL6 = 17;
const IFF_UP = 0x1;
const IFA_ADDRESS = 1, IFA_LOCAL = 2, IFA_LABEL = 3, IFA_FLAGS = 8, IFA_F_NODAD = 0x02;
const RTA_DST = 1, RTA_OIF = 4, RTA_GATEWAY = 5, RTA_PRIORITY = 6, RTA_PREFSRC = 7, RTA_TABLE = 15;
const RTNH_F_ONLINK = 4;
const NDA_DST = 1, NDA_LLADDR = 2, NDA_PORT = 6, NDA_VNI = 7, NDA_MASTER = 9;
const NTF_SELF = 0x02, NTF_MASTER = 0x04, NTF_ROUTER = 0x80;
const NLMSGERR_ATTR_MSG = 1;

/** Neighbour states (NUD_*), usable as `state` in neighbour and FDB specs. */
export const NUD = {
  INCOMPLETE: 0x01, REACHABLE: 0x02, STALE: 0x04, DELAY: 0x08, PROBE: 0x10, FAILED: 0x20, NOARP: 0x40, PERMANENT: 0x80,
} as const;

/** Route scopes (RT_SCOPE_*). */
export const RT_SCOPE = { UNIVERSE: 0, SITE: 200, LINK: 253, HOST: 254, NOWHERE: 255 } as const;
/** Route types (RTN_*). */
export const RTN = { UNICAST: 1, LOCAL: 2, BROADCAST: 3, ANYCAST: 4, MULTICAST: 5, BLACKHOLE: 6, UNREACHABLE: 7, PROHIBIT: 8 } as const;
/** The main routing table id. */
export const RT_TABLE_MAIN = 254;
const RTPROT_BOOT = 3;

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
}

/** An interface address as read back from the kernel. */
export interface AddressInfo {
  /** ifindex of the link. */
  index: number;
  family: 4 | 6;
  address: string;
  prefixLen: number;
  /** `address/prefixLen`. */
  cidr: string;
  scope: number;
  label?: string;
}

/** A link reference: interface name or ifindex. */
export type LinkRef = string | number;

/** A route to add, replace or delete. */
export interface RouteSpec {
  /** Destination CIDR ('198.19.1.0/24', 'fd00::/64') or 'default' (IPv4) / 'default6'. A bare address means /32 or /128. */
  dst: string;
  /** Gateway address (`via`). */
  via?: string;
  /** Output device (`dev`). */
  dev?: LinkRef;
  /** Treat the gateway as directly reachable on `dev` (`onlink`). */
  onlink?: boolean;
  /** Routing table (default main). */
  table?: number;
  /** Metric / priority. */
  metric?: number;
  /** Preferred source address. */
  src?: string;
  /** Scope; default: link for device routes without gateway, universe otherwise. */
  scope?: number;
  /** Route type (RTN_*), default unicast. */
  type?: number;
  /** Protocol (RTPROT_*), default boot (as `ip route`). */
  protocol?: number;
}

/** A route as read back from the kernel. */
export interface RouteInfo {
  family: 4 | 6;
  /** Destination CIDR, e.g. '198.19.1.0/24' ('0.0.0.0/0' / '::/0' for default). */
  dst: string;
  gateway?: string;
  /** Output ifindex. */
  oif?: number;
  table: number;
  protocol: number;
  scope: number;
  type: number;
  metric?: number;
  prefsrc?: string;
  onlink: boolean;
}

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

// --- small codecs (kept private: src/codec is owned elsewhere)

/** Parse an IPv4/IPv6 literal to 4 or 16 bytes. Throws EINVAL on bad input. */
export function ipToBytes(s: string): Buffer {
  if (isIPv4(s)) return Buffer.from(s.split('.').map(Number));
  if (!isIPv6(s)) throw new OsError(22, 'parse address', `'${s}' is not an IP address`);
  let head = s, tail = '';
  const dc = s.indexOf('::');
  if (dc >= 0) { head = s.slice(0, dc); tail = s.slice(dc + 2); }
  const parse = (part: string): number[] => {
    if (!part) return [];
    const out: number[] = [];
    for (const g of part.split(':')) {
      if (g.includes('.')) { const b = g.split('.').map(Number); out.push((b[0] << 8) | b[1], (b[2] << 8) | b[3]); }
      else out.push(parseInt(g, 16));
    }
    return out;
  };
  const h = parse(head), t = parse(tail);
  const groups = dc >= 0 ? [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t] : h;
  const b = Buffer.alloc(16);
  groups.forEach((g, i) => b.writeUInt16BE(g, i * 2));
  return b;
}

/** Format 4 or 16 bytes as an IP literal (IPv6 with the longest zero run compressed). */
export function bytesToIp(b: Uint8Array): string {
  if (b.length === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  const g: number[] = [];
  for (let i = 0; i < 16; i += 2) g.push((b[i] << 8) | b[i + 1]);
  let bs = -1, bl = 0;
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) { i++; continue; }
    let j = i; while (j < 8 && g[j] === 0) j++;
    if (j - i > bl && j - i > 1) { bs = i; bl = j - i; }
    i = j;
  }
  const hex = g.map((x) => x.toString(16));
  if (bs < 0) return hex.join(':');
  return `${hex.slice(0, bs).join(':')}::${hex.slice(bs + bl).join(':')}`;
}

/** Parse aa:bb:cc:dd:ee:ff to 6 bytes. */
export function macToBytes(mac: string): Buffer {
  const parts = mac.split(/[:-]/);
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{1,2}$/.test(p))) throw new OsError(22, 'parse MAC', `'${mac}' is not a MAC address`);
  return Buffer.from(parts.map((p) => parseInt(p, 16)));
}

/** Format link-layer address bytes as aa:bb:cc:dd:ee:ff. */
export function bytesToMac(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(':');
}

function parseCidr(s: string): { family: 4 | 6; addr: Buffer; len: number } {
  if (s === 'default') return { family: 4, addr: Buffer.alloc(4), len: 0 };
  if (s === 'default6') return { family: 6, addr: Buffer.alloc(16), len: 0 };
  const slash = s.indexOf('/');
  const ip = slash >= 0 ? s.slice(0, slash) : s;
  const addr = ipToBytes(ip);
  const family = addr.length === 4 ? 4 : 6;
  const len = slash >= 0 ? Number(s.slice(slash + 1)) : family === 4 ? 32 : 128;
  if (!Number.isInteger(len) || len < 0 || len > (family === 4 ? 32 : 128)) throw new OsError(22, 'parse CIDR', `bad prefix length in '${s}'`);
  return { family, addr, len };
}

// --- message building

class Attrs {
  private parts: Buffer[] = [];
  private size = 0;
  add(type: number, data: Buffer): this {
    const len = 4 + data.length;
    const pad = (4 - (len & 3)) & 3;
    const b = Buffer.alloc(len + pad);
    if (LE) { b.writeUInt16LE(len, 0); b.writeUInt16LE(type, 2); } else { b.writeUInt16BE(len, 0); b.writeUInt16BE(type, 2); }
    data.copy(b, 4);
    this.parts.push(b);
    this.size += b.length;
    return this;
  }
  u32(type: number, v: number): this { const b = Buffer.alloc(4); if (LE) b.writeUInt32LE(v >>> 0); else b.writeUInt32BE(v >>> 0); return this.add(type, b); }
  u16be(type: number, v: number): this { const b = Buffer.alloc(2); b.writeUInt16BE(v); return this.add(type, b); }
  u8(type: number, v: number): this { return this.add(type, Buffer.from([v])); }
  str(type: number, s: string): this { return this.add(type, Buffer.concat([Buffer.from(s), Buffer.alloc(1)])); }
  bytes(): Buffer { return Buffer.concat(this.parts, this.size); }
}

function u32(b: Buffer, o: number): number { return LE ? b.readUInt32LE(o) : b.readUInt32BE(o); }
function i32(b: Buffer, o: number): number { return LE ? b.readInt32LE(o) : b.readInt32BE(o); }
function u16(b: Buffer, o: number): number { return LE ? b.readUInt16LE(o) : b.readUInt16BE(o); }

function parseAttrs(b: Buffer, start: number, end: number): Map<number, Buffer> {
  const m = new Map<number, Buffer>();
  let o = start;
  while (o + 4 <= end) {
    const len = u16(b, o), type = u16(b, o + 2) & 0x3fff;
    if (len < 4 || o + len > end) break;
    if (!m.has(type)) m.set(type, b.subarray(o + 4, o + len));
    o += (len + 3) & ~3;
  }
  return m;
}

/** One received netlink message. */
interface NlMsg { type: number; flags: number; seq: number; body: Buffer }

/**
 * An rtnetlink client over one NETLINK_ROUTE socket in the caller's network namespace.
 * Every method throws `OsError` (code = errno name) on a kernel error.
 */
export class Rtnl {
  private fd: number;
  private seq = Math.floor(Math.random() * 0x7fffffff);
  private rbuf = Buffer.allocUnsafe(1 << 18);
  private static sharedInst: Rtnl | undefined;
  /** Timeout for each kernel reply, ms. */
  timeoutMs = 5000;

  private constructor(fd: number) { this.fd = fd; }

  /** Open a new NETLINK_ROUTE socket. */
  static open(): Rtnl {
    return new Rtnl(native().nlOpen(0));
  }

  /** A process-wide shared client (opened on first use, closed on process exit). */
  static shared(): Rtnl {
    if (!Rtnl.sharedInst || Rtnl.sharedInst.fd < 0) {
      Rtnl.sharedInst = Rtnl.open();
      const inst = Rtnl.sharedInst;
      process.once('exit', () => inst.close());
    }
    return Rtnl.sharedInst;
  }

  /** Close the socket. Idempotent. */
  close(): void {
    if (this.fd >= 0) { native().closeFd(this.fd); this.fd = -1; }
  }

  // --- transport

  private send(type: number, flags: number, payload: Buffer): number {
    if (this.fd < 0) throw new OsError(9, 'rtnetlink', 'socket closed');
    const seq = (this.seq = (this.seq + 1) & 0x7fffffff);
    const msg = Buffer.alloc(16 + payload.length);
    if (LE) { msg.writeUInt32LE(msg.length, 0); msg.writeUInt16LE(type, 4); msg.writeUInt16LE(flags | NLM_F_REQUEST, 6); msg.writeUInt32LE(seq, 8); }
    else { msg.writeUInt32BE(msg.length, 0); msg.writeUInt16BE(type, 4); msg.writeUInt16BE(flags | NLM_F_REQUEST, 6); msg.writeUInt32BE(seq, 8); }
    payload.copy(msg, 16);
    native().nlSend(this.fd, msg, msg.length);
    return seq;
  }

  private *recvMsgs(): Generator<NlMsg> {
    const n = native().nlRecv(this.fd, this.rbuf, this.timeoutMs);
    let o = 0;
    while (o + 16 <= n) {
      const len = u32(this.rbuf, o);
      if (len < 16 || o + len > n) break;
      yield { type: u16(this.rbuf, o + 4), flags: u16(this.rbuf, o + 6), seq: u32(this.rbuf, o + 8), body: Buffer.from(this.rbuf.subarray(o + 16, o + len)) };
      o += (len + 3) & ~3;
    }
  }

  private static errorOf(m: NlMsg, what: string): OsError | null {
    const err = i32(m.body, 0);
    if (err === 0) return null;
    let detail: string | undefined;
    if (m.flags & NLM_F_ACK_TLVS && m.body.length > 20) {
      const origLen = u32(m.body, 4);
      const start = 4 + (m.flags & NLM_F_CAPPED ? 16 : origLen);
      const a = parseAttrs(m.body, start, m.body.length).get(NLMSGERR_ATTR_MSG);
      if (a) detail = a.toString('utf8').replace(/\0.*$/s, '');
    }
    return new OsError(-err, what, detail);
  }

  /** Send a request with NLM_F_ACK and wait for the ack (throws the mapped error). */
  private doRequest(type: number, flags: number, payload: Buffer, what: string): void {
    const seq = this.send(type, flags | NLM_F_ACK, payload);
    for (;;) {
      for (const m of this.recvMsgs()) {
        if (m.seq !== seq) continue;
        if (m.type === NLMSG_ERROR) {
          const e = Rtnl.errorOf(m, what);
          if (e) throw e;
          return;
        }
      }
    }
  }

  /** Send a dump request and collect the reply messages of `replyType`. */
  private doDump(type: number, payload: Buffer, replyType: number, what: string): Buffer[] {
    const seq = this.send(type, NLM_F_DUMP, payload);
    const out: Buffer[] = [];
    for (;;) {
      for (const m of this.recvMsgs()) {
        if (m.seq !== seq) continue;
        if (m.type === NLMSG_DONE) return out;
        if (m.type === NLMSG_ERROR) {
          const e = Rtnl.errorOf(m, what);
          if (e) throw e;
          return out;
        }
        if (m.type === replyType) out.push(m.body);
        if (!(m.flags & NLM_F_MULTI)) return out;
      }
    }
  }

  // --- links

  private static ifinfo(family: number, index: number, flags: number, change: number): Buffer {
    const b = Buffer.alloc(16);
    b[0] = family;
    if (LE) { b.writeInt32LE(index, 4); b.writeUInt32LE(flags >>> 0, 8); b.writeUInt32LE(change >>> 0, 12); }
    else { b.writeInt32BE(index, 4); b.writeUInt32BE(flags >>> 0, 8); b.writeUInt32BE(change >>> 0, 12); }
    return b;
  }

  private static parseLink(body: Buffer): LinkInfo {
    const a = parseAttrs(body, 16, body.length);
    const flags = u32(body, 8);
    const info: LinkInfo = {
      index: i32(body, 4),
      name: (a.get(IFLA_IFNAME) ?? Buffer.alloc(0)).toString('utf8').replace(/\0.*$/s, ''),
      mtu: a.has(IFLA_MTU) ? u32(a.get(IFLA_MTU)!, 0) : 0,
      flags,
      up: (flags & IFF_UP) !== 0,
    };
    const mac = a.get(IFLA_ADDRESS);
    if (mac && mac.length > 0) info.mac = bytesToMac(mac);
    const li = a.get(IFLA_LINKINFO);
    if (li) {
      const k = parseAttrs(li, 0, li.length).get(IFLA_INFO_KIND);
      if (k) info.kind = k.toString('utf8').replace(/\0.*$/s, '');
    }
    if (a.has(IFLA_MASTER)) info.master = u32(a.get(IFLA_MASTER)!, 0);
    if (a.has(IFLA_TXQLEN)) info.txqlen = u32(a.get(IFLA_TXQLEN)!, 0);
    if (a.has(IFLA_OPERSTATE)) info.operstate = a.get(IFLA_OPERSTATE)![0];
    return info;
  }

  /** Synchronous variant of getLink. */
  getLinkSync(ref: LinkRef): LinkInfo {
    const attrs = new Attrs();
    let index = 0;
    if (typeof ref === 'number') index = ref; else attrs.str(IFLA_IFNAME, ref);
    const what = `RTM_GETLINK ${ref}`;
    const seq = this.send(RTM_GETLINK, 0, Buffer.concat([Rtnl.ifinfo(AF_UNSPEC, index, 0, 0), attrs.bytes()]));
    for (;;) {
      for (const m of this.recvMsgs()) {
        if (m.seq !== seq) continue;
        if (m.type === NLMSG_ERROR) {
          const e = Rtnl.errorOf(m, what) ?? new OsError(19, what);
          if (e.code === 'ENODEV') throw new OsError(19, what, `no such device '${ref}'`);
          throw e;
        }
        if (m.type === RTM_NEWLINK) return Rtnl.parseLink(m.body);
      }
    }
  }

  private index(ref: LinkRef): number {
    return typeof ref === 'number' ? ref : this.getLinkSync(ref).index;
  }

  /** Look a link up by name or ifindex (ENODEV when missing). */
  async getLink(ref: LinkRef): Promise<LinkInfo> {
    return this.getLinkSync(ref);
  }

  /** The ifindex of a link by name (ENODEV when missing). */
  async linkIndex(ref: LinkRef): Promise<number> {
    return this.index(ref);
  }

  /** All links of this namespace. */
  async listLinks(): Promise<LinkInfo[]> {
    return this.listLinksSync();
  }

  /** Synchronous variant of listLinks (configuration-time callers that cannot await). */
  listLinksSync(): LinkInfo[] {
    return this.doDump(RTM_GETLINK, Rtnl.ifinfo(AF_UNSPEC, 0, 0, 0), RTM_NEWLINK, 'RTM_GETLINK dump').map(Rtnl.parseLink);
  }

  /** Change MTU, up/down state, MAC and/or name of a link. */
  async setLink(ref: LinkRef, change: LinkChange): Promise<void> {
    this.setLinkSync(ref, change);
  }

  /** Synchronous variant of setLink (used by device constructors). */
  setLinkSync(ref: LinkRef, change: LinkChange): void {
    const index = this.index(ref);
    const attrs = new Attrs();
    if (change.mtu !== undefined) attrs.u32(IFLA_MTU, change.mtu);
    if (change.mac !== undefined) attrs.add(IFLA_ADDRESS, macToBytes(change.mac));
    if (change.name !== undefined) attrs.str(IFLA_IFNAME, change.name);
    if (change.txqlen !== undefined) attrs.u32(IFLA_TXQLEN, change.txqlen);
    const flags = change.up ? IFF_UP : 0;
    const mask = change.up === undefined ? 0 : IFF_UP;
    this.doRequest(RTM_NEWLINK, 0, Buffer.concat([Rtnl.ifinfo(AF_UNSPEC, index, flags, mask), attrs.bytes()]), `RTM_NEWLINK ${ref}`);
  }

  /** Set a link's MTU. */
  setMtu(ref: LinkRef, mtu: number): Promise<void> { return this.setLink(ref, { mtu }); }
  /** Set a link's MAC address. */
  setMac(ref: LinkRef, mac: string): Promise<void> { return this.setLink(ref, { mac }); }
  /** Bring a link up. */
  linkUp(ref: LinkRef): Promise<void> { return this.setLink(ref, { up: true }); }
  /** Bring a link down. */
  linkDown(ref: LinkRef): Promise<void> { return this.setLink(ref, { up: false }); }

  /** Delete a link. */
  async deleteLink(ref: LinkRef): Promise<void> {
    const attrs = new Attrs();
    let index = 0;
    if (typeof ref === 'number') index = ref; else attrs.str(IFLA_IFNAME, ref);
    this.doRequest(RTM_DELLINK, 0, Buffer.concat([Rtnl.ifinfo(AF_UNSPEC, index, 0, 0), attrs.bytes()]), `RTM_DELLINK ${ref}`);
  }

  /** Create a kernel VXLAN device (`ip link add NAME type vxlan id VNI dstport PORT local IP dev DEV nolearning`). */
  async addVxlan(spec: VxlanSpec): Promise<void> {
    const data = new Attrs().u32(IFLA_VXLAN_ID, spec.vni).u16be(IFLA_VXLAN_PORT, spec.port ?? 4789).u8(IFLA_VXLAN_LEARNING, spec.learning ? 1 : 0);
    if (spec.local) {
      const l = ipToBytes(spec.local);
      data.add(l.length === 4 ? IFLA_VXLAN_LOCAL : IFLA_VXLAN_LOCAL6, l);
    }
    if (spec.dev !== undefined) data.u32(IFLA_VXLAN_LINK, this.index(spec.dev));
    const linkinfo = new Attrs().str(IFLA_INFO_KIND, 'vxlan').add(IFLA_INFO_DATA, data.bytes());
    const attrs = new Attrs().str(IFLA_IFNAME, spec.name).add(IFLA_LINKINFO, linkinfo.bytes());
    if (spec.mtu) attrs.u32(IFLA_MTU, spec.mtu);
    if (spec.dev !== undefined) attrs.u32(IFLA_LINK, this.index(spec.dev));
    this.doRequest(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, Buffer.concat([Rtnl.ifinfo(AF_UNSPEC, 0, 0, 0), attrs.bytes()]), `RTM_NEWLINK vxlan ${spec.name}`);
  }

  // --- addresses

  private addrMsg(type: number, flags: number, ref: LinkRef, cidr: string, opts: { nodad?: boolean }): void {
    const { family, addr, len } = parseCidr(cidr);
    const index = this.index(ref);
    const hdr = Buffer.alloc(8);
    hdr[0] = family === 4 ? AF_INET : AF_INET6;
    hdr[1] = len;
    if (LE) hdr.writeUInt32LE(index, 4); else hdr.writeUInt32BE(index, 4);
    const attrs = new Attrs().add(IFA_LOCAL, addr).add(IFA_ADDRESS, addr);
    if (opts.nodad && family === 6) attrs.u32(IFA_FLAGS, IFA_F_NODAD);
    this.doRequest(type, flags, Buffer.concat([hdr, attrs.bytes()]), `${type === RTM_NEWADDR ? 'RTM_NEWADDR' : 'RTM_DELADDR'} ${cidr} dev ${ref}`);
  }

  /** Add an address ('198.19.0.1/24', 'fd00::1/64') to a link. `replace`: no EEXIST; `nodad`: IPv6 usable at once. */
  async addAddress(ref: LinkRef, cidr: string, opts: { replace?: boolean; nodad?: boolean } = {}): Promise<void> {
    this.addrMsg(RTM_NEWADDR, NLM_F_CREATE | (opts.replace ? NLM_F_REPLACE : NLM_F_EXCL), ref, cidr, opts);
  }

  /** Delete an address from a link. */
  async delAddress(ref: LinkRef, cidr: string): Promise<void> {
    this.addrMsg(RTM_DELADDR, 0, ref, cidr, {});
  }

  /** List addresses, optionally of one link and/or one family. */
  async listAddresses(ref?: LinkRef, family?: 4 | 6): Promise<AddressInfo[]> {
    return this.listAddressesSync(ref, family);
  }

  /** Synchronous variant of listAddresses. */
  listAddressesSync(ref?: LinkRef, family?: 4 | 6): AddressInfo[] {
    const index = ref === undefined ? 0 : this.index(ref);
    const hdr = Buffer.alloc(8);
    hdr[0] = family === 4 ? AF_INET : family === 6 ? AF_INET6 : AF_UNSPEC;
    const out: AddressInfo[] = [];
    for (const body of this.doDump(RTM_GETADDR, hdr, RTM_NEWADDR, 'RTM_GETADDR dump')) {
      const idx = u32(body, 4);
      if (index && idx !== index) continue;
      const a = parseAttrs(body, 8, body.length);
      const raw = a.get(IFA_LOCAL) ?? a.get(IFA_ADDRESS);
      if (!raw) continue;
      const address = bytesToIp(raw);
      const info: AddressInfo = { index: idx, family: body[0] === AF_INET ? 4 : 6, address, prefixLen: body[1], cidr: `${address}/${body[1]}`, scope: body[3] };
      const label = a.get(IFA_LABEL);
      if (label) info.label = label.toString('utf8').replace(/\0.*$/s, '');
      out.push(info);
    }
    return out;
  }

  // --- routes

  private routeMsg(type: number, flags: number, r: RouteSpec): void {
    const { family, addr, len } = parseCidr(r.dst);
    const table = r.table ?? RT_TABLE_MAIN;
    const hdr = Buffer.alloc(12);
    hdr[0] = family === 4 ? AF_INET : AF_INET6;
    hdr[1] = len;
    hdr[4] = table < 256 ? table : 0;
    hdr[5] = type === RTM_DELROUTE ? 0 : r.protocol ?? RTPROT_BOOT;
    hdr[6] = r.scope ?? (type === RTM_DELROUTE ? RT_SCOPE.NOWHERE : r.via ? RT_SCOPE.UNIVERSE : RT_SCOPE.LINK);
    hdr[7] = r.type ?? (type === RTM_DELROUTE ? 0 : RTN.UNICAST);
    const rflags = r.onlink ? RTNH_F_ONLINK : 0;
    if (LE) hdr.writeUInt32LE(rflags, 8); else hdr.writeUInt32BE(rflags, 8);
    const attrs = new Attrs().u32(RTA_TABLE, table);
    if (len > 0) attrs.add(RTA_DST, addr);
    if (r.via) {
      const gw = ipToBytes(r.via);
      if (gw.length !== addr.length) throw new OsError(22, 'route', `gateway ${r.via} family differs from ${r.dst}`);
      attrs.add(RTA_GATEWAY, gw);
    }
    if (r.dev !== undefined) attrs.u32(RTA_OIF, this.index(r.dev));
    if (r.metric !== undefined) attrs.u32(RTA_PRIORITY, r.metric);
    if (r.src) attrs.add(RTA_PREFSRC, ipToBytes(r.src));
    const name = type === RTM_NEWROUTE ? 'RTM_NEWROUTE' : 'RTM_DELROUTE';
    this.doRequest(type, flags, Buffer.concat([hdr, attrs.bytes()]), `${name} ${r.dst}${r.via ? ` via ${r.via}` : ''}${r.dev !== undefined ? ` dev ${r.dev}` : ''}`);
  }

  /** Add a route (EEXIST if present). */
  async addRoute(r: RouteSpec): Promise<void> { this.routeMsg(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, r); }
  /** Add or replace a route (`ip route replace`). */
  async replaceRoute(r: RouteSpec): Promise<void> { this.routeMsg(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, r); }
  /** Delete a route (ESRCH if missing). */
  async delRoute(r: RouteSpec): Promise<void> { this.routeMsg(RTM_DELROUTE, 0, r); }

  /** List routes of a table (default main), optionally one family. */
  async listRoutes(opts: { family?: 4 | 6; table?: number } = {}): Promise<RouteInfo[]> {
    const table = opts.table ?? RT_TABLE_MAIN;
    const out: RouteInfo[] = [];
    for (const fam of opts.family ? [opts.family] : [4, 6] as const) {
      const hdr = Buffer.alloc(12);
      hdr[0] = fam === 4 ? AF_INET : AF_INET6;
      for (const body of this.doDump(RTM_GETROUTE, hdr, RTM_NEWROUTE, 'RTM_GETROUTE dump')) {
        const a = parseAttrs(body, 12, body.length);
        const t = a.has(RTA_TABLE) ? u32(a.get(RTA_TABLE)!, 0) : body[4];
        if (t !== table) continue;
        const dstRaw = a.get(RTA_DST);
        const dst = dstRaw ? bytesToIp(dstRaw) : fam === 4 ? '0.0.0.0' : '::';
        const ri: RouteInfo = {
          family: fam, dst: `${dst}/${body[1]}`, table: t, protocol: body[5], scope: body[6], type: body[7],
          onlink: (u32(body, 8) & RTNH_F_ONLINK) !== 0,
        };
        if (a.has(RTA_GATEWAY)) ri.gateway = bytesToIp(a.get(RTA_GATEWAY)!);
        if (a.has(RTA_OIF)) ri.oif = u32(a.get(RTA_OIF)!, 0);
        if (a.has(RTA_PRIORITY)) ri.metric = u32(a.get(RTA_PRIORITY)!, 0);
        if (a.has(RTA_PREFSRC)) ri.prefsrc = bytesToIp(a.get(RTA_PREFSRC)!);
        out.push(ri);
      }
    }
    return out;
  }

  // --- neighbours and FDB

  private static ndmsg(family: number, index: number, state: number, flags: number): Buffer {
    const b = Buffer.alloc(12);
    b[0] = family;
    if (LE) { b.writeInt32LE(index, 4); b.writeUInt16LE(state, 8); } else { b.writeInt32BE(index, 4); b.writeUInt16BE(state, 8); }
    b[10] = flags;
    return b;
  }

  private neighMsg(type: number, flags: number, n: NeighSpec): void {
    const addr = ipToBytes(n.address);
    const attrs = new Attrs().add(NDA_DST, addr);
    if (n.lladdr) attrs.add(NDA_LLADDR, macToBytes(n.lladdr));
    const hdr = Rtnl.ndmsg(addr.length === 4 ? AF_INET : AF_INET6, this.index(n.dev), n.state ?? NUD.PERMANENT, n.router ? NTF_ROUTER : 0);
    this.doRequest(type, flags, Buffer.concat([hdr, attrs.bytes()]), `${type === RTM_NEWNEIGH ? 'RTM_NEWNEIGH' : 'RTM_DELNEIGH'} ${n.address} dev ${n.dev}`);
  }

  /** Add a neighbour (EEXIST if present). Default state PERMANENT. */
  async addNeighbour(n: NeighSpec): Promise<void> { this.neighMsg(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_EXCL, n); }
  /** Add or replace a neighbour (`ip neigh replace`). */
  async replaceNeighbour(n: NeighSpec): Promise<void> { this.neighMsg(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, n); }
  /** Delete a neighbour. */
  async delNeighbour(n: NeighSpec): Promise<void> { this.neighMsg(RTM_DELNEIGH, 0, n); }

  /** List IPv4/IPv6 neighbours, optionally of one link / family. */
  async listNeighbours(opts: { dev?: LinkRef; family?: 4 | 6 } = {}): Promise<NeighInfo[]> {
    const index = opts.dev === undefined ? 0 : this.index(opts.dev);
    const fam = opts.family === 4 ? AF_INET : opts.family === 6 ? AF_INET6 : AF_UNSPEC;
    const out: NeighInfo[] = [];
    for (const body of this.doDump(RTM_GETNEIGH, Rtnl.ndmsg(fam, 0, 0, 0), RTM_NEWNEIGH, 'RTM_GETNEIGH dump')) {
      if (body[0] !== AF_INET && body[0] !== AF_INET6) continue;
      const idx = i32(body, 4);
      if (index && idx !== index) continue;
      const a = parseAttrs(body, 12, body.length);
      const dst = a.get(NDA_DST);
      if (!dst) continue;
      const ni: NeighInfo = { index: idx, family: body[0] === AF_INET ? 4 : 6, address: bytesToIp(dst), state: u16(body, 8), flags: body[10] };
      const ll = a.get(NDA_LLADDR);
      if (ll && ll.length) ni.lladdr = bytesToMac(ll);
      out.push(ni);
    }
    return out;
  }

  private fdbMsg(type: number, flags: number, f: FdbSpec): void {
    const attrs = new Attrs().add(NDA_LLADDR, macToBytes(f.mac));
    if (f.dst) attrs.add(NDA_DST, ipToBytes(f.dst));
    if (f.port !== undefined) attrs.u16be(NDA_PORT, f.port);
    if (f.vni !== undefined) attrs.u32(NDA_VNI, f.vni);
    const hdr = Rtnl.ndmsg(AF_BRIDGE, this.index(f.dev), f.state ?? (NUD.PERMANENT | NUD.NOARP), f.master ? NTF_MASTER : NTF_SELF);
    this.doRequest(type, flags, Buffer.concat([hdr, attrs.bytes()]), `${type === RTM_NEWNEIGH ? 'RTM_NEWNEIGH' : 'RTM_DELNEIGH'} fdb ${f.mac} dev ${f.dev}${f.dst ? ` dst ${f.dst}` : ''}`);
  }

  /** `bridge fdb append MAC dev DEV dst IP`: add one more remote for a MAC (flood lists use 00:00:00:00:00:00). */
  async appendFdb(f: FdbSpec): Promise<void> { this.fdbMsg(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_APPEND, f); }
  /** `bridge fdb add` (EEXIST if present). */
  async addFdb(f: FdbSpec): Promise<void> { this.fdbMsg(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_EXCL, f); }
  /** `bridge fdb replace`. */
  async replaceFdb(f: FdbSpec): Promise<void> { this.fdbMsg(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, f); }
  /** `bridge fdb del` (with `dst`: only that remote). */
  async delFdb(f: FdbSpec): Promise<void> { this.fdbMsg(RTM_DELNEIGH, 0, f); }

  /** List bridge FDB entries, optionally of one device. */
  async listFdb(dev?: LinkRef): Promise<FdbInfo[]> {
    const index = dev === undefined ? 0 : this.index(dev);
    const out: FdbInfo[] = [];
    for (const body of this.doDump(RTM_GETNEIGH, Rtnl.ndmsg(AF_BRIDGE, 0, 0, 0), RTM_NEWNEIGH, 'RTM_GETNEIGH fdb dump')) {
      if (body[0] !== AF_BRIDGE) continue;
      const idx = i32(body, 4);
      if (index && idx !== index) continue;
      const a = parseAttrs(body, 12, body.length);
      const ll = a.get(NDA_LLADDR);
      if (!ll) continue;
      const fi: FdbInfo = { index: idx, mac: bytesToMac(ll), state: u16(body, 8), flags: body[10] };
      if (a.has(NDA_DST)) fi.dst = bytesToIp(a.get(NDA_DST)!);
      if (a.has(NDA_VNI)) fi.vni = u32(a.get(NDA_VNI)!, 0);
      if (a.has(NDA_PORT)) fi.port = a.get(NDA_PORT)!.readUInt16BE(0);
      if (a.has(NDA_MASTER)) fi.master = u32(a.get(NDA_MASTER)!, 0);
      out.push(fi);
    }
    return out;
  }
}
