/**
 * Underlay events (issue #14), in namespaces with the real VXLAN dataplane: two hosts, overlayd
 * on each. The underlay address of host a changes (198.18.0.1 removed, 198.18.0.11 added) and b's
 * peers file is rewritten: a binds its socket to the new address, advertises it, and traffic
 * resumes without a restart; /readyz says not ready while a has no address; the log and /metrics
 * say what happened. The underlay link goes down for 3 s: traffic resumes, both edges logged and
 * counted. A pinned --public-ip that disappears makes /healthz and /readyz 503 until it is back.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Testbed, requireNetns, type NsHost } from '../helpers/netns.js';
import { bedHosts, buildBed, pingFrom, sleep, startOverlayd, writeVxlanPeers, type BedHost, type Daemon } from './helpers.js';

type H = BedHost;

const PORT = 19471;

describe.runIf(requireNetns())('overlayd follows underlay events (vxlan)', () => {
  const tb = new Testbed('odul');
  const dir = mkdtempSync(join(tmpdir(), 'od-ul-'));
  const { a, b, conf } = bedHosts(dir);
  const writePeers = writeVxlanPeers;
  const start = async (h: H, extra: string[] = []): Promise<Daemon> => {
    h.d = startOverlayd(h.ns, ['--net-conf', conf, '--subnet', h.subnet, '--iface', 'eth0', '--peers', h.peers, '--peers-debounce-ms', '50',
      '--subnet-file', join(dir, `${h.subnet.split('/')[0]}.env`), '--lease-out', join(dir, `${h.subnet.split('/')[0]}.lease`), ...extra]);
    tb.track(h.d.child);
    await h.d.waitFor(/running/);
    return h.d;
  };
  /** GET a path of a's healthz server from inside a's namespace: "<status> <body>". */
  const http = (path: string): string => a.ns.exec('curl', ['-sS', '-w', ' %{http_code}', `http://127.0.0.1:${PORT}${path}`]);
  const metric = (text: string, re: RegExp): string | undefined => text.split('\n').find((l) => re.test(l));
  const until = async (what: string, f: () => boolean, ms = 10_000): Promise<void> => {
    const end = Date.now() + ms;
    while (!f()) {
      if (Date.now() > end) throw new Error(`timed out: ${what}\na: ${a.d?.err().split('\n').slice(-8).join('\n')}`);
      await sleep(100);
    }
  };

  beforeAll(async () => {
    buildBed(tb, a, b, conf);
    await start(b);
    await start(a, ['--healthz-port', String(PORT)]);
    expect(pingFrom(a.ns, a.gw, b.gw, 2)).toBe(true);
  });
  afterAll(() => {
    tb.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('underlay address 198.18.0.1 -> 198.18.0.11, peers told: socket bound again, traffic resumes without a restart; log, /readyz and /metrics say so', async () => {
    expect(http('/readyz')).toBe('ready 200');
    a.ns.ip('addr', 'del', '198.18.0.1/24', 'dev', 'eth0');
    await a.d!.waitFor(/underlay eth0: address 198\.18\.0\.1 was removed/);
    await a.d!.waitFor(/underlay eth0: no IPv4 address left \(address 198\.18\.0\.1 removed\); not ready/);
    expect(http('/readyz')).toBe('not ready 503');
    expect(pingFrom(a.ns, a.gw, b.gw, 1)).toBe(false);
    a.ns.ip('addr', 'add', '198.18.0.11/24', 'dev', 'eth0');
    await a.d!.waitFor(/underlay eth0: address changed 198\.18\.0\.1 -> 198\.18\.0\.11 \(address 198\.18\.0\.11 added\); socket bound to 198\.18\.0\.11; public IP is now 198\.18\.0\.11 \(was 198\.18\.0\.1\)/);
    await a.d!.waitFor(/our lease is now \{"198\.19\.1\.0-24":\{"PublicIP":"198\.18\.0\.11"/);
    expect(JSON.parse(readFileSync(join(dir, '198.19.1.0.lease'), 'utf8'))['198.19.1.0-24'].PublicIP).toBe('198.18.0.11');
    expect(http('/readyz')).toBe('ready 200');
    a.ip = '198.18.0.11';
    writePeers(b, [a, b]); // the peers are told (etcd mode: the lease in etcd was rewritten)
    await b.d!.waitFor(/peer changed: \{"198\.19\.1\.0-24":\{"PublicIP":"198\.18\.0\.11"/);
    await until('a -> b after the address change', () => pingFrom(a.ns, a.gw, b.gw, 1));
    expect(pingFrom(b.ns, b.gw, a.gw, 3)).toBe(true);
    expect(a.d!.child.exitCode).toBeNull(); // no restart
    const m = http('/metrics');
    expect(metric(m, /^overlayd_underlay_events_total\{event="address_lost"\}/)).toBe('overlayd_underlay_events_total{event="address_lost"} 1');
    expect(metric(m, /^overlayd_underlay_events_total\{event="address_changed"\}/)).toBe('overlayd_underlay_events_total{event="address_changed"} 1');
    expect(metric(m, /^overlayd_underlay_info/)).toBe('overlayd_underlay_info{iface="eth0",local_ip="198.18.0.11",public_ip="198.18.0.11"} 1');
    expect(metric(m, /^overlayd_underlay_address_present/)).toBe('overlayd_underlay_address_present 1');
    // the ping sent while there was no address failed in the socket: counted by its errno class, not as a full socket
    expect(metric(m, /^overlayd_drops_total\{reason="tx_socket_full"\}/)).toBe('overlayd_drops_total{reason="tx_socket_full"} 0');
    expect(metric(m, /^overlayd_send_errors_total\{errno="ENETUNREACH"\}/)).toMatch(/ [1-9]\d*$/);
    expect(metric(m, /^overlayd_drops_total\{reason="tx_underlay_unreachable"\}/)).toMatch(/ [1-9]\d*$/);
    console.log(`send failures while the address was gone: ${m.split('\n').filter((l) => /^overlayd_(drops_total\{reason="tx_|send_errors_total)/.test(l) && !/ 0$/.test(l)).join('; ')}`);
  });

  it('underlay link down for 3 s, then up: traffic resumes; both edges logged and counted', async () => {
    a.ns.ip('link', 'set', 'eth0', 'down');
    await a.d!.waitFor(/underlay eth0: link down/);
    expect(pingFrom(a.ns, a.gw, b.gw, 1)).toBe(false);
    await sleep(3000);
    a.ns.ip('link', 'set', 'eth0', 'up');
    await a.d!.waitFor(/underlay eth0: link up \(down for \d+\.\d s\)/);
    await until('a -> b after link up', () => pingFrom(a.ns, a.gw, b.gw, 1));
    expect(pingFrom(b.ns, b.gw, a.gw, 3)).toBe(true);
    const m = http('/metrics');
    expect(metric(m, /^overlayd_underlay_events_total\{event="link_down"\}/)).toBe('overlayd_underlay_events_total{event="link_down"} 1');
    expect(metric(m, /^overlayd_underlay_events_total\{event="link_up"\}/)).toBe('overlayd_underlay_events_total{event="link_up"} 1');
    expect(metric(m, /^overlayd_underlay_link_up/)).toBe('overlayd_underlay_link_up 1');
  });

  it('a pinned --public-ip that disappears: /healthz and /readyz 503 until it is back, then traffic resumes', async () => {
    a.d!.child.kill('SIGTERM');
    expect(await a.d!.exited).toBe(0);
    await start(a, ['--healthz-port', String(PORT), '--public-ip', '198.18.0.11']);
    await until('a -> b', () => pingFrom(a.ns, a.gw, b.gw, 1));
    a.ns.ip('addr', 'del', '198.18.0.11/24', 'dev', 'eth0');
    await a.d!.waitFor(/--public-ip 198\.18\.0\.11 is not on the interface \(address 198\.18\.0\.11 removed\); not ready until it is back/);
    expect(http('/healthz')).toMatch(/ 503$/);
    expect(http('/readyz')).toBe('not ready 503');
    a.ns.ip('addr', 'add', '198.18.0.11/24', 'dev', 'eth0');
    await a.d!.waitFor(/underlay eth0: address 198\.18\.0\.11 is back/);
    expect(http('/healthz')).toBe('ok 200');
    expect(http('/readyz')).toBe('ready 200');
    await until('a -> b after the pinned address is back', () => pingFrom(a.ns, a.gw, b.gw, 1));
  });
});
