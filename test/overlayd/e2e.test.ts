/**
 * End to end in namespaces with the real dataplanes (src/vtep's UdpBackend and
 * VxlanBackend): three hosts on a shared underlay, overlayd on each, a "cni0" pod
 * gateway per host. Traffic flows; peers added to / removed from the peers file take
 * effect live without disturbing other peers' traffic; a restarted overlayd comes
 * back with its configuration and traffic resumes; SIGTERM leaves no device or route.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { Testbed, requireNetns, type NsHost } from '../helpers/netns.js';
import { nsState, pingFrom, sleep, startOverlayd, tcpTransfer, type Daemon } from './helpers.js';
import { stableVtepMac } from '../../src/overlayd/index.js';


interface H { n: number; ns: NsHost; ip: string; gw: string; subnet: string; dir: string; peers: string; d?: Daemon; baseline?: string }

const combos: ['udp' | 'vxlan', 'dgram' | 'mmsg'][] = [['udp', 'mmsg'], ['vxlan', 'mmsg'], ['udp', 'dgram']];

describe.runIf(requireNetns()).each(combos)('overlayd end to end (%s backend, %s transport)', (type, TRANSPORT) => {
  const tb = new Testbed(`ov${type[0]}${TRANSPORT[0]}`);
  const dir = mkdtempSync(join(tmpdir(), `od-e2e-${type}-${TRANSPORT}-`));
  const hosts: H[] = [];
  const conf = join(dir, 'net-conf.json');
  const dev = type === 'udp' ? 'flannel0' : 'flannel.1';

  const lease = (h: H): Record<string, unknown> => (type === 'udp'
    ? { PublicIP: h.ip, PublicIPv6: null, BackendType: 'udp' }
    : { PublicIP: h.ip, PublicIPv6: null, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: stableVtepMac(h.subnet) } });
  const writePeers = (h: H, of: H[]): void => {
    const obj: Record<string, unknown> = {};
    for (const p of of) obj[p.subnet.replace('/', '-')] = lease(p);
    writeFileSync(h.peers + '.tmp', JSON.stringify(obj, null, 2));
    renameSync(h.peers + '.tmp', h.peers);
  };
  const start = async (h: H): Promise<void> => {
    h.d = startOverlayd(h.ns, ['--net-conf', conf, '--subnet', h.subnet, '--iface', 'eth0', '--peers', h.peers, '--peers-debounce-ms', '50',
      '--subnet-file', join(h.dir, 'subnet.env'), '--lease-out', join(h.dir, 'lease.json'), '--transport', TRANSPORT,
      ...(h.n === 1 ? ['--pcap', join(h.dir, 'h1.pcap')] : [])]);
    await h.d.waitFor(/running/);
  };
  const stop = async (h: H): Promise<number | string | null> => {
    h.d!.child.kill('SIGTERM');
    return h.d!.exited;
  };
  const ping = (a: H, b: H, count = 1): boolean => pingFrom(a.ns, a.gw, b.gw, count);
  const until = async (what: string, f: () => boolean, ms = 10_000): Promise<void> => {
    const end = Date.now() + ms;
    while (!f()) {
      if (Date.now() > end) throw new Error(`timed out: ${what}\n${hosts.map((h) => `h${h.n}: ${h.d?.err().split('\n').slice(-6).join('\n')}`).join('\n')}`);
      await sleep(100);
    }
  };

  beforeAll(async () => {
    writeFileSync(conf, JSON.stringify({ Network: '198.19.0.0/16', Backend: { Type: type } }));
    for (let n = 1; n <= 3; n++) {
      const hdir = join(dir, `h${n}`);
      mkdirSync(hdir);
      hosts.push({ n, ns: tb.host(`h${n}`), ip: `198.18.0.${n}`, gw: `198.19.${n}.1`, subnet: `198.19.${n}.0/24`, dir: hdir, peers: join(hdir, 'peers.json') });
    }
    tb.lan(hosts.map((h) => ({ host: h.ns, dev: 'eth0', cidr: `${h.ip}/24` })));
    for (const h of hosts) {
      h.ns.ip('link', 'add', 'cni0', 'type', 'bridge');
      h.ns.ip('addr', 'add', `${h.gw}/24`, 'dev', 'cni0');
      h.ns.ip('link', 'set', 'cni0', 'up');
      h.baseline = nsState(h.ns);
    }
    // h1 and h2 know each other only; h3 knows everyone.
    writePeers(hosts[0]!, [hosts[0]!, hosts[1]!]);
    writePeers(hosts[1]!, [hosts[0]!, hosts[1]!]);
    writePeers(hosts[2]!, hosts);
    await Promise.all(hosts.map((h) => start(h)));
  });
  afterAll(() => {
    for (const h of hosts) tb.track(h.d!.child);
    tb.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('starts: own lease printed and written, subnet.env as flannel writes it, device up', () => {
    const [h1] = hosts;
    expect(JSON.parse(h1!.d!.out().trim())).toEqual({ '198.19.1.0-24': lease(h1!) });
    expect(readFileSync(join(h1!.dir, 'lease.json'), 'utf8').trim()).toBe(h1!.d!.out().trim());
    const mtu = type === 'udp' ? 1472 : 1450;
    expect(readFileSync(join(h1!.dir, 'subnet.env'), 'utf8')).toBe(`FLANNEL_NETWORK=198.19.0.0/16\nFLANNEL_SUBNET=198.19.1.1/24\nFLANNEL_MTU=${mtu}\nFLANNEL_IPMASQ=false\n`);
    expect(h1!.ns.ip('-br', 'link', 'show', dev)).toMatch(new RegExp(`^${dev.replace('.', '\\.')}\\s`));
  });

  it('traffic flows between overlayd instances (ping both ways, 1 MB over TCP with its SHA-256 checked)', async () => {
    const [h1, h2] = hosts as [H, H, H];
    await until('h1 -> h2', () => ping(h1, h2));
    expect(ping(h2, h1, 3)).toBe(true);
    const r = await tcpTransfer(h1.ns, h1.gw, h2.ns, h2.gw, { dir });
    expect(r.got).toBe(r.want);
  });

  it('a peer added to the peers file takes effect live, without disturbing other peers\' traffic', async () => {
    const [h1, h2, h3] = hosts as [H, H, H];
    expect(ping(h1, h3)).toBe(false); // h1 does not know h3 yet
    const steady = h1.ns.spawn('ping', ['-n', '-q', '-c', '40', '-i', '0.05', '-W', '1', '-I', h1.gw, h2.gw]);
    let out = '';
    steady.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
    const done = new Promise<void>((r) => steady.on('exit', () => r()));
    await sleep(300);
    writePeers(h1, hosts);
    writePeers(h2, hosts);
    await h1.d!.waitFor(/peer added: \{"198\.19\.3\.0-24"/);
    await until('h1 -> h3 after the peers file gained h3', () => ping(h1, h3));
    await until('h3 -> h2', () => ping(h3, h2));
    await done;
    expect(out).toMatch(/40 packets transmitted, 40 received/);
  });

  it('a peer removed from the peers file takes effect live (route gone, traffic stops), others unaffected', async () => {
    const [h1, h2, h3] = hosts as [H, H, H];
    writePeers(h1, [h1, h2]);
    await h1.d!.waitFor(/peer removed: 198\.19\.3\.0-24/);
    await until('h1 route to h3 removed', () => h1.ns.ip('route', 'show', '198.19.3.0/24') === '');
    expect(ping(h1, h3)).toBe(false);
    expect(ping(h1, h2, 3)).toBe(true);
    // SIGHUP also reloads: put h3 back and signal instead of waiting for the watcher
    writePeers(h1, hosts);
    h1.d!.child.kill('SIGHUP');
    await until('h1 -> h3 back', () => ping(h1, h3));
  });

  it('restart of one overlayd while the others run: its configuration comes back and traffic resumes', async () => {
    const [h1, h2, h3] = hosts as [H, H, H];
    expect(await stop(h2)).toBe(0);
    expect(h2.ns.ip('-br', 'link', 'show')).not.toMatch(new RegExp(`^${dev.replace('.', '\\.')}\\s`, 'm'));
    expect(ping(h1, h2)).toBe(false);
    await start(h2);
    expect(JSON.parse(h2.d!.out().trim())).toEqual({ '198.19.2.0-24': lease(h2) }); // same lease (and VTEP MAC) as before
    await until('h1 -> h2 after restart', () => ping(h1, h2));
    await until('h2 -> h3 after restart', () => ping(h2, h3));
    expect(ping(h3, h2, 3)).toBe(true);
  });

  it('SIGTERM: exit 0 and no device or route state left behind', async () => {
    for (const h of hosts) expect(await stop(h)).toBe(0);
    for (const h of hosts) {
      expect(nsState(h.ns)).toBe(h.baseline);
      expect(h.d!.err()).toMatch(/stopped; removed what we created/);
    }
  });

  it('--pcap on h1 captured inner and outer packets in a file tcpdump reads', () => {
    const out = execFileSync('tcpdump', ['-nn', '-r', join(hosts[0]!.dir, 'h1.pcap')], { encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'], maxBuffer: 64 << 20 });
    const port = type === 'udp' ? 8285 : 8472;
    expect(out).toMatch(/IP 198\.19\.1\.1 > 198\.19\.2\.1: ICMP echo request/); // inner, read from the device
    expect(out).toMatch(/IP 198\.19\.2\.1 > 198\.19\.1\.1: ICMP echo reply/); // inner, written to the device
    expect(out).toMatch(new RegExp(`IP 198\\.18\\.0\\.1\\.\\d+ > 198\\.18\\.0\\.2\\.${port}: `)); // outer, sent
    expect(out).toMatch(new RegExp(`IP 198\\.18\\.0\\.2\\.\\d+ > 198\\.18\\.0\\.1\\.${port}: `)); // outer, received
  });
});
