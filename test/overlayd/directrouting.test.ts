/**
 * VXLAN with DirectRouting in namespaces: two hosts on one segment and a third behind a router
 * (test/overlayd/helpers.ts twoSegments), overlayd with `"DirectRouting": true` on each. The
 * same-segment peer gets a direct route via its public IP on eth0 and its traffic crosses the
 * underlay unencapsulated (a capture on eth0 shows the inner ICMP and no UDP 8472 to it); the
 * peer behind the router goes through the VTEP (UDP 8472 in the capture, no bare inner packet).
 * SIGTERM removes the direct routes too (they live on eth0, not on the VTEP's device). The
 * net-conf MTU (1400) is the VTEP device's and subnet.env's.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Testbed, requireNetns } from '../helpers/netns.js';
import { fetchIn, nsState, pingFrom, routeTo, sleep, startOverlayd, tcpTransfer, twoSegments, viaPublicIp, type Daemon, type SegHost } from './helpers.js';
import { stableVtepMac } from '../../src/overlayd/index.js';

interface H extends SegHost { dir: string; d?: Daemon; baseline?: string }

const PORT = 9707;

describe.runIf(requireNetns())('VXLAN DirectRouting (namespaces)', () => {
  const tb = new Testbed('oddr');
  const dir = mkdtempSync(join(tmpdir(), 'od-direct-'));
  let hosts: H[] = [];

  const ping = (a: H, b: H, count = 1): boolean => pingFrom(a.ns, a.gw, b.gw, count);
  const routeOf = (h: H, to: H): string => h.ns.ip('route', 'show', to.subnet).trim();
  const until = async (what: string, f: () => boolean, ms = 10_000): Promise<void> => {
    const end = Date.now() + ms;
    while (!f()) {
      if (Date.now() > end) throw new Error(`timed out: ${what}\n${hosts.map((h) => `h${h.n}: ${h.d?.err().split('\n').slice(-6).join('\n')}`).join('\n')}`);
      await sleep(100);
    }
  };

  /** tcpdump on eth0 of `h` with a BPF filter; stop() kills it and returns the outer packets' lines. */
  const capture = (h: H, filter: string): { ready: () => boolean; stop: () => string[] } => {
    const cap = h.ns.spawn('tcpdump', ['-l', '-nn', '-i', 'eth0', filter], { stdio: ['ignore', 'pipe', 'pipe'] });
    tb.track(cap);
    let out = '';
    let err = '';
    cap.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
    cap.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
    return {
      ready: () => err.includes('listening on'),
      // a decoded datagram's inner packet is printed on its own line without a timestamp: only timestamped lines are packets
      stop: () => { cap.kill('SIGTERM'); return out.split('\n').filter((l) => /^\d\d:\d\d:\d\d\.\d+ /.test(l)); },
    };
  };

  beforeAll(async () => {
    const conf = join(dir, 'net-conf.json');
    writeFileSync(conf, JSON.stringify({ Network: '198.19.0.0/16', Backend: { Type: 'vxlan', DirectRouting: true, MTU: 1400 } }));
    const seg = twoSegments(tb, 2);
    hosts = [...seg.hosts, seg.far].map((h) => {
      const d = join(dir, `h${h.n}`);
      mkdirSync(d);
      return { ...h, dir: d };
    });
    const peers = join(dir, 'peers.json');
    const all: Record<string, unknown> = {};
    for (const h of hosts) all[h.subnet.replace('/', '-')] = { PublicIP: h.ip, PublicIPv6: null, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: stableVtepMac(h.subnet) } };
    writeFileSync(peers, JSON.stringify(all));
    for (const h of hosts) h.baseline = nsState(h.ns);
    await Promise.all(hosts.map(async (h) => {
      h.d = startOverlayd(h.ns, ['--net-conf', conf, '--subnet', h.subnet, '--iface', 'eth0', '--peers', peers,
        '--subnet-file', join(h.dir, 'subnet.env'), '--healthz-port', String(PORT)]);
      tb.track(h.d.child);
      await h.d.waitFor(/running/);
    }));
  }, 60_000);
  afterAll(() => {
    tb.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('same-segment peer: direct route via its public IP on eth0; the peer behind the router: through flannel.1', () => {
    const [h1, h2, h3] = hosts as [H, H, H];
    expect(routeTo(h1, h2)).toMatch(viaPublicIp(h2));
    expect(routeTo(h2, h1)).toMatch(viaPublicIp(h1));
    expect(routeTo(h1, h3)).toMatch(/^198\.19\.3\.0\/24 via 198\.19\.3\.0 dev flannel\.1 onlink/);
    expect(routeTo(h3, h1)).toMatch(/^198\.19\.1\.0\/24 via 198\.19\.1\.0 dev flannel\.1 onlink/);
    expect(fetchIn(h1.ns, PORT, '/metrics')).toMatch(/^overlayd_peers 2$/m);
    // net-conf MTU: the VTEP device's MTU, and what subnet.env tells the CNI plugin
    expect(h1.ns.ip('link', 'show', 'flannel.1')).toMatch(/ mtu 1400 /);
    expect(readFileSync(join(h1.dir, 'subnet.env'), 'utf8')).toMatch(/^FLANNEL_MTU=1400$/m);
  });

  it('a capture on eth0: same-segment traffic is not encapsulated, traffic to the other segment is (UDP 8472)', async () => {
    const [h1, h2, h3] = hosts as [H, H, H];
    await until('h1 -> h2', () => ping(h1, h2));
    await until('h1 -> h3', () => ping(h1, h3));
    // two captures: BPF filters look at the outer headers only, so "icmp" sees bare inner
    // packets and never the ones inside VXLAN datagrams
    const bare = capture(h1, 'icmp');
    const vxlan = capture(h1, 'udp port 8472');
    let icmp: string[];
    let udp: string[];
    try {
      await until('tcpdump listening', () => bare.ready() && vxlan.ready());
      expect(ping(h1, h2, 3)).toBe(true);
      expect(ping(h1, h3, 3)).toBe(true);
      expect(ping(h3, h1, 2)).toBe(true);
      await sleep(300);
    } finally {
      icmp = bare.stop();
      udp = vxlan.stop();
    }
    const has = (lines: string[], re: RegExp): number => lines.filter((l) => re.test(l)).length;
    // h1 <-> h2: bare inner packets on the wire, no VXLAN between their public IPs
    expect(has(icmp, /IP 198\.19\.1\.1 > 198\.19\.2\.1: ICMP echo request/)).toBeGreaterThanOrEqual(3);
    expect(has(icmp, /IP 198\.19\.2\.1 > 198\.19\.1\.1: ICMP echo reply/)).toBeGreaterThanOrEqual(3);
    expect(has(udp, /IP 198\.18\.0\.1\.\d+ > 198\.18\.0\.2\.8472: |IP 198\.18\.0\.2\.\d+ > 198\.18\.0\.1\.8472: /)).toBe(0);
    // h1 <-> h3: VXLAN both ways, never the bare inner packet
    expect(has(udp, /IP 198\.18\.0\.1\.\d+ > 198\.18\.1\.3\.8472: /)).toBeGreaterThanOrEqual(5);
    expect(has(udp, /IP 198\.18\.1\.3\.\d+ > 198\.18\.0\.1\.8472: /)).toBeGreaterThanOrEqual(5);
    expect(has(icmp, /198\.19\.3\.1/)).toBe(0);
  });

  it('TCP over both kinds of route (1 MB each, SHA-256 checked)', async () => {
    const [h1, h2, h3] = hosts as [H, H, H];
    const direct = await tcpTransfer(h1.ns, h1.gw, h2.ns, h2.gw, { dir, port: 5301 });
    expect(direct.got).toBe(direct.want);
    const tunneled = await tcpTransfer(h3.ns, h3.gw, h1.ns, h1.gw, { dir, port: 5302 });
    expect(tunneled.got).toBe(tunneled.want);
  });

  it('SIGTERM removes the direct routes on eth0 as well as the device', async () => {
    for (const h of hosts) {
      h.d!.child.kill('SIGTERM');
      expect(await h.d!.exited).toBe(0);
      expect(nsState(h.ns)).toBe(h.baseline);
    }
  });
});
