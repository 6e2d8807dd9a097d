/**
 * Our paths: the real overlayd daemon in each namespace host, configured the way
 * flanneld is (net-conf.json, a lease, a peers file in flannel's etcd layout),
 * including the host-gw path (overlayd's host-gw backend installs the routes; the
 * kernel forwards),
 * started as `ip netns exec NS node [--cpu-prof ...] <overlayd> ...`.
 *
 * Both daemons start with an empty peers file and write their own lease
 * (--lease-out); each lease is then written into the other host's peers file,
 * which overlayd watches (SIGHUP is sent too, as a fallback).
 */
import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { PathId } from '../lib/metrics.js';
import { waitOverlay, type BedHost, type BenchBed } from '../lib/testbed.js';
import { sleep, waitChild, waitExit } from '../lib/exec.js';
import type { BenchPath, PathInstance, PathOptions } from './types.js';

/** Repository root (bench/paths/ is two levels down). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Port of overlayd's healthz/metrics server inside each namespace. */
const HEALTHZ_PORT = 9707;

/** How to start overlayd: node flags before the script, and the script. */
export interface OverlaydEntry {
  /** Arguments to node before the script (e.g. --import tsx). */
  nodeArgs: string[];
  /** The script. */
  script: string;
  /** 'dist' (built JavaScript) or 'tsx' (TypeScript sources). */
  kind: 'dist' | 'tsx';
}

/** Newest modification time of any file under `dir` (0 when missing). */
function newestMtime(dir: string): number {
  let t = 0;
  if (!existsSync(dir)) return 0;
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!e.isFile()) continue;
    try { t = Math.max(t, statSync(join(e.parentPath, e.name)).mtimeMs); } catch { /* raced */ }
  }
  return t;
}

/**
 * Find overlayd: dist/overlayd/main.js when built and at least as new as src/,
 * otherwise src/overlayd/main.ts through tsx. Null when neither exists.
 */
export function findOverlayd(root = REPO_ROOT): OverlaydEntry | null {
  const dist = join(root, 'dist', 'overlayd', 'main.js');
  const src = join(root, 'src', 'overlayd', 'main.ts');
  if (existsSync(dist) && (!existsSync(src) || newestMtime(join(root, 'dist')) >= newestMtime(join(root, 'src')))) {
    return { nodeArgs: [], script: dist, kind: 'dist' };
  }
  if (existsSync(src)) return { nodeArgs: ['--import', 'tsx'], script: src, kind: 'tsx' };
  return null;
}

/** A backend type overlayd runs in the benchmark. */
type BenchBackend = 'vxlan' | 'udp' | 'host-gw';

/** Which backend and transport a path runs (the host-gw path has no socket: its transport is moot). */
function variant(id: PathId): { type: BenchBackend; transport: 'dgram' | 'mmsg' } {
  if (id === 'hostgw') return { type: 'host-gw', transport: 'mmsg' };
  const [type, transport] = id.split('-') as ['vxlan' | 'udp', 'dgram' | 'mmsg'];
  return { type, transport };
}

/** flannel net-conf.json for the backend type (flannel's default ports and VNI). */
export function netConf(network: string, type: BenchBackend): string {
  const backend = type === 'vxlan' ? { Type: 'vxlan', VNI: 1, Port: 8472 } : type === 'udp' ? { Type: 'udp', Port: 8285 } : { Type: 'host-gw' };
  return JSON.stringify({ Network: network, SubnetLen: 24, Backend: backend }, null, 2) + '\n';
}

/** One running daemon. */
interface Daemon {
  host: BedHost;
  name: string;
  child: ChildProcess;
  dir: string;
  peersFile: string;
  leaseFile: string;
  logFile: string;
  /** Where node writes this daemon's CPU profiles ('' when not profiling). */
  profDir: string;
}

/** Write a file atomically (rename), as an operator's tooling would. */
function writeAtomic(path: string, text: string): void {
  writeFileSync(path + '.tmp', text);
  renameSync(path + '.tmp', path);
}

/** Last lines of a log file, for error messages. */
function tail(file: string, n = 6): string {
  try {
    return readFileSync(file, 'utf8').trim().split('\n').slice(-n).join(' | ');
  } catch {
    return '';
  }
}

/** Wait until the daemon has written its lease; returns the lease file's JSON text. */
async function waitLease(d: Daemon, ms: number): Promise<string> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (d.child.exitCode !== null || d.child.signalCode !== null) {
      throw new Error(`overlayd on ${d.name} exited (${d.child.exitCode ?? d.child.signalCode}) before writing its lease: ${tail(d.logFile)}`);
    }
    try {
      const t = readFileSync(d.leaseFile, 'utf8');
      JSON.parse(t);
      return t;
    } catch { /* not yet */ }
    await sleep(100);
  }
  throw new Error(`overlayd on ${d.name} wrote no lease within ${ms / 1000} s: ${tail(d.logFile)}`);
}

/** Fetch http://127.0.0.1:PORT/PATH inside a namespace (a one-line node fetch). */
async function fetchInNs(h: BedHost, path: string): Promise<string> {
  const js = `fetch('http://127.0.0.1:${HEALTHZ_PORT}${path}').then(r=>r.text()).then(t=>process.stdout.write(t),e=>{console.error(String(e));process.exit(1)})`;
  const r = await waitChild(h.ns.spawn(process.execPath, ['-e', js], { stdio: ['ignore', 'pipe', 'pipe'] }), 5000);
  if (r.code !== 0) throw new Error(r.stderr.trim() || `exit ${r.code}`);
  return r.stdout;
}

/** Start one daemon. */
function startDaemon(bed: BenchBed, h: BedHost, id: PathId, entry: OverlaydEntry, opts: PathOptions): Daemon {
  const { type, transport } = variant(id);
  const name = h === bed.a ? 'a' : 'b';
  const dir = join(opts.workDir, `${id}-${name}`);
  mkdirSync(dir, { recursive: true });
  const confFile = join(dir, 'net-conf.json');
  const peersFile = join(dir, 'peers.json');
  const leaseFile = join(dir, 'lease.json');
  const logFile = join(dir, 'overlayd.log');
  writeFileSync(confFile, netConf(bed.network, type));
  writeFileSync(peersFile, '{}\n');
  // One directory per daemon: node writes one profile per thread (tsx's loader runs in a worker).
  const profDir = opts.cpuProfDir ? join(opts.cpuProfDir, `${id}-${name}`) : '';
  const nodeArgs = [...entry.nodeArgs];
  if (profDir) {
    rmSync(profDir, { recursive: true, force: true });
    mkdirSync(profDir, { recursive: true });
    nodeArgs.unshift('--cpu-prof', '--cpu-prof-dir', profDir);
  }
  const args = [
    ...nodeArgs, entry.script,
    '--net-conf', confFile,
    '--subnet', h.subnet,
    '--public-ip', h.underlay,
    '--iface', bed.dev,
    '--peers', peersFile,
    '--lease-out', leaseFile,
    '--subnet-file', join(dir, 'subnet.env'),
    '--transport', transport,
    '--offload', opts.offload ?? 'auto',
    '--healthz-port', String(HEALTHZ_PORT),
    '--peers-debounce-ms', '50',
    ...(opts.extraArgs ?? []),
  ];
  const fd = openSync(logFile, 'a');
  const child = spawn('ip', ['netns', 'exec', h.ns.name, process.execPath, ...args], { cwd: REPO_ROOT, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  bed.tb.track(child);
  opts.log(`  overlayd ${name}: ${entry.kind} ${type}/${transport}, pid ${child.pid}, log ${logFile}`);
  return { host: h, name, child, dir, peersFile, leaseFile, logFile, profDir };
}

/** Stop one daemon: SIGTERM (it removes what it created; node writes the profile), SIGKILL after 15 s. */
async function stopDaemon(d: Daemon): Promise<void> {
  if (d.child.exitCode !== null || d.child.signalCode !== null) return;
  d.child.kill('SIGTERM');
  if (!(await waitExit(d.child, 15_000))) {
    d.child.kill('SIGKILL');
    await waitExit(d.child, 2000);
  }
}

/** A benchmark path running overlayd with the backend and transport named by `id`. */
export function overlaydPath(id: PathId): BenchPath {
  return {
    id,
    async setup(bed: BenchBed, opts: PathOptions): Promise<PathInstance> {
      const entry = findOverlayd();
      if (!entry) throw new Error('overlayd is not available (no src/overlayd/main.ts or dist/overlayd/main.js)');
      const daemons: Daemon[] = [];
      const config: string[] = [];
      const stopAll = async (): Promise<void> => { await Promise.all(daemons.map(stopDaemon)); };
      try {
        for (const h of [bed.a, bed.b]) daemons.push(startDaemon(bed, h, id, entry, opts));
        const leases = await Promise.all(daemons.map((d) => waitLease(d, 30_000)));
        // Each host's peers file gets the other's lease.
        daemons.forEach((d, i) => {
          const other = leases[1 - i];
          writeAtomic(d.peersFile, other);
          config.push(`${d.name}: overlayd ${readFileSync(join(d.dir, 'net-conf.json'), 'utf8').replace(/\s+/g, ' ').trim()} --subnet ${d.host.subnet} --public-ip ${d.host.underlay}; peers ${other.replace(/\s+/g, ' ').trim()}`);
        });
        if (!(await waitOverlay(bed, 5000))) {
          for (const d of daemons) d.child.kill('SIGHUP');
          if (!(await waitOverlay(bed, 10_000))) throw new Error(`no overlay connectivity ${bed.a.workload} -> ${bed.b.workload} after configuring peers: a: ${tail(daemons[0].logFile, 3)} b: ${tail(daemons[1].logFile, 3)}`);
        }
        for (const d of daemons) {
          for (const dev of ['flannel.1', 'flannel0']) {
            try { config.push(`# ${d.host.ns.name}: ` + d.host.ns.ip('-d', 'link', 'show', dev).replace(/\s+/g, ' ').trim()); } catch { /* not this one */ }
          }
          config.push(`# ${d.host.ns.name} routes: ` + d.host.ns.ip('route', 'show').trim().split('\n').join('; '));
        }
      } catch (e) {
        await stopAll();
        throw e;
      }
      return {
        processes: () => Object.fromEntries(daemons.map((d) => [`overlayd-${d.name}`, d.child.pid ?? 0])),
        daemons: () => Object.fromEntries(daemons.map((d) => [`overlayd-${d.name}`, d.child.pid ?? 0])),
        config,
        async collectStats() {
          const out: Record<string, string> = {};
          for (const d of daemons) {
            try { out[`overlayd-${d.name}`] = await fetchInNs(d.host, '/metrics'); } catch (e) { out[`overlayd-${d.name}`] = `metrics unavailable: ${(e as Error).message}`; }
          }
          return out;
        },
        stop: stopAll,
        profiles: () => daemons.flatMap((d) => (d.profDir && existsSync(d.profDir) ? readdirSync(d.profDir).filter((f) => f.endsWith('.cpuprofile')).map((f) => join(d.profDir, f)) : [])),
      };
    },
  };
}
