/**
 * README's demo command runs and cleans up after itself: `npm run demo` (udp) and
 * `npm run demo -- --backend vxlan` (with a kernel flannel.1 host), with 1-second
 * TCP transfers. The demo makes its own namespaces (unique prefix, removed in its
 * `finally`); afterAll removes any left under the prefix it printed.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireNetns, sh } from '../helpers/netns.js';
import { ROOT } from './helpers.js';
import { missingToolsLine, onPath } from '../../examples/lib/need.js';

describe.runIf(requireNetns())('npm run demo', () => {
  const prefixes: string[] = [];
  afterAll(() => {
    const left = sh('ip', ['netns', 'list']).split('\n').map((l) => l.split(' ')[0]!).filter((n) => prefixes.some((p) => n.startsWith(`${p}-`)));
    for (const n of left) try { sh('ip', ['netns', 'del', n]); } catch { /* gone */ }
  });

  it.each([['udp'], ['vxlan']])('--backend %s: every pair pings, TCP flows, summary printed, nothing left', (backend) => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'examples/demo.ts', '--backend', backend, '--seconds', '1'], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
    const prefix = /namespaces (\S+)-\*/.exec(r.stdout)?.[1];
    if (prefix) prefixes.push(prefix);
    expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stdout).toMatch(/demo: OK/);
    expect(r.stdout).toMatch(/\| h1 -> h2 \(198\.19\.1\.1 -> 198\.19\.2\.1\) \| 0\/10 /);
    expect(r.stdout).toMatch(/\| h3 -> h1 .*\| 0\/10 .*\| \d+\.\d +\|/);
    expect(r.stdout).toMatch(backend === 'vxlan' ? /kernel flannel\.1/ : /overlayd udp\/mmsg/);
    expect(r.stdout).toMatch(/overlayd exit codes after SIGTERM: h1=0 h2=0( h3=0)?; namespaces left: 0; work dir removed: true/);
    expect(sh('ip', ['netns', 'list'])).not.toContain(prefix);
  });
});

describe('npm run demo on a machine that lacks tools', () => {
  it('names the missing commands and their Debian packages in one line', () => {
    expect(missingToolsLine(() => true)).toBeUndefined();
    expect(missingToolsLine((c) => c !== 'iperf3')).toBe('needs iperf3: apt-get install -y iperf3');
    expect(missingToolsLine((c) => c === 'ping')).toBe('needs ip, bridge, iperf3: apt-get install -y iproute2 iperf3');
    expect(onPath('sh', '/bin:/usr/bin')).toBe(true);
    expect(onPath('sh', '/nonexistent')).toBe(false);
  });

  it('exits 2 with that line before creating anything (PATH with only ip on it)', () => {
    const bin = mkdtempSync(join(tmpdir(), 'od-demo-path-'));
    try {
      symlinkSync(sh('sh', ['-c', 'command -v ip']).trim(), join(bin, 'ip'));
      const r = spawnSync(process.execPath, ['--import', 'tsx', 'examples/demo.ts'], { cwd: ROOT, encoding: 'utf8', timeout: 30_000, env: { ...process.env, PATH: bin } });
      expect(r.status).toBe(2);
      expect(r.stderr).toBe('demo: needs bridge, ping, iperf3: apt-get install -y iproute2 iputils-ping iperf3\n');
      expect(r.stdout).toBe('');
    } finally {
      rmSync(bin, { recursive: true, force: true });
    }
  });
});
