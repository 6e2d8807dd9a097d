/**
 * Event-loop gap probe for diagnosis (bench/etcd-scale.ts: ETCD_SCALE_NODE_ARGS='--import
 * ./bench/lib/loop-gaps.mjs --cpu-prof --cpu-prof-dir=/tmp/prof'): a 1 ms timer notes every gap
 * between its runs over 3 ms (the loop was held: a synchronous step, a GC pause, or the thread
 * waiting for a CPU) and prints them at exit as `gap <pid> <end, monotonic us> <ms>`, the clock
 * of V8's CPU profiles. bench/lib/gap-profile.mjs shows what the profile sampled in each gap.
 */
const gaps = [];
let last = process.hrtime.bigint();
const t = setInterval(() => {
  const now = process.hrtime.bigint();
  const g = Number(now - last) / 1e6;
  if (g > 3) gaps.push([Number(now / 1000n), g]);
  last = now;
}, 1);
t.unref();
process.on('exit', () => {
  for (const [end, g] of gaps) process.stdout.write(`gap ${process.pid} ${end} ${g.toFixed(1)}\n`);
});
