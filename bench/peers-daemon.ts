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
import { onlinkRoutes, pingDuring, rssMiB, synthLease as synth, until } from './lib/scale.js';

const N = Number(process.argv[2] ?? 10_000);
const dir = mkdtempSync(join(tmpdir(), 'peers-daemon-'));
const tb = new Testbed('dmpd');

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
  await until(() => onlinkRoutes(a) >= N, 120_000, 'all routes');
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
  const p = await pingDuring(a, '198.19.0.4', 400, 1000, () => {
    const changed = { ...synthetic, ...JSON.parse(readFileSync(ob.lease, 'utf8')) as Record<string, unknown> };
    for (let i = 0; i < 1000; i++) { const [k, v] = synth(i, 1); changed[k] = v; }
    writeAtomic(aPeers, JSON.stringify(changed));
  });
  console.log(`overlayd (VXLAN) with a peers file of ${N} leases, 2 vCPU, ${new Date().toISOString()}:`);
  console.log('| measure | value |');
  console.log('|---|---:|');
  console.log(`| start until the lease is written (up; the peers are applied right after) | ${upMs} ms |`);
  console.log(`| start until the kernel has all ${N} routes | ${routesMs} ms |`);
  console.log(`| RSS with ${N} peers | ${rss.toFixed(0)} MiB |`);
  console.log(`| one lease added: file write until a ping through it answers | ${oneMs} ms |`);
  console.log(`| 1,000 leases changed at once, pings every 10 ms: loss / avg / max RTT | ${p.lossPct}% / ${p.avgMs} / ${p.maxMs} ms |`);
} finally {
  tb.destroy();
  rmSync(dir, { recursive: true, force: true });
}
