/**
 * The supervisor and the upgrade handover (issue #14), in namespaces, for both backends: host a
 * runs overlayd under its supervisor, host b the peer (vxlan: a kernel flannel.1 set up as flannel
 * does; udp: overlayd --no-supervisor). Through each fault a 10 ms ping runs both ways and a 50 MB
 * TCP transfer paced at 100 Mbit/s (about 4 s, so the fault lands in its middle) whose SHA-256 is
 * compared at both ends:
 *  - SIGKILL of the packet process: every ping answered (delayed, not dropped), the transfer
 *    intact, the device (same ifindex), its address and routes there all along;
 *  - `overlayd --takeover`: a second overlayd takes the descriptors over, the first exits 0 once
 *    the second forwards; every ping answered, the transfer intact, the device never gone;
 *  - (udp) five deaths in a row: the supervisor gives up, exit 1, the marked device stays;
 *  - (vxlan) for comparison, kernel VXLAN on both hosts under the same load (no process to kill).
 * Each prints its figures (lost pings, max RTT = the forwarding gap) as one JSON line.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { Testbed, requireNetns, type NsHost } from '../helpers/netns.js';
import { kernelAddPeer, kernelVxlan, tcpTransfer } from '../vtep/harness.js';
import { NET6, gw4, gw6, kernelDual, leaseEntry, pub6, runOverlayd, sleep, startOverlayd, sub4, sub6, untilPath, dualHosts, type Daemon, type DualHost } from './helpers.js';
import { stableVtepMac } from '../../src/overlayd/index.js';

/** 50 MB at 100 Mbit/s: about 4 s. */
const BYTES = 50_000_000;
const RATE = 12_500_000;
/** Pings at 10 ms for as long as the transfer runs (ping's 10 ms interval runs a little slower). */
const PINGS = 400;

interface PingResult { sent: number; received: number; maxMs: number }

/** A running `ping -i 0.01 -c count` and its result. */
function startPing(h: NsHost, src: string, dst: string, count: number): { proc: ChildProcess; done: Promise<PingResult> } {
  const proc = h.spawn('ping', ['-n', '-i', '0.01', '-c', String(count), '-W', '5', '-I', src, dst]);
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  const done = new Promise<PingResult>((resolve) => proc.on('exit', () => {
    const m = /(\d+) packets transmitted, (\d+) received/.exec(out);
    const times = [...out.matchAll(/time=([\d.]+) ms/g)].map((x) => Number(x[1]));
    resolve({ sent: Number(m?.[1] ?? 0), received: Number(m?.[2] ?? 0), maxMs: times.length ? Math.max(...times) : NaN });
  }));
  return { proc, done };
}

/** ifindex of `dev` in `h` (undefined when absent). */
function ifindex(h: NsHost, dev: string): number | undefined {
  try {
    return Number(h.ip('-o', 'link', 'show', dev).split(':')[0]);
  } catch {
    return undefined;
  }
}

/** pid of the packet process that logged "running" last (the supervisor's own line says "running (supervisor"). */
function packetPid(d: Daemon): number {
  const all = [...d.err().matchAll(/overlayd\[(\d+)\]: running$/gm)];
  return Number(all[all.length - 1]![1]);
}

describe.runIf(requireNetns()).each(['vxlan', 'udp'] as const)('overlayd supervisor and takeover (%s backend)', (type) => {
  const tb = new Testbed(`odsup${type[0]}`);
  const dir = mkdtempSync(join(tmpdir(), `od-sup-${type}-`));
  const dev = type === 'udp' ? 'flannel0' : 'flannel.1';
  const conf = join(dir, 'net-conf.json');
  const ctl = join(dir, 'ctl.sock');
  let a: NsHost;
  let b: NsHost;
  let d: Daemon | undefined;
  let peerD: Daemon | undefined;
  const daemons: Daemon[] = [];
  const leaseOf = (subnet: string, ip: string, mac?: string): Record<string, unknown> => (type === 'udp'
    ? { PublicIP: ip, BackendType: 'udp' }
    : { PublicIP: ip, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: mac ?? stableVtepMac(subnet) } });
  const args = (extra: string[] = []): string[] => ['--net-conf', conf, '--subnet', '198.19.1.0/24', '--iface', 'u0', '--peers', join(dir, 'peers-a.json'),
    '--subnet-file', join(dir, 'a.env'), '--control-socket', ctl, '--healthz-port', '9471', ...extra];
  const start = (extra: string[] = []): Daemon => {
    const x = startOverlayd(a, args(extra));
    tb.track(x.child);
    daemons.push(x);
    return x;
  };
  const healthz = (): string => a.exec('curl', ['-s', '-m', '2', 'http://127.0.0.1:9471/healthz']);

  beforeAll(async () => {
    a = tb.host('a');
    b = tb.host('b');
    tb.link(a, 'u0', '198.18.0.1/24', b, 'u0', '198.18.0.2/24');
    for (const [h, n] of [[a, 1], [b, 2]] as const) {
      h.ip('link', 'add', 'cni0', 'type', 'bridge');
      h.ip('addr', 'add', `198.19.${n}.1/24`, 'dev', 'cni0');
      h.ip('link', 'set', 'cni0', 'up');
    }
    writeFileSync(conf, JSON.stringify({ Network: '198.19.0.0/16', Backend: { Type: type } }));
    const bMac = '02:00:00:00:02:02';
    writeFileSync(join(dir, 'peers-a.json'), JSON.stringify({ '198.19.2.0-24': leaseOf('198.19.2.0/24', '198.18.0.2', bMac) }));
    if (type === 'vxlan') {
      const k = kernelVxlan(b, { subnet: '198.19.2.0/24', publicIp: '198.18.0.2', underlay: 'u0', mac: bMac });
      kernelAddPeer(b, k.dev, { subnet: '198.19.1.0/24', publicIp: '198.18.0.1', backendType: 'vxlan', vni: 1, vtepMac: stableVtepMac('198.19.1.0/24') });
    } else {
      writeFileSync(join(dir, 'peers-b.json'), JSON.stringify({ '198.19.1.0-24': leaseOf('198.19.1.0/24', '198.18.0.1') }));
      peerD = startOverlayd(b, ['--net-conf', conf, '--subnet', '198.19.2.0/24', '--iface', 'u0', '--peers', join(dir, 'peers-b.json'), '--subnet-file', join(dir, 'b.env'), '--no-supervisor']);
      tb.track(peerD.child);
      await peerD.waitFor(/running/);
    }
    d = start();
    await d.waitFor(/running \(supervisor/);
    await d.waitFor(/standby packet process \d+ loaded/); // the next one waits, loaded
  });
  afterAll(() => {
    tb.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  /** TCP segments retransmitted by a's stack so far (/proc/net/snmp RetransSegs). */
  const retransSegs = (): number => {
    const lines = a.exec('cat', ['/proc/net/snmp']).split('\n').filter((l) => l.startsWith('Tcp:'));
    const names = lines[0]!.split(/\s+/), values = lines[1]!.split(/\s+/);
    return Number(values[names.indexOf('RetransSegs')]);
  };

  /** Ping and the paced transfer from a to b, with `fault` run `at` ms in. */
  const throughFault = async (at: number, fault: () => Promise<void> | void): Promise<{ ping: PingResult; ms: number; retrans: number }> => {
    const r0 = retransSegs();
    const ping = startPing(a, '198.19.1.1', '198.19.2.1', PINGS);
    const transfer = tcpTransfer(tb, b, '198.19.2.1', a, BYTES, 5301, 60_000, RATE);
    await sleep(at);
    await fault();
    const [t, p] = await Promise.all([transfer, ping.done]);
    expect(t.server.bytes).toBe(BYTES);
    expect(t.server.sha256).toBe(t.client.sha256);
    return { ping: p, ms: t.ms, retrans: retransSegs() - r0 };
  };

  it('SIGKILL of the packet process: no ping lost at 10 ms, 50 MB transfer intact, the device never gone', async () => {
    const ix = ifindex(a, dev);
    expect(ix).toBeGreaterThan(0);
    const victim = packetPid(d!);
    const before = d!.err().length;
    const r = await throughFault(1500, () => { process.kill(victim, 'SIGKILL'); });
    const log = d!.err().slice(before);
    expect(log).toMatch(new RegExp(`packet process ${victim} killed by SIGKILL; restarting it now`));
    const gap = /forwarding on \S+ (\d+) ms after the last one died/.exec(log);
    expect(gap, log).not.toBeNull();
    expect(r.ping.received, JSON.stringify(r)).toBe(r.ping.sent);
    expect(r.ping.sent).toBe(PINGS);
    expect(ifindex(a, dev)).toBe(ix);
    if (type === 'vxlan') expect(a.ip('route', 'show', '198.19.2.0/24')).toMatch(/via 198\.19\.2\.0 dev flannel\.1 onlink/);
    expect(healthz()).toBe('ok');
    expect(a.exec('curl', ['-s', '-m', '2', 'http://127.0.0.1:9471/metrics'])).toMatch(/^overlayd_packet_process_restarts 1$/m);
    expect(a.ip('-o', 'link', 'show', dev)).toMatch(/qlen 4000/); // DEVICE_TXQUEUELEN
    console.log(JSON.stringify({ odsup: type, fault: 'SIGKILL packet process', lostPings: r.ping.sent - r.ping.received, pings: r.ping.sent, maxRttMs: r.ping.maxMs, restartMs: Number(gap![1]), transferMs: r.ms, tcpRetransmits: r.retrans }));
  });

  it('upgrade: overlayd --takeover takes the descriptors over; the old one exits 0 once the new one forwards; no ping lost', async () => {
    const ix = ifindex(a, dev);
    const old = d!;
    let neu: Daemon | undefined;
    const r = await throughFault(1500, () => { neu = start(['--takeover']); });
    expect(await old.exited).toBe(0);
    expect(old.err()).toMatch(/handed \S+ over; exiting/);
    expect(old.err()).toMatch(/handing over: stopped forwarding; exiting \(nothing removed\)/);
    expect(neu!.err()).toMatch(/took \S+ over from overlayd [\d.]+ \(pid \d+\)/);
    expect(r.ping.received, JSON.stringify(r)).toBe(r.ping.sent);
    expect(ifindex(a, dev)).toBe(ix);
    expect(healthz()).toBe('ok');
    d = neu;
    console.log(JSON.stringify({ odsup: type, fault: 'takeover', lostPings: r.ping.sent - r.ping.received, pings: r.ping.sent, maxRttMs: r.ping.maxMs, transferMs: r.ms, tcpRetransmits: r.retrans }));
  });

  it('SIGTERM: the packet process removes what it created, the supervisor closes the device; exit 0', async () => {
    d!.child.kill('SIGTERM');
    expect(await d!.exited).toBe(0);
    expect(d!.err()).toMatch(/stopped; removed what we created/);
    // the packet process says what it removed, then the supervisor closes the device's last descriptor
    const e = d!.err();
    const at = (re: RegExp): number => e.search(re);
    const esc = dev.replace('.', '\\.');
    expect(at(new RegExp(`removed device ${esc} with its address`)), e).toBeGreaterThan(0);
    expect(at(/stopped; removed what we created/)).toBeGreaterThan(at(new RegExp(`removed device ${esc} with its address`)));
    expect(at(new RegExp(`closed ${esc}: the device is gone`))).toBeGreaterThan(at(/stopped; removed what we created/));
    expect(ifindex(a, dev)).toBeUndefined();
  });

  it.runIf(type === 'vxlan')('^C at a terminal (SIGINT to the whole process group): the packet process leaves it to the supervisor, which stops it in order; exit 0', async () => {
    // its own process group, as a shell gives a foreground job: kill(-pgid) is what ^C does
    const x = startOverlayd(a, args(), {}, { detached: true });
    tb.track(x.child);
    daemons.push(x);
    await x.waitFor(/running \(supervisor/);
    await x.waitFor(/standby packet process \d+ loaded/);
    process.kill(-x.child.pid!, 'SIGINT');
    expect(await x.exited).toBe(0);
    const e = x.err();
    expect(e).toMatch(/SIGINT: stopping packet process \d+/);
    expect(e).not.toMatch(/killed by SIGINT|restarting/); // neither packet process died of it on its own
    expect(e.search(/stopped; removed what we created/), e).toBeGreaterThan(0);
    expect(e.search(new RegExp(`closed ${dev.replace('.', '\\.')}: the device is gone`))).toBeGreaterThan(e.search(/stopped; removed what we created/));
    expect(ifindex(a, dev)).toBeUndefined();
  });

  it('--takeover with no overlayd on the control socket: one-line error, exit 2, nothing created', () => {
    const r = runOverlayd(a, args(['--takeover', '--control-socket', join(dir, 'nobody.sock')]));
    expect(r.stderr.trim()).toMatch(/^overlayd: error: --takeover: no overlayd listens on \S+nobody\.sock \(ENOENT/);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.status).toBe(2);
    expect(ifindex(a, dev)).toBeUndefined();
  });

  it.runIf(type === 'udp')('five deaths in a row: the supervisor gives up loudly, exit 1, the marked device stays for the next start', async () => {
    d = start();
    await d.waitFor(/running \(supervisor/);
    // the packet process's own "running" line: it tells the supervisor (IPC) before it logs, so the
    // supervisor's line may come first
    await d.waitFor(/overlayd\[\d+\]: running$/m);
    for (let i = 0; i < 5; i++) {
      const n = [...d!.err().matchAll(/overlayd\[(\d+)\]: running$/gm)].length;
      process.kill(packetPid(d!), 'SIGKILL');
      if (i === 4) break;
      // the next one forwards (after a growing backoff) and logs "running"
      for (let t = 0; [...d!.err().matchAll(/overlayd\[(\d+)\]: running$/gm)].length === n; t++) {
        if (t > 200) throw new Error(`no restart: ${d!.err()}`);
        await sleep(25);
      }
    }
    expect(await d!.exited).toBe(1);
    expect(d!.err()).toMatch(/5 deaths within 30 s; giving up/);
    // the device stays, marked and persistent, for the next overlayd to adopt (src/overlayd/ownership.ts)
    expect(a.ip('-d', 'link', 'show', dev)).toMatch(/alias overlayd:udp/);
    a.ip('link', 'del', dev);
  });

  it.runIf(type === 'vxlan')('for comparison: kernel VXLAN on both hosts (flanneld\'s dataplane) under the same load', async () => {
    const k = kernelVxlan(a, { subnet: '198.19.1.0/24', publicIp: '198.18.0.1', underlay: 'u0', mac: stableVtepMac('198.19.1.0/24') });
    kernelAddPeer(a, k.dev, { subnet: '198.19.2.0/24', publicIp: '198.18.0.2', backendType: 'vxlan', vni: 1, vtepMac: '02:00:00:00:02:02' });
    const r = await throughFault(1500, () => undefined); // flanneld's death changes nothing here: the kernel forwards
    expect(r.ping.received).toBe(r.ping.sent);
    console.log(JSON.stringify({ odsup: type, fault: 'none (kernel VXLAN both ends)', lostPings: r.ping.sent - r.ping.received, pings: r.ping.sent, maxRttMs: r.ping.maxMs, transferMs: r.ms, tcpRetransmits: r.retrans }));
  });
});

/**
 * Dual-stack VXLAN under the supervisor: it holds two devices (flannel.1, flannel-v6.1) and two
 * sockets (IPv4, IPv6) and hands all four to each packet process; host b is a kernel dual-stack
 * host. Through a SIGKILL of the packet process and an `overlayd --takeover`, 10 ms pings of both
 * families and a paced 50 MB IPv6 transfer run: none lost, intact, neither device ever gone.
 */
describe.runIf(requireNetns())('overlayd supervisor, dual-stack VXLAN (two devices, two sockets)', () => {
  const tb = new Testbed('odsupd');
  const dir = mkdtempSync(join(tmpdir(), 'od-sup-ds-'));
  const conf = join(dir, 'net-conf.json');
  const ctl = join(dir, 'ctl.sock');
  let hs: DualHost[];
  let d: Daemon | undefined;
  const args = (extra: string[] = []): string[] => ['--net-conf', conf, '--subnet', sub4(1), '--ipv6-subnet', sub6(1), '--public-ipv6', pub6(1), '--iface', 'eth0',
    '--peers', join(dir, 'peers.json'), '--subnet-file', join(dir, 'a.env'), '--control-socket', ctl, ...extra];
  const start = (extra: string[] = []): Daemon => {
    const x = startOverlayd(hs[0]!.ns, args(extra));
    tb.track(x.child);
    return x;
  };

  beforeAll(async () => {
    hs = dualHosts(tb, [1, 2]);
    writeFileSync(conf, JSON.stringify({ Network: '198.19.0.0/16', EnableIPv6: true, IPv6Network: NET6, Backend: { Type: 'vxlan' } }));
    writeFileSync(join(dir, 'peers.json'), JSON.stringify(Object.fromEntries([leaseEntry('vxlan', 2, true)])));
    kernelDual(hs[1]!, [1]);
    d = start();
    await d.waitFor(/running \(supervisor; packet process forwarding on flannel\.1\+flannel-v6\.1/);
    await d.waitFor(/standby packet process \d+ loaded/);
    await untilPath(hs[0]!, gw4(1), gw4(2));
    await untilPath(hs[0]!, gw6(1), gw6(2));
  }, 60_000);
  afterAll(() => {
    tb.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Pings of both families and the paced IPv6 transfer from a to b, with `fault` run `at` ms in. */
  const throughFault = async (at: number, fault: () => Promise<void> | void): Promise<{ v4: PingResult; v6: PingResult; ms: number }> => {
    const [a, b] = hs as [DualHost, DualHost];
    const p4 = startPing(a.ns, gw4(1), gw4(2), PINGS);
    const p6 = startPing(a.ns, gw6(1), gw6(2), PINGS);
    const transfer = tcpTransfer(tb, b.ns, gw6(2), a.ns, BYTES, 5331, 60_000, RATE);
    await sleep(at);
    await fault();
    const [t, v4, v6] = await Promise.all([transfer, p4.done, p6.done]);
    expect(t.server.bytes).toBe(BYTES);
    expect(t.server.sha256).toBe(t.client.sha256);
    return { v4, v6, ms: t.ms };
  };

  it('SIGKILL of the packet process: no ping of either family lost at 10 ms, the IPv6 transfer intact, both devices never gone', async () => {
    const a = hs[0]!.ns;
    const ix = [ifindex(a, 'flannel.1'), ifindex(a, 'flannel-v6.1')];
    expect(ix.every((x) => x !== undefined && x > 0)).toBe(true);
    const victim = packetPid(d!);
    const before = d!.err().length;
    const r = await throughFault(1500, () => { process.kill(victim, 'SIGKILL'); });
    const log = d!.err().slice(before);
    expect(log).toMatch(new RegExp(`packet process ${victim} killed by SIGKILL; restarting it now`));
    const gap = /forwarding on flannel\.1\+flannel-v6\.1 (\d+) ms after the last one died/.exec(log);
    expect(gap, log).not.toBeNull();
    expect(r.v4.received, JSON.stringify(r)).toBe(r.v4.sent);
    expect(r.v6.received, JSON.stringify(r)).toBe(r.v6.sent);
    expect([r.v4.sent, r.v6.sent]).toEqual([PINGS, PINGS]);
    expect([ifindex(a, 'flannel.1'), ifindex(a, 'flannel-v6.1')]).toEqual(ix);
    expect(a.ip('-6', 'route', 'show', sub6(2))).toMatch(/dev flannel-v6\.1/);
    console.log(JSON.stringify({ odsup: 'vxlan dual stack', fault: 'SIGKILL packet process', lostPings: { v4: r.v4.sent - r.v4.received, v6: r.v6.sent - r.v6.received }, maxRttMs: { v4: r.v4.maxMs, v6: r.v6.maxMs }, restartMs: Number(gap![1]), transferMs: r.ms }));
  });

  it('upgrade: overlayd --takeover receives all four descriptors; no ping of either family lost', async () => {
    const a = hs[0]!.ns;
    const ix = [ifindex(a, 'flannel.1'), ifindex(a, 'flannel-v6.1')];
    const old = d!;
    let neu: Daemon | undefined;
    const r = await throughFault(1500, () => { neu = start(['--takeover']); });
    expect(await old.exited).toBe(0);
    expect(old.err()).toMatch(/handed flannel\.1\+flannel-v6\.1 over; exiting/);
    expect(neu!.err()).toMatch(/took flannel\.1\+flannel-v6\.1 over from overlayd [\d.]+ \(pid \d+\)/);
    expect(r.v4.received, JSON.stringify(r)).toBe(r.v4.sent);
    expect(r.v6.received, JSON.stringify(r)).toBe(r.v6.sent);
    expect([ifindex(a, 'flannel.1'), ifindex(a, 'flannel-v6.1')]).toEqual(ix);
    d = neu;
    console.log(JSON.stringify({ odsup: 'vxlan dual stack', fault: 'takeover', lostPings: { v4: r.v4.sent - r.v4.received, v6: r.v6.sent - r.v6.received }, maxRttMs: { v4: r.v4.maxMs, v6: r.v6.maxMs }, transferMs: r.ms }));
  });

  it('SIGTERM: both devices removed and closed; exit 0', async () => {
    d!.child.kill('SIGTERM');
    expect(await d!.exited).toBe(0);
    const e = d!.err();
    expect(e).toMatch(/removed device flannel-v6\.1 with its address 2001:2:0:8001::\/128/);
    expect(e.search(/closed flannel-v6\.1: the device is gone/)).toBeGreaterThan(e.search(/stopped; removed what we created/));
    expect(e).toMatch(/closed flannel\.1: the device is gone/);
    expect(ifindex(hs[0]!.ns, 'flannel.1')).toBeUndefined();
    expect(ifindex(hs[0]!.ns, 'flannel-v6.1')).toBeUndefined();
  });
});
