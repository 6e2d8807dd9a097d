/** Command line of `npm run bench`. */
import { parseArgs } from 'node:util';
import { ALL_PATHS, type PathId } from './metrics.js';

/** Parsed options. */
export interface BenchOptions {
  /** Short CI-sized run: 1 repetition, 2-second tests, 100 pings, 1000 fast pings. */
  quick: boolean;
  /** Run the micro-benchmarks (only them, unless --paths is also given). */
  micro: boolean;
  /** Paths to measure, in measurement order. */
  paths: PathId[];
  /** Whether the path comparison runs. */
  comparison: boolean;
  /** Repetitions of every figure. */
  reps: number;
  /** Seconds per iperf3 test. */
  duration: number;
  /** Pings per RTT sample. */
  pingCount: number;
  /** Pings per fast (1 ms) RTT sample of the latency section. */
  fastPings: number;
  /** Underlay MTU. */
  mtu: number;
  /** Rate of the paced 64 B UDP test (CPU per packet without overload), kpps. */
  pacedKpps: number;
  /** Extra copy of the JSON. */
  json?: string;
  /** Extra copy of the SVG chart. */
  svg?: string;
  /** Extra copy of the markdown table. */
  md?: string;
  /** Output directory (default bench/out). */
  outDir: string;
  /** Run our daemons under node --cpu-prof. */
  cpuProf: boolean;
  /** All repetitions of a path before the next path (default: rounds, one repetition of every path per round). */
  sequential: boolean;
  /** overlayd's --offload for our paths. */
  offload: 'auto' | 'off';
  /** Show usage. */
  help: boolean;
}

/** Usage text. */
export const USAGE = `Usage: npm run bench -- [options]        (as root)

Compares overlay paths between two network-namespace hosts over a veth:
  hostgw        no encapsulation: overlayd's host-gw backend routes each subnet via the peer
  kernel-vxlan  kernel VXLAN configured as flannel configures flannel.1 (the baseline)
  vxlan-dgram   our VXLAN VTEP (L3) in overlayd, node:dgram transport
  vxlan-mmsg    our VXLAN VTEP (L3) in overlayd, recvmmsg/sendmmsg transport
  udp-dgram     our UDP backend (flannel0 style) in overlayd, node:dgram
  udp-mmsg      our UDP backend in overlayd, recvmmsg/sendmmsg
  kernel-vxlan6 kernel VXLAN over the IPv6 underlay (2001:2:0:1::/64), as flannel-v6.1
  vxlan6-mmsg   our VXLAN VTEP (L3) over the IPv6 underlay, mmsg (the library backend:
                overlayd takes no IPv6 public address yet)
  udp6-mmsg     our UDP backend over the IPv6 underlay, mmsg (the library backend)

Per path and repetition: RTT (ping every 10 ms: p50/p99, each ping wakes an idle path),
the latency section, TCP 1 and 4 streams, UDP 64 B and 1400 B unlimited, UDP 64 B paced.
Latency section:
  request/response 1-byte transactions on one TCP connection, one outstanding at a
                   time (netperf TCP_RR style) for --duration seconds: transactions
                   per second and their p50/p99; client and server on two CPUs
  RTT idle p99.9   ping every 1 ms, --fast-pings times, on the idle path
  RTT under load   one iperf3 TCP stream through the same path; after 1 s, ping every
                   1 ms, --fast-pings times: p50/p99/p99.9 (the tail users feel)
  (pings and transactions: bench/lat/lat.c, compiled with cc at the first run)
  (throughput against worker count: once overlayd has workers, issue #12)

Options:
  --paths LIST     comma-separated subset of the paths above (default: all)
  --quick          short run: 1 repetition, 2 s tests, 100 pings, 1000 fast pings
  --reps N         repetitions per figure (default 3)
  --duration S     seconds per iperf3 test and per request/response test (default 5)
  --pings N        pings per RTT sample (default 300, 10 ms apart)
  --fast-pings N   pings per fast RTT sample of the latency section (default 3000,
                   1 ms apart; idle, and again under TCP load)
  --paced-kpps N   rate of the paced 64 B UDP test that measures CPU per packet
                   without overload (default 10; keep it below every path's capacity)
  --mtu N          underlay MTU of both veth ends (default 1500)
  --json FILE      also write every figure as JSON to FILE
  --svg FILE       also write the ratio chart to FILE
  --md FILE        also write the markdown table to FILE
  --out-dir DIR    where results.{json,md,svg} go (default bench/out)
  --sequential     all repetitions of one path before the next path (default:
                   rounds of one repetition of every path, each on a fresh testbed,
                   so slow drifts in background load hit every path alike)
  --offload MODE   overlayd --offload for our paths: auto (default) or off
  --cpu-prof       run our daemons under node --cpu-prof (profiles in <out-dir>/prof,
                   summarized at the end; figures are slowed by the profiler)
  --micro          run the codec / tables / raw I/O micro-benchmarks
                   (only those, unless --paths is given too)
  -h, --help       this text
`;

function offloadMode(v: string | undefined): 'auto' | 'off' {
  if (v === undefined || v === 'auto' || v === 'off') return v ?? 'auto';
  throw new Error(`--offload must be auto or off, got "${v}"`);
}

function posInt(name: string, v: string | undefined, def: number): number {
  if (v === undefined) return def;
  if (!/^\d+$/.test(v) || Number(v) < 1) throw new Error(`--${name} must be a positive integer, got "${v}"`);
  return Number(v);
}

/** Parse argv (without node and script). Throws with a one-line message on bad input. */
export function parseBenchArgs(argv: string[]): BenchOptions {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      quick: { type: 'boolean' },
      micro: { type: 'boolean' },
      paths: { type: 'string' },
      reps: { type: 'string' },
      duration: { type: 'string' },
      pings: { type: 'string' },
      'fast-pings': { type: 'string' },
      mtu: { type: 'string' },
      'paced-kpps': { type: 'string' },
      json: { type: 'string' },
      svg: { type: 'string' },
      md: { type: 'string' },
      'out-dir': { type: 'string' },
      'cpu-prof': { type: 'boolean' },
      sequential: { type: 'boolean' },
      offload: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const quick = values.quick ?? false;
  let paths: PathId[] = [...ALL_PATHS];
  if (values.paths !== undefined) {
    const want = values.paths.split(',').map((s) => s.trim()).filter(Boolean);
    for (const p of want) if (!(ALL_PATHS as readonly string[]).includes(p)) throw new Error(`unknown path "${p}" (known: ${ALL_PATHS.join(', ')})`);
    // Keep the canonical order: the baseline is measured early, host-gw first.
    paths = ALL_PATHS.filter((p) => want.includes(p));
    if (paths.length === 0) throw new Error('--paths is empty');
  }
  const micro = values.micro ?? false;
  const o: BenchOptions = {
    quick,
    micro,
    paths,
    comparison: !micro || values.paths !== undefined,
    reps: posInt('reps', values.reps, quick ? 1 : 3),
    duration: posInt('duration', values.duration, quick ? 2 : 5),
    pingCount: posInt('pings', values.pings, quick ? 100 : 300),
    fastPings: posInt('fast-pings', values['fast-pings'], quick ? 1000 : 3000),
    mtu: posInt('mtu', values.mtu, 1500),
    pacedKpps: posInt('paced-kpps', values['paced-kpps'], 10),
    outDir: values['out-dir'] ?? 'bench/out',
    cpuProf: values['cpu-prof'] ?? false,
    sequential: values.sequential ?? false,
    offload: offloadMode(values.offload),
    help: values.help ?? false,
  };
  if (values.json !== undefined) o.json = values.json;
  if (values.svg !== undefined) o.svg = values.svg;
  if (values.md !== undefined) o.md = values.md;
  if (o.mtu < 1280 || o.mtu > 9000) throw new Error('--mtu must be in 1280..9000');
  if (o.fastPings > 65536) throw new Error('--fast-pings must be at most 65536');
  return o;
}
