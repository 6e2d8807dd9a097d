/**
 * `npm run bench` (as root): the comparison benchmark of issue #7.
 *
 * Builds two network-namespace hosts over a veth (same MTU at both ends) and
 * measures, one path after the other, host-gw (no encapsulation), kernel VXLAN set
 * up as flannel sets up flannel.1, and our overlayd with the VXLAN VTEP and the UDP
 * backend over both transports. Every figure is repeated (median, min-max) and
 * every path is given as a ratio to kernel VXLAN measured in the same run.
 *
 * Per path and repetition: RTT p50/p99 (ping every 10 ms), the latency section
 * (bench/lib/latency.ts, with bench/lat/lat.c: request/response rate and p50/p99 on
 * one TCP connection; RTT p99.9 with pings every 1 ms, idle; RTT p50/p99/p99.9 with
 * pings every 1 ms under one TCP stream), TCP throughput with 1
 * and 4 streams (iperf3 -J), UDP received packet rate and loss at 64 and 1400 byte
 * payloads (iperf3 -u -b 0), CPU time per received datagram during the UDP tests
 * (see bench/lib/proc.ts for what is counted), and our daemon's peak RSS (VmHWM).
 * By default the repetitions run in rounds (every path once per round, each on a
 * fresh pair of namespaces); --sequential runs all repetitions of a path together.
 *
 * Output: progress on stderr, a table on stdout, and <out-dir>/results.json (every
 * figure and every test execution), results.md (table, goals, caveats) and
 * ratios.svg (hand-written bar chart of the ratios); --json/--md/--svg write copies.
 *
 * Fairness: the machine's CPUs are shared by everything (iperf3 client and server,
 * both daemons, softirq); nothing is pinned, as on a real node where pods and the
 * overlay share cores. Other load on the machine shows up in the figures: run on a
 * quiet machine for numbers to publish. See USAGE for options.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';
import { parseBenchArgs, USAGE, type BenchOptions } from './lib/args.js';
import { describeMachine } from './lib/machine.js';
import { FAST_PING_MS } from './lib/latency.js';
import { BASELINE, type PathId } from './lib/metrics.js';
import { runMicro } from './lib/micro.js';
import { cpuFormula, irqTimeAccounting } from './lib/proc.js';
import { buildReport, renderMarkdown, renderSvg, renderTable, type RawRun, type RawPathResult } from './lib/report.js';
import { destroyLiveBeds, measurePath, mergeResults } from './lib/runner.js';
import { netnsAvailable } from '../test/helpers/netns.js';
import { PATHS } from './paths/index.js';
import { findOverlayd } from './paths/overlayd.js';

const BENCH_DIR = dirname(fileURLToPath(import.meta.url));

/** Progress on stderr with the elapsed time. */
const started = Date.now();
function log(msg: string): void {
  const t = ((Date.now() - started) / 1000).toFixed(0).padStart(4);
  process.stderr.write(`[${t}s] ${msg}\n`);
}

/** Tools the comparison needs. */
function checkTools(): string[] {
  const missing: string[] = [];
  for (const [cmd, arg] of [['ip', '-V'], ['iperf3', '--version'], ['ping', '-V'], ['ss', '-V'], ['bridge', '-V']] as const) {
    try { execFileSync(cmd, [arg], { stdio: 'ignore' }); } catch { missing.push(cmd); }
  }
  return missing;
}

/** Write a file, creating its directory. */
function writeOut(file: string, text: string): void {
  mkdirSync(dirname(resolve(file)), { recursive: true });
  writeFileSync(file, text);
}

async function main(argv: string[]): Promise<number> {
  let opts: BenchOptions;
  try {
    opts = parseBenchArgs(argv);
  } catch (e) {
    process.stderr.write(`bench: ${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  if (opts.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const command = `npm run bench${argv.length ? ' -- ' + argv.join(' ') : ''}`;
  const run: RawRun = {
    meta: {
      startedAt: new Date().toISOString(),
      finishedAt: '',
      command,
      machine: describeMachine(),
      options: { reps: opts.reps, durationS: opts.duration, pingCount: opts.pingCount, fastPings: opts.fastPings, quick: opts.quick, mtu: opts.mtu, cpuProf: opts.cpuProf, sequential: opts.sequential, paths: opts.comparison ? opts.paths : [], pacedKpps: opts.pacedKpps },
      cpuAccounting: { irqTimeAccounting: irqTimeAccounting(), formula: '' },
      notes: [
        opts.sequential || opts.reps === 1
          ? 'Order: all repetitions of one path, then the next path.'
          : 'Order: rounds; each round measures every path once, on a fresh testbed, so slow drifts in background load hit every path alike.',
        'Two namespace hosts joined by one veth pair; iperf3 and ping run between workload addresses (x.x.x.1 of each lease, on loopback), so every path carries the same traffic; each path gets a fresh pair of namespaces.',
        'Nothing is pinned: iperf3 client and server, both daemons and softirq share the machine’s CPUs, as they would on one host running two pods. Other load on the machine shows up in the figures. One exception: the request/response client runs on the first CPU and its server on the second, as on two hosts (unpinned, whether the scheduler puts them on one CPU moved the kernel path’s rate tenfold).',
        'UDP packet rate: iperf3 -u -b 0 (unlimited) for the test duration; the figure is datagrams received per second at the server; loss is what the sender sent and the receiver never saw.',
        `CPU/pkt 64 B and 1400 B are measured during those unlimited tests (so they include datagrams sent and then dropped); "CPU/pkt 64 B, paced" during a 64 B test paced at ${opts.pacedKpps} kpps, below every path's capacity: the per-packet cost without overload.`,
        'RTT: ping every 10 ms between the workload addresses, per-packet times, nearest-rank p50/p99.',
        `Latency section: "RTT p99.9 idle" pings every ${FAST_PING_MS} ms (${opts.fastPings} pings) on the idle path; "under TCP load" pings the same way while one iperf3 TCP stream runs through the path (pings start 1 s into it); percentiles over the replies received (lost pings are in results.json). These pings come from bench/lat/lat.c (it does not busy-wait between requests as iputils ping does below 10 ms), as does the request/response test: 1-byte transactions on one TCP connection, one outstanding, blocking send/recv, TCP_NODELAY, client and server pinned to two CPUs, for ${opts.duration} s; rate in transactions per second, p50/p99 of the transaction time.`,
        'Not yet measured: throughput against worker count (overlayd has no workers yet, issue #12).',
        'Peak RSS: VmHWM of our daemon (the larger of the two hosts) since it started, read after each repetition.',
      ],
    },
    paths: [],
  };
  run.meta.cpuAccounting.formula = cpuFormula(run.meta.cpuAccounting.irqTimeAccounting);

  if (opts.micro) {
    log('micro-benchmarks');
    run.micro = await runMicro(BENCH_DIR, opts.quick, log);
  }

  if (opts.comparison) {
    if (process.getuid?.() !== 0 || !netnsAvailable()) {
      process.stderr.write('bench: the comparison needs root (network namespaces); run as root, or use --micro alone\n');
      return 2;
    }
    const missing = checkTools();
    if (missing.length) {
      process.stderr.write(`bench: missing tools: ${missing.join(', ')} (apt-get install iproute2 iperf3 iputils-ping)\n`);
      return 2;
    }
    if (!opts.paths.includes(BASELINE)) log(`note: ${BASELINE} is not among --paths: no ratios will be computed`);
    const entry = findOverlayd();
    run.meta.overlayd = entry ? `${entry.kind === 'dist' ? 'built JavaScript' : 'TypeScript via tsx'} (${relative(process.cwd(), entry.script)})` : 'not available';
    log(`overlayd: ${entry ? run.meta.overlayd : 'not available: our paths will be reported as not measured'}`);
    log(`machine: ${run.meta.machine.cpuModel}, ${run.meta.machine.cpus} CPUs, Linux ${run.meta.machine.kernel}; ${opts.reps} rep(s) x ${opts.duration} s tests; paths ${opts.paths.join(', ')}`);

    const outDir = resolve(opts.outDir);
    mkdirSync(outDir, { recursive: true });
    const workDir = mkdtempSync(join(tmpdir(), 'overlay-bench-'));
    const cpuProfDir = opts.cpuProf ? join(outDir, 'prof') : undefined;
    if (opts.offload === 'off') run.meta.notes.push('Run with --offload off: our daemons ran without kernel offloads (one packet per datagram).');
    if (cpuProfDir) {
      mkdirSync(cpuProfDir, { recursive: true });
      run.meta.notes.push('Run with --cpu-prof: our daemons ran under the V8 profiler, which slows them; use a run without it for the figures.');
    }
    // Always clean up: Ctrl-C, SIGTERM, and any exit.
    let interrupted = false;
    const onSignal = (sig: NodeJS.Signals): void => {
      if (interrupted) return;
      interrupted = true;
      log(`${sig}: removing the testbed`);
      destroyLiveBeds();
      try { rmSync(workDir, { recursive: true, force: true }); } catch { /* best effort */ }
      process.exit(130);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    process.on('exit', destroyLiveBeds);
    try {
      const all = [...Array(opts.reps).keys()];
      const settings = (repIndices: number[]) => ({
        reps: opts.reps, repIndices, duration: opts.duration, pingCount: opts.pingCount, fastPings: opts.fastPings, mtu: opts.mtu, pacedPps: opts.pacedKpps * 1000, workDir, irqTime: run.meta.cpuAccounting.irqTimeAccounting, log, offload: opts.offload,
        ...(cpuProfDir ? { cpuProfDir } : {}),
      });
      const parts = new Map<PathId, RawPathResult[]>(opts.paths.map((id) => [id, []]));
      if (opts.sequential || opts.reps === 1) {
        for (const id of opts.paths) parts.get(id)?.push(await measurePath(PATHS[id], settings(all)));
      } else {
        for (const rep of all) {
          log(`-- round ${rep + 1}/${opts.reps}`);
          for (const id of opts.paths) parts.get(id)?.push(await measurePath(PATHS[id], settings([rep])));
        }
      }
      for (const id of opts.paths) run.paths.push(mergeResults(parts.get(id) ?? []));
    } finally {
      destroyLiveBeds();
      if (!process.env.BENCH_KEEP_LOGS) rmSync(workDir, { recursive: true, force: true });
      else log(`logs kept in ${workDir}`);
    }
  }
  run.meta.finishedAt = new Date().toISOString();

  const report = buildReport(run);
  const outDir = resolve(opts.outDir);
  mkdirSync(outDir, { recursive: true });
  const json = JSON.stringify({ report, raw: run }, null, 2) + '\n';
  const files: string[] = [];
  const put = (file: string, text: string): void => { writeOut(file, text); files.push(file); };
  put(join(outDir, 'results.json'), json);
  if (opts.json) put(opts.json, json);
  if (opts.comparison) {
    const md = renderMarkdown(report);
    const svg = renderSvg(report);
    put(join(outDir, 'results.md'), md);
    put(join(outDir, 'ratios.svg'), svg);
    if (opts.md) put(opts.md, md);
    if (opts.svg) put(opts.svg, svg);
    process.stdout.write('\n' + renderTable(report) + '\n');
  }
  if (run.micro) {
    process.stdout.write('\nmicro-benchmarks:\n');
    for (const [name, o] of Object.entries(run.micro)) process.stdout.write(`  ${name}: ${o.ok ? 'ok' : `not run: ${o.error}`}\n`);
  }
  process.stdout.write(`\nwrote ${files.join(', ')}\n`);
  const measured = run.paths.filter((p) => !p.error).length;
  return opts.comparison && measured === 0 ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    destroyLiveBeds();
    process.stderr.write(`bench: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
    process.exit(1);
  },
);
