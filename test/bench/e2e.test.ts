import { describe, expect, it } from 'vitest';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireNetns } from '../helpers/netns.js';
import { xmlProblem } from './xml.js';
import type { RawRun, Report } from '../../bench/lib/report.js';

const ROOT = new URL('../../', import.meta.url).pathname;

function benchNamespaces(): string[] {
  return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).split('\n').map((l) => l.split(' ')[0]).filter((n) => n.startsWith('obn'));
}

describe.runIf(requireNetns())('bench end to end (namespaces)', () => {
  it('--quick --paths hostgw,kernel-vxlan runs, reports ratios and cleans up', async () => {
    const out = mkdtempSync(join(tmpdir(), 'bench-e2e-'));
    const before = new Set(benchNamespaces());
    try {
      const t0 = Date.now();
      const child = spawn(process.execPath, ['--import', 'tsx', 'bench/main.ts', '--quick', '--paths', 'hostgw,kernel-vxlan', '--out-dir', out, '--json', join(out, 'copy.json'), '--svg', join(out, 'copy.svg')], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
      child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
      const code = await new Promise<number | null>((r) => child.on('close', r));
      const secs = (Date.now() - t0) / 1000;
      expect(code, stderr).toBe(0);
      expect(secs, stderr.slice(-3000)).toBeLessThan(60);
      expect(stderr).toMatch(/\[hostgw 1\/1\] TCP x1/);
      expect(stderr).toMatch(/\[kernel-vxlan 1\/1\] RTT under TCP load \([\d.]+ Gbit\/s\)/);
      expect(stdout).toMatch(/TCP 1 stream \(Gbit\/s\)/);

      const { report, raw } = JSON.parse(readFileSync(join(out, 'copy.json'), 'utf8')) as { report: Report; raw: RawRun };
      expect(report.baseline).toBe('kernel-vxlan');
      expect(report.paths.map((p) => p.id)).toEqual(['hostgw', 'kernel-vxlan']);
      for (const p of report.paths) {
        expect(p.error).toBeUndefined();
        for (const k of ['tcp1', 'tcp4', 'udp64pps', 'udp1400pps', 'rttP50', 'rttP99', 'rttIdleP999', 'rttLoadP50', 'rttLoadP99', 'rttLoadP999', 'rrRate', 'rrP50', 'rrP99', 'cpuPerPkt64', 'cpuPerPkt1400', 'cpuPerPktPaced'] as const) {
          expect(p.figures[k]?.median, `${p.id} ${k}\n${stderr.slice(-3000)}`).toBeGreaterThan(0);
        }
      }
      const kernel = report.paths[1];
      expect(kernel.figures.tcp1?.ratio).toBe(1);
      expect(raw.paths[1].config?.some((c) => /type vxlan id 1 .*dstport 8472 nolearning/.test(c))).toBe(true);
      expect(raw.paths[1].config?.some((c) => /route add 198\.19\.2\.0\/24 via 198\.19\.2\.0 dev flannel\.1 onlink/.test(c))).toBe(true);
      expect(readFileSync(join(out, 'results.json'), 'utf8')).toBe(readFileSync(join(out, 'copy.json'), 'utf8'));
      const svg = readFileSync(join(out, 'copy.svg'), 'utf8');
      expect(xmlProblem(svg)).toBeNull();
      expect(readFileSync(join(out, 'ratios.svg'), 'utf8')).toBe(svg);
      expect(readFileSync(join(out, 'results.md'), 'utf8')).toMatch(/\| TCP 1 stream/);
      expect(raw.paths[1].tests?.filter((t) => ['rr', 'ping-fast', 'ping-load'].includes(t.test) && t.ok).length).toBe(3);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
    // Nothing left behind.
    expect(benchNamespaces().filter((n) => !before.has(n))).toEqual([]);
  }, 120_000);
});
