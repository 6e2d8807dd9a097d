/** Interop: the flannel0-style UDP backend between two and three hosts, and flannel's raw wire format. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { Testbed, requireNetns, type NsHost } from '../helpers/netns.js';
import { HostProc, ping, tcpTransfer } from './harness.js';

const MB = 1024 * 1024;
const here = dirname(fileURLToPath(import.meta.url));
const TRANSPORT = (process.env.VTEP_TRANSPORT as 'dgram' | 'mmsg' | undefined) ?? 'dgram';
const base = { kind: 'udp', network: '198.19.0.0/16', transport: TRANSPORT };

describe.runIf(requireNetns())(`UDP backend, two hosts (${TRANSPORT})`, () => {
  const tb = new Testbed('udp2');
  let a: NsHost, b: NsHost, oa: HostProc, ob: HostProc;
  beforeAll(async () => {
    a = tb.host('a'); b = tb.host('b');
    tb.link(a, 'u0', '198.18.0.1/24', b, 'u0', '198.18.0.2/24');
    oa = await HostProc.start(tb, a, { ...base, subnet: '198.19.1.0/24', publicIp: '198.18.0.1' });
    ob = await HostProc.start(tb, b, { ...base, subnet: '198.19.2.0/24', publicIp: '198.18.0.2' });
    await oa.addPeer(ob.lease);
    await ob.addPeer(oa.lease);
  });
  afterAll(async () => {
    await oa?.stop().catch(() => undefined);
    await ob?.stop().catch(() => undefined);
    tb.destroy();
  });
  it('configures flannel0 as flannel does: <subnet addr>/<network prefix>, MTU 1472', () => {
    const out = a.ip('-o', 'addr', 'show', 'dev', 'flannel0');
    expect(out).toMatch(/inet 198\.19\.1\.0\/16/);
    expect(a.ip('link', 'show', 'flannel0')).toMatch(/mtu 1472/);
  });
  it('pings both ways at sizes up to the MTU (1472)', () => {
    for (const size of [56, 1000, 1444]) {
      expect(ping(a, '198.19.2.0', size), `a->b ${size}`).toBe(true);
      expect(ping(b, '198.19.1.0', size), `b->a ${size}`).toBe(true);
    }
  });
  it('moves 50 MB over TCP with matching SHA-256', async () => {
    const r = await tcpTransfer(tb, b, '198.19.2.0', a, 50 * MB);
    expect(r.server.bytes).toBe(50 * MB);
    expect(r.server.sha256).toBe(r.client.sha256);
    const s = await oa.stats();
    console.log(`udp ${TRANSPORT}: 50 MB in ${r.ms} ms (${(50 / (r.ms / 1000)).toFixed(1)} MB/s); drops ${JSON.stringify(s.stats.drops)}`);
    expect(s.stats.peers['198.18.0.2']!.txPackets).toBeGreaterThan(30_000);
  });
  it('answers an unrouted destination with ICMP net unreachable', () => {
    let out = '';
    try { a.exec('ping', ['-c', '1', '-W', '2', '198.19.99.1']); } catch (e) { out = String((e as { stdout?: string }).stdout ?? e); }
    expect(out).toMatch(/Unreachable|unreachable/);
  });
  it('removes a peer while traffic flows and adds it back', async () => {
    await oa.cmd({ cmd: 'removePeer', subnet: '198.19.2.0/24' });
    expect(ping(a, '198.19.2.0', 56, 1)).toBe(false);
    await oa.addPeer(ob.lease);
    expect(ping(a, '198.19.2.0', 56)).toBe(true);
  });
  it('stop() removes flannel0', async () => {
    await ob.stop();
    expect(() => b.ip('link', 'show', 'flannel0')).toThrow();
  });
});

describe.runIf(requireNetns())('UDP backend, three hosts (mmsg transport), peer churn under traffic', () => {
  const tb = new Testbed('udp3');
  let hosts: NsHost[] = [];
  let procs: HostProc[] = [];
  beforeAll(async () => {
    hosts = ['a', 'b', 'c'].map((s) => tb.host(s));
    tb.lan(hosts.map((host, i) => ({ host, dev: 'u0', cidr: `198.18.0.${i + 1}/24` })));
    procs = await Promise.all(hosts.map((h, i) => HostProc.start(tb, h, { ...base, transport: 'mmsg', subnet: `198.19.${i + 1}.0/24`, publicIp: `198.18.0.${i + 1}` })));
    for (const p of procs) for (const q of procs) if (p !== q) await p.addPeer(q.lease);
  });
  afterAll(async () => {
    for (const p of procs) await p.stop().catch(() => undefined);
    tb.destroy();
  });
  it('pings every pair at sizes up to the MTU', () => {
    hosts.forEach((h, i) => hosts.forEach((_, j) => {
      if (i !== j) expect(ping(h, `198.19.${j + 1}.0`, 1444), `${i}->${j}`).toBe(true);
    }));
  });
  it('moves 50 MB c -> a over TCP with matching SHA-256 while a removes/re-adds b and c re-adds a', async () => {
    const xfer = tcpTransfer(tb, hosts[0]!, '198.19.1.0', hosts[2]!, 50 * MB);
    let churn = true;
    const churner = (async () => {
      let n = 0;
      while (churn) {
        await procs[0]!.cmd({ cmd: 'removePeer', subnet: '198.19.2.0/24' });
        await procs[0]!.addPeer(procs[1]!.lease);
        await procs[2]!.addPeer(procs[0]!.lease); // idempotent re-add of the transfer's own peer
        n++;
        await new Promise((r) => setTimeout(r, 20));
      }
      return n;
    })();
    const r = await xfer;
    churn = false;
    const rounds = await churner;
    expect(rounds).toBeGreaterThan(5);
    expect(r.server.sha256).toBe(r.client.sha256);
    expect(r.server.bytes).toBe(50 * MB);
    expect(ping(hosts[1]!, '198.19.1.0', 56)).toBe(true);
  });
});

describe.runIf(requireNetns())('UDP backend speaks flannel wire format (bare IPv4 in UDP 8285)', () => {
  const tb = new Testbed('udpr');
  let a: NsHost, b: NsHost, oa: HostProc;
  beforeAll(async () => {
    a = tb.host('a'); b = tb.host('b');
    tb.link(a, 'u0', '198.18.0.1/24', b, 'u0', '198.18.0.2/24');
    oa = await HostProc.start(tb, a, { ...base, subnet: '198.19.1.0/24', publicIp: '198.18.0.1' });
    await oa.addPeer({ subnet: '198.19.2.0/24', publicIp: '198.18.0.2', backendType: 'udp' });
  });
  afterAll(async () => {
    await oa?.stop().catch(() => undefined);
    tb.destroy();
  });
  it('accepts a raw ICMP echo request datagram and produces the bare IPv4 echo reply', async () => {
    const c = tb.track(b.spawn('node', ['--import', 'tsx', join(here, 'raw-flannel.ts'), '198.18.0.2', '198.18.0.1', '198.19.2.5', '198.19.1.0'], { cwd: join(here, '..', '..') }));
    const res = await new Promise<Record<string, unknown>>((resolve, reject) => {
      createInterface({ input: c.stdout! }).on('line', (l) => resolve(JSON.parse(l) as Record<string, unknown>));
      c.on('exit', (code) => reject(new Error(`raw tool exited ${code}`)));
    });
    expect(res.ok).toBe(true);
    expect(res.from).toBe('198.18.0.1:8285');
    expect(res.icmpType).toBe(0);
    expect(res.src).toBe('198.19.1.0');
    expect(res.dst).toBe('198.19.2.5');
    expect(res.ttl).toBe(63); // decremented once by our backend
  });
});
