/** Helpers for the namespace interop tests: dataplane child processes, kernel flannel.1 setup, ping and TCP checks. */
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import type { ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, expect } from 'vitest';
import type { NsHost, Testbed } from '../helpers/netns.js';
import type { DataplaneStats, Lease } from '../../src/vtep/index.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');

/** A dataplane running as a child process inside a namespace. */
export class HostProc {
  lease!: Lease;
  private nextId = 1;
  private waiters = new Map<number, (v: Record<string, unknown>) => void>();
  readonly events: Record<string, unknown>[] = [];
  stderr = '';

  private constructor(readonly child: ChildProcess) {}

  static async start(tb: Testbed, host: NsHost, opts: Record<string, unknown>): Promise<HostProc> {
    const child = tb.track(host.spawn('node', ['--expose-gc', '--import', 'tsx', join(here, 'host.ts'), JSON.stringify(opts)], { cwd: root }));
    const hp = new HostProc(child);
    child.stderr!.on('data', (d: Buffer) => { hp.stderr += d.toString(); });
    const rl = createInterface({ input: child.stdout! });
    const ready = new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`dataplane did not start: ${hp.stderr}`)), 30_000);
      child.on('exit', (code) => { clearTimeout(t); reject(new Error(`dataplane exited ${code}: ${hp.stderr} ${JSON.stringify(hp.events)}`)); });
      rl.on('line', (line) => {
        let m: Record<string, unknown>;
        try { m = JSON.parse(line) as Record<string, unknown>; } catch { return; }
        hp.events.push(m);
        if (m.event === 'ready') { hp.lease = m.lease as Lease; clearTimeout(t); resolve(); }
        if (m.event === 'fatal') { clearTimeout(t); reject(new Error(String(m.message))); }
        const id = m.id as number | undefined;
        if (id !== undefined) { hp.waiters.get(id)?.(m); hp.waiters.delete(id); }
      });
    });
    await ready;
    return hp;
  }

  /** Send a command and wait for its answer. */
  cmd(c: Record<string, unknown>): Promise<Record<string, unknown>> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`command ${JSON.stringify(c)} timed out`)), 10_000);
      this.waiters.set(id, (m) => { clearTimeout(t); if (m.event === 'error') reject(new Error(String(m.message))); else resolve(m); });
      this.child.stdin!.write(JSON.stringify({ id, ...c }) + '\n');
    });
  }

  addPeer(lease: Lease): Promise<Record<string, unknown>> { return this.cmd({ cmd: 'addPeer', lease }); }
  async stats(): Promise<{ stats: DataplaneStats & Record<string, unknown>; rss: number; heap: number }> {
    const m = await this.cmd({ cmd: 'stats' });
    return m as unknown as { stats: DataplaneStats & Record<string, unknown>; rss: number; heap: number };
  }
  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise<void>((r) => this.child.once('exit', () => r()));
    await this.cmd({ cmd: 'stop' }).catch(() => undefined);
    await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
  }
}

/** Kernel VXLAN device configured exactly as flannel configures flannel.<VNI>. */
export interface KernelVtep {
  dev: string;
  mac: string;
  lease: Lease;
}

/**
 * Create a kernel vxlan device the way flannel does: `ip link add flannel.N type vxlan id N
 * local <publicIp> dev <underlay> dstport <port> nolearning`, MTU underlay-50, our MAC,
 * (an IPv6 publicIp: flannel-v6.N, MTU underlay-70, as flannel's IPv6 device),
 * <subnet addr>/32 (an IPv6 subnet: /128), up, at the kernel's default offload settings (partial checksums, 64 KB
 * super-packets over veth); `txOff: true` turns TX checksum offload off (see txChecksumOff).
 */
export function kernelVxlan(h: NsHost, o: { subnet: string; publicIp: string; underlay: string; vni?: number; port?: number; mtu?: number; mac: string; gbp?: boolean; dev?: string; learning?: boolean; txOff?: boolean }): KernelVtep {
  const vni = o.vni ?? 1;
  const v6 = o.publicIp.includes(':');
  const dev = o.dev ?? `flannel${v6 ? '-v6' : ''}.${vni}`;
  const args = ['link', 'add', dev, 'type', 'vxlan', 'id', String(vni), 'local', o.publicIp, 'dev', o.underlay, 'dstport', String(o.port ?? 8472), o.learning ? 'learning' : 'nolearning'];
  if (o.gbp) args.push('gbp');
  h.ip(...args);
  h.ip('link', 'set', dev, 'mtu', String((o.mtu ?? 1500) - (v6 ? 70 : 50)), 'address', o.mac);
  // an IPv6 subnet (flannel-v6.<VNI> of an IPv6 network): its address /128, as flanneld puts it there
  const gw = o.subnet.split('/')[0]!;
  if (gw.includes(':')) h.ip('-6', 'addr', 'add', `${gw}/128`, 'dev', dev, 'nodad');
  else h.ip('addr', 'add', `${gw}/32`, 'dev', dev);
  h.ip('link', 'set', dev, 'up');
  if (o.txOff === true) txChecksumOff(h, dev); // default: the kernel's own offloads (partial checksums, GSO), as flannel leaves them
  return { dev, mac: o.mac, lease: { subnet: o.subnet, publicIp: o.publicIp, backendType: 'vxlan', vni, vtepMac: o.mac } };
}

/**
 * Turn off TX checksum offload on a kernel device. Over veth the kernel hands packets
 * with CHECKSUM_PARTIAL (inner TCP checksum not yet filled in; a NIC would fill it) to
 * our UDP socket, which cannot see that state; a real NIC, or this, completes it.
 */
export function txChecksumOff(h: NsHost, dev: string): void {
  try {
    h.exec('ethtool', ['-K', dev, 'tx', 'off']);
  } catch {
    h.exec('python3', [join(here, 'txoff.py'), dev]);
  }
}

/** flannel's per-peer entries on a kernel VTEP: route via X onlink, permanent neighbour, bridge fdb dst. */
export function kernelAddPeer(h: NsHost, dev: string, peer: Lease, opts: { neigh?: boolean } = {}): void {
  const gw = peer.subnet.split('/')[0]!;
  h.ip('route', 'replace', peer.subnet, 'via', gw, 'dev', dev, 'onlink');
  if (opts.neigh !== false) h.ip('neigh', 'replace', gw, 'lladdr', peer.vtepMac!, 'dev', dev, 'nud', 'permanent');
  h.exec('bridge', ['fdb', 'replace', peer.vtepMac!, 'dev', dev, 'dst', peer.publicIp]);
}

/** Ping `dst` from `h` with `size` payload bytes and DF set; true when all replies came. */
export function ping(h: NsHost, dst: string, size: number, count = 2): boolean {
  try {
    const out = h.exec('ping', ['-c', String(count), '-i', '0.2', '-W', '2', '-M', 'do', '-s', String(size), dst], { timeout: 15_000 });
    return new RegExp(`${count} received`).test(out);
  } catch {
    return false;
  }
}

/** Send `bytes` random bytes over TCP from `client` to `server` (listening on serverIp), paced at `rate` bytes/s when above 0; returns both sides' size and SHA-256. */
export async function tcpTransfer(tb: Testbed, server: NsHost, serverIp: string, client: NsHost, bytes: number, port = 5001, timeoutMs = 120_000, rate = 0): Promise<{ server: { bytes: number; sha256: string }; client: { bytes: number; sha256: string }; ms: number }> {
  const tool = join(here, 'tcp.ts');
  const lineOf = (c: ChildProcess, pred: (m: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> => new Promise((resolve, reject) => {
    let err = '';
    c.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
    const rl = createInterface({ input: c.stdout! });
    rl.on('line', (l) => { try { const m = JSON.parse(l) as Record<string, unknown>; if (pred(m)) resolve(m); } catch { /* ignore */ } });
    c.on('exit', (code) => reject(new Error(`tcp tool exited ${code}: ${err}`)));
  });
  const srv = tb.track(server.spawn('node', ['--import', 'tsx', tool, 'server', serverIp, String(port)], { cwd: root }));
  const srvDone = lineOf(srv, (m) => 'bytes' in m || 'error' in m);
  const listening = new Promise<void>((resolve, reject) => {
    const rl = createInterface({ input: srv.stdout! });
    rl.on('line', (l) => { if (l.includes('listening')) resolve(); });
    srv.on('exit', () => reject(new Error('server exited')));
  });
  await listening;
  const t0 = Date.now();
  const cli = tb.track(client.spawn('node', ['--import', 'tsx', tool, 'client', serverIp, String(port), String(bytes), ...(rate > 0 ? [String(rate)] : [])], { cwd: root }));
  const cliDone = lineOf(cli, (m) => 'bytes' in m || 'error' in m);
  const timer = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('TCP transfer timed out')), timeoutMs));
  try {
    const [s, c] = await Promise.race([Promise.all([srvDone, cliDone]), timer]);
    return { server: s as { bytes: number; sha256: string }, client: c as { bytes: number; sha256: string }, ms: Date.now() - t0 };
  } finally {
    for (const p of [srv, cli]) if (p.exitCode === null) p.kill('SIGKILL');
  }
}

/**
 * `bytes` over TCP from `a` to `b` (listening on `bIp`, port `port`) and back from `b` to `a`
 * (`aIp`, port `port + 1`), each checked intact (size and SHA-256); both results.
 */
export async function tcpBothWays(tb: Testbed, a: NsHost, aIp: string, b: NsHost, bIp: string, bytes: number, port: number): Promise<{ ab: { ms: number }; ba: { ms: number } }> {
  const ab = await tcpTransfer(tb, b, bIp, a, bytes, port);
  const ba = await tcpTransfer(tb, a, aIp, b, bytes, port + 1);
  for (const r of [ab, ba]) {
    expect(r.server.bytes).toBe(bytes);
    expect(r.server.sha256).toBe(r.client.sha256);
  }
  return { ab, ba };
}

/**
 * Send `count` datagrams of `size` bytes in bursts of `burst` from `client` to `serverIp`:`port`
 * (test/vtep/udp-burst.ts); returns what the server received: total, content-valid, duplicates, sizes.
 */
export async function udpBurst(tb: Testbed, server: NsHost, serverIp: string, client: NsHost, count: number, size: number, burst: number, port = 6001): Promise<{ received: number; valid: number; dups: number; sizes: Record<string, number> }> {
  const tool = join(here, 'udp-burst.ts');
  const srv = tb.track(server.spawn('node', ['--import', 'tsx', tool, 'server', serverIp, String(port), String(count)], { cwd: root }));
  const result = new Promise<Record<string, unknown>>((resolve, reject) => {
    let err = '';
    srv.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
    const rl = createInterface({ input: srv.stdout! });
    let listening: (() => void) | undefined;
    const ready = new Promise<void>((r) => { listening = r; });
    rl.on('line', (l) => {
      const m = JSON.parse(l) as Record<string, unknown>;
      if (m.listening) listening!();
      else resolve(m);
    });
    srv.on('exit', (code) => reject(new Error(`udp server exited ${code}: ${err}`)));
    void ready.then(() => {
      const cli = tb.track(client.spawn('node', ['--import', 'tsx', tool, 'client', serverIp, String(port), String(count), String(size), String(burst)], { cwd: root }));
      cli.on('exit', (code) => { if (code !== 0) reject(new Error(`udp client exited ${code}`)); });
    });
  });
  const timer = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('UDP burst timed out')), 30_000));
  try {
    return await Promise.race([result, timer]) as { received: number; valid: number; dups: number; sizes: Record<string, number> };
  } finally {
    if (srv.exitCode === null) srv.kill('SIGKILL');
  }
}

/**
 * Flood `target`:8472 from `h` (source address `bind`, IPv4 or IPv6) for `ms` with test/vtep/flood.ts's
 * mix of garbage, truncated, wrong-VNI, bad-flag and inner-spoofed VXLAN datagrams (VNI 1, inner
 * destination 198.19.1.0); resolves with the number sent.
 */
export function floodVtep(tb: Testbed, h: NsHost, target: string, bind: string, ms: number): Promise<number> {
  const c = tb.track(h.spawn('node', ['--import', 'tsx', join(here, 'flood.ts'), target, '8472', String(ms), bind, '1', '198.19.1.0'], { cwd: root }));
  return new Promise((resolve, reject) => {
    createInterface({ input: c.stdout! }).on('line', (l) => { try { resolve((JSON.parse(l) as { sent: number }).sent); } catch { /* ignore */ } });
    c.on('exit', (code) => { if (code !== 0) reject(new Error(`flood exited ${code}`)); });
  });
}

/** Host a runs one of ours, host b a kernel flannel.N; each has the other as its peer. */
export interface OursAndKernel {
  a: NsHost;
  b: NsHost;
  ours: HostProc;
  kernel: KernelVtep;
}

/**
 * The common two-host interop bed: `a` (198.18.0.1, lease 198.19.1.0/24) runs our L3 VXLAN VTEP
 * with `opts` over the defaults, `b` (198.18.0.2, 198.19.2.0/24) a kernel VXLAN device set up as
 * flannel does (`kernelOpts` over the defaults), one veth `u0` between them, peers added both ways.
 */
export async function oursAndKernel(tb: Testbed, opts: Record<string, unknown> = {}, kernelOpts: Partial<Parameters<typeof kernelVxlan>[1]> = {}): Promise<OursAndKernel> {
  const a = tb.host('a');
  const b = tb.host('b');
  tb.link(a, 'u0', '198.18.0.1/24', b, 'u0', '198.18.0.2/24');
  const ours = await HostProc.start(tb, a, {
    kind: 'vxlan', mode: 'l3', subnet: '198.19.1.0/24', network: '198.19.0.0/16', publicIp: '198.18.0.1',
    vtepMac: '02:00:00:00:01:01', transport: 'mmsg', ...opts,
  });
  const kernel = kernelVxlan(b, { subnet: '198.19.2.0/24', publicIp: '198.18.0.2', underlay: 'u0', mac: '02:00:00:00:02:02', ...kernelOpts });
  await ours.addPeer(kernel.lease);
  kernelAddPeer(b, kernel.dev, ours.lease);
  return { a, b, ours, kernel };
}

/** Underlay IPv6 addresses of hosts a and b in the IPv6-underlay tests. */
export const A6 = '2001:2:0:1::1';
export const B6 = '2001:2:0:1::2';

/** Hosts a and b on one veth `u0`, with IPv4 and IPv6 (A6, B6; no DAD: usable at once) underlay addresses. */
export function v6Pair(tb: Testbed): [NsHost, NsHost] {
  const a = tb.host('a');
  const b = tb.host('b');
  tb.link(a, 'u0', '198.18.0.1/24', b, 'u0', '198.18.0.2/24');
  a.ip('addr', 'add', `${A6}/64`, 'dev', 'u0', 'nodad');
  b.ip('addr', 'add', `${B6}/64`, 'dev', 'u0', 'nodad');
  return [a, b];
}

/**
 * For the calling describe block: hosts a and b of {@link v6Pair}, each running one of ours with
 * `opts(i, host)` (i 0: a, 1: b; called once the host exists), each the other's peer; everything
 * stopped and the namespaces deleted after it. The arrays fill in its beforeAll.
 */
export function ourPair(tb: Testbed, opts: (i: 0 | 1, h: NsHost) => Record<string, unknown>): { h: NsHost[]; procs: HostProc[] } {
  const bed = { h: [] as NsHost[], procs: [] as HostProc[] };
  beforeAll(async () => {
    bed.h.push(...v6Pair(tb));
    for (const i of [0, 1] as const) bed.procs.push(await HostProc.start(tb, bed.h[i]!, opts(i, bed.h[i]!)));
    await bed.procs[0]!.addPeer(bed.procs[1]!.lease);
    await bed.procs[1]!.addPeer(bed.procs[0]!.lease);
  });
  afterAll(async () => {
    for (const p of bed.procs) await p.stop().catch(() => undefined);
    tb.destroy();
  });
  return bed;
}
