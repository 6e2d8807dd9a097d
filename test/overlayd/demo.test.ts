/**
 * README's demo command runs and cleans up after itself: `npm run demo` (udp) and
 * `npm run demo -- --backend vxlan` (with a kernel flannel.1 host), with 1-second
 * TCP transfers. The demo makes its own namespaces (unique prefix, removed in its
 * `finally`); afterAll removes any left under the prefix it printed.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { requireNetns, sh } from '../helpers/netns.js';
import { ROOT } from './helpers.js';

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
