/**
 * The kernel-only path: kernel VXLAN set up exactly as flanneld sets up flannel.1.
 * (host-gw runs overlayd's host-gw backend: bench/paths/overlayd.ts.)
 */
import type { BenchBed, BedHost } from '../lib/testbed.js';
import { peerOf } from '../lib/testbed.js';
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

/**
 * Kernel VXLAN as flanneld configures flannel.1 (backend/vxlan): VNI 1, port 8472,
 * no learning, local = public IP on the underlay device, MTU = underlay - 50,
 * address <lease network>/32; per peer: route <subnet> via <peer network IP> onlink,
 * a permanent neighbour <peer network IP> -> peer VTEP MAC, and
 * `bridge fdb append <peer MAC> dst <peer public IP>`.
 */
export const kernelVxlanPath: BenchPath = {
  id: 'kernel-vxlan',
  async setup(bed: BenchBed): Promise<PathInstance> {
    const config: string[] = [];
    const macs = new Map<BedHost, string>();
    for (const h of [bed.a, bed.b]) {
      ipRec(h, config, 'link', 'add', FLANNEL_DEV, 'type', 'vxlan', 'id', '1', 'local', h.underlay, 'dev', bed.dev, 'dstport', '8472', 'nolearning');
      ipRec(h, config, 'link', 'set', FLANNEL_DEV, 'mtu', String(bed.mtu - 50));
      ipRec(h, config, 'addr', 'add', `${h.subnetIp}/32`, 'dev', FLANNEL_DEV);
      ipRec(h, config, 'link', 'set', FLANNEL_DEV, 'up');
      const info = JSON.parse(h.ns.ip('-j', 'link', 'show', FLANNEL_DEV)) as { address: string }[];
      macs.set(h, info[0].address);
    }
    for (const h of [bed.a, bed.b]) {
      const p = peerOf(bed, h);
      const mac = macs.get(p) ?? '';
      ipRec(h, config, 'route', 'add', p.subnet, 'via', p.subnetIp, 'dev', FLANNEL_DEV, 'onlink');
      ipRec(h, config, 'neigh', 'replace', p.subnetIp, 'lladdr', mac, 'dev', FLANNEL_DEV, 'nud', 'permanent');
      config.push(`ip netns exec ${h.ns.name} bridge fdb append ${mac} dev ${FLANNEL_DEV} dst ${p.underlay}`);
      h.ns.exec('bridge', ['fdb', 'append', mac, 'dev', FLANNEL_DEV, 'dst', p.underlay]);
    }
    for (const h of [bed.a, bed.b]) config.push(`# ${h.ns.name}: ` + h.ns.ip('-d', 'link', 'show', FLANNEL_DEV).replace(/\s+/g, ' ').trim());
    return kernelInstance(config);
  },
};
