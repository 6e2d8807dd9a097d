/** Helpers for spawning the overlayd CLI inside test namespaces. */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { join, resolve } from 'node:path';
import { renameSync, writeFileSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import type { NsHost, Testbed } from '../helpers/netns.js';
import { expect } from 'vitest';
import { ConfigError, stableVtepMac } from '../../src/overlayd/index.js';

/** Repository root. */
export const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
/** The CLI entry point, run from source. */
export const MAIN = resolve(ROOT, 'src/overlayd/main.ts');
/** The fake backend module for --backend-module. */
export const FAKE = resolve(ROOT, 'test/overlayd/fixtures/fake-backend.ts');

/** Command prefix running overlayd from source with node + tsx. */
export const NODE_ARGS = ['--import', 'tsx', MAIN];

/** The one-line ConfigError message `f` throws (a test failure when it throws nothing or anything else). */
export function configErrorOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    const m = (e as Error).message;
    expect(m).not.toContain('\n');
    return m;
  }
  throw new Error('expected a ConfigError');
}

/** Result of a finished overlayd run. */
export interface RunResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Run overlayd to completion inside `host` (optionally wrapped, e.g. by setpriv). */
export function runOverlayd(host: NsHost, args: string[], opts: { wrap?: string[]; env?: NodeJS.ProcessEnv; timeout?: number } = {}): RunResult {
  const cmd = [...(opts.wrap ?? []), process.execPath, ...NODE_ARGS, ...args];
  const r = spawnSync('ip', ['netns', 'exec', host.name, ...cmd], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, ...opts.env }, timeout: opts.timeout ?? 30_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A running overlayd with its output collected. */
export interface Daemon {
  child: ChildProcess;
  out: () => string;
  err: () => string;
  /** Resolves with the exit code, or the signal's name when killed by one. */
  exited: Promise<number | string | null>;
  /** Wait until stderr (or stdout) matches. */
  waitFor(re: RegExp, ms?: number, stream?: 'out' | 'err'): Promise<string>;
}

/** Start overlayd in `host` in the background. */
export function startOverlayd(host: NsHost, args: string[], env: NodeJS.ProcessEnv = {}, opts: { detached?: boolean } = {}): Daemon {
  const child = spawn('ip', ['netns', 'exec', host.name, process.execPath, ...NODE_ARGS, ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: opts.detached === true });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  const exited = new Promise<number | string | null>((r) => child.on('exit', (code, sig) => r(code ?? sig)));
  const waitFor = async (re: RegExp, ms = 20_000, stream: 'out' | 'err' = 'err'): Promise<string> => {
    const end = Date.now() + ms;
    for (;;) {
      const text = stream === 'out' ? out : err;
      const m = re.exec(text);
      if (m) return m[0];
      if (child.exitCode !== null) throw new Error(`overlayd exited (${child.exitCode}) before ${re}: ${err}`);
      if (Date.now() > end) throw new Error(`timed out waiting for ${re}; stderr:\n${err}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  return { child, out: () => out, err: () => err, exited, waitFor };
}

/** Snapshot of a namespace's kernel state that overlayd could touch: links and routes. */
export function nsState(host: NsHost): string {
  const links = host.ip('-br', 'link').split('\n').map((l) => l.split(/\s+/)[0]).filter(Boolean).sort().join(' ');
  // IPv4 only: IPv6 link-local routes appear asynchronously after a link comes up.
  return `links: ${links}\nroutes:\n${host.ip('-4', 'route', 'show', 'table', 'all')}`;
}

/** Ping `dst` from `host` with source address `src` (an overlay gateway), `count` times 0.2 s apart; true when all answered. */
export function pingFrom(host: NsHost, src: string, dst: string, count = 1): boolean {
  try {
    host.exec('ping', ['-n', '-q', '-c', String(count), '-i', '0.2', '-W', '1', '-I', src, dst]);
    return true;
  } catch {
    return false;
  }
}

/** Sleep. */
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A host of the two-host VXLAN beds (ownership, underlay tests): underlay IP, pod gateway, subnet, peers file, its overlayd. */
export interface BedHost { ns: NsHost; ip: string; gw: string; subnet: string; peers: string; d?: Daemon }

/** Hosts a (198.18.0.1, 198.19.1.0/24) and b (198.18.0.2, 198.19.2.0/24), not built yet (see {@link buildBed}); files in `dir`. */
export function bedHosts(dir: string): { a: BedHost; b: BedHost; conf: string } {
  const host = (n: number, name: string): BedHost => ({ ns: undefined as unknown as NsHost, ip: `198.18.0.${n}`, gw: `198.19.${n}.1`, subnet: `198.19.${n}.0/24`, peers: join(dir, `${name}-peers.json`) });
  return { a: host(1, 'a'), b: host(2, 'b'), conf: join(dir, 'net-conf.json') };
}

/** Write `h`'s peers file (atomically: a rename) with VXLAN leases (VNI 1, stable VTEP MAC) of `of`. */
export function writeVxlanPeers(h: BedHost, of: readonly { ip: string; subnet: string }[]): void {
  const obj: Record<string, unknown> = {};
  for (const p of of) obj[p.subnet.replace('/', '-')] = { PublicIP: p.ip, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: stableVtepMac(p.subnet) } };
  writeFileSync(h.peers + '.tmp', JSON.stringify(obj));
  renameSync(h.peers + '.tmp', h.peers);
}

/** Build the bed: the VXLAN net-conf, the namespaces linked by eth0, a cni0 bridge with the gateway in each, peers files listing both. */
export function buildBed(tb: Testbed, a: BedHost, b: BedHost, conf: string): void {
  writeFileSync(conf, JSON.stringify({ Network: '198.19.0.0/16', Backend: { Type: 'vxlan' } }));
  a.ns = tb.host('a');
  b.ns = tb.host('b');
  tb.link(a.ns, 'eth0', `${a.ip}/24`, b.ns, 'eth0', `${b.ip}/24`);
  for (const h of [a, b]) {
    h.ns.ip('link', 'add', 'cni0', 'type', 'bridge');
    h.ns.ip('addr', 'add', `${h.gw}/24`, 'dev', 'cni0');
    h.ns.ip('link', 'set', 'cni0', 'up');
    writeVxlanPeers(h, [a, b]);
  }
}

/**
 * Send `bytes` random bytes over TCP from `src` (an address on `from`) to `dst` port `port` on `to`
 * (a node server in `to`); resolves with what the server received ("<length> <sha256>") and the
 * expected line, for the caller to compare.
 */
export async function tcpTransfer(from: NsHost, src: string, to: NsHost, dst: string, opts: { bytes?: number; port?: number; dir: string }): Promise<{ got: string; want: string }> {
  const data = randomBytes(opts.bytes ?? 1 << 20);
  const port = opts.port ?? 5301;
  const file = join(opts.dir, `payload-${port}.bin`);
  writeFileSync(file, data);
  const server = `const h=require('crypto').createHash('sha256');let n=0;require('net').createServer(s=>{s.on('data',d=>{h.update(d);n+=d.length});s.on('end',()=>{console.log(n+' '+h.digest('hex'));process.exit(0)})}).listen(${port},'${dst}',()=>console.log('ready'))`;
  const srv = to.spawn(process.execPath, ['-e', server]);
  let out = '';
  srv.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  const exited = new Promise<void>((r) => srv.on('exit', () => r()));
  try {
    const end = Date.now() + 10_000;
    while (!out.includes('ready')) {
      if (Date.now() > end || srv.exitCode !== null) throw new Error('TCP server did not start');
      await sleep(50);
    }
    from.exec(process.execPath, ['-e', `const s=require('net').connect({port:${port},host:'${dst}',localAddress:'${src}'},()=>s.end(require('fs').readFileSync('${file}')));s.on('error',e=>{console.error(e.message);process.exit(1)})`], { timeout: 30_000 });
    await Promise.race([exited, sleep(20_000)]);
    return { got: out.replace('ready\n', '').trim(), want: `${data.length} ${createHash('sha256').update(data).digest('hex')}` };
  } finally {
    srv.kill('SIGKILL');
  }
}

/** GET http://127.0.0.1:PORT/PATH from inside a namespace; the body. */
export function fetchIn(host: NsHost, port: number, path: string): string {
  return host.exec(process.execPath, ['-e', `fetch('http://127.0.0.1:${port}${path}').then(r=>r.text()).then(t=>process.stdout.write(t),e=>{console.error(String(e));process.exit(1)})`], { timeout: 10_000 });
}

/** A host of {@link twoSegments}: its namespace, underlay address and overlay subnet/gateway (198.19.N.0/24, .1). */
export interface SegHost { n: number; ns: NsHost; ip: string; subnet: string; gw: string }

/**
 * Two underlay segments joined by a router: hosts 1..`near` on a bridge (198.18.0.N/24, dev eth0),
 * the bridge's namespace (`hub`, 198.18.0.254) routing to a second segment 198.18.1.0/24 where host
 * `near + 1` lives (198.18.1.(near+1), dev eth0, default via 198.18.1.254). The near hosts route
 * 198.18.1.0/24 via the hub, so the far host is reachable from them but not on their segment.
 * Every host gets a "cni0" bridge holding its overlay gateway address.
 */
export function twoSegments(tb: { host(s: string): NsHost; lan(h: { host: NsHost; dev: string; cidr: string }[]): NsHost; link(a: NsHost, ad: string, ac: string, b: NsHost, bd: string, bc: string): void }, near: number): { hosts: SegHost[]; far: SegHost; hub: NsHost } {
  const mk = (n: number, ip: string): SegHost => ({ n, ns: tb.host(`h${n}`), ip, subnet: `198.19.${n}.0/24`, gw: `198.19.${n}.1` });
  const hosts: SegHost[] = [];
  for (let n = 1; n <= near; n++) hosts.push(mk(n, `198.18.0.${n}`));
  const far = mk(near + 1, `198.18.1.${near + 1}`);
  const hub = tb.lan(hosts.map((h) => ({ host: h.ns, dev: 'eth0', cidr: `${h.ip}/24` })));
  hub.ip('addr', 'add', '198.18.0.254/24', 'dev', 'br0');
  tb.link(hub, 'seg1', '198.18.1.254/24', far.ns, 'eth0', `${far.ip}/24`);
  hub.exec('sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
  far.ns.ip('route', 'add', 'default', 'via', '198.18.1.254');
  for (const h of hosts) h.ns.ip('route', 'add', '198.18.1.0/24', 'via', '198.18.0.254');
  for (const h of [...hosts, far]) {
    h.ns.ip('link', 'add', 'cni0', 'type', 'bridge');
    h.ns.ip('addr', 'add', `${h.gw}/24`, 'dev', 'cni0');
    h.ns.ip('link', 'set', 'cni0', 'up');
  }
  return { hosts, far, hub };
}

/** The kernel route to `to`'s overlay subnet in `from` (`ip route show <subnet>`), trimmed; '' when none. */
export function routeTo(from: SegHost, to: SegHost): string {
  return from.ns.ip('route', 'show', to.subnet).trim();
}

/** A host-gw / direct route to `to`: `<subnet> via <public IP> dev eth0`, as `ip route` prints it. */
export function viaPublicIp(to: SegHost): RegExp {
  const esc = (s: string): string => s.replace(/[./]/g, (c) => `\\${c}`);
  return new RegExp(`^${esc(to.subnet)} via ${esc(to.ip)} dev eth0( |$)`);
}

// ---- dual-stack beds (issue #15): hosts N on one LAN, underlay 198.18.0.N/24 + 2001:2:0:1::N/64,
// overlay 198.19.N.0/24 + 2001:2:0:800N::/64

/** IPv6Network of these tests (inside 2001:2::/48), its /64 subnets 2001:2:0:800N::/64. */
export const NET6 = '2001:2:0:8000::/49';
export const sub4 = (n: number): string => `198.19.${n}.0/24`;
export const sub6 = (n: number): string => `2001:2:0:800${n}::/64`;
export const gw4 = (n: number): string => `198.19.${n}.1`;
export const gw6 = (n: number): string => `2001:2:0:800${n}::1`;
export const pub4 = (n: number): string => `198.18.0.${n}`;
export const pub6 = (n: number): string => `2001:2:0:1::${n}`;
/** A kernel host's VTEP MACs (IPv4 and IPv6 devices). */
export const kmac = (n: number, v6: boolean): string => `02:00:00:00:0${v6 ? 6 : 4}:0${n}`;

/** Host N: its namespace with eth0 on the LAN (both families), a cni0 bridge holding the gateways of `families`. */
export interface DualHost { n: number; ns: NsHost; d?: Daemon }

/** A flannel lease value (peers file / etcd) of host n: dual stack, or IPv6 only (`only6`). */
export function leaseEntry(type: 'vxlan' | 'udp', n: number, kernel: boolean, only6 = false): [string, Record<string, unknown>] {
  const mac4 = kernel ? kmac(n, false) : stableVtepMac(sub4(n));
  const mac6 = kernel ? kmac(n, true) : stableVtepMac(sub6(n));
  if (only6) return [`0.0.0.0-0&${sub6(n).replace('/', '-')}`, { PublicIP: '0.0.0.0', PublicIPv6: pub6(n), BackendType: type, ...(type === 'vxlan' ? { BackendV6Data: { VNI: 1, VtepMAC: mac6 } } : {}) }];
  const v: Record<string, unknown> = { PublicIP: pub4(n), PublicIPv6: pub6(n), BackendType: type };
  if (type === 'vxlan') Object.assign(v, { BackendData: { VNI: 1, VtepMAC: mac4 }, BackendV6Data: { VNI: 1, VtepMAC: mac6 } });
  return [`${sub4(n).replace('/', '-')}&${sub6(n).replace('/', '-')}`, v];
}

/** n hosts on one LAN (IPv4 and IPv6 underlay, no DAD), each with a cni0 bridge holding its gateways. */
export function dualHosts(tb: Testbed, ns: number[], v4 = true): DualHost[] {
  const hs = ns.map((n) => ({ n, ns: tb.host(`h${n}`) }));
  tb.lan(hs.map((h) => ({ host: h.ns, dev: 'eth0', cidr: `${pub4(h.n)}/24` })));
  for (const h of hs) {
    h.ns.ip('addr', 'add', `${pub6(h.n)}/64`, 'dev', 'eth0', 'nodad');
    h.ns.ip('link', 'add', 'cni0', 'type', 'bridge');
    if (v4) h.ns.ip('addr', 'add', `${gw4(h.n)}/24`, 'dev', 'cni0');
    h.ns.ip('addr', 'add', `${gw6(h.n)}/64`, 'dev', 'cni0', 'nodad');
    h.ns.ip('link', 'set', 'cni0', 'up');
  }
  return hs;
}

/**
 * The kernel host as flanneld sets up dual stack (pkg/backend/vxlan): flannel.1 over the IPv4
 * underlay with <subnet>/32, flannel-v6.1 over the IPv6 underlay with <IPv6 subnet>/128 (MTU
 * underlay - 70), and for each peer: route <subnet> via <subnet addr> onlink, a permanent
 * neighbour, an FDB entry to its public address, per family.
 */
export function kernelDual(h: DualHost, peers: number[], v4 = true): void {
  const k = h.ns;
  const dev = (v6: boolean): string => (v6 ? 'flannel-v6.1' : 'flannel.1');
  for (const v6 of v4 ? [false, true] : [true]) {
    k.ip('link', 'add', dev(v6), 'type', 'vxlan', 'id', '1', 'local', v6 ? pub6(h.n) : pub4(h.n), 'dev', 'eth0', 'dstport', '8472', 'nolearning');
    k.ip('link', 'set', dev(v6), 'mtu', v6 ? '1430' : '1450', 'address', kmac(h.n, v6));
    k.ip('addr', 'add', v6 ? `${sub6(h.n).split('/')[0]}/128` : `${sub4(h.n).split('/')[0]}/32`, 'dev', dev(v6), ...(v6 ? ['nodad'] : []));
    k.ip('link', 'set', dev(v6), 'up');
    for (const p of peers) {
      const subnet = v6 ? sub6(p) : sub4(p);
      const addr = subnet.split('/')[0]!;
      const mac = stableVtepMac(subnet);
      k.ip('route', 'replace', subnet, 'via', addr, 'dev', dev(v6), 'onlink');
      k.ip('neigh', 'replace', addr, 'lladdr', mac, 'dev', dev(v6), 'nud', 'permanent');
      k.exec('bridge', ['fdb', 'replace', mac, 'dev', dev(v6), 'dst', v6 ? pub6(p) : pub4(p)]);
    }
  }
}

/** Ping from `from`'s gateway `src` to `dst` with `size` payload bytes, DF set; true when all answered. */
export function pingDf(from: DualHost, src: string, dst: string, size: number, count = 2): boolean {
  try {
    const out = from.ns.exec('ping', ['-n', '-c', String(count), '-i', '0.2', '-W', '2', '-M', 'do', '-s', String(size), '-I', src, dst], { timeout: 15_000 });
    return new RegExp(`${count} received`).test(out);
  } catch {
    return false;
  }
}

/** Wait until a ping `src` -> `dst` gets through (peers applied, neighbours resolved); 15 s at most. */
export async function untilPath(from: DualHost, src: string, dst: string): Promise<void> {
  for (let i = 0; i < 60; i++) {
    if (pingDf(from, src, dst, 56, 1)) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`no path ${src} -> ${dst}`);
}

