/**
 * README's demo command runs and cleans up after itself, with 1-second TCP transfers:
 * `npm run demo` (its default: etcd in a hub namespace, every overlayd leasing its subnet with
 * --etcd-endpoints only), `npm run demo -- --backend vxlan` (the same with a kernel flannel.1
 * host whose lease the demo writes to etcd, as flanneld would) and `--static --backend vxlan`
 * (no etcd: --subnet and a peers file), and `--dual-stack` (EnableIPv6: two overlayd with
 * flannel.1 + flannel-v6.1 and a kernel dual-stack host). The demo makes its own namespaces (unique prefix,
 * removed in its `finally`); afterAll removes any left under the prefix it printed.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireNetns, sh } from '../helpers/netns.js';
import { etcdAvailable } from '../helpers/etcd.js';
import { ROOT } from './helpers.js';
import { DEMO_TOOLS, ETCD_TOOLS, missingToolsLine, onPath } from '../../examples/lib/need.js';

describe.runIf(requireNetns() && etcdAvailable())('npm run demo', () => {
  const prefixes: string[] = [];
  afterAll(() => {
    const left = sh('ip', ['netns', 'list']).split('\n').map((l) => l.split(' ')[0]!).filter((n) => prefixes.some((p) => n.startsWith(`${p}-`)));
    for (const n of left) try { sh('ip', ['netns', 'del', n]); } catch { /* gone */ }
  });

  const run = (args: string[]): { stdout: string; prefix: string | undefined } => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'examples/demo.ts', ...args, '--seconds', '1'], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
    const prefix = /namespaces (\S+)-\*/.exec(r.stdout)?.[1];
    if (prefix) prefixes.push(prefix);
    expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stdout).toMatch(/demo: OK/);
    expect(r.stdout).toMatch(/\| h3 -> h1 .*\| 0\/10 .*\| \d+\.\d +\|/);
    expect(sh('ip', ['netns', 'list'])).not.toContain(prefix);
    return { stdout: r.stdout, prefix };
  };

  it.each([['udp'], ['vxlan']])('default (etcd), --backend %s: every host leases a subnet in etcd, every pair pings, TCP flows, nothing left', (backend) => {
    const { stdout } = run(['--backend', backend]);
    expect(stdout).toMatch(/^demo: etcd \(subnets leased from etcd\), backend /m);
    expect(stdout).toContain("etcdctl put /coreos.com/network/config '{\"Network\":\"198.19.0.0/16\",\"SubnetLen\":24,");
    // one row per host: its lease as etcd holds it, bound to a 24 h etcd lease, and the subnet.env that host wrote
    const leases = [...stdout.matchAll(/^\| (h\d) (overlayd|kernel) +\| (198\.18\.0\.\d) +\| 198\.19\.(\d+)\.0-24 +\| (\d+) s of 86400 s +\| (\S+) +\| 198\.19\.(\d+)\.1\/24 +\|$/gm)];
    expect(leases.map((m) => `${m[1]} ${m[2]} ${m[3]}`)).toEqual(['h1 overlayd 198.18.0.1', 'h2 overlayd 198.18.0.2', backend === 'vxlan' ? 'h3 kernel 198.18.0.3' : 'h3 overlayd 198.18.0.3']);
    for (const m of leases) {
      expect(m[7]).toBe(m[4]);
      expect(Number(m[5])).toBeGreaterThan(86000);
      expect(m[6]).toMatch(backend === 'vxlan' ? /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/ : /^-$/);
    }
    const subnets = leases.map((m) => m[4]!);
    expect(new Set(subnets).size).toBe(3);
    // the pinged addresses are the leased gateways
    expect(stdout).toMatch(new RegExp(`\\| h1 -> h2 \\(198\\.19\\.${subnets[0]}\\.1 -> 198\\.19\\.${subnets[1]}\\.1\\) +\\| 0/10 `));
    expect(stdout).toMatch(backend === 'vxlan' ? /kernel flannel\.1/ : /overlayd udp\/mmsg/);
    expect(stdout).toMatch(/overlayd exit codes after SIGTERM: h1=0 h2=0( h3=0)?; namespaces left: 0; work dir removed: true; etcd stopped, data removed: true/);
  });

  it('--dual-stack (etcd): two overlayd with flannel.1 + flannel-v6.1 and a kernel dual-stack host; every lease has both halves; both families ping and flow', () => {
    const { stdout } = run(['--dual-stack']);
    expect(stdout).toMatch(/^demo: etcd \(subnets leased from etcd\), backend vxlan, transport mmsg, dual stack \(IPv6Network 2001:2:0:8000::\/49\)/m);
    // each lease's key names both subnets; the IPv6 half's row: PublicIPv6, the flannel-v6 VTEP MAC, FLANNEL_IPV6_SUBNET
    const leases = [...stdout.matchAll(/^\| (h\d) (overlayd|kernel) +\| 198\.18\.0\.\d +\| 198\.19\.(\d+)\.0-24&(2001:2:0:[0-9a-f]+)::-64 +\|/gm)];
    expect(leases.map((m) => `${m[1]} ${m[2]}`)).toEqual(['h1 overlayd', 'h2 overlayd', 'h3 kernel']);
    const halves = [...stdout.matchAll(/^\| +\| (2001:2:0:1::\d) +\| \(IPv6 half\) +\| +\| ([0-9a-f]{2}(?::[0-9a-f]{2}){5}) +\| (2001:2:0:[0-9a-f]+)::1\/64 +\|$/gm)];
    expect(halves.map((m) => m[1])).toEqual(['2001:2:0:1::1', '2001:2:0:1::2', '2001:2:0:1::3']);
    expect(halves.map((m) => m[3])).toEqual(leases.map((m) => m[4]));
    // every ordered pair of each family: 0 of 10 pings lost; a TCP rate for the transfers of each family
    for (const [a, b] of [[1, 2], [1, 3], [2, 1], [2, 3], [3, 1], [3, 2]]) {
      expect(stdout).toMatch(new RegExp(`\\| h${a} -> h${b} \\(198\\.19\\.\\d+\\.1 -> 198\\.19\\.\\d+\\.1\\) +\\| 0/10 `));
      expect(stdout).toMatch(new RegExp(`\\| h${a} -> h${b} \\(2001:2:0:[0-9a-f]+::1 -> 2001:2:0:[0-9a-f]+::1\\) +\\| 0/10 `));
    }
    expect(stdout).toMatch(/\| h3 -> h1 \(2001:2:0:[0-9a-f]+::1 -> 2001:2:0:[0-9a-f]+::1\) +\| 0\/10 .*\| \d+\.\d +\|/);
    expect(stdout).toMatch(/kernel flannel-v6\.1/);
    expect(stdout).toMatch(/overlayd exit codes after SIGTERM: h1=0 h2=0; namespaces left: 0; work dir removed: true; etcd stopped, data removed: true/);
  });

  it('--static --backend vxlan: fixed subnets and a peers file, no etcd', () => {
    const { stdout } = run(['--static', '--backend', 'vxlan']);
    expect(stdout).toMatch(/^demo: static \(--subnet and a peers file\), backend vxlan/m);
    expect(stdout).not.toMatch(/etcd/);
    expect(stdout).toMatch(/\| h1 -> h2 \(198\.19\.1\.1 -> 198\.19\.2\.1\) \| 0\/10 /);
    expect(stdout).toMatch(/kernel flannel\.1/);
    expect(stdout).toMatch(/overlayd exit codes after SIGTERM: h1=0 h2=0; namespaces left: 0; work dir removed: true\n/);
  });
});

describe('npm run demo on a machine that lacks tools', () => {
  it('names the missing commands and their Debian packages in one line', () => {
    expect(missingToolsLine(() => true)).toBeUndefined();
    expect(missingToolsLine((c) => c !== 'iperf3')).toBe('needs iperf3: apt-get install -y iperf3');
    expect(missingToolsLine((c) => c === 'ping')).toBe('needs ip, bridge, iperf3: apt-get install -y iproute2 iperf3');
    expect(missingToolsLine((c) => c !== 'etcd' && c !== 'etcdctl', { ...DEMO_TOOLS, ...ETCD_TOOLS })).toBe('needs etcd, etcdctl: apt-get install -y etcd-server etcd-client');
    expect(onPath('sh', '/bin:/usr/bin')).toBe(true);
    expect(onPath('sh', '/nonexistent')).toBe(false);
  });

  it('exits 2 with that line before creating anything (PATH with only ip on it); etcd\'s packages unless --static', () => {
    const bin = mkdtempSync(join(tmpdir(), 'od-demo-path-'));
    try {
      symlinkSync(sh('sh', ['-c', 'command -v ip']).trim(), join(bin, 'ip'));
      const demo = (...args: string[]): ReturnType<typeof spawnSync> =>
        spawnSync(process.execPath, ['--import', 'tsx', 'examples/demo.ts', ...args], { cwd: ROOT, encoding: 'utf8', timeout: 30_000, env: { ...process.env, PATH: bin } });
      let r = demo();
      expect(r.status).toBe(2);
      expect(r.stderr).toBe('demo: needs bridge, ping, iperf3, etcd, etcdctl: apt-get install -y iproute2 iputils-ping iperf3 etcd-server etcd-client\n');
      expect(r.stdout).toBe('');
      r = demo('--static');
      expect(r.status).toBe(2);
      expect(r.stderr).toBe('demo: needs bridge, ping, iperf3: apt-get install -y iproute2 iputils-ping iperf3\n');
      expect(r.stdout).toBe('');
      // everything but etcd (stand-ins: the check only looks on PATH): the line says the static demo runs without it
      for (const t of Object.keys(DEMO_TOOLS).filter((t) => t !== 'ip')) symlinkSync(join(bin, 'ip'), join(bin, t));
      r = demo();
      expect(r.status).toBe(2);
      expect(r.stderr).toBe('demo: needs etcd, etcdctl: apt-get install -y etcd-server etcd-client (or without etcd: npm run demo -- --static)\n');
      expect(r.stdout).toBe('');
    } finally {
      rmSync(bin, { recursive: true, force: true });
    }
  });
});
