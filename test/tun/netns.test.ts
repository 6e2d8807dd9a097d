/**
 * src/tun in network namespaces: TUN/TAP devices move real kernel traffic, rtnetlink
 * changes are what iproute2 shows, closing removes devices, unprivileged use fails clearly.
 * Each case runs test/tun/child.ts inside a namespace (devices belong to the creator's netns).
 */
import { describe, expect, it, afterAll, beforeAll } from 'vitest';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { Testbed, requireNetns, type NsHost } from '../helpers/netns.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const CHILD = join(ROOT, 'test', 'tun', 'child.ts');

type Ev = Record<string, unknown> & { ev: string };

/** A child running child.ts in a namespace, with its JSON-line events. */
class Child {
  readonly events: Ev[] = [];
  stderr = '';
  private waiters: (() => void)[] = [];
  exited: Promise<number | null>;
  constructor(readonly proc: ChildProcess) {
    let buf = '';
    proc.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        try { this.events.push(JSON.parse(line) as Ev); } catch { this.stderr += `stdout: ${line}\n`; }
        this.waiters.splice(0).forEach((w) => w());
      }
    });
    proc.stderr!.on('data', (d: Buffer) => { this.stderr += d.toString(); });
    this.exited = new Promise((r) => proc.on('exit', (code) => { this.waiters.splice(0).forEach((w) => w()); r(code); }));
  }
  /** Wait for the first event matching `pred` (rejects on child error event, exit or timeout). */
  async wait(pred: (e: Ev) => boolean, timeoutMs = 15_000): Promise<Ev> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.events.find(pred);
      if (hit) return hit;
      const err = this.events.find((e) => e.ev === 'error');
      if (err) throw new Error(`child error: ${JSON.stringify(err)} ${this.stderr}`);
      if (this.proc.exitCode !== null) throw new Error(`child exited ${this.proc.exitCode}: ${JSON.stringify(this.events)} ${this.stderr}`);
      if (Date.now() > deadline) throw new Error(`timeout; events ${JSON.stringify(this.events)} ${this.stderr}`);
      await new Promise<void>((r) => { this.waiters.push(r); setTimeout(r, 200); });
    }
  }
  send(line: string): void { this.proc.stdin!.write(`${line}\n`); }
  end(): void { this.proc.stdin!.end(); }
}

describe.runIf(requireNetns())('src/tun in network namespaces', () => {
  const tb = new Testbed('tun');
  let h: NsHost;
  const start = (host: NsHost, mode: string, args: string[] = []): Child =>
    new Child(tb.track(host.spawn('node', ['--import', 'tsx', CHILD, mode, ...args], { cwd: ROOT })));

  beforeAll(() => { h = tb.host('a'); });
  afterAll(() => tb.destroy());

  it('TUN: the kernel pings an address routed into the device and gets our replies', async () => {
    const c = start(h, 'tunPing');
    const ready = await c.wait((e) => e.ev === 'ready');
    expect(ready.name).toBe('odtun0');
    expect(ready.mtu).toBe(1400);
    expect(h.ip('link', 'show', 'odtun0')).toMatch(/mtu 1400.*state UNKNOWN|UP.*mtu 1400/s);
    expect(h.ip('-4', 'addr', 'show', 'odtun0')).toContain('198.19.0.1/24');
    const out = h.exec('ping', ['-c', '3', '-i', '0.2', '-W', '2', '198.19.0.2']);
    expect(out).toMatch(/3 packets transmitted, 3 received/);
    const last = await c.wait((e) => e.ev === 'batch' && (e.replies as number) >= 3);
    expect(last.replies).toBeGreaterThanOrEqual(3);
    c.end();
    await c.exited;
    expect(() => h.ip('link', 'show', 'odtun0')).toThrow();
  });

  it('TUN with IFF_VNET_HDR: the virtio header stays out of the slots and ping still works', async () => {
    const c = start(h, 'tunPing', ['vnet']);
    await c.wait((e) => e.ev === 'ready');
    expect(h.exec('ping', ['-c', '2', '-i', '0.2', '-W', '2', '198.19.4.2'])).toMatch(/2 packets transmitted, 2 received/);
    c.end();
    await c.exited;
  });

  it('TUN: several queued packets come back in one batch, at HEADROOM', async () => {
    const c = start(h, 'tunBatch');
    const r = await c.wait((e) => e.ev === 'result');
    expect(r.udp).toBe(8);
    expect((r.counts as number[])[0]).toBeGreaterThanOrEqual(2);
    expect(r.offOk).toBe(true);
    await c.exited;
  });

  it('TUN: async iteration yields batches and ends on close', async () => {
    const c = start(h, 'tunIter');
    const r = await c.wait((e) => e.ev === 'result');
    expect(r.seen).toBeGreaterThanOrEqual(4);
    expect(await c.exited).toBe(0);
    expect(() => h.ip('link', 'show', 'odtun2')).toThrow();
  });

  it('TAP: kernel ARP request is read as an Ethernet frame; our reply lets ping flow', async () => {
    const c = start(h, 'tapPing');
    const ready = await c.wait((e) => e.ev === 'ready');
    expect(ready.mac).toBe('02:00:00:00:00:01');
    expect(h.ip('link', 'show', 'odtap0')).toContain('link/ether 02:00:00:00:00:01');
    const out = h.exec('ping', ['-c', '3', '-i', '0.2', '-W', '2', '198.19.1.2']);
    expect(out).toMatch(/3 packets transmitted, 3 received/);
    const arp = await c.wait((e) => e.ev === 'arp');
    expect(arp.sender).toBe('198.19.1.1');
    expect(arp.len).toBeGreaterThanOrEqual(42);
    expect(h.ip('neigh', 'show', 'dev', 'odtap0')).toMatch(/198\.19\.1\.2 lladdr 02:00:00:00:00:02/);
    c.end();
    await c.exited;
  });

  it('closing removes the devices; a name in use gives EBUSY; nothing is left', async () => {
    const host = tb.host('life');
    const c = start(host, 'lifecycle');
    const ready = await c.wait((e) => e.ev === 'ready');
    const busy = ready.busy as { code: string; message: string };
    expect(busy.code).toBe('EBUSY');
    expect(busy.message).toMatch(/device name in use/);
    const before = host.ip('-o', 'link', 'show');
    expect(before).toContain('odlife0');
    expect(before).toContain('odlife1');
    expect(before).toContain('odlife3');
    expect(ready.q2name).toBe('odlife2');
    expect(host.ip('-d', 'link', 'show', 'odlife2')).toMatch(/multi_queue/);
    // A multi-queue device lives while any queue is open.
    c.send('closeq1');
    await c.wait((e) => e.ev === 'closedq1');
    expect(host.ip('-o', 'link', 'show')).toContain('odlife2');
    c.send('close');
    const closed = await c.wait((e) => e.ev === 'closed');
    expect(closed.closed).toBe(true);
    const after = host.ip('-o', 'link', 'show');
    expect(after).not.toMatch(/odlife[012]/);
    // The persistent TAP outlives its fd (TUNSETPERSIST), until deleted.
    expect(after).toContain('odlife3');
    host.ip('link', 'del', 'odlife3');
    c.end();
    await c.exited;
    // Only loopback remains in the namespace.
    expect(host.ip('-o', 'link', 'show').trim().split('\n')).toHaveLength(1);
  });

  it('rtnetlink: links, addresses, routes, neighbours and FDB entries are what iproute2 shows', async () => {
    const host = tb.host('rt');
    host.ip('link', 'add', 'rt0', 'type', 'veth', 'peer', 'name', 'rt1');
    host.ip('link', 'set', 'rt1', 'up');
    const c = start(host, 'rtnl');
    const r = await c.wait((e) => e.ev === 'ready');
    const link = host.ip('link', 'show', 'rt0');
    expect(link).toMatch(/mtu 1450/);
    expect(link).toMatch(/link\/ether 02:11:22:33:44:55/);
    expect(link).toMatch(/<[^>]*\bUP\b/);
    const addr = host.ip('addr', 'show', 'rt0');
    expect(addr).toContain('inet 198.19.5.1/24');
    expect(addr).toContain('inet6 fd00:5::1/64');
    const routes = host.ip('route', 'show', 'dev', 'rt0');
    expect(routes).toMatch(/198\.19\.6\.0\/24 via 198\.19\.7\.1 .*onlink/);
    expect(routes).toMatch(/198\.19\.8\.0\/24 .*scope link src 198\.19\.5\.1 metric 7/);
    expect(host.ip('-6', 'route', 'show', 'dev', 'rt0')).toMatch(/fd00:9::\/64 via fd00:5::2/);
    const neigh = host.ip('neigh', 'show', 'dev', 'rt0');
    expect(neigh).toMatch(/198\.19\.5\.9 lladdr 02:aa:bb:cc:dd:09 PERMANENT/);
    expect(neigh).toMatch(/198\.19\.5\.10 lladdr 02:aa:bb:cc:dd:0a REACHABLE/);
    expect(host.ip('-6', 'neigh', 'show', 'dev', 'rt0')).toMatch(/fd00:5::9 lladdr 02:aa:bb:cc:dd:99 PERMANENT/);
    expect(host.ip('-d', 'link', 'show', 'vx0')).toMatch(/vxlan id 42 .*local 198\.19\.5\.1 dev rt0 .*dstport 8472 nolearning/s);
    const fdb = host.exec('bridge', ['fdb', 'show', 'dev', 'vx0']);
    expect(fdb).toMatch(/00:00:00:00:00:00 dst 198\.19\.5\.20 self permanent/);
    expect(fdb).toMatch(/00:00:00:00:00:00 dst 198\.19\.5\.21 self permanent/);
    expect(fdb).toMatch(/02:00:00:00:00:33 dst 198\.19\.5\.22 self permanent/);
    // Read-back through netlink agrees.
    expect(r.addrs).toEqual(expect.arrayContaining(['198.19.5.1/24', 'fd00:5::1/64']));
    expect(r.routes).toEqual(expect.arrayContaining([
      { dst: '198.19.6.0/24', gw: '198.19.7.1', onlink: true },
      { dst: '198.19.8.0/24', onlink: false, metric: 7, src: '198.19.5.1' },
    ]));
    expect(r.neigh).toEqual(expect.arrayContaining([{ a: '198.19.5.9', ll: '02:aa:bb:cc:dd:09', state: 0x80 }]));
    expect(r.fdb).toEqual(expect.arrayContaining(['00:00:00:00:00:00 198.19.5.20', '00:00:00:00:00:00 198.19.5.21', '02:00:00:00:00:33 198.19.5.22']));
    expect(r.vxKind).toBe('vxlan');
    expect(r.sync).toEqual({ links: r.links, addrs: ['198.19.5.1/24'], mtu: 1450 });
    expect((r.link as { kind: string }).kind).toBe('veth');
    // Errors carry errno names and the kernel's extended ack message.
    const errs = r.errs as Record<string, string>;
    expect(errs.dupRoute).toMatch(/^EEXIST /);
    expect(errs.noDev).toMatch(/^ENODEV .*nosuchdev0/);
    expect(errs.badGw).toMatch(/^ENETUNREACH .*gateway/i);
    // The friendlier ENODEV wraps the kernel's reply error, kept as `cause`.
    expect((r.causes as Record<string, string>).noDev).toBe('ENODEV');
    // Deletions.
    c.send('delete');
    await c.wait((e) => e.ev === 'deleted');
    const routes2 = host.ip('route', 'show');
    expect(routes2).not.toContain('198.19.6.0/24');
    expect(routes2).not.toContain('198.19.8.0/24');
    expect(host.ip('neigh', 'show', 'dev', 'rt0')).not.toContain('198.19.5.9 ');
    expect(host.ip('addr', 'show', 'rt0')).not.toContain('198.19.5.1/24');
    expect(host.ip('link', 'show', 'rt0')).not.toMatch(/<[^>]*\bUP\b/);
    expect(() => host.ip('link', 'show', 'vx0')).toThrow();
    c.end();
    await c.exited;
  });

  it('unprivileged use fails with errno names and "needs CAP_NET_ADMIN"', async () => {
    // Still uid 0 (so the child can read the checkout wherever it lives, e.g. under a mode-0700
    // directory) but without CAP_NET_ADMIN: dropped from the bounding and inheritable sets
    // before exec, so node never gains it.
    const c = new Child(tb.track(h.spawn('setpriv', ['--inh-caps=-all', '--ambient-caps=-all', '--bounding-set=-net_admin', 'node', '--import', 'tsx', CHILD, 'unpriv'], { cwd: ROOT })));
    const r = await c.wait((e) => e.ev === 'result');
    const [tunCode, tunMsg] = String(r.tun).split('|');
    expect(['EPERM', 'EACCES']).toContain(tunCode);
    expect(tunMsg).toMatch(/needs CAP_NET_ADMIN/);
    const [rtCode, rtMsg] = String(r.rtnl).split('|');
    expect(rtCode).toBe('EPERM');
    expect(rtMsg).toMatch(/needs CAP_NET_ADMIN/);
    expect(r.uid).toBe(0);
    expect(r.netAdmin).toBe(false);
    await c.exited;
  });
});
