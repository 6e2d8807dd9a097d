/**
 * `--micro`: the codec, tables and raw I/O micro-benchmarks, owned by their
 * modules (bench/codec.ts, bench/tables.ts, bench/io.ts). Each is imported
 * dynamically so a module that does not exist yet (or lacks its export) is
 * reported instead of failing the run.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

/** A micro-benchmark module, the function it must export, and the options that shorten it for --quick. */
export const MICRO_MODULES: readonly { name: string; file: string; fn: string; quick: Record<string, unknown> }[] = [
  { name: 'codec', file: 'codec.ts', fn: 'runCodecBench', quick: { timeMs: 100, allocIterations: 1_000_000 } },
  { name: 'tables', file: 'tables.ts', fn: 'runTablesBench', quick: { sizes: [1000, 10000], minMs: 100 } },
  { name: 'io', file: 'io.ts', fn: 'runIoBench', quick: { quick: true } },
];

/** Outcome of one micro-benchmark module. */
export interface MicroOutcome {
  ok: boolean;
  error?: string;
  result?: unknown;
}

/**
 * Run every micro-benchmark found in `benchDir`. Each function is called with its
 * defaults (or its shortening options under --quick) and prints its own table; its
 * return value is kept for the JSON file.
 */
export async function runMicro(benchDir: string, quick: boolean, log: (m: string) => void): Promise<Record<string, MicroOutcome>> {
  const out: Record<string, MicroOutcome> = {};
  for (const m of MICRO_MODULES) {
    const file = join(benchDir, m.file);
    if (!existsSync(file)) {
      out[m.name] = { ok: false, error: `bench/${m.file} does not exist yet` };
      log(`micro ${m.name}: SKIPPED: ${out[m.name].error}`);
      continue;
    }
    try {
      const mod = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
      const fn = mod[m.fn];
      if (typeof fn !== 'function') throw new Error(`bench/${m.file} does not export ${m.fn}()`);
      log(`micro ${m.name}: running ${m.fn}()`);
      const result: unknown = await (fn as (o: Record<string, unknown>) => unknown)(quick ? { ...m.quick } : {});
      out[m.name] = { ok: true, result };
    } catch (e) {
      out[m.name] = { ok: false, error: e instanceof Error ? e.message : String(e) };
      log(`micro ${m.name}: FAILED: ${out[m.name].error}`);
    }
  }
  return out;
}
