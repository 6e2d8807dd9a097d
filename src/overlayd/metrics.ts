/**
 * Observability: Prometheus metrics (prom-client) mirrored from Backend.stats(),
 * the HTTP endpoint serving `GET /healthz` and `GET /metrics`, and the one-line
 * stats log.
 */
import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { DataplaneStats } from '../vtep/backend.js';
import { DROP_REASONS } from '../vtep/counters.js';
import { ConfigError } from './config.js';
import type { EtcdStatus } from '../subnet/etcd-manager.js';
import type { UnderlayStatus } from './underlay.js';

/** Labels describing this daemon, exported as `overlayd_info`. */
export interface InfoLabels {
  backend: string;
  subnet: string;
  public_ip: string;
  iface: string;
  transport: string;
}

/**
 * Build a registry whose counters mirror `stats()` at each scrape: totals each way,
 * drops by reason, per-peer counters (label `peer` = public IP), the number of peers,
 * an info gauge, and prom-client's default process metrics.
 */
export function createMetrics(stats: () => DataplaneStats, info: InfoLabels, peerCount: () => number,
  opts: { defaultMetrics?: boolean; etcd?: () => EtcdStatus; underlay?: () => UnderlayStatus | undefined } = {}): Registry {
  const reg = new Registry();
  let snap: DataplaneStats | undefined;
  // One stats() call per scrape, shared by all collectors (each collect() runs during the same metrics() call).
  let snapAt = -1;
  let scrape = 0;
  const get = (): DataplaneStats => {
    if (snapAt !== scrape || !snap) {
      snap = stats();
      snapAt = scrape;
    }
    return snap;
  };
  const total = (name: string, help: string, pick: (s: DataplaneStats) => number): void => {
    new Counter({
      name, help, registers: [reg],
      collect() { this.reset(); this.inc(pick(get())); },
    });
  };
  total('overlayd_tx_packets_total', 'Packets read from the tunnel device and sent to the network.', (s) => s.txPackets);
  total('overlayd_tx_bytes_total', 'Bytes read from the tunnel device and sent to the network.', (s) => s.txBytes);
  total('overlayd_rx_packets_total', 'Packets received from the network and written to the tunnel device.', (s) => s.rxPackets);
  total('overlayd_rx_bytes_total', 'Bytes received from the network and written to the tunnel device.', (s) => s.rxBytes);
  new Counter({
    name: 'overlayd_drops_total', help: 'Packets dropped, by reason.', labelNames: ['reason'], registers: [reg],
    collect() {
      this.reset();
      const d = get().drops;
      // every known reason is always present (0 until it happens), so dashboards and alerts see it
      for (const reason of DROP_REASONS) this.inc({ reason }, d[reason] ?? 0);
      for (const [reason, n] of Object.entries(d)) if (!(DROP_REASONS as readonly string[]).includes(reason)) this.inc({ reason }, n);
    },
  });
  const off = (field: keyof NonNullable<DataplaneStats['offload']>, name: string, help: string): void => {
    total(name, help, (s) => s.offload?.[field] ?? 0);
  };
  off('superPackets', 'overlayd_offload_super_packets_total', 'TSO/USO super-packets read from the tunnel device and segmented (offload auto).');
  off('segmentsOut', 'overlayd_offload_segments_total', 'Segments produced from those super-packets.');
  off('gsoSends', 'overlayd_offload_gso_sends_total', 'Datagram runs sent as one UDP GSO message.');
  off('gsoSegments', 'overlayd_offload_gso_segments_total', 'Datagrams inside UDP GSO sends.');
  off('groMessages', 'overlayd_offload_gro_messages_total', 'UDP GRO messages received and split.');
  off('groSegments', 'overlayd_offload_gro_segments_total', 'Datagrams inside UDP GRO messages.');
  off('coalescedWrites', 'overlayd_offload_coalesced_writes_total', 'Coalesced TCP super-packets written to the tunnel device.');
  off('coalescedSegments', 'overlayd_offload_coalesced_segments_total', 'Segments inside coalesced writes.');
  off('rxSuperPackets', 'overlayd_offload_rx_super_packets_total', 'Received inner TCP packets over the MTU written to the device as GSO super-packets.');
  off('csumFinished', 'overlayd_offload_csum_finished_total', 'Received inner packets whose partial TCP/UDP checksum was completed in software.');
  off('coalesceCsumFallbacks', 'overlayd_offload_coalesce_csum_fallbacks_total', 'Coalesced runs written packet by packet because a segment failed its TCP checksum.');
  new Gauge({
    name: 'overlayd_stage_latency_microseconds',
    help: 'Timing mode (--timing): quantiles of the time batches spend in each pipeline stage since start (label stage, see src/vtep/timing.ts; quantile 0.5, 0.9, 0.99, 0.999, 1 = max).',
    labelNames: ['stage', 'quantile'], registers: [reg],
    collect() {
      this.reset();
      for (const [stage, q] of Object.entries(get().timing ?? {})) {
        if (q === undefined) continue;
        for (const [quantile, v] of [['0.5', q.p50], ['0.9', q.p90], ['0.99', q.p99], ['0.999', q.p999], ['1', q.max]] as const) this.set({ stage, quantile }, v);
      }
    },
  });
  total('overlayd_kernel_errors_total', 'Kernel configuration operations (routes, addresses) that failed after start; see the log.', (s) => s.errors?.kernel ?? 0);
  total('overlayd_rejected_peers_total', 'host-gw: peer leases refused because their public IP is not on the underlay interface\'s segment; see the log.', (s) => s.errors?.rejectedPeers ?? 0);
  new Counter({
    name: 'overlayd_device_read_errors_total', help: 'Errors reading the tunnel device, by errno.', labelNames: ['errno'], registers: [reg],
    collect() {
      this.reset();
      for (const [errno, n] of Object.entries(get().errors?.device ?? {})) this.inc({ errno }, n);
    },
  });
  new Counter({
    name: 'overlayd_send_errors_total', help: 'Datagrams the underlay socket refused, by errno (ENETUNREACH, EAGAIN, ...); overlayd_drops_total counts them by class.', labelNames: ['errno'], registers: [reg],
    collect() {
      this.reset();
      for (const [errno, n] of Object.entries(get().errors?.send ?? {})) this.inc({ errno }, n);
    },
  });
  const perPeer = (field: 'txPackets' | 'txBytes' | 'rxPackets' | 'rxBytes', name: string, help: string): void => {
    new Counter({
      name, help, labelNames: ['peer'], registers: [reg],
      collect() {
        this.reset();
        for (const [peer, c] of Object.entries(get().peers)) this.inc({ peer }, c[field]);
      },
    });
  };
  perPeer('txPackets', 'overlayd_peer_tx_packets_total', 'Packets sent to a peer (label peer: its public IP).');
  perPeer('txBytes', 'overlayd_peer_tx_bytes_total', 'Bytes sent to a peer.');
  perPeer('rxPackets', 'overlayd_peer_rx_packets_total', 'Packets received from a peer.');
  perPeer('rxBytes', 'overlayd_peer_rx_bytes_total', 'Bytes received from a peer.');
  new Gauge({ name: 'overlayd_peers', help: 'Peers configured from the peers file.', registers: [reg], collect() { this.set(peerCount()); } });
  const g = new Gauge({ name: 'overlayd_info', help: 'overlayd configuration (value is always 1).', labelNames: ['backend', 'subnet', 'public_ip', 'iface', 'transport'], registers: [reg] });
  g.set({ ...info }, 1);
  if (opts.etcd) etcdMetrics(reg, opts.etcd);
  if (opts.underlay) underlayMetrics(reg, opts.underlay);
  if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: reg });
  // Bump the scrape generation before each metrics() call.
  const orig = reg.metrics.bind(reg);
  reg.metrics = async () => {
    scrape++;
    return orig();
  };
  return reg;
}

/** Underlay events that /metrics counts (overlayd_underlay_events_total{event}), each present from the start. */
export const UNDERLAY_EVENTS = ['link_down', 'link_up', 'address_lost', 'address_changed', 'address_back', 'rebind_failed', 'resync'] as const;

/** The underlay watch's metrics (src/overlayd/underlay.ts), read at each scrape; absent until it runs. */
function underlayMetrics(reg: Registry, status: () => UnderlayStatus | undefined): void {
  new Gauge({ name: 'overlayd_underlay_link_up', help: '1 while the underlay interface is up with carrier.', registers: [reg],
    collect() { const s = status(); if (s) this.set(s.linkUp ? 1 : 0); else this.reset(); } });
  new Gauge({ name: 'overlayd_underlay_address_present', help: '1 while the socket is bound to an address the underlay interface has (0: not ready).', registers: [reg],
    collect() { const s = status(); if (s) this.set(s.addressPresent ? 1 : 0); else this.reset(); } });
  new Gauge({ name: 'overlayd_underlay_info', help: 'The underlay address the socket is bound to and the public IP advertised (value 1).', labelNames: ['iface', 'local_ip', 'public_ip'], registers: [reg],
    collect() { this.reset(); const s = status(); if (s) this.set({ iface: s.iface, local_ip: s.localIp, public_ip: s.publicIp }, 1); } });
  new Counter({ name: 'overlayd_underlay_events_total', help: 'Underlay events: link down/up, bound address lost, changed (socket bound again), back, rebind failures, resyncs.', labelNames: ['event'], registers: [reg],
    collect() {
      this.reset();
      const s = status();
      if (!s) return;
      for (const event of UNDERLAY_EVENTS) this.inc({ event }, s.events[event] ?? 0);
    } });
}

/** etcd mode's metrics, read from the subnet manager's status at each scrape. */
function etcdMetrics(reg: Registry, status: () => EtcdStatus): void {
  const gauge = (name: string, help: string, pick: (s: EtcdStatus) => number): void => {
    new Gauge({ name, help, registers: [reg], collect() { this.set(pick(status())); } });
  };
  const counter = (name: string, help: string, pick: (s: EtcdStatus) => number): void => {
    new Counter({ name, help, registers: [reg], collect() { this.reset(); this.inc(pick(status())); } });
  };
  gauge('overlayd_etcd_connected', '1 while the watch of the subnet leases in etcd is established.', (s) => (s.connected ? 1 : 0));
  gauge('overlayd_etcd_lease_held', '1 while our subnet lease is in etcd.', (s) => (s.leaseHeld ? 1 : 0));
  gauge('overlayd_etcd_lease_expiry_timestamp_seconds', 'When our lease expires unless renewed (Unix time; 0: none; +Inf: a reservation).', (s) => s.leaseExpiresAt / 1000);
  gauge('overlayd_etcd_revision', 'Last etcd revision seen by the watch.', (s) => s.revision);
  gauge('overlayd_etcd_skipped_keys', 'Lease keys in etcd skipped because their data is unusable (each logged once).', (s) => s.skippedKeys);
  counter('overlayd_etcd_reconnects_total', 'Reconnections to etcd after a failure.', (s) => s.reconnects);
  counter('overlayd_etcd_compactions_total', 'Full re-listings after the watch revision was compacted.', (s) => s.compactions);
  counter('overlayd_etcd_events_total', 'Watch events received.', (s) => s.events);
  counter('overlayd_etcd_renewals_total', 'Lease renewals.', (s) => s.renewals);
}

/**
 * Start the HTTP server: `GET /healthz` -> 200 "ok" (while `healthy()` is true, else 503 with the reason it returned),
 * `GET /readyz` -> 200 "ready" while `ready()` (else 503 "not ready"), `GET /metrics` ->
 * Prometheus text. Rejects with ConfigError when the address is in use.
 */
export function startHttp(ip: string, port: number, registry: Registry, healthy: () => boolean | string = () => true, ready: () => boolean = () => healthy() === true, fd?: number): Promise<Server> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
    } else if (path === '/healthz') {
      const h = healthy();
      res.writeHead(h === true ? 200 : 503, { 'content-type': 'text/plain' }).end(h === true ? 'ok' : typeof h === 'string' ? h : 'not ok');
    } else if (path === '/readyz') {
      const ok = ready();
      res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' }).end(ok ? 'ready' : 'not ready');
    } else if (path === '/metrics') {
      registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
        (e: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics: ${e.message}`),
      );
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /healthz, /readyz or /metrics');
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => reject(httpListenError(ip, port, e)));
    // `fd`: a socket already listening at ip:port, held by the supervisor (src/overlayd/supervisor.ts)
    if (fd !== undefined) server.listen({ fd }, () => resolve(server));
    else server.listen(port, ip, () => resolve(server));
  });
}

/** The ConfigError for a healthz/metrics address that cannot be listened on. */
export function httpListenError(ip: string, port: number, e: NodeJS.ErrnoException): ConfigError {
  const what = `--healthz-ip ${ip} --healthz-port ${port}`;
  if (e.code === 'EADDRINUSE') return new ConfigError(`${what}: address ${ip}:${port} already in use`);
  if (e.code === 'EADDRNOTAVAIL') return new ConfigError(`${what}: ${ip} is not an address of this host`);
  return new ConfigError(`${what}: cannot listen: ${e.message}`);
}

/** Format a stats snapshot (and the rates since `prev`, over `secs`) as one log line. */
export function formatStatsLine(s: DataplaneStats, prev: DataplaneStats | undefined, secs: number, peers: number): string {
  const rate = (n: number, p: number | undefined): string => (prev && secs > 0 ? `${Math.round((n - (p ?? 0)) / secs)}/s` : '-');
  const drops = Object.entries(s.drops).filter(([, n]) => n > 0);
  const dropStr = drops.length ? drops.map(([r, n]) => `${r}=${n}`).join(',') : '0';
  return `stats: peers=${peers} tx=${s.txPackets}pkt/${s.txBytes}B (${rate(s.txPackets, prev?.txPackets)}) rx=${s.rxPackets}pkt/${s.rxBytes}B (${rate(s.rxPackets, prev?.rxPackets)}) drops=${dropStr}`;
}
