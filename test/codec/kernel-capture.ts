/**
 * Produce Linux-kernel VXLAN traffic between two namespace hosts and capture it with
 * tcpdump on the underlay veth. Used live by kernel-live.test.ts and, through
 * make-fixtures.ts, to regenerate the committed captures in test/fixtures/.
 *
 * Topology (all inside per-run namespaces of a Testbed; nothing in the root namespace):
 *
 *   A: veth u0 198.18.0.1/24 (02:00:c6:12:00:01) ---- B: veth u0 198.18.0.2/24 (02:00:c6:12:00:02)
 *          2001:2:0:1::1/64                                   2001:2:0:1::2/64
 *
 * and on each side one kernel vxlan device per case, configured as flannel does
 * (`nolearning`, /32 address, onlink route to the peer's .0, permanent neighbour, fdb
 * entry pointing at the peer's underlay address).
 */
import { readFileSync, rmSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import type { NsHost, Testbed } from '../helpers/netns.js';

/** Underlay addressing (fixed, so captures are reproducible). */
export const UNDERLAY = {
  aIp: '198.18.0.1',
  bIp: '198.18.0.2',
  aIp6: '2001:2:0:1::1',
  bIp6: '2001:2:0:1::2',
  aMac: '02:00:c6:12:00:01',
  bMac: '02:00:c6:12:00:02',
  dev: 'u0',
} as const;

/** One kernel vxlan device pair and the traffic sent through it. */
export interface KernelCase {
  /** Fixture base name. */
  name: string;
  /** Device name on both hosts. */
  dev: string;
  /** VNI. */
  vni: number;
  /** UDP destination port. */
  port: number;
  /** Extra `ip link add ... type vxlan` options. */
  extra: string[];
  /** Underlay family (default 4): 6 runs the devices over the IPv6 addresses, as flannel's flannel-v6.<VNI>. */
  underlay?: 4 | 6;
  /** Whether the device computes outer UDP checksums (`udpcsum`; the kernel default, as flannel's device shows). */
  udpcsum: boolean;
  /** GBP extension enabled. */
  gbp: boolean;
  /** VTEP MACs. */
  aVtepMac: string;
  bVtepMac: string;
  /** Overlay (/32 on the device) addresses; the peer subnet is <x>/24. */
  aOverlay: string;
  bOverlay: string;
  /** ping invocations from A to B's overlay address (extra args). */
  pings: string[][];
}

/** The captured cases: flannel's default device, a non-default VNI on the IANA port with UDP checksums, and GBP. */
export const CASES: KernelCase[] = [
  {
    name: 'flannel-vni1-8472', dev: 'flannel.1', vni: 1, port: 8472, extra: [], udpcsum: true, gbp: false,
    aVtepMac: '0a:c6:13:01:00:00', bVtepMac: '0a:c6:13:02:00:00', aOverlay: '198.19.1.0', bOverlay: '198.19.2.0',
    pings: [['-c', '2', '-s', '56'], ['-c', '1', '-s', '1000'], ['-c', '1', '-s', '56', '-Q', '0x03'], ['-c', '1', '-s', '56', '-Q', '0xb9']],
  },
  {
    name: 'vni4242-4789-udpcsum', dev: 'vx4242', vni: 4242, port: 4789, extra: ['udpcsum'], udpcsum: true, gbp: false,
    aVtepMac: '0a:c6:13:65:00:00', bVtepMac: '0a:c6:13:66:00:00', aOverlay: '198.19.101.0', bOverlay: '198.19.102.0',
    pings: [['-c', '2', '-s', '56'], ['-c', '1', '-s', '1401'], ['-c', '1', '-s', '57', '-Q', '0x01']],
  },
  {
    name: 'gbp-vni77-4790', dev: 'vxgbp', vni: 77, port: 4790, extra: ['gbp', 'noudpcsum'], udpcsum: false, gbp: true,
    aVtepMac: '0a:c6:13:c9:00:00', bVtepMac: '0a:c6:13:ca:00:00', aOverlay: '198.19.201.0', bOverlay: '198.19.202.0',
    pings: [['-c', '1', '-s', '56', '-m', String(0x1234)], ['-c', '1', '-s', '56', '-m', String(0x00400000 | 0xbeef)]],
  },
  {
    // flannel's IPv6-underlay device (flannel-v6.1: VNI 1, port 8472, `local <IPv6>`), inner IPv4;
    // the same VNI and port as flannel.1 beside it, on the IPv6 socket
    name: 'flannel-v6-vni1-8472', dev: 'flannel-v6.1', vni: 1, port: 8472, extra: [], underlay: 6, udpcsum: true, gbp: false,
    aVtepMac: '0a:c6:13:2d:00:00', bVtepMac: '0a:c6:13:2e:00:00', aOverlay: '198.19.45.0', bOverlay: '198.19.46.0',
    pings: [['-c', '2', '-s', '56'], ['-c', '1', '-s', '1000'], ['-c', '1', '-s', '56', '-Q', '0x03'], ['-c', '1', '-s', '1402']],
  },
];

function net24(ip: string): string {
  return `${ip.split('.').slice(0, 3).join('.')}.0/24`;
}

function setupSide(h: NsHost, c: KernelCase, localIp: string, peerIp: string, myMac: string, peerMac: string, myOv: string, peerOv: string): void {
  h.ip('link', 'add', c.dev, 'address', myMac, 'type', 'vxlan', 'id', String(c.vni), 'local', localIp, 'dev', UNDERLAY.dev,
    'dstport', String(c.port), 'nolearning', ...c.extra);
  h.ip('addr', 'add', `${myOv}/32`, 'dev', c.dev);
  h.ip('link', 'set', c.dev, 'up');
  h.ip('route', 'add', net24(peerOv), 'via', peerOv, 'dev', c.dev, 'onlink');
  h.ip('neigh', 'replace', peerOv, 'lladdr', peerMac, 'dev', c.dev, 'nud', 'permanent');
  h.exec('bridge', ['fdb', 'append', peerMac, 'dev', c.dev, 'dst', peerIp]);
}

/** Build the two hosts and every case's vxlan devices. Returns [A, B]. */
export function buildTopology(tb: Testbed): [NsHost, NsHost] {
  const a = tb.host('a');
  const b = tb.host('b');
  tb.link(a, UNDERLAY.dev, `${UNDERLAY.aIp}/24`, b, UNDERLAY.dev, `${UNDERLAY.bIp}/24`);
  a.ip('link', 'set', UNDERLAY.dev, 'address', UNDERLAY.aMac);
  b.ip('link', 'set', UNDERLAY.dev, 'address', UNDERLAY.bMac);
  // Static underlay neighbours: no ARP frames in the captures.
  a.ip('neigh', 'replace', UNDERLAY.bIp, 'lladdr', UNDERLAY.bMac, 'dev', UNDERLAY.dev, 'nud', 'permanent');
  b.ip('neigh', 'replace', UNDERLAY.aIp, 'lladdr', UNDERLAY.aMac, 'dev', UNDERLAY.dev, 'nud', 'permanent');
  // IPv6 underlay: no duplicate address detection, static neighbours (no NDP frames in the captures)
  a.ip('addr', 'add', `${UNDERLAY.aIp6}/64`, 'dev', UNDERLAY.dev, 'nodad');
  b.ip('addr', 'add', `${UNDERLAY.bIp6}/64`, 'dev', UNDERLAY.dev, 'nodad');
  a.ip('neigh', 'replace', UNDERLAY.bIp6, 'lladdr', UNDERLAY.bMac, 'dev', UNDERLAY.dev, 'nud', 'permanent');
  b.ip('neigh', 'replace', UNDERLAY.aIp6, 'lladdr', UNDERLAY.aMac, 'dev', UNDERLAY.dev, 'nud', 'permanent');
  for (const c of CASES) {
    const [aIp, bIp] = c.underlay === 6 ? [UNDERLAY.aIp6, UNDERLAY.bIp6] : [UNDERLAY.aIp, UNDERLAY.bIp];
    setupSide(a, c, aIp, bIp, c.aVtepMac, c.bVtepMac, c.aOverlay, c.bOverlay);
    setupSide(b, c, bIp, aIp, c.bVtepMac, c.aVtepMac, c.bOverlay, c.aOverlay);
  }
  return [a, b];
}

function waitListening(p: ChildProcess, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let err = '';
    const t = setTimeout(() => reject(new Error(`tcpdump did not start: ${err}`)), timeoutMs);
    p.stderr?.on('data', (d: Buffer) => {
      err += d.toString();
      if (err.includes('listening on')) { clearTimeout(t); resolve(); }
    });
    p.on('exit', (code) => { clearTimeout(t); reject(new Error(`tcpdump exited ${code}: ${err}`)); });
  });
}

function waitExit(p: ChildProcess, timeoutMs: number): Promise<void> {
  return new Promise((resolve) => {
    if (p.exitCode !== null) { resolve(); return; }
    const t = setTimeout(() => { p.kill('SIGINT'); }, timeoutMs);
    p.on('exit', () => { clearTimeout(t); resolve(); });
  });
}

/** Capture one case: returns the raw pcap file bytes (request + reply per ping). */
export async function captureCase(tb: Testbed, a: NsHost, c: KernelCase): Promise<Buffer> {
  const dir = mkdtempSync(join(tmpdir(), 'odcap-'));
  const file = join(dir, `${c.name}.pcap`);
  const count = c.pings.reduce((n, p) => n + 2 * Number(p[p.indexOf('-c') + 1]), 0);
  try {
    const td = tb.track(a.spawn('tcpdump', ['-i', UNDERLAY.dev, '-n', '-U', '-Z', 'root', '-s', '2048', '-c', String(count), '-w', file,
      c.underlay === 6 ? 'ip6' : 'ip', 'and', 'udp', 'and', 'port', String(c.port)]));
    await waitListening(td, 10_000);
    for (const p of c.pings) a.exec('ping', ['-n', '-q', '-i', '0.2', '-W', '2', ...p, c.bOverlay], { timeout: 20_000 });
    await waitExit(td, 5_000);
    return readFileSync(file);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
