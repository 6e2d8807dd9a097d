/**
 * rtnetlink routes (struct rtmsg + RTA_* attributes): request payloads and the parser of
 * RTM_NEWROUTE replies. Pure: no I/O.
 */
import { AttrWriter, attrU32, fail, ok, parseAttrs, readU32, writeU32, type Parsed } from './message.js';
import { bytesToIp, ipToBytes, parseCidr } from './ip.js';
import { AF_INET, AF_INET6, type LinkRef } from './link.js';
import { OsError } from '../errors.js';

export const RTM_NEWROUTE = 24, RTM_DELROUTE = 25, RTM_GETROUTE = 26;
const RTA_DST = 1, RTA_OIF = 4, RTA_GATEWAY = 5, RTA_PRIORITY = 6, RTA_PREFSRC = 7, RTA_TABLE = 15;
const RTNH_F_ONLINK = 4;
const RTPROT_BOOT = 3;
/** Size of struct rtmsg. */
export const RTMSG_LEN = 12;

/** Route scopes (RT_SCOPE_*). */
export const RT_SCOPE = { UNIVERSE: 0, SITE: 200, LINK: 253, HOST: 254, NOWHERE: 255 } as const;
/** Route types (RTN_*). */
export const RTN = { UNICAST: 1, LOCAL: 2, BROADCAST: 3, ANYCAST: 4, MULTICAST: 5, BLACKHOLE: 6, UNREACHABLE: 7, PROHIBIT: 8 } as const;
/** The main routing table id. */
export const RT_TABLE_MAIN = 254;

/** A route to add, replace or delete. */
export interface RouteSpec {
  /** Destination CIDR ('198.19.1.0/24', 'fd00::/64') or 'default' (IPv4) / 'default6'. A bare address means /32 or /128. */
  dst: string;
  /** Gateway address (`via`). */
  via?: string;
  /** Output device (`dev`): name or ifindex. */
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

/** Text for errors: 'RTM_NEWROUTE 198.19.1.0/24 via 198.19.0.1 dev vx0'. */
export function routeWhat(type: number, r: RouteSpec): string {
  const name = type === RTM_NEWROUTE ? 'RTM_NEWROUTE' : 'RTM_DELROUTE';
  return `${name} ${r.dst}${r.via ? ` via ${r.via}` : ''}${r.dev !== undefined ? ` dev ${r.dev}` : ''}`;
}

/** RTM_NEWROUTE / RTM_DELROUTE payload (`oif`: the resolved `dev`). */
export function routePayload(type: number, r: RouteSpec, oif?: number): Buffer {
  const { family, addr, len } = parseCidr(r.dst);
  const table = r.table ?? RT_TABLE_MAIN;
  const del = type === RTM_DELROUTE;
  const hdr = Buffer.alloc(RTMSG_LEN);
  hdr[0] = family === 4 ? AF_INET : AF_INET6;
  hdr[1] = len;
  hdr[4] = table < 256 ? table : 0;
  hdr[5] = del ? 0 : r.protocol ?? RTPROT_BOOT;
  hdr[6] = r.scope ?? (del ? RT_SCOPE.NOWHERE : r.via ? RT_SCOPE.UNIVERSE : RT_SCOPE.LINK);
  hdr[7] = r.type ?? (del ? 0 : RTN.UNICAST);
  writeU32(hdr, r.onlink ? RTNH_F_ONLINK : 0, 8);
  const attrs = new AttrWriter().u32(RTA_TABLE, table);
  if (len > 0) attrs.add(RTA_DST, addr);
  if (r.via) {
    const gw = ipToBytes(r.via);
    if (gw.length !== addr.length) throw new OsError(22, 'route', `gateway ${r.via} family differs from ${r.dst}`);
    attrs.add(RTA_GATEWAY, gw);
  }
  if (oif !== undefined) attrs.u32(RTA_OIF, oif);
  if (r.metric !== undefined) attrs.u32(RTA_PRIORITY, r.metric);
  if (r.src) attrs.add(RTA_PREFSRC, ipToBytes(r.src));
  return Buffer.concat([hdr, attrs.bytes()]);
}

/** RTM_GETROUTE payload asking which route the kernel would use for the single address `dst` (`ip route get`). */
export function routeGetPayload(dst: string): Buffer {
  const { family, addr } = parseCidr(dst);
  const hdr = Buffer.alloc(RTMSG_LEN);
  hdr[0] = family === 4 ? AF_INET : AF_INET6;
  hdr[1] = addr.length * 8;
  return Buffer.concat([hdr, new AttrWriter().add(RTA_DST, addr).bytes()]);
}

/** RTM_GETROUTE dump payload for one family. */
export function routeDumpPayload(family: 4 | 6): Buffer {
  const hdr = Buffer.alloc(RTMSG_LEN);
  hdr[0] = family === 4 ? AF_INET : AF_INET6;
  return hdr;
}

function ipAttr(b: Buffer | undefined, family: 4 | 6): string | undefined {
  return b && b.length === (family === 4 ? 4 : 16) ? bytesToIp(b) : undefined;
}

/** Parse the body of an RTM_NEWROUTE message; `null` for a family other than IPv4/IPv6. */
export function parseRoute(body: Buffer): Parsed<RouteInfo | null> {
  if (body.length < RTMSG_LEN) return fail('short-body', 0);
  const family = body[0] === AF_INET ? 4 : body[0] === AF_INET6 ? 6 : 0;
  if (family === 0) return ok(null);
  const parsed = parseAttrs(body, RTMSG_LEN, body.length);
  if (!parsed.ok) return parsed;
  const a = parsed.value;
  const dst = ipAttr(a.get(RTA_DST), family) ?? (family === 4 ? '0.0.0.0' : '::');
  const ri: RouteInfo = {
    family, dst: `${dst}/${body[1]}`, table: attrU32(a, RTA_TABLE) ?? body[4], protocol: body[5], scope: body[6], type: body[7],
    onlink: (readU32(body, 8) & RTNH_F_ONLINK) !== 0,
  };
  const gw = ipAttr(a.get(RTA_GATEWAY), family);
  if (gw) ri.gateway = gw;
  const oif = attrU32(a, RTA_OIF);
  if (oif !== undefined) ri.oif = oif;
  const metric = attrU32(a, RTA_PRIORITY);
  if (metric !== undefined) ri.metric = metric;
  const src = ipAttr(a.get(RTA_PREFSRC), family);
  if (src) ri.prefsrc = src;
  return ok(ri);
}
