/**
 * What a V8 CPU profile sampled during each event-loop gap that bench/lib/loop-gaps.mjs noted:
 *
 *   node bench/lib/gap-profile.mjs CPU.<...>.<pid>.0.001.cpuprofile <overlayd stdout> [min ms]
 *
 * Per gap of the profile's process: the functions on top of the stack and those anywhere on it.
 * A gap with few samples was spent off the CPU (waiting for one, or in the kernel).
 */
import { readFileSync } from 'node:fs';

const [profPath, gapsPath, minArg] = process.argv.slice(2);
const prof = JSON.parse(readFileSync(profPath, 'utf8'));
const pid = Number(/\.(\d+)\.\d+\.\d+\.cpuprofile$/.exec(profPath)?.[1]);
const min = Number(minArg ?? 4);
const gaps = readFileSync(gapsPath, 'utf8').split('\n').filter((l) => l.startsWith('gap '))
  .map((l) => l.split(' ').slice(1).map(Number)).filter(([p, , g]) => p === pid && g >= min);
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const times = [];
let t = prof.startTime;
for (const d of prof.timeDeltas) times.push((t += d));
const name = (n) => `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url.split('/').slice(-2).join('/')}:${n.callFrame.lineNumber + 1}`;
const top = (m, k) => [...m].sort((a, b) => b[1] - a[1]).slice(0, k).map(([f, c]) => `${c} ${f}`).join('\n    ');
console.log(`pid ${pid}: ${gaps.length} gaps of ${min} ms or more`);
for (const [, end, g] of gaps) {
  const start = end - g * 1000;
  const self = new Map();
  const incl = new Map();
  let n = 0;
  for (let i = 0; i < times.length; i++) {
    if (times[i] < start || times[i] > end) continue;
    n++;
    let id = prof.samples[i];
    const own = name(byId.get(id));
    self.set(own, (self.get(own) ?? 0) + 1);
    const seen = new Set();
    for (; id !== undefined; id = parent.get(id)) {
      const f = name(byId.get(id));
      if (!seen.has(f)) { seen.add(f); incl.set(f, (incl.get(f) ?? 0) + 1); }
    }
  }
  console.log(`\n${g} ms gap, +${((end - prof.startTime) / 1e6).toFixed(3)} s into the profile: ${n} samples\n  on top:\n    ${top(self, 6)}\n  on the stack:\n    ${top(incl, 14)}`);
}
