/**
 * The floor path: bench/floor/forward.c, a C forwarder that makes only the system calls
 * every TUN + UDP dataplane must make (TUN read, UDP GSO send, UDP GRO receive, TUN write,
 * one of each per super-packet) and does no packet work. It is not VXLAN and checks
 * nothing; it shows what the kernel's forced copies alone cost, so our paths can be read
 * against the best any userspace design on TUN and UDP sockets can do on this machine.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compileC, waitReady } from '../lib/cc.js';
import { waitExit } from '../lib/exec.js';
import { peerOf, waitOverlay, type BenchBed } from '../lib/testbed.js';
import type { BenchPath, PathInstance, PathOptions } from './types.js';

const SOURCE = resolve(dirname(fileURLToPath(import.meta.url)), '../floor/forward.c');
const DEV = 'floor0';
const PORT = '8472';

/** The floor path (see the file comment). */
export const floorPath: BenchPath = {
  id: 'floor',
  async setup(bed: BenchBed, opts: PathOptions): Promise<PathInstance> {
    const bin = compileC(SOURCE, opts.workDir);
    const config: string[] = [];
    const kids: ChildProcess[] = [];
    const stop = async (): Promise<void> => {
      for (const k of kids) if (k.exitCode === null && k.signalCode === null) k.kill('SIGKILL');
      await Promise.all(kids.map((k) => waitExit(k, 2000)));
    };
    try {
      for (const h of [bed.a, bed.b]) {
        const p = peerOf(bed, h);
        const child = spawn('ip', ['netns', 'exec', h.ns.name, bin, DEV, h.underlay, p.underlay, PORT, ...(process.env.BENCH_FLOOR_BUSY === '1' ? ['busy'] : [])], { stdio: ['ignore', 'pipe', 'pipe'] });
        bed.tb.track(child);
        kids.push(child);
        await waitReady(child, 'forward', 5000);
        // a super-packet plus its 10-byte virtio header must fit one UDP send (65,507 bytes)
        for (const args of [
          ['link', 'set', DEV, 'mtu', String(bed.mtu - 50), 'gso_max_size', '60000', 'up'],
          ['addr', 'add', `${h.subnetIp}/32`, 'dev', DEV],
          ['route', 'add', p.subnet, 'dev', DEV],
        ]) {
          config.push(`ip -n ${h.ns.name} ${args.join(' ')}`);
          h.ns.ip(...args);
        }
      }
      config.unshift(`forward ${DEV} <local> <peer> ${PORT} (bench/floor/forward.c, cc -O2) in each namespace`);
      if (!(await waitOverlay(bed, 5000))) throw new Error(`no connectivity ${bed.a.workload} -> ${bed.b.workload} through the floor forwarder`);
    } catch (e) {
      await stop();
      throw e;
    }
    return {
      processes: () => Object.fromEntries(kids.map((k, i) => [`forward-${i === 0 ? 'a' : 'b'}`, k.pid ?? 0])),
      daemons: () => ({}),
      config,
      stop,
      profiles: () => [],
    };
  },
};
