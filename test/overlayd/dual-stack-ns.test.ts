/**
 * overlayd running dual-stack and IPv6-only networks (issue #15), in namespaces, as flanneld runs
 * them, against the kernel's own devices set up as flanneld sets them up:
 *  - dual-stack VXLAN with a static peers file: two overlayd (flannel.1 + flannel-v6.1, under the
 *    supervisor) and a kernel host (kernel flannel.1 over IPv4 + flannel-v6.1 over IPv6, flannel's
 *    routes, neighbours and FDB entries): pings of both families between every pair up to the MTU
 *    (DF set), a SHA-256-checked TCP transfer of each family both ways between overlayd and the kernel;
 *  - IPv6-only VXLAN: overlayd (flannel-v6.1 alone) and the kernel host (flannel-v6.1 alone);
 *  - dual-stack UDP: two overlayd on flannel0 (inner IPv6 over the IPv4 underlay);
 *  - etcd mode, dual-stack VXLAN, the real etcd: each overlayd leases both subnets and learns the
 *    other's IPv6 half (ipv6Subnet, PublicIPv6, BackendV6Data) from its lease.
 * Underlay 198.18.0.N/24 and 2001:2:0:1::N/64; overlay 198.19.N.0/24 and 2001:2:0:800N::/64.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Testbed, requireNetns } from '../helpers/netns.js';
import { stableVtepMac } from '../../src/overlayd/index.js';
import { tcpTransfer } from '../vtep/harness.js';
import { NET6, gw4, gw6, kernelDual, leaseEntry, pingDf, pub4, pub6, startOverlayd, sub4, sub6, untilPath, dualHosts as hosts, type DualHost as H } from './helpers.js';
import { etcdAvailable, startEtcd, type TestEtcd } from '../helpers/etcd.js';

/** overlayd's flags for host h (--public-ipv6 unless `found`: then the interface's address is used, and followed). */
function args(dir: string, h: H, extra: string[], found = false): string[] {
  mkdirSync(join(dir, `h${h.n}`), { recursive: true });
  return ['--iface', 'eth0', ...(found ? [] : ['--public-ipv6', pub6(h.n)]), '--subnet-file', join(dir, `h${h.n}`, 'subnet.env'), '--lease-out', join(dir, `h${h.n}`, 'lease.json'), ...extra];
}

/** Write net-conf.json (`netConf`) and a peers file of `leases` into `dir`; their paths. */
function confFiles(dir: string, netConf: object, leases: [string, Record<string, unknown>][]): { conf: string; peers: string } {
  const conf = join(dir, 'net-conf.json');
  const peers = join(dir, 'peers.json');
  writeFileSync(conf, JSON.stringify(netConf));
  writeFileSync(peers, JSON.stringify(Object.fromEntries(leases)));
  return { conf, peers };
}

/** Start overlayd on each of `hs` (its flags: `extra(h)`) and wait until each forwards under its supervisor. */
async function startAll(tb: Testbed, dir: string, hs: H[], extra: (h: H) => string[]): Promise<void> {
  for (const h of hs) {
    h.d = startOverlayd(h.ns, args(dir, h, [...extra(h), '--control-socket', join(dir, `h${h.n}.sock`)]));
    tb.track(h.d.child);
  }
  await Promise.all(hs.map((h) => h.d!.waitFor(/running \(supervisor/, 30_000)));
}

/** Transfer size of each TCP transfer. */
const BYTES = 20_000_000;

describe.runIf(requireNetns())('overlayd dual stack, VXLAN, static peers file: two overlayd and a kernel dual-stack host', () => {
  const tb = new Testbed('odds');
  const dir = mkdtempSync(join(tmpdir(), 'od-ds-'));
  let hs: H[];

  beforeAll(async () => {
    hs = hosts(tb, [1, 2, 3]);
    const { conf, peers } = confFiles(dir, { Network: '198.19.0.0/16', EnableIPv6: true, IPv6Network: NET6, Backend: { Type: 'vxlan' } }, [leaseEntry('vxlan', 1, false), leaseEntry('vxlan', 2, false), leaseEntry('vxlan', 3, true)]);
    kernelDual(hs[2]!, [1, 2]);
    await startAll(tb, dir, hs.slice(0, 2), (h) => ['--net-conf', conf, '--subnet', sub4(h.n), '--ipv6-subnet', sub6(h.n), '--peers', peers]);
  }, 60_000);
  afterAll(() => {
    tb.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('each overlayd runs flannel.1 and flannel-v6.1 (its own MAC, MTU underlay-70, the IPv6 subnet address) and advertises both halves', () => {
    const h = hs[0]!;
    const l6 = JSON.parse(h.ns.ip('-j', '-d', 'link', 'show', 'flannel-v6.1')) as { mtu: number; ifalias?: string }[];
    expect(l6[0]!.mtu).toBe(1430);
    expect(JSON.parse(h.ns.ip('-j', 'link', 'show', 'flannel.1'))[0].mtu).toBe(1450);
    expect(h.ns.ip('-6', 'addr', 'show', 'dev', 'flannel-v6.1')).toMatch(/inet6 2001:2:0:8001::\/128/);
    expect(h.ns.ip('-6', 'route', 'show', sub6(2))).toMatch(/via 2001:2:0:8002:: dev flannel-v6\.1/);
    expect(h.ns.ip('-4', 'route', 'show', sub4(2))).toMatch(/via 198\.19\.2\.0 dev flannel\.1 onlink/);
    const lease = JSON.parse(readFileSync(join(dir, 'h1', 'lease.json'), 'utf8')) as Record<string, Record<string, unknown>>;
    expect(lease).toEqual({ [`${sub4(1).replace('/', '-')}&${sub6(1).replace('/', '-')}`]: {
      PublicIP: pub4(1), PublicIPv6: pub6(1), BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: stableVtepMac(sub4(1)) }, BackendV6Data: { VNI: 1, VtepMAC: stableVtepMac(sub6(1)) },
    } });
    expect(readFileSync(join(dir, 'h1', 'subnet.env'), 'utf8')).toBe(`FLANNEL_NETWORK=198.19.0.0/16\nFLANNEL_SUBNET=198.19.1.1/24\nFLANNEL_IPV6_NETWORK=${NET6}\nFLANNEL_IPV6_SUBNET=2001:2:0:8001::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n`);
    expect(h.d!.err()).toMatch(/IPv6: IPv6Network 2001:2:0:8000::\/49, subnet 2001:2:0:8001::\/64, PublicIPv6 2001:2:0:1::1, device flannel-v6\.1 over 2001:2:0:1::1/);
  });

  it('pings of both families between every pair, up to the MTU (DF set: 1450 - 28 for IPv4, 1430 - 48 for IPv6)', async () => {
    for (const a of hs) for (const b of hs) if (a !== b) { await untilPath(a, gw4(a.n), gw4(b.n)); await untilPath(a, gw6(a.n), gw6(b.n)); }
    const bad: string[] = [];
    for (const a of hs) {
      for (const b of hs) {
        if (a === b) continue;
        for (const size of [56, 1000, 1422]) if (!pingDf(a, gw4(a.n), gw4(b.n), size)) bad.push(`h${a.n} -> h${b.n} IPv4 ${size}`);
        for (const size of [56, 1000, 1382]) if (!pingDf(a, gw6(a.n), gw6(b.n), size)) bad.push(`h${a.n} -> h${b.n} IPv6 ${size}`);
      }
    }
    expect(bad).toEqual([]);
    // one byte over the device MTU does not leave with DF set
    expect(pingDf(hs[0]!, gw6(1), gw6(3), 1383, 1)).toBe(false);
  });

  it('a SHA-256-checked TCP transfer of each family, both ways, between overlayd and the kernel host', async () => {
    const [a, , k] = hs as [H, H, H];
    const out: Record<string, number> = {};
    for (const [name, from, src, to, dst] of [
      ['v4 overlayd->kernel', a, gw4(1), k, gw4(3)], ['v4 kernel->overlayd', k, gw4(3), a, gw4(1)],
      ['v6 overlayd->kernel', a, gw6(1), k, gw6(3)], ['v6 kernel->overlayd', k, gw6(3), a, gw6(1)],
    ] as const) {
      void src;
      const t = await tcpTransfer(tb, to.ns, dst, from.ns, BYTES, 5300 + Object.keys(out).length, 60_000);
      expect(t.server.bytes, name).toBe(BYTES);
      expect(t.server.sha256, name).toBe(t.client.sha256);
      out[name] = Math.round((BYTES * 8) / t.ms / 1000);
    }
    console.log(JSON.stringify({ odds: 'vxlan dual stack', transferMbitPerS: out }));
  });

  it('SIGTERM: both devices removed (the packet process says what it removed), exit 0', async () => {
    const d = hs[0]!.d!;
    d.child.kill('SIGTERM');
    expect(await d.exited).toBe(0);
    expect(d.err()).toMatch(/removed device flannel\.1 with its address/);
    expect(d.err()).toMatch(/removed device flannel-v6\.1 with its address 2001:2:0:8001::\/128/);
    expect(d.err()).toMatch(/closed flannel\.1: the device is gone/);
    expect(d.err()).toMatch(/closed flannel-v6\.1: the device is gone/);
    expect(hs[0]!.ns.ip('-br', 'link')).not.toMatch(/flannel/);
  });
});

describe.runIf(requireNetns())('overlayd IPv6 only, VXLAN: flannel-v6.1 alone, against the kernel\'s', () => {
  const tb = new Testbed('odd6');
  const dir = mkdtempSync(join(tmpdir(), 'od-d6-'));
  let hs: H[];

  beforeAll(async () => {
    hs = hosts(tb, [1, 3], false);
    const { conf, peers } = confFiles(dir, { EnableIPv4: false, EnableIPv6: true, IPv6Network: NET6, Backend: { Type: 'vxlan' } }, [leaseEntry('vxlan', 1, false, true), leaseEntry('vxlan', 3, true, true)]);
    kernelDual(hs[1]!, [1], false);
    await startAll(tb, dir, hs.slice(0, 1), () => ['--net-conf', conf, '--ipv6-subnet', sub6(1), '--peers', peers]);
  }, 60_000);
  afterAll(() => {
    tb.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('no IPv4 device; pings up to the MTU both ways; a TCP transfer both ways; the lease and subnet.env are IPv6 only', async () => {
    const [a, k] = hs as [H, H];
    expect(a.ns.ip('-br', 'link')).not.toMatch(/flannel\.1/);
    expect(JSON.parse(a.ns.ip('-j', 'link', 'show', 'flannel-v6.1'))[0].mtu).toBe(1430);
    await untilPath(a, gw6(1), gw6(3));
    for (const size of [56, 1382]) {
      expect(pingDf(a, gw6(1), gw6(3), size), `-> ${size}`).toBe(true);
      expect(pingDf(k, gw6(3), gw6(1), size), `<- ${size}`).toBe(true);
    }
    for (const [from, to, dst] of [[a, k, gw6(3)], [k, a, gw6(1)]] as const) {
      const t = await tcpTransfer(tb, to.ns, dst, from.ns, BYTES, 5310, 60_000);
      expect(t.server.sha256).toBe(t.client.sha256);
      expect(t.server.bytes).toBe(BYTES);
    }
    expect(JSON.parse(readFileSync(join(dir, 'h1', 'lease.json'), 'utf8'))).toEqual({ [`0.0.0.0-0&${sub6(1).replace('/', '-')}`]: {
      PublicIP: '0.0.0.0', PublicIPv6: pub6(1), BackendType: 'vxlan', BackendV6Data: { VNI: 1, VtepMAC: stableVtepMac(sub6(1)) },
    } });
    expect(readFileSync(join(dir, 'h1', 'subnet.env'), 'utf8')).toBe(`FLANNEL_IPV6_NETWORK=${NET6}\nFLANNEL_IPV6_SUBNET=2001:2:0:8001::1/64\nFLANNEL_MTU=1430\nFLANNEL_IPMASQ=false\n`);
  });
});

describe.runIf(requireNetns())('overlayd dual stack, UDP: flannel0 carries both families over the IPv4 underlay', () => {
  const tb = new Testbed('oddu');
  const dir = mkdtempSync(join(tmpdir(), 'od-du-'));
  let hs: H[];

  beforeAll(async () => {
    hs = hosts(tb, [1, 2]);
    const { conf, peers } = confFiles(dir, { Network: '198.19.0.0/16', EnableIPv6: true, IPv6Network: NET6, Backend: { Type: 'udp' } }, [leaseEntry('udp', 1, false), leaseEntry('udp', 2, false)]);
    await startAll(tb, dir, hs, (h) => ['--net-conf', conf, '--subnet', sub4(h.n), '--ipv6-subnet', sub6(h.n), '--peers', peers]);
  }, 60_000);
  afterAll(() => {
    tb.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('pings of both families both ways up to the MTU (1472 - 28; IPv6 1472 - 48), a TCP transfer of each family; one device, one (IPv4) socket', async () => {
    const [a, b] = hs as [H, H];
    expect(a.ns.ip('-br', 'link')).toMatch(/flannel0/);
    expect(a.ns.ip('-br', 'link')).not.toMatch(/flannel-v6/);
    expect(a.d!.err()).toMatch(/IPv6: .* inner IPv6 on flannel0 over the IPv4 underlay/);
    for (const [x, y] of [[a, b], [b, a]] as const) {
      await untilPath(x, gw4(x.n), gw4(y.n));
      await untilPath(x, gw6(x.n), gw6(y.n));
      expect(pingDf(x, gw4(x.n), gw4(y.n), 1444), `IPv4 h${x.n} -> h${y.n}`).toBe(true);
      expect(pingDf(x, gw6(x.n), gw6(y.n), 1424), `IPv6 h${x.n} -> h${y.n}`).toBe(true);
    }
    for (const dst of [gw4(2), gw6(2)]) {
      const t = await tcpTransfer(tb, b.ns, dst, a.ns, BYTES / 4, 5320, 60_000);
      expect(t.server.sha256, dst).toBe(t.client.sha256);
    }
    // the lease carries the IPv6 half (flanneld's UDP backend has none: ours is an extension)
    expect(JSON.parse(readFileSync(join(dir, 'h1', 'lease.json'), 'utf8'))).toEqual({ [`${sub4(1).replace('/', '-')}&${sub6(1).replace('/', '-')}`]: { PublicIP: pub4(1), PublicIPv6: pub6(1), BackendType: 'udp' } });
  });
});

describe.runIf(requireNetns() && etcdAvailable())('overlayd dual stack, VXLAN, etcd mode: the hosts learn each other\'s IPv6 halves from the leases', () => {
  const tb = new Testbed('odde');
  const dir = mkdtempSync(join(tmpdir(), 'od-de-'));
  const PREFIX = '/coreos.com/network';
  let hs: H[];
  let etcd: TestEtcd | undefined;

  beforeAll(async () => {
    hs = [1, 2].map((n) => ({ n, ns: tb.host(`h${n}`) }));
    const hub = tb.lan(hs.map((h) => ({ host: h.ns, dev: 'eth0', cidr: `${pub4(h.n)}/24` })));
    for (const h of hs) h.ns.ip('addr', 'add', `${pub6(h.n)}/64`, 'dev', 'eth0', 'nodad');
    hub.ip('addr', 'add', '198.18.0.254/24', 'dev', 'br0');
    etcd = await startEtcd({ ns: hub, host: '198.18.0.254', parentDir: dir });
    etcd.ctl('put', `${PREFIX}/config`, JSON.stringify({ Network: '198.19.0.0/16', EnableIPv6: true, IPv6Network: NET6, Backend: { Type: 'vxlan' } }));
    const url = etcd.url;
    await startAll(tb, dir, hs, () => ['--etcd-endpoints', url]);
  }, 60_000);
  afterAll(async () => {
    for (const h of hs ?? []) h.d?.child.kill('SIGTERM');
    await Promise.all((hs ?? []).map((h) => h.d?.exited));
    await etcd?.stop();
    tb.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('both leases in etcd carry both halves; each host routes the other\'s IPv6 subnet via flannel-v6.1; pings of both families', async () => {
    const keys = etcd!.ctl('get', '--prefix', `${PREFIX}/subnets/`, '--keys-only').split('\n').filter(Boolean).map((k) => k.slice(`${PREFIX}/subnets/`.length));
    expect(keys).toHaveLength(2);
    for (const k of keys) expect(k).toMatch(/^198\.19\.\d+\.0-24&2001:2:0:[89a-f][0-9a-f]{3}::-64$/);
    // each host's cni0 from its subnet.env, both families
    const env = (h: H): Record<string, string> => Object.fromEntries(readFileSync(join(dir, `h${h.n}`, 'subnet.env'), 'utf8').trim().split('\n').map((l) => l.split('=') as [string, string]));
    for (const h of hs) {
      const e = env(h);
      h.ns.ip('link', 'add', 'cni0', 'type', 'bridge');
      h.ns.ip('addr', 'add', e.FLANNEL_SUBNET!, 'dev', 'cni0');
      h.ns.ip('addr', 'add', e.FLANNEL_IPV6_SUBNET!, 'dev', 'cni0', 'nodad');
      h.ns.ip('link', 'set', 'cni0', 'up');
    }
    const [a, b] = hs as [H, H];
    const ea = env(a), eb = env(b);
    const v6b = eb.FLANNEL_IPV6_SUBNET!.replace(/::1\/64$/, '::/64');
    await b.d!.waitFor(/peer added: .*PublicIPv6/);
    await a.d!.waitFor(/peer added: .*PublicIPv6/);
    expect(a.ns.ip('-6', 'route', 'show', v6b)).toMatch(/dev flannel-v6\.1/);
    const src4 = ea.FLANNEL_SUBNET!.split('/')[0]!, dst4 = eb.FLANNEL_SUBNET!.split('/')[0]!;
    const src6 = ea.FLANNEL_IPV6_SUBNET!.split('/')[0]!, dst6 = eb.FLANNEL_IPV6_SUBNET!.split('/')[0]!;
    await untilPath(a, src4, dst4);
    await untilPath(a, src6, dst6);
    expect(pingDf(a, src6, dst6, 1382)).toBe(true);
    expect(pingDf(b, dst6, src6, 1382)).toBe(true);
    expect(pingDf(b, dst4, src4, 1422)).toBe(true);
  });
});

describe.runIf(requireNetns())('overlayd dual stack, VXLAN: the IPv6 underlay address changes', () => {
  const tb = new Testbed('oddv');
  const dir = mkdtempSync(join(tmpdir(), 'od-dv-'));
  let hs: H[];

  beforeAll(async () => {
    hs = hosts(tb, [1, 3]);
    const { conf, peers } = confFiles(dir, { Network: '198.19.0.0/16', EnableIPv6: true, IPv6Network: NET6, Backend: { Type: 'vxlan' } }, [leaseEntry('vxlan', 1, false), leaseEntry('vxlan', 3, true)]);
    kernelDual(hs[1]!, [1]);
    const h = hs[0]!;
    // no --public-ipv6: PublicIPv6 is eth0's global IPv6 address, and follows it
    h.d = startOverlayd(h.ns, args(dir, h, ['--net-conf', conf, '--subnet', sub4(1), '--ipv6-subnet', sub6(1), '--peers', peers, '--control-socket', join(dir, 'h1.sock')], true));
    tb.track(h.d.child);
    await h.d.waitFor(/running \(supervisor/);
  }, 60_000);
  afterAll(() => {
    tb.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('2001:2:0:1::1 -> 2001:2:0:1::11: flannel-v6.1\'s socket is bound again (rebind6), the lease says the new PublicIPv6, IPv6 traffic resumes; IPv4 untouched', async () => {
    const [a, k] = hs as [H, H];
    await untilPath(a, gw6(1), gw6(3));
    a.ns.ip('addr', 'add', '2001:2:0:1::11/64', 'dev', 'eth0', 'nodad');
    a.ns.ip('addr', 'del', `${pub6(1)}/64`, 'dev', 'eth0');
    await a.d!.waitFor(/underlay eth0: address changed 2001:2:0:1::1 -> 2001:2:0:1::11 \(address 2001:2:0:1::1 removed\); socket bound to 2001:2:0:1::11; public IP is now 2001:2:0:1::11/);
    await a.d!.waitFor(/our lease is now .*"PublicIPv6":"2001:2:0:1::11"/);
    const lease = JSON.parse(readFileSync(join(dir, 'h1', 'lease.json'), 'utf8')) as Record<string, { PublicIP: string; PublicIPv6: string }>;
    expect(Object.values(lease)[0]).toMatchObject({ PublicIP: pub4(1), PublicIPv6: '2001:2:0:1::11' });
    // the kernel host learns it as flanneld would from the lease: its FDB entry to the new address
    k.ns.exec('bridge', ['fdb', 'replace', stableVtepMac(sub6(1)), 'dev', 'flannel-v6.1', 'dst', '2001:2:0:1::11']);
    await untilPath(a, gw6(1), gw6(3));
    expect(pingDf(k, gw6(3), gw6(1), 1382)).toBe(true);
    expect(pingDf(a, gw4(1), gw4(3), 1422)).toBe(true);
  });
});
