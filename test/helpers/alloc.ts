/**
 * Allocation checks for hot loops, shared by the zero-allocation tests (test/codec, test/vtep).
 *
 * The signal is V8's minor collections (scavenges): only allocation in the young generation
 * starts one, so a loop that allocates per iteration shows dozens, one that does not shows none.
 * New-space growth alone is not enough: a major collection the test runner's own garbage had
 * started (concurrent marking, finished by an interrupt at the loop's next stack check) empties
 * the young generation too, and the growth reads negative without any allocation by the loop.
 */
import v8 from 'node:v8';
import { PerformanceObserver, constants } from 'node:perf_hooks';

function newSpace(): number {
  return v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')!.space_used_size;
}

/** What ran while a loop ran: minor and major GCs that started in its time window, and new-space growth. */
export interface GcDuring { scavenges: number; majors: number; growth: number }

/**
 * Run `fn` and count the GCs that started inside its own time window (the runner's work before
 * and after it, IPC and reporting, allocates too and must not be charged to it).
 */
export async function gcDuring(fn: () => void): Promise<GcDuring> {
  const minor: number[] = [];
  const major: number[] = [];
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kind = (e as unknown as { detail?: { kind?: number } }).detail?.kind;
      (kind === constants.NODE_PERFORMANCE_GC_MINOR ? minor : major).push(e.startTime);
    }
  });
  obs.observe({ entryTypes: ['gc'] });
  const t0 = performance.now();
  const a = newSpace();
  fn();
  const b = newSpace();
  const t1 = performance.now();
  await new Promise((r) => setTimeout(r, 50)); // GC entries are delivered asynchronously
  obs.disconnect();
  const inside = (t: number): boolean => t >= t0 && t <= t1;
  return { scavenges: minor.filter(inside).length, majors: major.filter(inside).length, growth: b - a };
}

/** Minor GCs that started while `fn` ran. */
export async function scavengesDuring(fn: () => void): Promise<number> {
  return (await gcDuring(fn)).scavenges;
}

/**
 * Warm `run` up until V8 has optimized it: the optimizing compiler runs on a background thread,
 * and code that is not optimized yet boxes numbers. On a loaded machine (the suite's other
 * worker, namespace traffic) that thread may get no CPU for seconds: eight fixed rounds were not
 * always enough (the full-form VXLAN test failed about one full-suite run in three). So warm-up
 * runs repeat, 50 ms apart, until one allocates nothing, for up to 20 s; a real per-iteration
 * allocation never gets there, and the measured run after it still fails.
 */
export async function warmUp(run: () => void, budgetMs = 20_000): Promise<number[]> {
  const end = performance.now() + budgetMs;
  const rounds: number[] = [];
  for (let i = 0; i < 8 || performance.now() < end; i++) {
    rounds.push(await scavengesDuring(run));
    if (rounds[rounds.length - 1] === 0) break;
  }
  return rounds;
}

/**
 * Young-generation allocation of one run of `run` after warming it up with `warm` (default: itself):
 * scavenges (must be 0) and new-space growth in bytes, or undefined when a major GC emptied the
 * young generation in the middle (then the scavenge count alone decides).
 */
export async function youngAllocation(run: () => void, warm: () => void = run, budgetMs?: number): Promise<{ scavenges: number; growth: number | undefined; warmUp: number[] }> {
  const rounds = await warmUp(warm, budgetMs);
  const g = await gcDuring(run);
  return { scavenges: g.scavenges, growth: g.majors > 0 ? undefined : g.growth, warmUp: rounds };
}
