/** A description of the machine a run happened on, for the report. */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import type { RunMeta } from './report.js';

/** CPU model, CPU count, kernel, Node and iperf3 versions, memory. */
export function describeMachine(): RunMeta['machine'] {
  let cpuModel = cpus()[0]?.model ?? 'unknown CPU';
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) cpuModel = m[1].trim();
  } catch { /* keep os.cpus() */ }
  let iperf3 = 'iperf3 (unknown version)';
  try {
    iperf3 = execFileSync('iperf3', ['--version'], { encoding: 'utf8' }).split('\n')[0].trim();
  } catch { /* missing: checked elsewhere */ }
  return { cpuModel: cpuModel.replace(/\s+/g, ' '), cpus: cpus().length, kernel: release(), node: process.version, iperf3, memTotalMiB: Math.round(totalmem() / 2 ** 20) };
}
