/**
 * Underlay interface selection, as flanneld does it (`--iface`, `--iface-regex`,
 * `--public-ip`, else the default route's interface), with one deliberate
 * difference: `--iface-regex` is matched against the WHOLE name or address.
 *
 * The seed's incident: `--iface-regex=eth1|bond1` is unanchored in flannel, so after
 * a restart it also matched `veth17f90f70` (a pod's veth) and start-up broke. Here the
 * expression is compiled as `^(?:RE)$` (the group matters: `^eth1|bond1$` would
 * still match "xbond1").
 */
import { readFileSync } from 'node:fs';
import { networkInterfaces, type NetworkInterfaceInfo } from 'node:os';
import { Rtnl } from '../tun/rtnl.js';
import { ConfigError, isIpv4 } from './config.js';

/** Compile an `--iface-regex` value anchored to the whole string: `^(?:RE)$`. Throws ConfigError when invalid. */
export function compileIfaceRegex(re: string): RegExp {
  try {
    return new RegExp(`^(?:${re})$`);
  } catch (e) {
    throw new ConfigError(`--iface-regex "${re}" is not a valid regular expression: ${(e as Error).message.replace(/^Invalid regular expression: /, '')}`);
  }
}

/** One candidate interface with its IPv4 addresses, in kernel order. */
export interface IfaceInfo {
  /** Interface name. */
  name: string;
  /** IPv4 addresses on it. */
  addrs: string[];
  /** Loopback or otherwise internal. */
  internal: boolean;
}

/** IFF_LOOPBACK from <linux/if.h>. */
const IFF_LOOPBACK = 0x8;

/**
 * The interfaces of this network namespace with their IPv4 addresses, in kernel (ifindex)
 * order, read over rtnetlink as flannel does. Unlike os.networkInterfaces() (libuv skips
 * interfaces that are not yet RUNNING), a link that was just brought up is listed, so a
 * daemon started right after `ip link set up` finds it. Falls back to os.networkInterfaces()
 * when no netlink socket can be opened (no native addon).
 */
export function listInterfaces(): IfaceInfo[] {
  let nl: Rtnl | undefined;
  try {
    nl = Rtnl.open();
    const addrs = nl.listAddressesSync(undefined, 4);
    return nl
      .listLinksSync()
      .sort((x, y) => x.index - y.index)
      .map((l) => ({
        name: l.name,
        addrs: addrs.filter((a) => a.index === l.index).map((a) => a.address),
        internal: (l.flags & IFF_LOOPBACK) !== 0,
      }));
  } catch {
    return listInterfacesFrom(networkInterfaces());
  } finally {
    nl?.close();
  }
}

/**
 * The first global IPv6 address on interface `name` (not link-local, not deprecated by scope),
 * for PublicIPv6 when --public-ipv6 is not given; undefined when it has none.
 */
export function ifaceIpv6(name: string): string | undefined {
  const global = (a: string): boolean => !/^fe[89ab]/i.test(a) && a !== '::1';
  let nl: Rtnl | undefined;
  try {
    nl = Rtnl.open();
    return nl.listAddressesSync(name, 6).find((a) => a.scope === 0 && global(a.address))?.address;
  } catch {
    return (networkInterfaces()[name] ?? []).find((i) => i.family === 'IPv6' && global(i.address))?.address;
  } finally {
    nl?.close();
  }
}

/** Build the candidate list from os.networkInterfaces()-shaped data (IPv4 only). */
export function listInterfacesFrom(src: NodeJS.Dict<NetworkInterfaceInfo[]>): IfaceInfo[] {
  const out: IfaceInfo[] = [];
  for (const [name, infos] of Object.entries(src)) {
    const list = infos ?? [];
    out.push({ name, addrs: list.filter((i) => i.family === 'IPv4').map((i) => i.address), internal: list.length > 0 && list.every((i) => i.internal) });
  }
  return out;
}

/** The interface picked for the underlay, and why. */
export interface IfacePick {
  /** Interface name. */
  name: string;
  /** The address peers reach us on (the lease's PublicIP). */
  publicIp: string;
  /** The address on `name` used as the tunnel's local address. */
  localIp: string;
  /** Human-readable reason, for the start-up log. */
  reason: string;
}

/** What the operator asked for. */
export interface IfaceRequest {
  /** `--iface`: names or addresses (flannel accepts either); first existing wins. */
  iface?: string[];
  /** `--iface-regex`: anchored regexes matched against addresses, then names. */
  ifaceRegex?: string[];
  /** `--public-ip`. */
  publicIp?: string;
  /** `--iface-can-reach`: the interface (and source address) of the route to this address. */
  canReach?: string;
}

/** The kernel's answer to `ip route get ADDR`: the output device's name and the source address it would use. */
export type RouteGet = (addr: string) => { dev: string; src?: string };

/** {@link RouteGet} over rtnetlink in this namespace (start-up code: blocks the thread). Throws OsError (ENETUNREACH: no route). */
export function kernelRouteGet(addr: string): { dev: string; src?: string } {
  const nl = Rtnl.open();
  try {
    const r = nl.getRouteSync(addr);
    const link = r.oif === undefined ? undefined : nl.getLinkSync(r.oif);
    if (link === undefined) throw new Error(`the route to ${addr} has no output device`);
    return r.prefsrc === undefined ? { dev: link.name } : { dev: link.name, src: r.prefsrc };
  } finally {
    nl.close();
  }
}

/** The interface of the IPv4 default route in this namespace, from /proc/net/route (undefined if none). */
export function defaultRouteIface(routeTable?: string): string | undefined {
  let text = routeTable;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/net/route', 'utf8');
    } catch {
      return undefined;
    }
  }
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length >= 8 && f[1] === '00000000' && f[7] === '00000000') return f[0];
  }
  return undefined;
}

function firstAddr(i: IfaceInfo, what: string): string {
  const a = i.addrs[0];
  if (!a) throw new ConfigError(`interface "${i.name}" (${what}) has no IPv4 address`);
  return a;
}

/**
 * Pick the underlay interface: `--iface` (name or address) first, then `--iface-regex`
 * (whole address, then whole name; first interface in kernel order wins, the others
 * that matched are named in the reason), then the interface holding `--public-ip`,
 * then the default route's interface. Throws ConfigError naming the problem.
 */
export function pickInterface(req: IfaceRequest, ifaces: IfaceInfo[] = listInterfaces(), routeTable?: string, routeGet: RouteGet = kernelRouteGet): IfacePick {
  const names = ifaces.map((i) => i.name).join(', ');
  if (req.publicIp !== undefined && !isIpv4(req.publicIp)) throw new ConfigError(`--public-ip "${req.publicIp}" is not an IPv4 address`);
  const finish = (i: IfaceInfo, reason: string, localIp?: string): IfacePick => {
    const local = localIp ?? firstAddr(i, reason);
    const pub = req.publicIp ?? local;
    return { name: i.name, localIp: local, publicIp: pub, reason: req.publicIp ? `${reason}; public IP ${pub} from --public-ip` : reason };
  };

  if (req.iface && req.iface.length > 0) {
    for (const want of req.iface) {
      if (isIpv4(want)) {
        const i = ifaces.find((x) => x.addrs.includes(want));
        if (i) return finish(i, `--iface ${want} is an address on "${i.name}"`, want);
      } else {
        const i = ifaces.find((x) => x.name === want);
        if (i) return finish(i, `--iface ${want}`);
      }
    }
    throw new ConfigError(`interface ${req.iface.map((s) => `"${s}"`).join(', ')} does not exist (have: ${names})`);
  }

  if (req.ifaceRegex && req.ifaceRegex.length > 0) {
    const compiled = req.ifaceRegex.map((r) => ({ src: r, re: compileIfaceRegex(r) }));
    for (const { src, re } of compiled) {
      for (const i of ifaces) {
        const a = i.addrs.find((x) => re.test(x));
        if (a) return finish(i, `its address ${a} matches --iface-regex ${JSON.stringify(src)} (as ${re.source})`, a);
      }
      const hits = ifaces.filter((i) => re.test(i.name));
      const usable = hits.filter((i) => i.addrs.length > 0);
      if (usable.length > 0) {
        const i = usable[0]!;
        const others = hits.filter((h) => h !== i).map((h) => h.name);
        const also = others.length ? `; also matched: ${others.join(', ')}` : '';
        return finish(i, `its whole name matches --iface-regex ${JSON.stringify(src)} (as ${re.source}), first in kernel order${also}`);
      }
    }
    throw new ConfigError(`no interface with an IPv4 address matches --iface-regex ${req.ifaceRegex.map((s) => JSON.stringify(s)).join(', ')} against its whole name or address (have: ${names})`);
  }

  if (req.canReach !== undefined) {
    const to = req.canReach;
    if (!isIpv4(to)) throw new ConfigError(`--iface-can-reach "${to}" is not an IPv4 address`);
    let r: { dev: string; src?: string };
    try {
      r = routeGet(to);
    } catch (e) {
      throw new ConfigError(`--iface-can-reach ${to}: no route to it (${(e as Error).message})`);
    }
    const i = ifaces.find((x) => x.name === r.dev);
    if (!i) throw new ConfigError(`--iface-can-reach ${to}: the route goes out of "${r.dev}", which is not a candidate interface (have: ${names})`);
    const src = r.src !== undefined && i.addrs.includes(r.src) ? r.src : undefined;
    return finish(i, `the kernel's route to --iface-can-reach ${to} goes out of it${src ? ` with source ${src}` : ''}`, src);
  }

  if (req.publicIp) {
    const i = ifaces.find((x) => x.addrs.includes(req.publicIp!));
    if (i) return { name: i.name, localIp: req.publicIp, publicIp: req.publicIp, reason: `it holds --public-ip ${req.publicIp}` };
  }

  const def = defaultRouteIface(routeTable);
  if (def) {
    const i = ifaces.find((x) => x.name === def);
    if (i) return finish(i, 'it carries the default route (no --iface/--iface-regex given)');
  }
  const nonLo = ifaces.filter((i) => !i.internal && i.addrs.length > 0);
  if (nonLo.length === 1) return finish(nonLo[0]!, 'it is the only non-loopback interface with an IPv4 address (no default route)');
  throw new ConfigError(
    nonLo.length === 0
      ? `no usable underlay interface: no default route and no non-loopback IPv4 address (have: ${names})`
      : `no default route and several candidate interfaces (${nonLo.map((i) => i.name).join(', ')}): choose one with --iface or --iface-regex`,
  );
}

/** The MTU of an interface in this namespace (/sys/class/net/NAME/mtu), or undefined when unreadable. */
export function ifaceMtu(name: string): number | undefined {
  try {
    const v = Number(readFileSync(`/sys/class/net/${name}/mtu`, 'utf8').trim());
    return Number.isInteger(v) && v > 0 ? v : undefined;
  } catch {
    return undefined;
  }
}
