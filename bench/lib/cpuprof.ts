/**
 * Summarize a V8 .cpuprofile (as written by `node --cpu-prof`): self time per
 * function, largest first. Runnable on its own:
 * `npx tsx bench/lib/cpuprof.ts FILE.cpuprofile [N]`.
 */
import { readFileSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { ProfileSummary } from './report.js';

/** The parts of the .cpuprofile format used here. */
interface CpuProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  hitCount?: number;
  children?: number[];
}
interface CpuProfile {
  nodes: CpuProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

/** Self time per function in a parsed profile (sample time deltas attributed to the sampled node). */
export function summarizeProfile(p: CpuProfile, file: string, topN = 15): ProfileSummary {
  const byId = new Map<number, CpuProfileNode>();
  for (const n of p.nodes) byId.set(n.id, n);
  const selfUs = new Map<number, number>();
  const samples = p.samples ?? [];
  const deltas = p.timeDeltas ?? [];
  if (samples.length > 0 && deltas.length === samples.length) {
    // timeDeltas[i] is the time before sample i; attribute the interval up to the next sample to sample i.
    for (let i = 0; i < samples.length; i++) {
      const dt = i + 1 < deltas.length ? deltas[i + 1] : 0;
      selfUs.set(samples[i], (selfUs.get(samples[i]) ?? 0) + Math.max(0, dt));
    }
  } else {
    const total = p.endTime - p.startTime;
    const hits = p.nodes.reduce((s, n) => s + (n.hitCount ?? 0), 0) || 1;
    for (const n of p.nodes) selfUs.set(n.id, ((n.hitCount ?? 0) * total) / hits);
  }
  // Aggregate by function identity (the same function can appear under several parents).
  const agg = new Map<string, { name: string; location: string; us: number }>();
  let totalUs = 0;
  for (const [id, us] of selfUs) {
    const n = byId.get(id);
    if (!n) continue;
    totalUs += us;
    const cf = n.callFrame;
    const name = cf.functionName || '(anonymous)';
    const location = cf.url ? `${cf.url.replace(/^file:\/\//, '').replace(/^.*\/(src|node_modules|bench|dist)\//, '$1/')}:${cf.lineNumber + 1}:${cf.columnNumber + 1}` : '';
    const key = `${name}@${location}`;
    const e = agg.get(key) ?? { name, location, us: 0 };
    e.us += us;
    agg.set(key, e);
  }
  const top = [...agg.values()]
    .sort((a, b) => b.us - a.us)
    .slice(0, topN + 1)
    .map((e) => ({ name: e.name, location: e.location, selfMs: e.us / 1000, percent: totalUs > 0 ? (100 * e.us) / totalUs : 0 }));
  const idleUs = [...agg.values()].filter((e) => e.name === '(idle)').reduce((t, e) => t + e.us, 0);
  return { file, totalMs: totalUs / 1000, idleMs: idleUs / 1000, top };
}

/** Read and summarize a .cpuprofile file. */
export function summarizeProfileFile(file: string, topN = 15): ProfileSummary {
  return summarizeProfile(JSON.parse(readFileSync(file, 'utf8')) as CpuProfile, file, topN);
}

/** Sampled time that is not idle, milliseconds. */
export function busyMs(s: ProfileSummary): number {
  return s.totalMs - s.idleMs;
}

/** Render a summary as text lines. */
export function formatProfile(s: ProfileSummary): string {
  const busy = busyMs(s);
  const lines = [`${basename(dirname(s.file))}/${basename(s.file)}: ${s.totalMs.toFixed(0)} ms sampled, ${busy.toFixed(0)} ms not idle; top self time (% of not idle):`];
  for (const t of s.top) {
    if (t.name === '(idle)') continue;
    lines.push(`  ${(busy > 0 ? (100 * t.selfMs) / busy : 0).toFixed(1).padStart(5)}%  ${t.selfMs.toFixed(0).padStart(7)} ms  ${t.name}  ${t.location}`);
  }
  return lines.join('\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const file = process.argv[2];
  if (!file) {
    process.stderr.write('usage: tsx bench/lib/cpuprof.ts FILE.cpuprofile [N]\n');
    process.exit(2);
  }
  process.stdout.write(formatProfile(summarizeProfileFile(file, Number(process.argv[3] ?? 20))) + '\n');
}
