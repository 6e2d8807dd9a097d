/**
 * Table benchmark: flannel host model at 1k / 10k / 100k remote hosts.
 *
 * Reports IPv4 route lookups per second (longest-prefix match, hits), full
 * resolve (route -> neighbour -> FDB) per second, and bytes per host for the
 * route + neighbour + FDB entries together (heapUsed + arrayBuffers delta with
 * forced GC; --expose-gc is enabled at runtime if not given).
 * Run: `npm run bench:tables` (or `npx tsx bench/tables.ts`).
 */
import { pathToFileURL } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { HostModel } from '../src/fdb/index.js';

/** One result row. */
export interface Row {
  /** Remote hosts installed. */
  hosts: number;
  /** Route lookups per second (RouteTable4.lookup), best of `trials`. */
  routeLookupsPerSec: number;
  /** Route + neighbour + FDB resolutions per second (HostModel.resolve). */
  resolvePerSec: number;
  /** Bytes per host for the three entries (NaN without --expose-gc). */
  bytesPerHost: number;
  /** Time to add all hosts, ms. */
  addMs: number;
}

/** Options of runTablesBench. */
export interface TablesBenchOptions {
  /** Host counts to run; default [1000, 10000, 100000]. */
  sizes?: number[];
  /** Total timed duration per measurement, ms, split over `trials`; default 1000. */
  minMs?: number;
  /** Trials per measurement; the best is reported (shared CPUs). Default 5. */
  trials?: number;
  /** Print a table to stdout; default true. */
  print?: boolean;
}

/** global.gc, or one obtained by enabling --expose-gc at runtime (works for `npm run bench:tables` too). */
const gc: (() => void) | undefined = (() => {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g) return g;
  try {
    setFlagsFromString('--expose-gc');
    return runInNewContext('gc') as () => void;
  } catch {
    return undefined;
  }
})();

function mem(): number {
  if (!gc) return NaN;
  for (let i = 0; i < 4; i++) gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

/** Subnet i: 64.0.0.0 + i*256 /24 (disjoint /24s), public 198.18.0.0 + i, MAC 0e:00:xx. */
function fill(n: number): HostModel {
  const hm = new HostModel({ vni: 1 });
  for (let i = 0; i < n; i++) {
    const p = (0x40000000 + i * 256) >>> 0;
    hm.addHost({ subnet: `${p >>> 24}.${(p >>> 16) & 255}.${(p >>> 8) & 255}.0/24`, publicIp: (0xc6120000 + i) >>> 0, vtepMac: 0x0e0000000000 + i });
  }
  return hm;
}

/**
 * Build a model of n hosts (timed), and measure bytes per host: small sizes are
 * measured over several independent models (>= 100k hosts in total) so GC noise
 * and fixed costs do not dominate; per-model fixed overhead is included.
 */
function build(n: number): { hm: HostModel; addMs: number; bytes: number } {
  const t0 = performance.now();
  const hm = fill(n);
  const addMs = performance.now() - t0;
  const copies = Math.max(1, Math.ceil(100_000 / n));
  const before = mem();
  const keep: HostModel[] = [];
  for (let c = 0; c < copies; c++) keep.push(fill(n));
  const after = mem();
  if (keep.length !== copies) throw new Error('unreachable');
  return { hm, addMs, bytes: (after - before) / copies };
}

function timeLoop(minMs: number, body: () => number): number {
  let ops = 0;
  let sink = 0;
  const t0 = performance.now();
  let t = t0;
  while (t - t0 < minMs) {
    sink += body();
    ops += DSTS;
    t = performance.now();
  }
  if (sink === 0.5) console.log(sink);
  return (ops / (t - t0)) * 1000;
}

const DSTS = 1 << 16;

/** Run the benchmark; returns one row per size. */
export async function runTablesBench(opts: TablesBenchOptions = {}): Promise<Row[]> {
  const sizes = opts.sizes ?? [1000, 10000, 100000];
  const minMs = opts.minMs ?? 1000;
  const trials = opts.trials ?? 5;
  const rows: Row[] = [];
  // Warm up: compile the add path so code and feedback vectors are not charged to the first size.
  fill(2000);
  for (const n of sizes) {
    const { hm, addMs, bytes } = build(n);
    const dsts = new Uint32Array(DSTS);
    let seed = 12345;
    for (let i = 0; i < DSTS; i++) {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      const h = seed % n;
      dsts[i] = (0x40000000 + h * 256 + ((seed >>> 8) & 255)) >>> 0;
    }
    const routes = hm.routes;
    const routeBody = (): number => {
      let s = 0;
      for (let i = 0; i < DSTS; i++) {
        const r = routes.lookup(dsts[i]!);
        if (r !== undefined) s += r.prefixLen;
      }
      return s;
    };
    const resolveBody = (): number => {
      let s = 0;
      for (let i = 0; i < DSTS; i++) {
        const e = hm.resolve(dsts[i]!);
        if (e !== undefined) s += e.dests.length;
      }
      return s;
    };
    // Best of several short trials: the CPU is shared, so the best trial is the least disturbed one.
    const best = (body: () => number): number => {
      timeLoop(100, body); // warm up
      let b = 0;
      for (let t = 0; t < trials; t++) b = Math.max(b, timeLoop(minMs / trials, body));
      return b;
    };
    const routeLookupsPerSec = best(routeBody);
    const resolvePerSec = best(resolveBody);
    if (routeBody() !== DSTS * 24) throw new Error('bench sanity: some lookups missed');
    rows.push({ hosts: n, routeLookupsPerSec, resolvePerSec, bytesPerHost: bytes / n, addMs });
    await new Promise((r) => setImmediate(r));
  }
  if (opts.print ?? true) {
    console.log('| hosts | route lookups/s | resolve (route+neigh+fdb)/s | bytes/host | add all (ms) |');
    console.log('|---:|---:|---:|---:|---:|');
    for (const r of rows) {
      console.log(`| ${r.hosts} | ${(r.routeLookupsPerSec / 1e6).toFixed(1)} M | ${(r.resolvePerSec / 1e6).toFixed(1)} M | ${Number.isNaN(r.bytesPerHost) ? 'n/a (no --expose-gc)' : r.bytesPerHost.toFixed(0)} | ${r.addMs.toFixed(0)} |`);
    }
  }
  return rows;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  await runTablesBench();
}
