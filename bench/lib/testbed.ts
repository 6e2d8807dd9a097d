/**
 * The benchmark's testbed: two namespace hosts joined by one veth pair at the
 * same MTU. Underlay 198.18.0.0/24 and 2001:2:0:1::/64; host A leases overlay 198.19.1.0/24 and
 * host B 198.19.2.0/24 (network 198.19.0.0/16). Each host's workload address
 * (x.x.x.1 of its lease, on loopback as a /32, standing in for a pod behind cni0)
 * is where iperf3 and ping run, so every path carries the same traffic between
 * the same two addresses.
 */
import { Testbed, type NsHost } from '../../test/helpers/netns.js';
import { sleep, waitChild } from './exec.js';

/** One side of the testbed. */
export interface BedHost {
  /** The namespace host. */
  ns: NsHost;
  /** Underlay address (no prefix). */
  underlay: string;
  /** IPv6 underlay address on the same device (no prefix; /64), for the IPv6-underlay paths. */
  underlay6: string;
  /** Overlay lease, CIDR. */
  subnet: string;
  /** Network address of the lease (flannel puts it on flannel.1 as a /32). */
  subnetIp: string;
  /** Workload address inside the lease (traffic source/sink). */
  workload: string;
}

/** Two hosts over a veth. */
export interface BenchBed {
  /** The namespaces (destroy() removes everything). */
  tb: Testbed;
  /** Host A (client side). */
  a: BedHost;
  /** Host B (server side). */
  b: BedHost;
  /** Underlay device name in both namespaces. */
  dev: string;
  /** Underlay MTU of both ends. */
  mtu: number;
  /** The overlay network (flannel's `Network`). */
  network: string;
}

/** Build the two hosts; on any failure the namespaces made so far are removed. */
export async function createBed(mtu = 1500, tag = 'obn'): Promise<BenchBed> {
  const tb = new Testbed(tag);
  try {
    const a = tb.host('a');
    const b = tb.host('b');
    const dev = 'ul0';
    tb.link(a, dev, '198.18.0.1/24', b, dev, '198.18.0.2/24', mtu);
    const bed: BenchBed = {
      tb,
      dev,
      mtu,
      network: '198.19.0.0/16',
      a: { ns: a, underlay: '198.18.0.1', underlay6: '2001:2:0:1::1', subnet: '198.19.1.0/24', subnetIp: '198.19.1.0', workload: '198.19.1.1' },
      b: { ns: b, underlay: '198.18.0.2', underlay6: '2001:2:0:1::2', subnet: '198.19.2.0/24', subnetIp: '198.19.2.0', workload: '198.19.2.1' },
    };
    for (const h of [bed.a, bed.b]) {
      h.ns.ip('addr', 'add', `${h.workload}/32`, 'dev', 'lo');
      h.ns.ip('addr', 'add', `${h.underlay6}/64`, 'dev', dev, 'nodad'); // usable at once (no duplicate address detection)
    }
    await waitOperUp(bed, 5000);
    return bed;
  } catch (e) {
    tb.destroy();
    throw e;
  }
}

/**
 * Wait until the underlay device is operationally up on both hosts. The kernel
 * reports carrier (IFF_RUNNING, operstate UP) through linkwatch, which can lag the
 * `ip link set up` by up to a second; software that lists running interfaces
 * (os.networkInterfaces()) does not see the device until then.
 */
export async function waitOperUp(bed: BenchBed, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const states = [bed.a, bed.b].map((h) => (JSON.parse(h.ns.ip('-j', 'link', 'show', bed.dev)) as { operstate?: string }[])[0]?.operstate);
    if (states.every((s) => s === 'UP')) return;
    if (Date.now() > deadline) throw new Error(`underlay ${bed.dev} not operationally up after ${ms} ms (${states.join(', ')})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The other host of the bed. */
export function peerOf(bed: BenchBed, h: BedHost): BedHost {
  return h === bed.a ? bed.b : bed.a;
}

/** Ping b's workload from a's until a reply comes, at most `ms`; false if none came. */
export async function waitOverlay(bed: BenchBed, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const c = bed.a.ns.spawn('ping', ['-n', '-c', '1', '-W', '1', '-I', bed.a.workload, bed.b.workload], { stdio: ['ignore', 'pipe', 'pipe'] });
    const r = await waitChild(c, 3000);
    if (r.code === 0) return true;
    await sleep(200);
  }
  return false;
}
