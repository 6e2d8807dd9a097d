/**
 * etcd-mode scale (issue #13), in namespace hosts on one underlay LAN with etcd in the hub
 * namespace (198.18.0.254). Not a timed test: it prints markdown tables.
 *
 * 1. Join and leave propagation over H hosts running overlayd (VXLAN, etcd mode): a lease is
 *    written to (then deleted from) etcd, and each host's kernel route for it is seen coming (and
 *    going) with `ip monitor route` in that host. The route is the last thing overlayd installs
 *    for a peer (its neighbour and FDB entries are in the userspace VTEP's tables before it), so
 *    this is "every host has the peer's route/neighbour/FDB entries". p50/p99 over hosts x reps.
 * 2. N synthetic leases (default 1,000 and 10,000) in etcd and one overlayd host `a` (plus a real
 *    peer `b`): start until running (lease acquired, all N applied) and until the kernel has all N
 *    routes, RSS, one changed lease until a's route for it, and the ping a -> b (every 10 ms)
 *    while 1,000 leases change at once in one etcd transaction, with the CPU time of a's and b's
 *    overlayd and of etcd over the 0.5 s after that write, and their time waiting for a CPU
 *    (runnable, not running: /proc/<pid>/task/<tid>/schedstat).
 *
 * Writes to etcd go through a small writer process in the hub namespace (etcd's JSON gateway),
 * which stamps each write just before sending it; all processes share one clock.
 *
 *   npx tsx bench/etcd-scale.ts [--hosts 24] [--reps 5] [--leases 1000,10000]     (root)
 *
 * --hosts 0 skips part 1. For diagnosis: ETCD_SCALE_NODE_ARGS='--trace-gc' passes node flags to
 * every overlayd and keeps their stdout (the temporary directory is printed and left; with
 * '--import ./bench/lib/loop-gaps.mjs --cpu-prof --cpu-prof-dir=DIR' each process's event-loop
 * gaps over 3 ms go there, and bench/lib/gap-profile.mjs shows what the profile sampled in each);
 * ETCD_SCALE_PERF=file records `perf record -a` over the 1,000-lease change (ETCD_SCALE_SCHED=file: file.<N>,
 * `perf sched record`, for `perf sched timehist`; the daemons' pids go to stderr), ETCD_SCALE_PERF_START=file
 * `perf record -a -g` over the first 3 s of the N-lease start. ETCD_SCALE_SCHED_EXP sets the
 * scheduling of the daemons' threads before the measurements (see schedExperiment).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { setPriority, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Testbed, type NsHost } from '../test/helpers/netns.js';
import { parseEnvFile } from '../src/overlayd/config.js';
import { flannelValue, startEtcd, type TestEtcd } from '../test/helpers/etcd.js';
import { findOverlayd, REPO_ROOT } from './paths/overlayd.js';
import { percentile } from './lib/stats.js';
import { onlinkRoutes, pidsOf, pingDuring, rssMiB, schedMs, synthLease, treeOf, until } from './lib/scale.js';

const arg = (name: string, def: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : def;
};
const HOSTS = Number(arg('hosts', '24'));
const REPS = Number(arg('reps', '5'));
const LEASES = arg('leases', '1000,10000').split(',').map(Number).filter((n) => n > 0);
const PREFIX = '/coreos.com/network';
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const dir = mkdtempSync(join(tmpdir(), 'etcd-scale-'));

/** The writer in the hub: one JSON line per request, answered in order with the send time. */
const WRITER = `
const url = process.argv[1];
const b = (s) => Buffer.from(s).toString('base64');
const rl = require('readline').createInterface({ input: process.stdin });
let chain = Promise.resolve();
rl.on('line', (line) => { chain = chain.then(async () => {
  const { put = [], del = [] } = JSON.parse(line);
  const success = [...put.map(([k, v]) => ({ request_put: { key: b(k), value: b(v) } })), ...del.map((k) => ({ request_delete_range: { key: b(k) } }))];
  const t0 = Date.now();
  const r = await fetch(url + '/v3/kv/txn', { method: 'POST', body: JSON.stringify({ success }) });
  const j = await r.json();
  console.log(JSON.stringify({ t0, t1: Date.now(), error: j.error }));
}); });
`;

/** A writer process in `hub`. */
class Writer {
  private readonly child: ChildProcess;
  private readonly waiting: ((r: { t0: number; t1: number; error?: string }) => void)[] = [];
  constructor(hub: NsHost, url: string, tb: Testbed) {
    this.child = tb.track(hub.spawn(process.execPath, ['-e', WRITER, url], { stdio: ['pipe', 'pipe', 'inherit'] }));
    createInterface({ input: this.child.stdout! }).on('line', (l) => this.waiting.shift()?.(JSON.parse(l) as { t0: number; t1: number }));
  }
  /** Write (put and delete) in one transaction; resolves with the time it was sent. */
  write(put: [string, string][], del: string[] = []): Promise<number> {
    return new Promise((resolve, reject) => {
      this.waiting.push((r) => (r.error ? reject(new Error(`etcd: ${r.error}`)) : resolve(r.t0)));
      this.child.stdin!.write(JSON.stringify({ put, del }) + '\n');
    });
  }
}

/** Route additions and deletions seen in a host, by subnet: the time each was first seen. */
class RouteMonitor {
  readonly added = new Map<string, number>();
  readonly deleted = new Map<string, number>();
  constructor(h: NsHost, tb: Testbed) {
    const c = tb.track(h.spawn('ip', ['monitor', 'route'], { stdio: ['ignore', 'pipe', 'ignore'] }));
    createInterface({ input: c.stdout! }).on('line', (l) => {
      const m = /^(Deleted )?(198\.19\.\d+\.\d+\/\d+) /.exec(l);
      if (!m) return;
      const map = m[1] ? this.deleted : this.added;
      if (!map.has(m[2]!)) map.set(m[2]!, Date.now());
    });
  }
}

function startOverlayd(tb: Testbed, h: NsHost, url: string, name: string): { child: ChildProcess; err: () => string; running: () => boolean } {
  const entry = findOverlayd()!;
  const d = join(dir, name);
  mkdirSync(d, { recursive: true });
  const args = [...entry.nodeArgs, entry.script, '--etcd-endpoints', url, '--iface', 'u0', '--subnet-file', join(d, 'subnet.env'), '--transport', 'mmsg'];
  // ETCD_SCALE_NODE_ARGS (e.g. --trace-gc): extra node flags for overlayd, its stdout kept in <dir>/<name>.out
  const extra = process.env.ETCD_SCALE_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
  const out = extra.length > 0 ? openSync(join(dir, `${name}.out`), 'w') : 'ignore';
  const child = tb.track(spawn('ip', ['netns', 'exec', h.name, process.execPath, ...extra, ...args], { cwd: REPO_ROOT, stdio: ['ignore', out, 'pipe'] }));
  let err = '';
  child.stderr!.on('data', (b: Buffer) => { if (err.length < 1 << 20) err += b.toString(); });
  return { child, err: () => err, running: () => /: running\n/.test(err) };
}

/** A LAN of `names` hosts (u0, 198.18.0.<i+1>/16) with etcd in the hub at 198.18.0.254. */
async function cluster(tb: Testbed, names: string[], etcdArgs: string[] = []): Promise<{ hosts: NsHost[]; etcd: TestEtcd; url: string; writer: Writer; hub: NsHost }> {
  const hosts = names.map((n) => tb.host(n));
  const hub = tb.lan(hosts.map((host, i) => ({ host, dev: 'u0', cidr: `198.18.0.${i + 1}/16` })));
  hub.ip('addr', 'add', '198.18.0.254/16', 'dev', 'br0');
  const etcd = await startEtcd({ ns: hub, host: '198.18.0.254', args: etcdArgs });
  const writer = new Writer(hub, etcd.url, tb);
  return { hosts, etcd, url: etcd.url, writer, hub };
}

const fmt = (v: number): string => (Number.isFinite(v) ? `${Math.round(v)} ms` : '-');
const rows: string[] = [];

async function propagation(): Promise<void> {
  const tb = new Testbed('edb');
  let etcd: TestEtcd | undefined;
  try {
    const c = await cluster(tb, Array.from({ length: HOSTS }, (_, i) => `h${i}`));
    etcd = c.etcd;
    await c.writer.write([[`${PREFIX}/config`, JSON.stringify({ Network: '198.19.0.0/16', SubnetLen: 24, Backend: { Type: 'vxlan' } })]]);
    const mons = c.hosts.map((h) => new RouteMonitor(h, tb));
    const ds = c.hosts.map((h, i) => startOverlayd(tb, h, c.url, `h${i}`));
    const t0 = Date.now();
    await until(() => ds.every((d) => d.running()), 180_000, 'all hosts running');
    const allUp = Date.now() - t0;
    await until(() => mons.every((m) => m.added.size >= HOSTS - 1), 60_000, 'all hosts see each other');
    const meshed = Date.now() - t0;
    const join: number[] = [];
    const leave: number[] = [];
    for (let r = 0; r < REPS; r++) {
      const subnet = `198.19.${250 - r}.0/24`;
      const key = `${PREFIX}/subnets/${subnet.replace('/', '-')}`;
      const value = flannelValue(`198.18.9.${r + 1}`, `02:00:00:00:09:${(r + 1).toString(16).padStart(2, '0')}`);
      const tj = await c.writer.write([[key, value]]);
      await until(() => mons.every((m) => m.added.has(subnet)), 30_000, `join ${subnet} everywhere`);
      for (const m of mons) join.push(m.added.get(subnet)! - tj);
      await sleep(300);
      const tl = await c.writer.write([], [key]);
      await until(() => mons.every((m) => m.deleted.has(subnet)), 30_000, `leave ${subnet} everywhere`);
      for (const m of mons) leave.push(m.deleted.get(subnet)! - tl);
      await sleep(300);
    }
    join.sort((a, b) => a - b);
    leave.sort((a, b) => a - b);
    rows.push(`| ${HOSTS} hosts: start (all at once) until every overlayd runs | ${fmt(allUp)} |`);
    rows.push(`| ${HOSTS} hosts: start until every host has every other's route | ${fmt(meshed)} |`);
    rows.push(`| join: lease written until the route is in, p50 / p99 / max over ${HOSTS} hosts x ${REPS} | ${fmt(percentile(join, 50))} / ${fmt(percentile(join, 99))} / ${fmt(join[join.length - 1]!)} |`);
    rows.push(`| leave: lease deleted until the route is gone, p50 / p99 / max | ${fmt(percentile(leave, 50))} / ${fmt(percentile(leave, 99))} / ${fmt(leave[leave.length - 1]!)} |`);
  } finally {
    await etcd?.stop();
    tb.destroy();
  }
}

/**
 * ETCD_SCALE_SCHED_EXP=<helpers>,<main>: set the scheduling of every thread of `pids`, main
 * threads (tid = pid) and the others (V8's compiler and GC helpers, libuv's pool) apart. Each
 * part: a nice value (-20..19), 'rr' (SCHED_RR 1, chrt), 'slice' (SCHED_OTHER with a 0.1 ms
 * EEVDF slice, sched_setattr; Linux 6.12 on), or empty (left alone). E.g. '19,' or '19,rr'.
 */
function schedExperiment(pids: Iterable<number>, exp: string): void {
  const [helpers = '', main = ''] = exp.split(',');
  const SLICE = 'import ctypes,struct,sys; a=struct.pack("IIQiIQQQ",48,0,0,0,0,100000,0,0); sys.exit(ctypes.CDLL(None).syscall(314,int(sys.argv[1]),ctypes.create_string_buffer(a),0))';
  const apply = (tid: number, how: string): void => {
    if (how === 'rr') spawnSync('chrt', ['-r', '-p', '1', String(tid)]);
    else if (how === 'slice') spawnSync('python3', ['-c', SLICE, String(tid)]);
    else if (how !== '') try { setPriority(tid, Number(how)); } catch { /* gone */ }
  };
  for (const pid of pids) {
    try {
      for (const t of readdirSync(`/proc/${pid}/task`)) apply(Number(t), Number(t) === pid ? main : helpers);
    } catch { /* gone */ }
  }
}

async function manyLeases(n: number): Promise<void> {
  const tb = new Testbed('edb');
  let etcd: TestEtcd | undefined;
  const started: ChildProcess[] = [];
  try {
    const c = await cluster(tb, ['a', 'b'], ['--max-txn-ops', '2000']);
    etcd = c.etcd;
    const [a, b] = c.hosts as [NsHost, NsHost];
    await c.writer.write([[`${PREFIX}/config`, JSON.stringify({ Network: '198.19.0.0/16', SubnetLen: 30, SubnetMin: '198.19.192.0', Backend: { Type: 'vxlan' } })]]);
    const kv = (i: number, gen = 0): [string, string] => { const [k, v] = synthLease(i, gen); return [`${PREFIX}/subnets/${k}`, JSON.stringify(v)]; };
    for (let i = 0; i < n; i += 1000) await c.writer.write(Array.from({ length: Math.min(1000, n - i) }, (_, j) => kv(i + j)));
    const mon = new RouteMonitor(a, tb);
    const perfStart = process.env.ETCD_SCALE_PERF_START;
    const perf0 = perfStart ? spawn('perf', ['record', '-a', '-g', '-F', '999', '-o', perfStart, '--', 'sleep', '3'], { stdio: 'ignore' }) : undefined;
    const perf0Done = perf0 ? new Promise((r) => perf0.on('exit', r)) : undefined;
    if (perf0) await sleep(300);
    const t0 = Date.now();
    const oa = startOverlayd(tb, a, c.url, 'a');
    started.push(oa.child);
    await until(oa.running, 120_000, 'a running');
    const upMs = Date.now() - t0;
    // the time the n-th route was seen coming (ip monitor): polling `ip route show` takes
    // hundreds of ms once 10,000 routes are there, which would be counted too
    await until(() => mon.added.size >= n, 120_000, 'all routes (ip monitor)');
    const routesMs = Math.max(...mon.added.values()) - t0;
    if (onlinkRoutes(a) < n) throw new Error(`ip monitor saw ${mon.added.size} routes, the table has ${onlinkRoutes(a)}`);
    await perf0Done;
    const rss = rssMiB(oa.child.pid!);
    const monB = new RouteMonitor(b, tb);
    const ob = startOverlayd(tb, b, c.url, 'b');
    started.push(ob.child);
    await until(ob.running, 60_000, 'b running');
    // b's kernel routes too: their installation (the kernel's work, ~1 s at 10,000) would
    // otherwise still be running during the measurements below
    await until(() => monB.added.size >= n, 120_000, 'b has all routes');
    // b's flannel.1 carries its subnet's network address
    const bAddr = parseEnvFile(readFileSync(join(dir, 'b', 'subnet.env'), 'utf8')).FLANNEL_SUBNET!.replace(/\.\d+\/\d+$/, (m) => `.${Number(m.slice(1).split('/')[0]) - 1}`);
    const pingB = (): boolean => { try { a.exec('ping', ['-c', '1', '-W', '1', bAddr]); return true; } catch { return false; } };
    await until(pingB, 30_000, 'a -> b');
    // ETCD_SCALE_SCHED_EXP (diagnosis): scheduling of every thread of a's and b's overlayd
    const exp = process.env.ETCD_SCALE_SCHED_EXP;
    if (exp) schedExperiment(treeOf([oa.child.pid!, ob.child.pid!]), exp);
    // one new lease: written until a's route for it is in
    const one = kv(n + 1);
    const subnet = one[0].slice(PREFIX.length + 9).replace('-', '/');
    const t1 = await c.writer.write([one]);
    await until(() => mon.added.has(subnet), 30_000, 'one change');
    const oneMs = mon.added.get(subnet)! - t1;
    // control: etcd writes 1,000 keys nobody watches in one transaction (etcd's own cost on
    // these 2 vCPUs, which the ping also feels), then the same with 1,000 leases
    const ctl = await pingDuring(a, bAddr, 400, 1000, async () => {
      await c.writer.write(Array.from({ length: 1000 }, (_, i) => [`/control/k${i}`, kv(i, 1)[1]] as [string, string]));
    });
    // 1,000 leases change at once (one transaction) while a pings b every 10 ms
    const perfOut = process.env.ETCD_SCALE_PERF;
    const schedOut = process.env.ETCD_SCALE_SCHED;
    const perf = perfOut ? spawn('perf', ['record', '-a', '-F', '999', '-o', perfOut, '--', 'sleep', '2.5'], { stdio: 'ignore' })
      : schedOut ? spawn('perf', ['sched', 'record', '-o', `${schedOut}.${n}`, '--', 'sleep', '2.5'], { stdio: 'ignore' }) : undefined;
    if (schedOut) console.error(`${n} leases: pids a ${[...treeOf([oa.child.pid!])].join(',')} b ${[...treeOf([ob.child.pid!])].join(',')} etcd ${pidsOf('etcd', etcd.dir).join(',')}`);
    const perfDone = perf ? new Promise((r) => perf.on('exit', r)) : undefined;
    // CPU and run-queue wait of a's and b's overlayd (all their processes) and of etcd over the change
    const trees = [[oa.child.pid!], [ob.child.pid!], pidsOf('etcd', etcd.dir)];
    let s0: ReturnType<typeof schedMs>[] = [];
    let s1: ReturnType<typeof schedMs>[] = [];
    const p = await pingDuring(a, bAddr, 400, 1000, async () => {
      s0 = trees.map(schedMs);
      await c.writer.write(Array.from({ length: Math.min(1000, n) }, (_, i) => kv(i, 1)));
      await sleep(500);
      s1 = trees.map(schedMs);
    });
    const d = s1.map((x, i) => ({ cpu: x.cpu - s0[i]!.cpu, wait: x.wait - s0[i]!.wait, mainCpu: x.mainCpu - s0[i]!.mainCpu, mainWait: x.mainWait - s0[i]!.mainWait }));
    await perfDone;
    rows.push(`| ${n} leases: start until running (lease acquired, all ${n} applied) | ${fmt(upMs)} |`);
    rows.push(`| ${n} leases: start until the kernel has all ${n} routes | ${fmt(routesMs)} |`);
    rows.push(`| ${n} leases: RSS | ${rss.toFixed(0)} MiB |`);
    rows.push(`| ${n} leases: one new lease written until a's route for it is in | ${fmt(oneMs)} |`);
    rows.push(`| ${n} leases: control, 1,000 keys outside the prefix written in one transaction, pings every 10 ms: loss / avg / max RTT (2nd longest; replies over 10 ms) | ${ctl.lossPct}% / ${ctl.avgMs} / ${ctl.maxMs} ms (${ctl.secondMs}; ${ctl.over10}) |`);
    rows.push(`| ${n} leases: 1,000 changed in one transaction, pings every 10 ms: loss / avg / max RTT (2nd longest; replies over 10 ms) | ${p.lossPct}% / ${p.avgMs} / ${p.maxMs} ms (${p.secondMs}; ${p.over10}) |`);
    rows.push(`| ${n} leases: the same 0.5 s from the write: CPU of overlayd a / b / etcd (run-queue wait a / b / etcd) | ${d.map((x) => x.cpu.toFixed(0)).join(' / ')} ms (${d.map((x) => x.wait.toFixed(0)).join(' / ')} ms) |`);
    rows.push(`| ${n} leases: the same, main threads only (a: supervisor, packet process (forwards), standby; b: the same; etcd: its first thread) | ${d.map((x) => x.mainCpu.toFixed(0)).join(' / ')} ms (${d.map((x) => x.mainWait.toFixed(0)).join(' / ')} ms) |`);
  } finally {
    // SIGTERM first (a --cpu-prof in ETCD_SCALE_NODE_ARGS is written at exit), then the testbed's SIGKILL
    await Promise.all(started.map((ch) => new Promise<void>((r) => {
      if (ch.exitCode !== null) return r();
      const t = setTimeout(r, 5000);
      ch.once('exit', () => { clearTimeout(t); r(); });
      ch.kill('SIGTERM');
    })));
    await etcd?.stop();
    tb.destroy();
  }
}

try {
  if (HOSTS > 0) await propagation();
  for (const n of LEASES) await manyLeases(n);
  const entry = findOverlayd()!;
  console.log(`overlayd in etcd mode (VXLAN, mmsg, ${entry.kind}), etcd ${'3.4'} in a hub namespace, 2 vCPU, ${new Date().toISOString()}:`);
  console.log('| measure | value |');
  console.log('|---|---:|');
  for (const r of rows) console.log(r);
} finally {
  if (process.env.ETCD_SCALE_NODE_ARGS) console.log(`overlayd stdout kept in ${dir}`);
  else rmSync(dir, { recursive: true, force: true });
}
