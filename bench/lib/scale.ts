/**
 * Pieces of the control-plane scale benchmarks (bench/peers-daemon.ts, bench/etcd-scale.ts):
 * synthetic VXLAN leases, waiting for a condition, a process's RSS, CPU and run-queue time of
 * process trees, and a 10 ms ping run's loss / average / longest RTT.
 */
import { readdirSync, readFileSync } from 'node:fs';
import type { NsHost } from '../../test/helpers/netns.js';
import { sleep, waitChild } from './exec.js';

/**
 * Lease of synthetic peer i in flannel's etcd layout: subnet 198.19.x.y/30 from 198.19.0.8 on,
 * a public IP in 198.18.1.0-198.18.63.255 that is never sent to, a VTEP MAC that changes with `gen`.
 */
export function synthLease(i: number, gen = 0): [string, { PublicIP: string; PublicIPv6: null; BackendType: 'vxlan'; BackendData: { VNI: number; VtepMAC: string } }] {
  const a = 8 + i * 4;
  const key = `198.19.${a >> 8}.${a & 255}-30`;
  const pub = `198.18.${1 + (i >> 8)}.${(i & 255)}`;
  const mac = `02:00:00:${(gen & 255).toString(16).padStart(2, '0')}:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`;
  return [key, { PublicIP: pub, PublicIPv6: null, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: mac } }];
}

/** Wait until `f()` holds (polled every 20 ms); the time it took, ms. Throws after `ms`. */
export async function until(f: () => boolean, ms: number, what: string): Promise<number> {
  const t0 = Date.now();
  while (!f()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out: ${what}`);
    await sleep(20);
  }
  return Date.now() - t0;
}

/** Resident set size of a process, MiB. */
export function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** Pids of the processes whose command line contains every one of `parts`. */
export function pidsOf(...parts: string[]): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8');
      if (parts.every((p) => cmd.includes(p))) out.push(Number(d));
    } catch { /* gone */ }
  }
  return out;
}

/**
 * Time on a CPU and time waiting for one (runnable, not running), ms, summed over every thread
 * of `pids` and of their descendants (/proc/<pid>/task/<tid>/schedstat).
 */
export function schedMs(pids: number[]): { cpu: number; wait: number; mainCpu: number; mainWait: number } {
  let cpu = 0;
  let wait = 0;
  let mainCpu = 0;
  let mainWait = 0;
  for (const pid of treeOf(pids)) {
    try {
      for (const t of readdirSync(`/proc/${pid}/task`)) {
        const [run, rq] = readFileSync(`/proc/${pid}/task/${t}/schedstat`, 'utf8').split(' ').map(Number);
        cpu += run! / 1e6;
        wait += rq! / 1e6;
        if (Number(t) === pid) {
          mainCpu += run! / 1e6;
          mainWait += rq! / 1e6;
        }
      }
    } catch { /* gone */ }
  }
  return { cpu, wait, mainCpu, mainWait };
}

/** Every process of the trees of `pids` (pids and their descendants). */
export function treeOf(pids: number[]): Set<number> {
  const parent = new Map<number, number>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const st = readFileSync(`/proc/${d}/stat`, 'utf8');
      parent.set(Number(d), Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[1]));
    } catch { /* gone */ }
  }
  const tree = new Set(pids);
  for (let grew = true; grew;) {
    grew = false;
    for (const [pid, pp] of parent) if (tree.has(pp) && !tree.has(pid)) { tree.add(pid); grew = true; }
  }
  return tree;
}

/** Kernel routes through `dev` in `host` (onlink routes: one per VXLAN peer). */
export function onlinkRoutes(host: NsHost, dev = 'flannel.1'): number {
  return host.exec('ip', ['-4', 'route', 'show', 'dev', dev]).split('\n').filter((l) => l.includes('onlink')).length;
}

/** Loss and RTT of a ping run. */
export interface PingUnderLoad {
  lossPct: number;
  avgMs: number;
  maxMs: number;
  /** Replies with an RTT over 10 ms, and the second longest RTT (is the longest alone?). */
  over10: number;
  secondMs: number;
}

/**
 * Ping `dst` from `host` every 10 ms, `count` times, while `during()` runs (started after
 * `leadMs`); resolves with the run's loss, average and longest RTT.
 */
export async function pingDuring(host: NsHost, dst: string, count: number, leadMs: number, during: () => void | Promise<void>): Promise<PingUnderLoad> {
  const pinger = host.spawn('ping', ['-n', '-i', '0.01', '-c', String(count), dst], { stdio: ['ignore', 'pipe', 'pipe'] });
  const done = waitChild(pinger, count * 10 + 30_000);
  await sleep(leadMs);
  await during();
  const out = (await done).stdout;
  const loss = /(\d+(?:\.\d+)?)% packet loss/.exec(out)?.[1];
  const rtt = /= [\d.]+\/([\d.]+)\/([\d.]+)\//.exec(out);
  const each = [...out.matchAll(/ time=([\d.]+) ms/g)].map((m) => Number(m[1])).sort((x, y) => y - x);
  return {
    lossPct: Number(loss ?? NaN), avgMs: Number(rtt?.[1] ?? NaN), maxMs: Number(rtt?.[2] ?? NaN),
    over10: each.filter((x) => x > 10).length, secondMs: each[1] ?? NaN,
  };
}
