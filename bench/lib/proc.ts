/**
 * CPU and memory accounting from /proc: per-process utime/stime, the children
 * times of this process (for short-lived clients it reaped), softirq and busy
 * time of the machine, the ksoftirqd threads, and peak RSS (VmHWM).
 *
 * All CPU figures are in clock ticks (USER_HZ, normally 100 per second).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { release } from 'node:os';

let clkTck: number | undefined;

/** Clock ticks per second used by /proc (getconf CLK_TCK; 100 if unknown). */
export function ticksPerSecond(): number {
  if (clkTck === undefined) {
    try {
      clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clkTck = 100;
    }
  }
  return clkTck;
}

/** utime and stime of one process (all its threads), and its reaped children's. */
export interface ProcTimes {
  utime: number;
  stime: number;
  cutime: number;
  cstime: number;
}

/** Read /proc/PID/stat times; null when the process is gone. */
export function readProcTimes(pid: number | 'self'): ProcTimes | null {
  let s: string;
  try {
    s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  // After the name: field 3 is f[0]; utime is field 14 -> f[11].
  return { utime: Number(f[11]), stime: Number(f[12]), cutime: Number(f[13]), cstime: Number(f[14]) };
}

/** Machine-wide CPU time from the `cpu` line of /proc/stat. */
export interface SystemTimes {
  /** user + nice + system + irq + softirq + steal. */
  busy: number;
  /** The softirq column. */
  softirq: number;
}

/** Read the aggregate `cpu` line of /proc/stat. */
export function readSystemTimes(): SystemTimes {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0];
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, , , irq, softirq, steal] = v;
  return { busy: user + nice + system + irq + softirq + (steal ?? 0), softirq };
}

let ksoftirqdPids: number[] | undefined;

/** PIDs of the ksoftirqd/N kernel threads. */
export function ksoftirqdThreads(): number[] {
  if (!ksoftirqdPids) {
    ksoftirqdPids = [];
    for (const d of readdirSync('/proc')) {
      if (!/^\d+$/.test(d)) continue;
      try {
        if (readFileSync(`/proc/${d}/comm`, 'utf8').startsWith('ksoftirqd/')) ksoftirqdPids.push(Number(d));
      } catch { /* gone */ }
    }
  }
  return ksoftirqdPids;
}

/** Sum of utime+stime over the ksoftirqd threads. */
export function readKsoftirqdTicks(): number {
  let t = 0;
  for (const p of ksoftirqdThreads()) {
    const x = readProcTimes(p);
    if (x) t += x.utime + x.stime;
  }
  return t;
}

/**
 * Whether the kernel accounts softirq time separately from tasks
 * (CONFIG_IRQ_TIME_ACCOUNTING). null when the config cannot be read.
 */
export function irqTimeAccounting(): boolean | null {
  let cfg: string | undefined;
  try {
    if (existsSync('/proc/config.gz')) cfg = gunzipSync(readFileSync('/proc/config.gz')).toString('utf8');
    else if (existsSync(`/boot/config-${release()}`)) cfg = readFileSync(`/boot/config-${release()}`, 'utf8');
  } catch { /* unreadable */ }
  if (cfg === undefined) return null;
  if (/^CONFIG_IRQ_TIME_ACCOUNTING=y/m.test(cfg)) {
    // The boot parameter tsc=noirqtime (x86) turns it off again.
    try {
      if (/\btsc=noirqtime\b/.test(readFileSync('/proc/cmdline', 'utf8'))) return false;
    } catch { /* ignore */ }
    return true;
  }
  return false;
}

/** Peak resident set size (VmHWM) of a process in KiB; null when gone. */
export function readPeakRssKiB(pid: number): number | null {
  try {
    const m = /^VmHWM:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/**
 * `pid` and its live descendants (overlayd's supervisor and its packet process): a scan of
 * /proc for parent links. Just `[pid]` when it has none.
 */
export function processTree(pid: number): number[] {
  const parent = new Map<number, number[]>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const s = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(s.slice(s.lastIndexOf(')') + 2).split(' ')[1]);
      const kids = parent.get(ppid);
      if (kids) kids.push(Number(d));
      else parent.set(ppid, [Number(d)]);
    } catch { /* gone */ }
  }
  const out: number[] = [];
  const walk = (p: number): void => { out.push(p); for (const c of parent.get(p) ?? []) walk(c); };
  walk(pid);
  return out;
}

/** Peak RSS (VmHWM) summed over `pid`'s process tree ({@link processTree}), KiB; null when `pid` is gone. */
export function readTreePeakRssKiB(pid: number): number | null {
  const own = readPeakRssKiB(pid);
  if (own === null) return null;
  return processTree(pid).reduce((t, p) => t + (p === pid ? own : readPeakRssKiB(p) ?? 0), 0);
}

/** Short command name of a process, or null. */
export function readComm(pid: number): string | null {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return null;
  }
}

/** A snapshot of every counter a CPU sample needs. */
export interface CpuSnapshot {
  sys: SystemTimes;
  ksoftirqd: number;
  /** Self children times (utime+stime of reaped children, split). */
  childUser: number;
  childSys: number;
  /** Per named long-lived process: [utime, stime]. */
  procs: Record<string, [number, number]>;
}

/** Take a snapshot of the machine counters and the named long-lived processes. */
export function snapshot(procs: Record<string, number>): CpuSnapshot {
  const self = readProcTimes('self');
  const out: CpuSnapshot = { sys: readSystemTimes(), ksoftirqd: readKsoftirqdTicks(), childUser: self?.cutime ?? 0, childSys: self?.cstime ?? 0, procs: {} };
  for (const [name, pid] of Object.entries(procs)) {
    // the whole tree: overlayd's packet work runs in a child of the supervisor
    for (const p of processTree(pid)) {
      const t = readProcTimes(p);
      if (!t) continue;
      const [u, s] = out.procs[name] ?? [0, 0];
      out.procs[name] = [u + t.utime, s + t.stime];
    }
  }
  return out;
}

/** Everything a CpuSample reports, computed from two snapshots. */
export interface CpuDelta {
  procUser: number;
  procSys: number;
  softirq: number;
  ksoftirqd: number;
  systemBusy: number;
  cpuSeconds: number;
  perProcess: Record<string, number>;
}

/**
 * CPU used between two snapshots by everything involved: the named processes and the
 * reaped children (the iperf3 client) plus softirq work not already charged to them.
 *
 * With CONFIG_IRQ_TIME_ACCOUNTING (or when unknown) softirq time is a separate column
 * of /proc/stat, not in any task's stime: add the softirq column. Without it, the
 * tick-based accounting charges softirq ticks to the task they interrupted (its stime)
 * AND to the softirq column, so adding the column would count them twice; on a
 * veth-only testbed all softirq work runs in the involved processes or in ksoftirqd,
 * so add the ksoftirqd threads instead.
 */
export function cpuDelta(a: CpuSnapshot, b: CpuSnapshot, irqTime: boolean | null, childName = 'client'): CpuDelta {
  const perProcess: Record<string, number> = {};
  let user = b.childUser - a.childUser;
  let sys = b.childSys - a.childSys;
  perProcess[childName] = user + sys;
  for (const [name, [u1, s1]] of Object.entries(b.procs)) {
    const [u0, s0] = a.procs[name] ?? [u1, s1];
    user += u1 - u0;
    sys += s1 - s0;
    perProcess[name] = u1 - u0 + (s1 - s0);
  }
  const softirq = b.sys.softirq - a.sys.softirq;
  const ksoftirqd = b.ksoftirqd - a.ksoftirqd;
  const extra = irqTime === false ? ksoftirqd : softirq;
  return { procUser: user, procSys: sys, softirq, ksoftirqd, systemBusy: b.sys.busy - a.sys.busy, cpuSeconds: (user + sys + extra) / ticksPerSecond(), perProcess };
}

/** The CPU formula in words, for the report. */
export function cpuFormula(irqTime: boolean | null): string {
  const base = 'CPU time (user+system) of the iperf3 client and server and of our daemons (both hosts)';
  if (irqTime === false) {
    return `${base}, plus the ksoftirqd threads, divided by the datagrams received. This kernel has no CONFIG_IRQ_TIME_ACCOUNTING: softirq ticks are charged to the task they interrupt (already in its system time) and also to /proc/stat's softirq column, so that column is not added again (it is in the JSON, as is the whole machine's busy time).`;
  }
  return `${base}, plus the softirq column of /proc/stat${irqTime === null ? ' (kernel config unknown: if it lacks CONFIG_IRQ_TIME_ACCOUNTING, part of the softirq time is counted twice)' : ''}, divided by the datagrams received.`;
}
