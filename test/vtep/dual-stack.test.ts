/**
 * Dual stack and IPv6-only backends between namespace hosts (underlay 198.18.0.0/24 and
 * 2001:2:0:1::/64 on one veth):
 *  - a DualStackBackend (our VXLAN on flannel.1 over IPv4 + our IPv6-only VXLAN on flannel-v6.1
 *    over IPv6) against a kernel host set up as flanneld sets up dual stack (kernel flannel.1 and
 *    flannel-v6.1, VNI 1, port 8472, each with its /32 or /128 address, per-peer route,
 *    neighbour and FDB entry): the devices as flanneld configures them, pings of both families
 *    up to each MTU both ways, 50 MB SHA-256-checked TCP of each family each way, a lease losing
 *    and regaining its IPv6 half, and inner IPv4 on the IPv6-only device dropped by its reason;
 *  - a pair of IPv6-only UDP backends (flannel0 with only an IPv6 address);
 *  - dual-stack host-gw between two hosts: `<IPv6 subnet> via <PublicIPv6> dev u0` beside the
 *    IPv4 route, pings of both families through them, removal.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Testbed, requireNetns, type NsHost } from '../helpers/netns.js';
import { leaseHalves, type Lease } from '../../src/vtep/index.js';
import { A6, B6, HostProc, kernelAddPeer, kernelVxlan, ourPair, ping, tcpBothWays, v6Pair } from './harness.js';

const MB = 1024 * 1024;
const NET6 = '2001:2:0:100::/56';
const OURS6 = '2001:2:0:101::';
const KERN6 = '2001:2:0:102::';

/** Ping `dst` from `h` with source address `src` (a host-gw overlay address); true when all replies came. */
function pingFrom(h: NsHost, src: string, dst: string, count = 2): boolean {
  try {
    h.exec('ping', ['-n', '-q', '-c', String(count), '-i', '0.2', '-W', '2', '-I', src, dst], { timeout: 15_000 });
    return true;
  } catch {
    return false;
  }
}

describe.runIf(requireNetns())('DualStackBackend (VXLAN flannel.1 + IPv6-only flannel-v6.1) <-> kernel dual stack as flanneld sets it up (mmsg)', () => {
  const tb = new Testbed('vxds');
  let a: NsHost, b: NsHost, ours: HostProc;
  let kernelLease: Lease;
  beforeAll(async () => {
    [a, b] = v6Pair(tb);
    ours = await HostProc.start(tb, a, {
      kind: 'dual',
      v4: { kind: 'vxlan', subnet: '198.19.1.0/24', network: '198.19.0.0/16', publicIp: '198.18.0.1', vtepMac: '02:00:00:00:01:01', transport: 'mmsg' },
      // on [::]:8472 beside the IPv4 VTEP's 0.0.0.0:8472: an IPv6-only backend's socket takes no IPv4
      v6: { kind: 'vxlan', subnet: `${OURS6}/64`, network: NET6, publicIp: A6, vtepMac: '02:00:00:00:01:06', transport: 'mmsg' },
    });
    const k4 = kernelVxlan(b, { subnet: '198.19.2.0/24', publicIp: '198.18.0.2', underlay: 'u0', mac: '02:00:00:00:02:02' });
    const k6 = kernelVxlan(b, { subnet: `${KERN6}/64`, publicIp: B6, underlay: 'u0', mac: '02:00:00:00:02:06' });
    // the kernel host's lease as flanneld publishes it in dual stack
    kernelLease = { ...k4.lease, ipv6Subnet: k6.lease.subnet, publicIpv6: B6, v6Vni: 1, v6VtepMac: k6.mac };
    await ours.addPeer(kernelLease);
    const h = leaseHalves(ours.lease);
    kernelAddPeer(b, k4.dev, h.v4!);
    kernelAddPeer(b, k6.dev, h.v6!);
  });
  afterAll(async () => {
    await ours?.stop().catch(() => undefined);
    tb.destroy();
  });

  it('advertises a dual-stack lease and configures both devices as flanneld does; both VTEPs on port 8472', () => {
    const udp = a.exec('ss', ['-uanH', 'sport', '=', ':8472']);
    expect(udp).toMatch(/0\.0\.0\.0:8472/);
    expect(udp).toMatch(/\[::\]:8472/);
    expect(ours.lease).toEqual({
      subnet: '198.19.1.0/24', publicIp: '198.18.0.1', backendType: 'vxlan', vni: 1, vtepMac: '02:00:00:00:01:01',
      ipv6Subnet: `${OURS6}/64`, publicIpv6: A6, v6Vni: 1, v6VtepMac: '02:00:00:00:01:06',
    });
    // flannel.1: the IPv4 address /32 only; flannel-v6.1: the IPv6 subnet's address /128 only
    expect(a.ip('-4', 'addr', 'show', 'dev', 'flannel.1')).toContain('198.19.1.0/32');
    expect(a.ip('-6', 'addr', 'show', 'dev', 'flannel.1')).toBe('');
    expect(a.ip('-6', 'addr', 'show', 'dev', 'flannel-v6.1')).toContain(`${OURS6}/128`);
    expect(a.ip('-4', 'addr', 'show', 'dev', 'flannel-v6.1')).toBe('');
    expect(a.ip('link', 'show', 'flannel.1')).toMatch(/mtu 1450/);
    expect(a.ip('link', 'show', 'flannel-v6.1')).toMatch(/mtu 1430/);
    expect(a.ip('route', 'show', 'dev', 'flannel.1')).toMatch(/198\.19\.2\.0\/24 via 198\.19\.2\.0 .*onlink/);
    expect(a.ip('-6', 'route', 'show', 'dev', 'flannel-v6.1')).toMatch(new RegExp(`${KERN6}/64 via ${KERN6} .*onlink`));
    expect(a.ip('-4', 'route', 'show', 'dev', 'flannel-v6.1')).toBe('');
  });

  it('pings both families both ways at sizes up to each MTU (1450 IPv4, 1430 IPv6)', () => {
    for (const size of [56, 1000, 1422]) {
      expect(ping(a, '198.19.2.0', size), `ours -> kernel IPv4, ${size}`).toBe(true);
      expect(ping(b, '198.19.1.0', size), `kernel -> ours IPv4, ${size}`).toBe(true);
    }
    for (const size of [56, 1000, 1382]) {
      expect(ping(a, KERN6, size), `ours -> kernel IPv6, ${size}`).toBe(true);
      expect(ping(b, OURS6, size), `kernel -> ours IPv6, ${size}`).toBe(true);
    }
    expect(ping(a, '198.19.2.0', 1423)).toBe(false);
    expect(ping(a, KERN6, 1383)).toBe(false);
  });

  for (const [fam, kernIp, oursIp, port] of [['IPv4', '198.19.2.0', '198.19.1.0', 5401], ['IPv6', KERN6, OURS6, 5411]] as const) {
    it(`moves 50 MB over TCP/${fam} both ways with matching SHA-256`, async () => {
      const { ab, ba } = await tcpBothWays(tb, a, oursIp, b, kernIp, 50 * MB, port);
      const s = (await ours.stats()).stats;
      const peer = s.peers[fam === 'IPv4' ? '198.18.0.2' : B6]!;
      console.log(`dual stack ${fam}: 50 MB ours->kernel ${ab.ms} ms, kernel->ours ${ba.ms} ms; drops ${JSON.stringify(s.drops)}`);
      expect(peer.txPackets).toBeGreaterThan(10_000);
      expect(peer.rxPackets).toBeGreaterThan(1000);
    });
  }

  it('follows a lease that loses its IPv6 half and regains it; IPv4 is untouched', async () => {
    const { ipv6Subnet: _s, publicIpv6: _p, v6Vni: _v, v6VtepMac: _m, ...v4only } = kernelLease;
    await ours.addPeer(v4only);
    expect(a.ip('-6', 'route', 'show', 'dev', 'flannel-v6.1')).not.toContain(KERN6);
    expect(ping(a, KERN6, 56, 1)).toBe(false);
    expect(ping(a, '198.19.2.0', 56)).toBe(true);
    await ours.addPeer(kernelLease);
    expect(ping(a, KERN6, 56)).toBe(true);
    expect(ping(b, OURS6, 56)).toBe(true);
  });

  it('drops inner IPv4 on the IPv6-only device both ways by its reason', async () => {
    const d0 = (await ours.stats()).stats.drops;
    // ours: IPv4 routed into flannel-v6.1
    a.ip('route', 'add', '198.19.77.0/24', 'dev', 'flannel-v6.1');
    expect(ping(a, '198.19.77.1', 56, 1)).toBe(false);
    // the kernel: IPv4 via our VTEP's IPv6 address into its flannel-v6.1 (encapsulated to our IPv6 VTEP MAC)
    b.ip('route', 'add', '198.19.78.0/24', 'via', 'inet6', OURS6, 'dev', 'flannel-v6.1', 'onlink');
    expect(ping(b, '198.19.78.1', 56, 1)).toBe(false);
    const d = (await ours.stats()).stats.drops;
    expect((d.tx_no_ipv4_overlay ?? 0) - (d0.tx_no_ipv4_overlay ?? 0)).toBeGreaterThan(0);
    expect((d.rx_no_ipv4_overlay ?? 0) - (d0.rx_no_ipv4_overlay ?? 0)).toBeGreaterThan(0);
    expect(ping(a, '198.19.2.0', 56)).toBe(true); // still running
  });
});

describe.runIf(requireNetns())('UDP backend, IPv6 only (IPv6 subnet and underlay), two hosts (mmsg)', () => {
  const tb = new Testbed('udv6');
  const sub6 = [OURS6, KERN6];
  const { h, procs } = ourPair(tb, (i) => ({ kind: 'udp', subnet: `${sub6[i]}/64`, network: NET6, publicIp: i === 0 ? A6 : B6, transport: 'mmsg' }));

  it('has an IPv6-only lease and flannel0 with only <IPv6 subnet address>/56', () => {
    expect(procs[0]!.lease).toEqual({ subnet: `${OURS6}/64`, publicIp: A6, backendType: 'udp' });
    expect(h[0]!.ip('-6', 'addr', 'show', 'dev', 'flannel0')).toContain(`${OURS6}/56`);
    expect(h[0]!.ip('-4', 'addr', 'show', 'dev', 'flannel0')).toBe('');
  });

  it('pings over IPv6 both ways up to the MTU (1452) and moves 20 MB over TCP both ways intact', async () => {
    for (const size of [56, 1404]) {
      expect(ping(h[0]!, KERN6, size), `a -> b ${size}`).toBe(true);
      expect(ping(h[1]!, OURS6, size), `b -> a ${size}`).toBe(true);
    }
    expect(ping(h[0]!, KERN6, 1405)).toBe(false);
    await tcpBothWays(tb, h[0]!, OURS6, h[1]!, KERN6, 20 * MB, 5421);
    const s = (await procs[0]!.stats()).stats;
    expect(s.peers[B6]!.txPackets).toBeGreaterThan(5_000);
    expect(s.peers[B6]!.rxPackets).toBeGreaterThan(5_000);
  });

  it('drops inner IPv4 read from flannel0 as tx_no_ipv4_overlay', async () => {
    h[0]!.ip('route', 'add', '198.19.77.0/24', 'dev', 'flannel0');
    expect(ping(h[0]!, '198.19.77.1', 56, 1)).toBe(false);
    expect((await procs[0]!.stats()).stats.drops.tx_no_ipv4_overlay).toBeGreaterThan(0);
  });
});

describe.runIf(requireNetns())('host-gw dual stack: IPv6 routes via PublicIPv6 beside the IPv4 ones', () => {
  const tb = new Testbed('tbds');
  const { h, procs } = ourPair(tb, (i, host) => {
    const n = i + 1;
    // the host's pods: a bridge with the gateway addresses of each family
    host.ip('link', 'add', 'cni0', 'type', 'bridge');
    host.ip('addr', 'add', `198.19.${n}.1/24`, 'dev', 'cni0');
    host.ip('addr', 'add', `2001:2:0:10${n}::1/64`, 'dev', 'cni0', 'nodad');
    host.ip('link', 'set', 'cni0', 'up');
    return {
      kind: 'host-gw', subnet: `198.19.${n}.0/24`, network: '198.19.0.0/16', publicIp: `198.18.0.${n}`,
      ipv6Subnet: `2001:2:0:10${n}::/64`, ipv6Network: NET6, publicIpv6: i === 0 ? A6 : B6, underlayIface: 'u0',
    };
  });

  it('installs <subnet> via <public IP> and <IPv6 subnet> via <PublicIPv6> on u0; pings of both families cross them', () => {
    expect(procs[0]!.lease).toEqual({ subnet: '198.19.1.0/24', publicIp: '198.18.0.1', backendType: 'host-gw', ipv6Subnet: '2001:2:0:101::/64', publicIpv6: A6 });
    expect(h[0]!.ip('route', 'show', 'dev', 'u0')).toContain('198.19.2.0/24 via 198.18.0.2');
    expect(h[0]!.ip('-6', 'route', 'show', 'dev', 'u0')).toContain(`2001:2:0:102::/64 via ${B6}`);
    expect(h[1]!.ip('-6', 'route', 'show', 'dev', 'u0')).toContain(`2001:2:0:101::/64 via ${A6}`);
    // from the pod gateway addresses: the replies take the other host's route back
    expect(pingFrom(h[0]!, '2001:2:0:101::1', '2001:2:0:102::1')).toBe(true);
    expect(pingFrom(h[1]!, '2001:2:0:102::1', '2001:2:0:101::1')).toBe(true);
    expect(pingFrom(h[0]!, '198.19.1.1', '198.19.2.1')).toBe(true);
  });

  it('removes both routes with the peer', async () => {
    await procs[0]!.cmd({ cmd: 'removePeer', subnet: '198.19.2.0/24' });
    expect(h[0]!.ip('-6', 'route', 'show', 'dev', 'u0')).not.toContain('2001:2:0:102::/64');
    expect(h[0]!.ip('route', 'show', 'dev', 'u0')).not.toContain('198.19.2.0/24');
    expect(pingFrom(h[0]!, '2001:2:0:101::1', '2001:2:0:102::1', 1)).toBe(false);
  });
});
