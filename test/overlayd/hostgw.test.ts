/**
 * The host-gw backend end to end in namespaces: three hosts on one segment and a fourth behind a
 * router (test/overlayd/helpers.ts twoSegments), overlayd with `"Type": "host-gw"` from a peers
 * file, then from etcd leases. Routes are `<subnet> via <public IP> dev eth0`, traffic (ping, a
 * TCP transfer checked by SHA-256) flows over them, the far host's lease is refused with a clear
 * error (logged, counted on /metrics, no route), a removed peer loses its route and SIGTERM
 * removes every route overlayd added.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Testbed, requireNetns } from '../helpers/netns.js';
import { etcdAvailable, startEtcd, type TestEtcd } from '../helpers/etcd.js';
import { fetchIn, nsState, pingFrom, routeTo, sleep, startOverlayd, tcpTransfer, twoSegments, viaPublicIp, type Daemon, type SegHost } from './helpers.js';

interface H extends SegHost { dir: string; peers: string; d?: Daemon; baseline?: string }

const PORT = 9707;
const lease = (h: SegHost): Record<string, unknown> => ({ PublicIP: h.ip, PublicIPv6: null, BackendType: 'host-gw' });

describe.runIf(requireNetns())('host-gw backend (namespaces)', () => {
  const tb = new Testbed('odhg');
  const dir = mkdtempSync(join(tmpdir(), 'od-hostgw-'));
  const conf = join(dir, 'net-conf.json');
  let hosts: H[] = [];
  let far: H;
  let hub: ReturnType<typeof twoSegments>['hub'];

  const writePeers = (h: H, of: H[]): void => {
    const obj: Record<string, unknown> = {};
    for (const p of of) obj[p.subnet.replace('/', '-')] = lease(p);
    writeFileSync(h.peers + '.tmp', JSON.stringify(obj));
    renameSync(h.peers + '.tmp', h.peers);
  };
  const until = async (what: string, f: () => boolean, ms = 10_000): Promise<void> => {
    const end = Date.now() + ms;
    while (!f()) {
      if (Date.now() > end) throw new Error(`timed out: ${what}\n${hosts.map((h) => `h${h.n}: ${h.d?.err().split('\n').slice(-6).join('\n')}`).join('\n')}`);
      await sleep(100);
    }
  };
  const ping = (a: H, b: H, count = 1): boolean => pingFrom(a.ns, a.gw, b.gw, count);
  const routeOf = (h: H, to: H): string => h.ns.ip('route', 'show', to.subnet).trim();

  beforeAll(async () => {
    writeFileSync(conf, JSON.stringify({ Network: '198.19.0.0/16', Backend: { Type: 'host-gw' } }));
    const seg = twoSegments(tb, 3);
    hub = seg.hub;
    const withDir = (h: SegHost): H => {
      const d = join(dir, `h${h.n}`);
      mkdirSync(d);
      return { ...h, dir: d, peers: join(d, 'peers.json') };
    };
    hosts = seg.hosts.map(withDir);
    far = withDir(seg.far);
    for (const h of hosts) {
      h.baseline = nsState(h.ns);
      writePeers(h, [...hosts, far]);
    }
    await Promise.all(hosts.map(async (h) => {
      h.d = startOverlayd(h.ns, ['--net-conf', conf, '--subnet', h.subnet, '--iface', 'eth0', '--peers', h.peers, '--peers-debounce-ms', '50',
        '--subnet-file', join(h.dir, 'subnet.env'), '--healthz-port', String(PORT)]);
      tb.track(h.d.child);
      await h.d.waitFor(/running/);
    }));
  }, 60_000);
  afterAll(() => {
    tb.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('routes every peer on the segment via its public IP on eth0; subnet.env has the underlay MTU; no device', () => {
    const [h1, h2, h3] = hosts as [H, H, H];
    expect(routeTo(h1, h2)).toMatch(viaPublicIp(h2));
    expect(routeTo(h1, h3)).toMatch(viaPublicIp(h3));
    expect(routeTo(h2, h1)).toMatch(viaPublicIp(h1));
    expect(routeTo(h1, h1)).toMatch(/dev cni0/); // our own subnet is the bridge's, untouched
    expect(readFileSync(join(h1.dir, 'subnet.env'), 'utf8')).toBe('FLANNEL_NETWORK=198.19.0.0/16\nFLANNEL_SUBNET=198.19.1.1/24\nFLANNEL_MTU=1500\nFLANNEL_IPMASQ=false\n');
    expect(JSON.parse(h1.d!.out().trim())).toEqual({ '198.19.1.0-24': lease(h1) });
    expect(nsState(h1.ns).split('\n')[0]).toBe(h1.baseline!.split('\n')[0]); // same links: no tunnel device
  });

  it('a peer on another segment gets a clear error (logged, counted on /metrics) and no route', () => {
    const [h1] = hosts as [H, H, H];
    expect(h1.d!.err()).toMatch(new RegExp(
      `adding peer .*198\\.19\\.4\\.0-24.*host-gw: peer 198\\.19\\.4\\.0/24 \\(public IP 198\\.18\\.1\\.4\\) is not on the L2 segment of eth0 ` +
      `\\(on-link there: 198\\.18\\.0\\.0/24; the kernel reaches 198\\.18\\.1\\.4 by 198\\.18\\.1\\.0/24 via 198\\.18\\.0\\.254 dev eth0\\);.*peer skipped`));
    expect(routeTo(h1, far)).toBe('');
    expect(fetchIn(h1.ns, PORT, '/metrics')).toMatch(/^overlayd_rejected_peers_total 1$/m);
  });

  it('traffic flows over the routes: pings both ways, 1 MB over TCP with its SHA-256 checked', async () => {
    const [h1, h2, h3] = hosts as [H, H, H];
    await until('h1 -> h2', () => ping(h1, h2));
    expect(ping(h2, h1, 3)).toBe(true);
    expect(ping(h3, h1, 3)).toBe(true);
    const r = await tcpTransfer(h1.ns, h1.gw, h2.ns, h2.gw, { dir });
    expect(r.got).toBe(r.want);
  });

  it('removing a peer from the peers file removes its route (traffic stops); putting it back restores it', async () => {
    const [h1, h2, h3] = hosts as [H, H, H];
    writePeers(h1, [h1, h2]);
    await h1.d!.waitFor(/peer removed: 198\.19\.3\.0-24/);
    await until('route to h3 gone on h1', () => routeTo(h1, h3) === '');
    expect(ping(h1, h3)).toBe(false);
    expect(ping(h1, h2)).toBe(true);
    writePeers(h1, [h1, h2, h3]);
    await until('h1 -> h3 again', () => ping(h1, h3));
  });

  it('SIGTERM: exit 0, every route overlayd added is gone', async () => {
    for (const h of hosts) {
      h.d!.child.kill('SIGTERM');
      expect(await h.d!.exited).toBe(0);
      expect(nsState(h.ns)).toBe(h.baseline);
    }
  });

  describe.runIf(etcdAvailable())('with etcd leases', () => {
    let etcd: TestEtcd | undefined;
    const PREFIX = '/coreos.com/network';
    afterAll(async () => { await etcd?.stop(); });

    it('hosts lease subnets as host-gw, route each other, and refuse the far host\'s lease', async () => {
      etcd = await startEtcd({ ns: hub, host: '198.18.0.254' });
      hub.exec('etcdctl', ['--endpoints', etcd.url, 'put', `${PREFIX}/config`, JSON.stringify({ Network: '198.19.0.0/16', Backend: { Type: 'host-gw' } })]);
      const [h1, h2] = hosts as [H, H, H];
      const up = [h1, h2, far];
      await Promise.all(up.map(async (h) => {
        // the previous subnet in subnet.env is leased again when free: the subnet of the host's cni0
        writeFileSync(join(h.dir, 'subnet.env'), `FLANNEL_SUBNET=${h.gw}/24\n`);
        h.d = startOverlayd(h.ns, ['--etcd-endpoints', etcd!.url, '--iface', 'eth0', '--subnet-file', join(h.dir, 'subnet.env')]);
        tb.track(h.d.child);
        await h.d.waitFor(/running/, 30_000);
      }));
      expect(hub.exec('etcdctl', ['--endpoints', etcd.url, 'get', `${PREFIX}/subnets/198.19.1.0-24`, '--print-value-only'])).toContain('"BackendType":"host-gw"');
      await until('h1 -> h2 over etcd-leased host-gw routes', () => ping(h1, h2));
      expect(routeTo(h2, h1)).toMatch(viaPublicIp(h1));
      await h1.d!.waitFor(/host-gw: peer 198\.19\.4\.0\/24 \(public IP 198\.18\.1\.4\) is not on the L2 segment of eth0/);
      await far.d!.waitFor(/host-gw: peer 198\.19\.1\.0\/24 \(public IP 198\.18\.0\.1\) is not on the L2 segment of eth0/);
      expect(routeTo(h1, far)).toBe('');
      for (const h of up) {
        h.d!.child.kill('SIGTERM');
        expect(await h.d!.exited).toBe(0);
      }
      expect(routeTo(h1, h2)).toBe('');
    }, 60_000);
  });
});
