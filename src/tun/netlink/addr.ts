/**
 * rtnetlink interface addresses (struct ifaddrmsg + IFA_* attributes): request payloads and
 * the parser of RTM_NEWADDR replies. Pure: no I/O.
 */
import { AttrWriter, attrStr, fail, ok, parseAttrs, readU32, writeU32, type Parsed } from './message.js';
import { bytesToIp, parseCidr } from './ip.js';
import { AF_INET, AF_INET6, AF_UNSPEC } from './link.js';

export const RTM_NEWADDR = 20, RTM_DELADDR = 21, RTM_GETADDR = 22;
const IFA_ADDRESS = 1, IFA_LOCAL = 2, IFA_LABEL = 3, IFA_FLAGS = 8, IFA_F_NODAD = 0x02;
/** Size of struct ifaddrmsg. */
export const IFADDRMSG_LEN = 8;

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

/** RTM_NEWADDR / RTM_DELADDR payload for `cidr` on link `index` (`nodad`: IPv6 without DAD). */
export function addrPayload(index: number, cidr: string, nodad = false): Buffer {
  const { family, addr, len } = parseCidr(cidr);
  const hdr = Buffer.alloc(IFADDRMSG_LEN);
  hdr[0] = family === 4 ? AF_INET : AF_INET6;
  hdr[1] = len;
  writeU32(hdr, index, 4);
  const attrs = new AttrWriter().add(IFA_LOCAL, addr).add(IFA_ADDRESS, addr);
  if (nodad && family === 6) attrs.u32(IFA_FLAGS, IFA_F_NODAD);
  return Buffer.concat([hdr, attrs.bytes()]);
}

/** RTM_GETADDR dump payload, optionally one family. */
export function addrDumpPayload(family?: 4 | 6): Buffer {
  const hdr = Buffer.alloc(IFADDRMSG_LEN);
  hdr[0] = family === 4 ? AF_INET : family === 6 ? AF_INET6 : AF_UNSPEC;
  return hdr;
}

/** Parse the body of an RTM_NEWADDR message; `null` for an entry without an IPv4/IPv6 address. */
export function parseAddress(body: Buffer): Parsed<AddressInfo | null> {
  if (body.length < IFADDRMSG_LEN) return fail('short-body', 0);
  const parsed = parseAttrs(body, IFADDRMSG_LEN, body.length);
  if (!parsed.ok) return parsed;
  const a = parsed.value;
  const raw = a.get(IFA_LOCAL) ?? a.get(IFA_ADDRESS);
  const family = body[0] === AF_INET ? 4 : body[0] === AF_INET6 ? 6 : 0;
  if (!raw || family === 0 || raw.length !== (family === 4 ? 4 : 16)) return ok(null);
  const address = bytesToIp(raw);
  const info: AddressInfo = { index: readU32(body, 4), family, address, prefixLen: body[1], cidr: `${address}/${body[1]}`, scope: body[3] };
  const label = attrStr(a, IFA_LABEL);
  if (label) info.label = label;
  return ok(info);
}
