/**
 * overlayd in etcd mode with a fake backend (no namespaces) against a real etcd on loopback:
 * flags and FLANNELD_* variables, the lease and subnet.env, peers from etcd through the peers
 * path (addPeer/removePeer), /readyz and /metrics, the lease kept or released on stop, the same
 * lease after a restart, and bad configuration: one line, exit 2, nothing created.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, EtcdClient, Overlayd, parseCli, parseEnvFile, resolveEtcdConfig, stableVtepMac, type BackendParams } from '../../src/index.js';
import { FakeBackend } from '../overlayd/fixtures/fake-backend.js';
import { FAKE, NODE_ARGS, ROOT } from '../overlayd/helpers.js';
import { etcdAvailable, etcdctl, flannelValue, freePort, startEtcd, type TestEtcd } from '../helpers/etcd.js';

const ifaces = [{ name: 'lo', addrs: ['127.0.0.1'], internal: true }, { name: 'u0', addrs: ['198.18.0.1'], internal: false }];
const noRoute = 'Iface\tDestination\n';

function httpGet(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => { body += d.toString(); });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

async function until(what: string, f: () => boolean | Promise<boolean>, ms = 8000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('etcd flags', () => {
  it('flanneld flags, FLANNELD_* variables when the command line does not give them, and conflicts', () => {
    const c = parseCli(['--etcd-endpoints', 'http://127.0.0.1:2379, https://h2:2379', '--iface', 'eth1'], {
      FLANNELD_ETCD_PREFIX: '/x/network', FLANNELD_ETCD_CAFILE: '/ca', FLANNELD_ETCD_CERTFILE: '/c', FLANNELD_ETCD_KEYFILE: '/k',
      FLANNELD_ETCD_USERNAME: 'u', FLANNELD_ETCD_PASSWORD: 'p', FLANNELD_SUBNET_LEASE_RENEW_MARGIN: '30', FLANNELD_IFACE: 'eth9',
      FLANNELD_PUBLIC_IP: '198.18.0.7', FLANNELD_RELEASE_LEASE_ON_EXIT: 'true', FLANNELD_HEALTHZ_PORT: '9999',
    });
    expect(c).toMatchObject({ kind: 'run', options: {
      iface: ['eth1'], publicIp: '198.18.0.7', healthzPort: 9999,
      etcd: { endpoints: ['http://127.0.0.1:2379', 'https://h2:2379'], prefix: '/x/network', caFile: '/ca', certFile: '/c', keyFile: '/k', username: 'u', password: 'p', renewMarginMinutes: 30, releaseOnExit: true },
    } });
    const d = parseCli([], { FLANNELD_ETCD_ENDPOINTS: 'http://127.0.0.1:2379' });
    expect(d).toMatchObject({ kind: 'run', options: { etcd: { prefix: '/coreos.com/network', renewMarginMinutes: 60, releaseOnExit: false } } });
    expect(() => parseCli(['--etcd-endpoints', 'x', '--subnet', '198.19.1.0/24'])).toThrow(/--subnet is for static setups/);
    expect(() => parseCli(['--etcd-endpoints', 'x', '--etcd-certfile', '/c'])).toThrow(/--etcd-certfile and --etcd-keyfile go together/);
    expect(() => parseCli(['--etcd-prefix', '/p', '--net-conf', 'n', '--subnet', 's'])).toThrow(/--etcd-prefix needs --etcd-endpoints/);
    expect(() => parseCli(['--etcd-endpoints', 'x', '--subnet-lease-renew-margin', '0'])).toThrow(/renew-margin/);
    expect(() => parseCli([], { FLANNELD_ETCD_ENDPOINTS: 'x', FLANNELD_RELEASE_LEASE_ON_EXIT: 'maybe' })).toThrow(/true or false/);
    expect(() => parseCli([])).toThrow(/--net-conf FILE is required.*--etcd-endpoints/);
  });
});

describe.runIf(etcdAvailable())('overlayd in etcd mode (fake backend, real etcd)', () => {
  let etcd: TestEtcd;
  const dir = mkdtempSync(join(tmpdir(), 'od-etcd-daemon-'));
  let n = 0;
  beforeAll(async () => { etcd = await startEtcd(); });
  afterAll(async () => { await etcd?.stop(); rmSync(dir, { recursive: true, force: true }); });

  async function daemon(prefix: string, extra: string[] = [], port = 0, ipv6 = false) {
    const d = join(dir, `d${n++}`);
    mkdirSync(d, { recursive: true });
    return daemonIn(d, prefix, extra, port, ipv6);
  }
  /** `ipv6`: the fake backend's factory says it runs the IPv6 half (BackendFactory.ipv6), as a dual-stack dataplane's will. */
  async function daemonIn(d: string, prefix: string, extra: string[], port: number, ipv6 = false) {
    const cmd = parseCli(['--etcd-endpoints', etcd.url, '--etcd-prefix', prefix, '--iface', 'u0', '--subnet-file', join(d, 'subnet.env'),
      ...(port ? ['--healthz-port', String(port)] : []), ...extra]);
    if (cmd.kind !== 'run') throw new Error('not run');
    const logs: string[] = [];
    const log = { info: (m: string) => logs.push(m), error: (m: string) => logs.push(`ERROR ${m}`) };
    let be: FakeBackend | undefined;
    const factory = Object.assign((p: BackendParams) => (be = new FakeBackend(p)), ipv6 ? { ipv6: true } : {});
    const { cfg, manager } = await resolveEtcdConfig(cmd.options, { log, ifaces, routeTable: noRoute, tune: { backoffMs: { initial: 50, max: 300 } }, factory });
    const o = new Overlayd(cfg, { factory, log, printLease: () => undefined, skipPreflight: true, subnets: manager });
    await o.start();
    return { o, cfg, d, logs, be: () => be! };
  }

  it('leases a subnet, writes subnet.env, applies the leases in etcd as peers (live), serves /readyz and etcd metrics; SIGTERM-style stop keeps the lease and a restart gets the same one', async () => {
    const prefix = '/a/network';
    etcdctl(etcd.url, 'put', `${prefix}/config`, '{"Network":"198.19.0.0/16","SubnetMin":"198.19.100.0","SubnetMax":"198.19.199.0","Backend":{"Type":"vxlan"}}');
    etcdctl(etcd.url, 'put', `${prefix}/subnets/198.19.9.0-24`, flannelValue('198.18.0.9', '5e:00:00:00:00:09'));
    const port = await freePort();
    const t = await daemon(prefix, [], port);
    const sub = t.cfg.subnet;
    expect(parseEnvFile(readFileSync(join(t.d, 'subnet.env'), 'utf8'))).toMatchObject({ FLANNEL_NETWORK: '198.19.0.0/16', FLANNEL_SUBNET: sub.replace('.0/24', '.1/24'), FLANNEL_MTU: '1450' });
    expect(t.be().params).toMatchObject({ type: 'vxlan', subnet: sub, publicIp: '198.18.0.1' });
    expect(t.be().calls.filter((c) => c.op === 'addPeer').map((c) => c.op === 'addPeer' && c.lease.subnet)).toEqual(['198.19.9.0/24']);
    expect(await httpGet(port, '/readyz')).toEqual({ status: 200, body: 'ready' });
    expect((await httpGet(port, '/metrics')).body).toMatch(/overlayd_etcd_connected 1[\s\S]*overlayd_etcd_lease_held 1/);
    etcdctl(etcd.url, 'put', `${prefix}/subnets/198.19.10.0-24`, flannelValue('198.18.0.10', '5e:00:00:00:00:0a'));
    await until('peer added from etcd', () => t.o.currentPeers().has('198.19.10.0/24'));
    etcdctl(etcd.url, 'del', `${prefix}/subnets/198.19.9.0-24`);
    await until('peer removed from etcd', () => !t.o.currentPeers().has('198.19.9.0/24'));
    expect(t.be().calls.some((c) => c.op === 'removePeer' && c.subnet === '198.19.9.0/24')).toBe(true);
    // etcd goes away: forwarding (the backend, its peers) stays; metrics say so
    await etcd.kill();
    await until('loss seen', async () => /overlayd_etcd_connected 0/.test((await httpGet(port, '/metrics')).body));
    expect((await httpGet(port, '/healthz')).status).toBe(200);
    expect(t.o.currentPeers().size).toBe(1);
    await etcd.start();
    await until('reconnected', async () => /overlayd_etcd_connected 1/.test((await httpGet(port, '/metrics')).body));
    await t.o.stop();
    const key = `${prefix}/subnets/${sub.replace('/', '-')}`;
    expect(etcdctl(etcd.url, 'get', key, '--print-value-only')).toContain('"PublicIP":"198.18.0.1"');
    // restart in the same directory: the same lease (ours, by public IP)
    const again = await daemonIn(t.d, prefix, [], 0);
    expect(again.cfg.subnet).toBe(sub);
    expect(again.logs.join('\n')).toMatch(/our existing lease/);
    await again.o.stop();
  });

  it('--release-lease-on-exit deletes our lease on stop; the previous subnet in subnet.env is taken again when free', async () => {
    const prefix = '/b/network';
    etcdctl(etcd.url, 'put', `${prefix}/config`, '{"Network":"198.19.0.0/16","Backend":{"Type":"udp"}}');
    const t = await daemon(prefix, ['--release-lease-on-exit']);
    const key = `${prefix}/subnets/${t.cfg.subnet.replace('/', '-')}`;
    expect(etcdctl(etcd.url, 'get', key, '--print-value-only')).toContain('"BackendType":"udp"');
    await t.o.stop();
    expect(etcdctl(etcd.url, 'get', key, '--print-value-only').trim()).toBe('');
    const again = await daemonIn(t.d, prefix, [], 0);
    expect(again.cfg.subnet).toBe(t.cfg.subnet);
    expect(again.logs.join('\n')).toMatch(/the previous subnet in subnet\.env/);
    await again.o.stop();
  });

  it('bad config in etcd: a ConfigError; the overlayd command prints one line, exits 2 and creates nothing', async () => {
    const c = new EtcdClient({ endpoints: [etcd.url] });
    await c.put('/bad/network/config', '{"Network": "198.19.0.0/33"}');
    c.close();
    const d = join(dir, 'bad');
    mkdirSync(d);
    const cmd = parseCli(['--etcd-endpoints', etcd.url, '--etcd-prefix', '/bad/network', '--iface', 'u0', '--subnet-file', join(d, 'subnet.env')]);
    if (cmd.kind !== 'run') throw new Error('not run');
    await expect(resolveEtcdConfig(cmd.options, { ifaces, routeTable: noRoute })).rejects.toThrow(ConfigError);
    for (const [prefix, why] of [['/bad/network', /Network .*is not an IPv4 CIDR/], ['/none/network', /\/none\/network\/config: not found/]] as const) {
      const r = spawnSync(process.execPath, [...NODE_ARGS, '--etcd-endpoints', etcd.url, '--etcd-prefix', prefix, '--subnet-file', join(d, 'subnet.env')], { cwd: ROOT, encoding: 'utf8', timeout: 30_000 });
      expect(r.status).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(why);
    }
    expect(existsSync(join(d, 'subnet.env'))).toBe(false);
    expect(etcdctl(etcd.url, 'get', '/bad/network/subnets/', '--prefix', '--keys-only').trim()).toBe('');
  });

  it('dual stack: a dataplane that runs IPv6 gets the IPv6 half; subnet.env has the IPv6 pair; our lease has PublicIPv6 and BackendV6Data; peers keep theirs', async () => {
    const prefix = '/v6/network';
    etcdctl(etcd.url, 'put', `${prefix}/config`, '{"Network":"198.19.0.0/16","EnableIPv6":true,"IPv6Network":"2001:2:8000::/48","Backend":{"Type":"vxlan"}}');
    etcdctl(etcd.url, 'put', `${prefix}/subnets/198.19.9.0-24&2001:2:8000:9::-64`,
      '{"PublicIP":"198.18.0.9","PublicIPv6":"2001:2::9","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"5e:00:00:00:00:09"},"BackendV6Data":{"VNI":1,"VtepMAC":"5e:00:00:00:60:09"}}');
    const t = await daemon(prefix, ['--public-ipv6', '2001:2::1'], 0, true);
    const sub6 = t.cfg.ipv6!.subnet;
    expect(sub6).toMatch(/^2001:2:8000:[0-9a-f]+::\/64$/);
    expect(readFileSync(join(t.d, 'subnet.env'), 'utf8')).toBe(
      `FLANNEL_NETWORK=198.19.0.0/16\nFLANNEL_SUBNET=${t.cfg.subnet.replace('.0/24', '.1/24')}\nFLANNEL_IPV6_NETWORK=2001:2:8000::/48\nFLANNEL_IPV6_SUBNET=${sub6.replace('::/64', '::1/64')}\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n`);
    expect(t.be().params.ipv6).toEqual({ network: '2001:2:8000::/48', subnet: sub6, publicIp: '2001:2::1', localIp: '2001:2::1', vtepMac: stableVtepMac(sub6) });
    const key = `${prefix}/subnets/${t.cfg.subnet.replace('/', '-')}&${sub6.replace('/', '-')}`;
    expect(JSON.parse(etcdctl(etcd.url, 'get', key, '--print-value-only'))).toEqual({
      PublicIP: '198.18.0.1', PublicIPv6: '2001:2::1', BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: stableVtepMac(t.cfg.subnet) }, BackendV6Data: { VNI: 1, VtepMAC: stableVtepMac(sub6) },
    });
    const added = t.be().calls.flatMap((c) => (c.op === 'addPeer' ? [c.lease] : []));
    expect(added).toEqual([expect.objectContaining({ subnet: '198.19.9.0/24', ipv6Subnet: '2001:2:8000:9::/64', publicIpv6: '2001:2::9', v6VtepMac: '5e:00:00:00:60:09' })]);
    await t.o.stop();
    // a restart reads both subnets back (our lease, found by PublicIP, keeps them)
    const again = await daemonIn(t.d, prefix, ['--public-ipv6', '2001:2::1'], 0, true);
    expect([again.cfg.subnet, again.cfg.ipv6?.subnet]).toEqual([t.cfg.subnet, sub6]);
    await again.o.stop();
  });

  it('EnableIPv6 with a --backend-module factory that does not run IPv6: refused in one line before any lease is taken; overlayd exits 2 and creates nothing', async () => {
    const prefix = '/v6no/network';
    etcdctl(etcd.url, 'put', `${prefix}/config`, '{"Network":"198.19.0.0/16","EnableIPv6":true,"IPv6Network":"2001:2:8000::/48","Backend":{"Type":"vxlan"}}');
    const d = join(dir, 'v6no');
    mkdirSync(d);
    const cmd = parseCli(['--etcd-endpoints', etcd.url, '--etcd-prefix', prefix, '--iface', 'u0', '--public-ipv6', '2001:2::1', '--subnet-file', join(d, 'subnet.env')]);
    if (cmd.kind !== 'run') throw new Error('not run');
    const v4only = Object.assign(() => { throw new Error('not called'); }, {});
    await expect(resolveEtcdConfig(cmd.options, { ifaces, routeTable: noRoute, factory: v4only })).rejects.toThrow(/EnableIPv6 is true .*factory does not run IPv6 .*: the flannel-v6\.1 device, IPv6 routes and the IPv6 underlay need it/);
    const r = spawnSync(process.execPath, [...NODE_ARGS, '--etcd-endpoints', etcd.url, '--etcd-prefix', prefix, '--public-ipv6', '2001:2::1', '--subnet-file', join(d, 'subnet.env'), '--backend-module', FAKE],
      { cwd: ROOT, encoding: 'utf8', timeout: 30_000 });
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^overlayd: error: etcd \/v6no\/network\/config: EnableIPv6 is true/);
    expect(existsSync(join(d, 'subnet.env'))).toBe(false);
    expect(etcdctl(etcd.url, 'get', `${prefix}/subnets/`, '--prefix', '--keys-only').trim()).toBe('');
  });
});
