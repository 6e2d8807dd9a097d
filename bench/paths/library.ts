/**
 * Our backends over the IPv6 underlay, run as the library (test/vtep/host.ts: one backend per
 * namespace, started with the options below and given the other host's lease), not as overlayd:
 * overlayd's flags and net-conf take an IPv4 public address only so far (dual-stack configuration
 * is separate work). Same traffic, same figures as the other paths; offload 'auto' (the default).
 */
import type { PathId } from '../lib/metrics.js';
import { peerOf, waitOverlay, type BenchBed } from '../lib/testbed.js';
import { HostProc } from '../../test/vtep/harness.js';
import type { BenchPath, PathInstance, PathOptions } from './types.js';

/** Our `type` backend with the mmsg transport over the testbed's IPv6 underlay addresses. */
export function libraryPath(id: PathId, type: 'vxlan' | 'udp'): BenchPath {
  return {
    id,
    async setup(bed: BenchBed, opts: PathOptions): Promise<PathInstance> {
      const procs: HostProc[] = [];
      const config: string[] = [];
      const stop = async (): Promise<void> => { await Promise.all(procs.map((p) => p.stop())); };
      try {
        for (const h of [bed.a, bed.b]) {
          const o = { kind: type, ...(type === 'vxlan' ? { mode: 'l3' } : {}), subnet: h.subnet, network: bed.network, publicIp: h.underlay6, mtu: bed.mtu, transport: 'mmsg', offload: opts.offload ?? 'auto' };
          procs.push(await HostProc.start(bed.tb, h.ns, o));
          config.push(`${h.ns.name}: test/vtep/host.ts ${JSON.stringify(o)}`);
        }
        for (const [i, h] of [bed.a, bed.b].entries()) {
          await procs[i]!.addPeer(procs[1 - i]!.lease);
          config.push(`${h.ns.name}: addPeer ${JSON.stringify(procs[1 - i]!.lease)} (${peerOf(bed, h).ns.name})`);
        }
        if (!(await waitOverlay(bed, 10_000))) throw new Error(`no overlay connectivity ${bed.a.workload} -> ${bed.b.workload} over IPv6`);
        opts.log(`  ${id}: ${type} backends up over ${bed.a.underlay6} <-> ${bed.b.underlay6}`);
      } catch (e) {
        await stop();
        throw e;
      }
      const pids = (): Record<string, number> => Object.fromEntries(procs.map((p, i) => [`${type}-${i === 0 ? 'a' : 'b'}`, p.child.pid ?? 0]));
      return {
        processes: pids,
        daemons: pids,
        config,
        async collectStats() {
          const out: Record<string, string> = {};
          for (const [i, p] of procs.entries()) out[`${type}-${i === 0 ? 'a' : 'b'}`] = JSON.stringify((await p.stats()).stats);
          return out;
        },
        stop,
        profiles: () => [],
      };
    },
  };
}
