/**
 * `--ip-masq` in namespaces (nftables only ever inside them): host h1 with a pod namespace behind
 * it (198.19.1.2 on a veth, h1 forwarding), host h2 (198.19.2.1 on cni0), an "outside" host on the
 * underlay that is not in the cluster; overlayd (host-gw) on h1 and h2, h1 with --ip-masq. A TCP
 * server prints the source it sees: outside sees h1's underlay address (masqueraded), the in-cluster
 * peer sees the pod's own address. The table is the ruleset masqRuleset() writes, applied in one
 * transaction, put back when someone deletes it, and gone after SIGTERM; subnet.env says
 * FLANNEL_IPMASQ=true. The network is dual stack (IPv6Network 2001:2:0:8000::/49, the underlay
 * 2001:2:0:1::N/64 beside 198.18.0.N): the same rules for IPv6 in a table ip6 overlayd, checked
 * the same way (the pod's IPv6 traffic to outside leaves as h1's IPv6 underlay address).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { Testbed, requireNetns, type NsHost } from '../helpers/netns.js';
import { NET6, sleep, startOverlayd, type Daemon } from './helpers.js';
import { masqRuleset } from '../../src/overlayd/index.js';

/** Connect from `from` (source address `src`) to a TCP server on `to` at `dst`; the peer address the server saw. */
async function seenSource(from: NsHost, src: string, to: NsHost, dst: string, port: number): Promise<string> {
  const srv = to.spawn(process.execPath, ['-e', `require('net').createServer(s=>{console.log('from '+s.remoteAddress);s.end();process.exit(0)}).listen(${port},'${dst}',()=>console.log('ready'))`]);
  let out = '';
  srv.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  try {
    for (let i = 0; !out.includes('ready'); i++) {
      if (i > 200) throw new Error('server did not start');
      await sleep(25);
    }
    from.exec(process.execPath, ['-e', `const s=require('net').connect({port:${port},host:'${dst}',localAddress:'${src}'});s.on('data',()=>{});s.on('end',()=>process.exit(0));s.on('error',e=>{console.error(e.message);process.exit(1)})`], { timeout: 10_000 });
    for (let i = 0; !/from /.test(out); i++) {
      if (i > 200) throw new Error(`no connection seen: ${out}`);
      await sleep(25);
    }
    return /from (\S+)/.exec(out)![1]!;
  } finally {
    srv.kill('SIGKILL');
  }
}

/** True when nft can be run; REQUIRE_NETNS=1 (CI, which installs nftables) makes its absence a failure. */
function nftAvailable(): boolean {
  const ok = spawnSync('nft', ['--version'], { stdio: 'ignore' }).status === 0;
  if (!ok && process.env.REQUIRE_NETNS === '1') throw new Error('REQUIRE_NETNS=1 but nft is missing (apt-get install -y nftables)');
  return ok;
}

describe.runIf(requireNetns() && nftAvailable())('--ip-masq (nftables, namespaces)', () => {
  const tb = new Testbed('odmq');
  const dir = mkdtempSync(join(tmpdir(), 'od-ipmasq-'));
  let h1: NsHost, h2: NsHost, pod: NsHost, outside: NsHost;
  const ds: Daemon[] = [];
  const table = (): string => h1.exec('nft', ['list', 'tables']);

  beforeAll(async () => {
    h1 = tb.host('h1');
    h2 = tb.host('h2');
    outside = tb.host('out');
    pod = tb.host('pod');
    tb.lan([{ host: h1, dev: 'eth0', cidr: '198.18.0.1/24' }, { host: h2, dev: 'eth0', cidr: '198.18.0.2/24' }, { host: outside, dev: 'eth0', cidr: '198.18.0.100/24' }]);
    for (const [h, n] of [[h1, 1], [h2, 2], [outside, 100]] as const) h.ip('addr', 'add', `2001:2:0:1::${n}/64`, 'dev', 'eth0', 'nodad');
    tb.link(h1, 'vpod', '198.19.1.1/24', pod, 'eth0', '198.19.1.2/24');
    h1.ip('addr', 'add', '2001:2:0:8001::1/64', 'dev', 'vpod', 'nodad');
    pod.ip('addr', 'add', '2001:2:0:8001::2/64', 'dev', 'eth0', 'nodad');
    pod.ip('route', 'add', 'default', 'via', '198.19.1.1');
    pod.ip('-6', 'route', 'add', 'default', 'via', '2001:2:0:8001::1');
    h1.exec('sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
    h1.exec('sysctl', ['-qw', 'net.ipv6.conf.all.forwarding=1']);
    h2.ip('link', 'add', 'cni0', 'type', 'bridge');
    h2.ip('addr', 'add', '198.19.2.1/24', 'dev', 'cni0');
    h2.ip('addr', 'add', '2001:2:0:8002::1/64', 'dev', 'cni0', 'nodad');
    h2.ip('link', 'set', 'cni0', 'up');
    const conf = join(dir, 'net-conf.json');
    writeFileSync(conf, JSON.stringify({ Network: '198.19.0.0/16', EnableIPv6: true, IPv6Network: NET6, Backend: { Type: 'host-gw' } }));
    const peers = join(dir, 'peers.json');
    writeFileSync(peers, JSON.stringify({
      '198.19.1.0-24&2001:2:0:8001::-64': { PublicIP: '198.18.0.1', PublicIPv6: '2001:2:0:1::1', BackendType: 'host-gw' },
      '198.19.2.0-24&2001:2:0:8002::-64': { PublicIP: '198.18.0.2', PublicIPv6: '2001:2:0:1::2', BackendType: 'host-gw' },
    }));
    for (const [h, n, extra] of [[h1, 1, ['--ip-masq', '--iptables-resync', '1']], [h2, 2, []]] as const) {
      mkdirSync(join(dir, `h${n}`));
      const d = startOverlayd(h, ['--net-conf', conf, '--subnet', `198.19.${n}.0/24`, '--ipv6-subnet', `2001:2:0:800${n}::/64`, '--public-ipv6', `2001:2:0:1::${n}`,
        '--iface', 'eth0', '--peers', peers, '--subnet-file', join(dir, `h${n}`, 'subnet.env'), ...extra]);
      tb.track(d.child);
      ds.push(d);
    }
    await Promise.all(ds.map((d) => d.waitFor(/running/)));
  }, 60_000);
  afterAll(() => {
    tb.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('applies flannel\'s rules as one table per family (ip, ip6); subnet.env says FLANNEL_IPMASQ=true', () => {
    // each table as masqRuleset writes it for that family alone (an IPv6-only network: the ip6 table)
    for (const [fam, network, subnet] of [['ip', '198.19.0.0/16', '198.19.1.0/24'], ['ip6', NET6, '2001:2:0:8001::/64']] as const) {
      const listed = h1.exec('nft', ['list', 'table', fam, 'overlayd']);
      const want = masqRuleset({ network, subnet, fullyRandom: true }).split('\n').filter((l) => /^ {4}\S/.test(l)).map((l) => l.trim().replace(/0x4000/g, '0x00004000'));
      const got = listed.split('\n').map((l) => l.trim()).filter((l) => l && !/^(table|chain|\}|type )/.test(l));
      expect(got, fam).toEqual(want.filter((l) => !l.startsWith('type ')));
      expect(listed).toMatch(/type nat hook postrouting priority srcnat; policy accept;/);
    }
    expect(ds[0]!.err()).toMatch(/ip-masq: nftables tables ip overlayd and ip6 overlayd applied/);
    expect(readFileSync(join(dir, 'h1', 'subnet.env'), 'utf8')).toMatch(/^FLANNEL_IPMASQ=true$/m);
    expect(readFileSync(join(dir, 'h2', 'subnet.env'), 'utf8')).toMatch(/^FLANNEL_IPMASQ=false$/m);
    expect(h2.exec('nft', ['list', 'tables'])).not.toMatch(/overlayd/); // only where asked
  });

  it('pod -> outside the cluster: masqueraded to h1\'s underlay address; pod -> in-cluster peer: the pod\'s own address', async () => {
    expect(await seenSource(pod, '198.19.1.2', outside, '198.18.0.100', 5401)).toBe('198.18.0.1');
    expect(await seenSource(pod, '198.19.1.2', h2, '198.19.2.1', 5402)).toBe('198.19.1.2');
    // the host itself into the cluster network (not from the pod subnet): masqueraded, as flannel's last rule says
    expect(await seenSource(h1, '198.18.0.1', h2, '198.19.2.1', 5403)).toBe('198.18.0.1');
    // and outside -> our pods is left alone
    outside.ip('route', 'add', '198.19.1.0/24', 'via', '198.18.0.1');
    expect(await seenSource(outside, '198.18.0.100', pod, '198.19.1.2', 5404)).toBe('198.18.0.100');
  });

  it('IPv6: pod -> outside masqueraded to h1\'s IPv6 underlay address; pod -> in-cluster peer (host-gw route via its PublicIPv6): the pod\'s own', async () => {
    expect(await seenSource(pod, '2001:2:0:8001::2', outside, '2001:2:0:1::100', 5411)).toBe('2001:2:0:1::1');
    expect(await seenSource(pod, '2001:2:0:8001::2', h2, '2001:2:0:8002::1', 5412)).toBe('2001:2:0:8001::2');
    outside.ip('-6', 'route', 'add', '2001:2:0:8001::/64', 'via', '2001:2:0:1::1');
    expect(await seenSource(outside, '2001:2:0:1::100', pod, '2001:2:0:8001::2', 5413)).toBe('2001:2:0:1::100');
  });

  it('a table deleted by someone else is re-applied (--iptables-resync 1)', async () => {
    h1.exec('nft', ['delete', 'table', 'ip', 'overlayd']);
    expect(table()).not.toMatch(/table ip overlayd/);
    await ds[0]!.waitFor(/table ip overlayd was removed by someone else; re-applied/, 5000);
    expect(table()).toMatch(/table ip overlayd/);
    expect(await seenSource(pod, '198.19.1.2', outside, '198.18.0.100', 5405)).toBe('198.18.0.1');
  });

  it('an ip6 table deleted by someone else is re-applied too', async () => {
    h1.exec('nft', ['delete', 'table', 'ip6', 'overlayd']);
    await ds[0]!.waitFor(/table ip6 overlayd was removed by someone else; re-applied/, 5000);
    expect(table()).toMatch(/table ip6 overlayd/);
  });

  it('SIGTERM removes both tables; traffic from the pod is no longer translated', async () => {
    ds[0]!.child.kill('SIGTERM');
    expect(await ds[0]!.exited).toBe(0);
    expect(table()).not.toMatch(/overlayd/);
    outside.ip('route', 'replace', '198.19.1.0/24', 'via', '198.18.0.1');
    expect(await seenSource(pod, '198.19.1.2', outside, '198.18.0.100', 5406)).toBe('198.19.1.2');
    expect(await seenSource(pod, '2001:2:0:8001::2', outside, '2001:2:0:1::100', 5414)).toBe('2001:2:0:8001::2');
  });
});
