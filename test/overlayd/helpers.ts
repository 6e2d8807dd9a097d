/** Helpers for spawning the overlayd CLI inside test namespaces. */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { join, resolve } from 'node:path';
import { renameSync, writeFileSync } from 'node:fs';
import type { NsHost, Testbed } from '../helpers/netns.js';
import { stableVtepMac } from '../../src/overlayd/index.js';

/** Repository root. */
export const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
/** The CLI entry point, run from source. */
export const MAIN = resolve(ROOT, 'src/overlayd/main.ts');
/** The fake backend module for --backend-module. */
export const FAKE = resolve(ROOT, 'test/overlayd/fixtures/fake-backend.ts');

/** Command prefix running overlayd from source with node + tsx. */
export const NODE_ARGS = ['--import', 'tsx', MAIN];

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
export function startOverlayd(host: NsHost, args: string[], env: NodeJS.ProcessEnv = {}): Daemon {
  const child = spawn('ip', ['netns', 'exec', host.name, process.execPath, ...NODE_ARGS, ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
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
