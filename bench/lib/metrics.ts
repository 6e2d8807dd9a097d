/**
 * The figures the comparison benchmark reports for every path, with units and
 * the direction that is better. Shared by the runner and the report builder.
 */

/** Every dataplane path the benchmark knows, in the order they are measured. */
export const ALL_PATHS = ['hostgw', 'kernel-vxlan', 'floor', 'vxlan-dgram', 'vxlan-mmsg', 'udp-dgram', 'udp-mmsg', 'kernel-vxlan6', 'vxlan6-mmsg', 'udp6-mmsg'] as const;

/** A path id: `hostgw`, `kernel-vxlan`, or one of our backends over a transport. */
export type PathId = (typeof ALL_PATHS)[number];

/** The path every ratio is relative to. */
export const BASELINE: PathId = 'kernel-vxlan';

/** Human labels for the paths. */
export const PATH_LABELS: Record<PathId, string> = {
  hostgw: 'host-gw (no encap)',
  'kernel-vxlan': 'kernel VXLAN (flannel.1)',
  floor: 'floor: TUN + UDP syscalls only (C)',
  'vxlan-dgram': 'our VXLAN L3, dgram',
  'vxlan-mmsg': 'our VXLAN L3, mmsg',
  'udp-dgram': 'our UDP, dgram',
  'udp-mmsg': 'our UDP, mmsg',
  'kernel-vxlan6': 'kernel VXLAN over IPv6 (flannel-v6.1)',
  'vxlan6-mmsg': 'our VXLAN L3 over IPv6, mmsg',
  'udp6-mmsg': 'our UDP over IPv6, mmsg',
};

/** True for the paths that run our daemon (the others are the kernel alone, or the floor forwarder). */
export function isOurs(id: PathId): boolean {
  return id !== 'hostgw' && id !== 'kernel-vxlan' && id !== 'kernel-vxlan6' && id !== 'floor';
}

/** Keys of the per-path figures. */
export const METRIC_KEYS = [
  'tcp1',
  'tcp4',
  'udp64pps',
  'udp64loss',
  'udp1400pps',
  'udp1400loss',
  'rttP50',
  'rttP99',
  'rttIdleP999',
  'rttLoadP50',
  'rttLoadP99',
  'rttLoadP999',
  'rrRate',
  'rrP50',
  'rrP99',
  'cpuPerPkt64',
  'cpuPerPkt1400',
  'cpuPerPktPaced',
  'cpuPerByteTcp',
  'rssPeak',
] as const;

/** One figure's key. */
export type MetricKey = (typeof METRIC_KEYS)[number];

/** How a figure is shown and compared. */
export interface MetricDef {
  /** Column label. */
  label: string;
  /** Short label for the chart. */
  short: string;
  /** Unit shown after the value. */
  unit: string;
  /** Which direction is better. */
  better: 'higher' | 'lower';
  /** Whether the figure is charted as a ratio. */
  chart: boolean;
  /** Whether a ratio to the baseline is meaningful (not for loss percentages or our own RSS). */
  ratio: boolean;
  /** Format a value (in the figure's base unit) for tables. */
  format(v: number): string;
}

const fixed = (d: number) => (v: number) => v.toFixed(d);
const sig = (v: number): string => (Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2));

/**
 * Base units: throughput in Gbit/s, packet rates in kpps, loss in percent,
 * RTT in microseconds, request/response rate in transactions per second, CPU in microseconds of CPU time per packet, RSS in MiB.
 * `cpuPerPkt64`/`cpuPerPkt1400` come from the unlimited-rate UDP tests (the sender
 * overloads the path, so they include the cost of datagrams that are later dropped);
 * `cpuPerPktPaced` from a 64 B test at a fixed rate every path sustains (--paced-kpps),
 * the per-packet cost without overload. The latency section (bench/lib/latency.ts):
 * `rttP50`/`rttP99` ping every 10 ms (each ping wakes an idle path); `rttIdleP999`
 * pings every 1 ms on the idle path; `rttLoad*` pings every 1 ms while one iperf3 TCP
 * stream fills the same path; `rrRate`/`rrP50`/`rrP99` are 1-byte transactions on one
 * TCP connection, one outstanding (bench/lat/lat.c). `cpuPerByteTcp`: nanoseconds of CPU time (every
 * process of the path, both hosts, plus softirq) per byte moved in the 1-stream TCP test.
 */
export const METRICS: Record<MetricKey, MetricDef> = {
  tcp1: { label: 'TCP 1 stream', short: 'TCP x1', unit: 'Gbit/s', better: 'higher', chart: true, ratio: true, format: sig },
  tcp4: { label: 'TCP 4 streams', short: 'TCP x4', unit: 'Gbit/s', better: 'higher', chart: true, ratio: true, format: sig },
  udp64pps: { label: 'UDP 64 B rx rate', short: 'UDP 64B pps', unit: 'kpps', better: 'higher', chart: true, ratio: true, format: sig },
  udp64loss: { label: 'UDP 64 B loss', short: 'UDP 64B loss', unit: '%', better: 'lower', chart: false, ratio: false, format: fixed(1) },
  udp1400pps: { label: 'UDP 1400 B rx rate', short: 'UDP 1400B pps', unit: 'kpps', better: 'higher', chart: true, ratio: true, format: sig },
  udp1400loss: { label: 'UDP 1400 B loss', short: 'UDP 1400B loss', unit: '%', better: 'lower', chart: false, ratio: false, format: fixed(1) },
  rttP50: { label: 'RTT p50', short: 'RTT p50', unit: 'µs', better: 'lower', chart: true, ratio: true, format: sig },
  rttP99: { label: 'RTT p99', short: 'RTT p99', unit: 'µs', better: 'lower', chart: true, ratio: true, format: sig },
  rttIdleP999: { label: 'RTT p99.9 idle, 1 ms pings', short: 'RTT p99.9 idle', unit: 'µs', better: 'lower', chart: true, ratio: true, format: sig },
  rttLoadP50: { label: 'RTT p50 under TCP load', short: 'RTT p50 loaded', unit: 'µs', better: 'lower', chart: true, ratio: true, format: sig },
  rttLoadP99: { label: 'RTT p99 under TCP load', short: 'RTT p99 loaded', unit: 'µs', better: 'lower', chart: true, ratio: true, format: sig },
  rttLoadP999: { label: 'RTT p99.9 under TCP load', short: 'RTT p99.9 loaded', unit: 'µs', better: 'lower', chart: true, ratio: true, format: sig },
  rrRate: { label: 'TCP request/response rate', short: 'TCP_RR rate', unit: 'trans/s', better: 'higher', chart: true, ratio: true, format: sig },
  rrP50: { label: 'TCP request/response p50', short: 'TCP_RR p50', unit: 'µs', better: 'lower', chart: true, ratio: true, format: sig },
  rrP99: { label: 'TCP request/response p99', short: 'TCP_RR p99', unit: 'µs', better: 'lower', chart: true, ratio: true, format: sig },
  cpuPerPkt64: { label: 'CPU/pkt 64 B', short: 'CPU/pkt 64B', unit: 'µs', better: 'lower', chart: true, ratio: true, format: sig },
  cpuPerPkt1400: { label: 'CPU/pkt 1400 B', short: 'CPU/pkt 1400B', unit: 'µs', better: 'lower', chart: true, ratio: true, format: sig },
  cpuPerPktPaced: { label: 'CPU/pkt 64 B, paced', short: 'CPU/pkt 64B paced', unit: 'µs', better: 'lower', chart: true, ratio: true, format: sig },
  cpuPerByteTcp: { label: 'CPU/byte, TCP 1 stream', short: 'CPU/byte TCP', unit: 'ns', better: 'lower', chart: true, ratio: true, format: sig },
  rssPeak: { label: 'peak RSS (ours)', short: 'RSS', unit: 'MiB', better: 'lower', chart: false, ratio: false, format: fixed(1) },
};
