/**
 * Peers-file scale with a running overlayd (issue #13), in two namespace hosts: start one
 * overlayd (VXLAN) with a peers file of N synthetic leases and report the time until it is up
 * with all of them applied and until the kernel has all N routes, its RSS, the time one added
 * lease takes to carry traffic, and the longest ping gap (10 ms pings through the host) while
 * 1,000 leases change at once. The synthetic peers' public IPs (198.18.1.0-198.18.63.255) are
 * never sent to: only the one real peer, host b, carries traffic.
 *
 *   npx tsx bench/peers-daemon.ts [N]      (root; default 10000)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Testbed, type NsHost } from '../test/helpers/netns.js';
import { findOverlayd, REPO_ROOT } from './paths/overlayd.js';

const N = Number(process.argv[2] ?? 10_000);
const dir = mkdtempSync(join(tmpdir(), 'peers-daemon-'));
const tb = new Testbed('pdm');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Lease of synthetic peer i (subnet 198.19.x.y/30 from 198.19.0.8 on, a public IP that is never used). */
function synth(i: number, gen = 0): [string, unknown] {
  const a = 8 + i * 4;
  const key = `198.19.${a >> 8}.${a & 255}-30`;
  const pub = `198.18.${1 + (i >> 8)}.${(i & 255)}`;
  const mac = `02:00:00:${(gen & 255).toString(16).padStart(2, '0')}:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`;
  return [key, { PublicIP: pub, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: mac } }];
}

function writeAtomic(path: string, text: string): void {
  writeFileSync(path + '.tmp', text);
  renameSync(path + '.tmp', path);
}

function start(h: NsHost, name: string, subnet: string, pub: string, peers: string): { child: ChildProcess; lease: string } {
  const entry = findOverlayd()!;
  const d = join(dir, name);
  writeFileSync(join(dir, 'net-conf.json'), '{"Network":"198.19.0.0/16","SubnetLen":30,"Backend":{"Type":"vxlan"}}');
  const lease = join(dir, `${name}-lease.json`);
  const args = [...entry.nodeArgs, entry.script, '--net-conf', join(dir, 'net-conf.json'), '--subnet', subnet, '--public-ip', pub, '--iface', 'u0',
    '--peers', peers, '--lease-out', lease, '--subnet-file', `${d}-subnet.env`, '--transport', 'mmsg', '--peers-debounce-ms', '50'];
  const child = tb.track(spawn('ip', ['netns', 'exec', h.name, process.execPath, ...args], { cwd: REPO_ROOT, stdio: ['ignore', 'ignore', 'pipe'] }));
  child.stderr!.on('data', () => undefined);
  return { child, lease };
}

async function until(f: () => boolean, ms: number, what: string): Promise<number> {
  const t0 = Date.now();
  while (!f()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out: ${what}`);
    await sleep(20);
  }
  return Date.now() - t0;
}

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

try {
  const a = tb.host('a');
  const b = tb.host('b');
  tb.link(a, 'u0', '198.18.0.1/24', b, 'u0', '198.18.0.2/24');
  const aPeers = join(dir, 'a-peers.json');
  const bPeers = join(dir, 'b-peers.json');
  const synthetic: Record<string, unknown> = Object.fromEntries(Array.from({ length: N }, (_, i) => synth(i)));
  writeFileSync(aPeers, JSON.stringify(synthetic));
  writeFileSync(bPeers, '{}');

  const t0 = Date.now();
  const oa = start(a, 'a', '198.19.0.0/30', '198.18.0.1', aPeers);
  await until(() => existsSync(oa.lease), 120_000, 'a up');
  const upMs = Date.now() - t0;
  const routes = (): number => a.exec('ip', ['-4', 'route', 'show', 'dev', 'flannel.1']).split('\n').filter((l) => l.includes('onlink')).length;
  await until(() => routes() >= N, 120_000, 'all routes');
  const routesMs = Date.now() - t0;
  const rss = rssMiB(oa.child.pid!);

  const ob = start(b, 'b', '198.19.0.4/30', '198.18.0.2', bPeers);
  await until(() => existsSync(ob.lease), 30_000, 'b up');
  writeAtomic(bPeers, readFileSync(oa.lease, 'utf8'));
  // one added lease (b's) on a: until traffic flows
  const t1 = Date.now();
  writeAtomic(aPeers, JSON.stringify({ ...synthetic, ...JSON.parse(readFileSync(ob.lease, 'utf8')) }));
  const ping1 = (): boolean => { try { a.exec('ping', ['-c', '1', '-W', '1', '198.19.0.4']); return true; } catch { return false; } };
  await until(ping1, 30_000, 'a -> b ping');
  const oneMs = Date.now() - t1;

  // 1,000 leases change at once while a pings b every 10 ms
  const pinger = spawn('ip', ['netns', 'exec', a.name, 'ping', '-i', '0.01', '-c', '400', '-q', '198.19.0.4'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  pinger.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  await sleep(1000);
  const changed = { ...synthetic, ...JSON.parse(readFileSync(ob.lease, 'utf8')) as Record<string, unknown> };
  for (let i = 0; i < 1000; i++) { const [k, v] = synth(i, 1); changed[k] = v; }
  writeAtomic(aPeers, JSON.stringify(changed));
  await new Promise((r) => pinger.on('exit', r));
  const loss = /(\d+(?:\.\d+)?)% packet loss/.exec(out)?.[1];
  const rtt = /= [\d.]+\/([\d.]+)\/([\d.]+)\//.exec(out);
  console.log(`overlayd (VXLAN) with a peers file of ${N} leases, 2 vCPU, ${new Date().toISOString()}:`);
  console.log('| measure | value |');
  console.log('|---|---:|');
  console.log(`| start until the lease is written (up; the peers are applied right after) | ${upMs} ms |`);
  console.log(`| start until the kernel has all ${N} routes | ${routesMs} ms |`);
  console.log(`| RSS with ${N} peers | ${rss.toFixed(0)} MiB |`);
  console.log(`| one lease added: file write until a ping through it answers | ${oneMs} ms |`);
  console.log(`| 1,000 leases changed at once, pings every 10 ms: loss / avg / max RTT | ${loss}% / ${rtt?.[1]} / ${rtt?.[2]} ms |`);
} finally {
  tb.destroy();
  rmSync(dir, { recursive: true, force: true });
}
