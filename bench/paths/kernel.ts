/**
 * The kernel-only paths: kernel VXLAN set up exactly as flanneld sets up flannel.1, and over
 * the IPv6 underlay as it sets up flannel-v6.1.
 * (host-gw runs overlayd's host-gw backend: bench/paths/overlayd.ts.)
 */
import type { BenchBed, BedHost } from '../lib/testbed.js';
import { peerOf } from '../lib/testbed.js';
import type { PathId } from '../lib/metrics.js';
import type { BenchPath, PathInstance } from './types.js';

/** Run `ip -n NS args` and record it as configuration. */
function ipRec(h: BedHost, config: string[], ...args: string[]): string {
  config.push(`ip -n ${h.ns.name} ${args.join(' ')}`);
  return h.ns.ip(...args);
}

function kernelInstance(config: string[]): PathInstance {
  return { processes: () => ({}), daemons: () => ({}), config, stop: async () => {}, profiles: () => [] };
}

/** flannel's VXLAN device name for VNI 1. */
export const FLANNEL_DEV = 'flannel.1';
/** flannel's VXLAN device name for VNI 1 over an IPv6 underlay. */
export const FLANNEL_V6_DEV = 'flannel-v6.1';

/**
 * Kernel VXLAN as flanneld configures flannel.1 (backend/vxlan): VNI 1, port 8472,
 * no learning, local = public IP on the underlay device, MTU = underlay - 50,
 * address <lease network>/32; per peer: route <subnet> via <peer network IP> onlink,
 * a permanent neighbour <peer network IP> -> peer VTEP MAC, and
 * `bridge fdb append <peer MAC> dst <peer public IP>`. Over IPv6 (`family` 6): flannel-v6.1,
 * local and FDB destinations the IPv6 underlay addresses, MTU = underlay - 70.
 */
export function kernelVxlanPathOf(id: PathId, family: 4 | 6): BenchPath {
  const FLANNEL = family === 6 ? FLANNEL_V6_DEV : FLANNEL_DEV;
  const pub = (h: BedHost): string => (family === 6 ? h.underlay6 : h.underlay);
  return { id, async setup(bed: BenchBed): Promise<PathInstance> {
    const config: string[] = [];
    const macs = new Map<BedHost, string>();
    for (const h of [bed.a, bed.b]) {
      ipRec(h, config, 'link', 'add', FLANNEL, 'type', 'vxlan', 'id', '1', 'local', pub(h), 'dev', bed.dev, 'dstport', '8472', 'nolearning');
      ipRec(h, config, 'link', 'set', FLANNEL, 'mtu', String(bed.mtu - (family === 6 ? 70 : 50)));
      ipRec(h, config, 'addr', 'add', `${h.subnetIp}/32`, 'dev', FLANNEL);
      ipRec(h, config, 'link', 'set', FLANNEL, 'up');
      const info = JSON.parse(h.ns.ip('-j', 'link', 'show', FLANNEL)) as { address: string }[];
      macs.set(h, info[0].address);
    }
    for (const h of [bed.a, bed.b]) {
      const p = peerOf(bed, h);
      const mac = macs.get(p) ?? '';
      ipRec(h, config, 'route', 'add', p.subnet, 'via', p.subnetIp, 'dev', FLANNEL, 'onlink');
      ipRec(h, config, 'neigh', 'replace', p.subnetIp, 'lladdr', mac, 'dev', FLANNEL, 'nud', 'permanent');
      config.push(`ip netns exec ${h.ns.name} bridge fdb append ${mac} dev ${FLANNEL} dst ${pub(p)}`);
      h.ns.exec('bridge', ['fdb', 'append', mac, 'dev', FLANNEL, 'dst', pub(p)]);
    }
    for (const h of [bed.a, bed.b]) config.push(`# ${h.ns.name}: ` + h.ns.ip('-d', 'link', 'show', FLANNEL).replace(/\s+/g, ' ').trim());
    return kernelInstance(config);
  } };
}

/** Kernel VXLAN as flannel.1 (see {@link kernelVxlanPathOf}). */
export const kernelVxlanPath: BenchPath = kernelVxlanPathOf('kernel-vxlan', 4);
