/**
 * flanneld's etcd subnet manager against a real etcd (Debian's etcd-server 3.4 on loopback):
 * network config, lease acquisition in flannel's order, races, reservations, flanneld's lease
 * JSON both ways, the watch (changes, expiry, compaction, bad data, etcd down and up), renewal
 * and release. Each test uses its own key prefix in one etcd.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, EtcdClient, EtcdSubnetManager, stableVtepMac, type EtcdManagerOptions, type Lease } from '../../src/index.js';
import { TcpRelay, etcdAvailable, etcdctl, flannelValue, startEtcd, type TestEtcd } from '../helpers/etcd.js';

let etcd: TestEtcd;
let n = 0;
const open: EtcdSubnetManager[] = [];

/** A fresh prefix with a network config written under it. */
async function network(conf: object = { Network: '198.19.0.0/16', Backend: { Type: 'vxlan' } }): Promise<string> {
  const prefix = `/t${n++}/network`;
  const c = new EtcdClient({ endpoints: [etcd.url] });
  await c.put(`${prefix}/config`, JSON.stringify(conf));
  c.close();
  return prefix;
}

/**
 * A network whose new leases come from 198.19.100-199 only: for tests that write fixed keys (all
 * outside that range) after our manager took a random subnet. With flannel's default range
 * (198.19.1-255) ours was one of them about once in 255 runs per key, and the written key then
 * "claimed our subnet" instead of being a peer.
 */
const APART = { Network: '198.19.0.0/16', SubnetMin: '198.19.100.0', SubnetMax: '198.19.199.0', Backend: { Type: 'vxlan' } };

interface Made { m: EtcdSubnetManager; logs: string[] }

function manager(prefix: string, publicIp: string, o: Partial<EtcdManagerOptions> = {}): Made {
  const logs: string[] = [];
  const m = new EtcdSubnetManager({
    client: new EtcdClient({ endpoints: [etcd.url] }), prefix, publicIp, log: { info: (s) => logs.push(s), error: (s) => logs.push(`ERROR ${s}`) },
    backoffMs: { initial: 50, max: 400 }, ...o,
  });
  open.push(m);
  return { m, logs };
}

const vx = (subnet: string, publicIp: string, existing?: Lease): Lease => ({
  subnet, publicIp, backendType: 'vxlan', vni: 1, vtepMac: existing?.vtepMac ?? stableVtepMac(subnet),
});


async function until(what: string, f: () => boolean | Promise<boolean>, ms = 8000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function read(prefix: string): Promise<Map<string, { value: unknown; lease: string }>> {
  const c = new EtcdClient({ endpoints: [etcd.url] });
  try {
    const r = await c.range(`${prefix}/subnets/`, { prefix: true });
    return new Map(r.kvs.map((kv) => [kv.key.slice(prefix.length + 9), { value: JSON.parse(kv.value.toString()) as unknown, lease: kv.lease }]));
  } finally {
    c.close();
  }
}

describe.runIf(etcdAvailable())('etcd subnet manager (real etcd)', () => {
  beforeAll(async () => { etcd = await startEtcd(); });
  afterEach(() => { for (const m of open.splice(0)) m.close(); });
  afterAll(async () => { await etcd?.stop(); });

  it('network config: flannel defaults for SubnetLen/SubnetMin/SubnetMax; missing or bad config is one ConfigError line', async () => {
    const { m } = manager(await network({ Network: '198.19.0.0/16' }), '198.18.0.1');
    expect(await m.networkConfig()).toMatchObject({ network: '198.19.0.0/16', subnetLen: 24, subnetMin: '198.19.1.0/24', subnetMax: '198.19.255.0/24', backend: { type: 'udp' } });
    const none = manager('/nothing/here', '198.18.0.1').m;
    await expect(none.networkConfig()).rejects.toThrow(ConfigError);
    await expect(none.networkConfig()).rejects.toThrow(/etcd \/nothing\/here\/config: not found/);
    const bad = manager(await network({ Network: '198.19.0.0/16', SubnetMin: '198.19.0.1' }), '198.18.0.1').m;
    await expect(bad.networkConfig()).rejects.toThrow(/SubnetMin 198\.19\.0\.1 is not on a SubnetLen \(\/24\) boundary/);
    const c = new EtcdClient({ endpoints: [etcd.url] });
    await c.put('/junk/config', '{"Network": "198.19.0.0/16",\u0000');
    c.close();
    const err = await manager('/junk', '198.18.0.1').m.networkConfig().catch((e: Error) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).not.toMatch(/[\n\u0000]/);
  });

  it('a new lease: a free subnet between SubnetMin and SubnetMax, created with a 24 h etcd lease, value as flanneld writes it', async () => {
    const prefix = await network({ Network: '198.19.0.0/16', SubnetMin: '198.19.10.0', SubnetMax: '198.19.12.0', Backend: { Type: 'vxlan' } });
    const { m } = manager(prefix, '198.18.0.1');
    const h = await m.acquire((s, e) => vx(s, '198.18.0.1', e));
    expect(h.how).toBe('new');
    expect(['198.19.10.0/24', '198.19.11.0/24', '198.19.12.0/24']).toContain(h.subnet);
    expect(h.expiresAt - Date.now()).toBeGreaterThan(86_000_000);
    const kv = (await read(prefix)).get(h.subnet.replace('/', '-'))!;
    expect(kv.lease).not.toBe('0');
    // flannel's schema (pkg/lease LeaseAttrs): these fields with these JSON types, nothing else
    expect(kv.value).toEqual({ PublicIP: '198.18.0.1', PublicIPv6: null, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: stableVtepMac(h.subnet) } });
    const ttl = etcdctl(etcd.url, 'lease', 'timetolive', BigInt(kv.lease).toString(16));
    expect(Number(/remaining\((\d+)s\)/.exec(ttl)![1])).toBeGreaterThan(86_000);
    // the range fills up; then "out of subnets" is one ConfigError line
    await manager(prefix, '198.18.0.2').m.acquire((s, e) => vx(s, '198.18.0.2', e));
    await manager(prefix, '198.18.0.3').m.acquire((s, e) => vx(s, '198.18.0.3', e));
    await expect(manager(prefix, '198.18.0.4').m.acquire((s, e) => vx(s, '198.18.0.4', e))).rejects.toThrow(/out of subnets/);
  });

  it('acquisition order: our existing lease (its VTEP MAC kept), else the previous subnet if free, else a new one', async () => {
    const prefix = await network();
    // a lease flanneld wrote for our public IP, with its own (random) VTEP MAC
    const id = /lease ([0-9a-f]+) granted/.exec(etcdctl(etcd.url, 'lease', 'grant', '600'))![1]!;
    etcdctl(etcd.url, 'put', '--lease', id, `${prefix}/subnets/198.19.7.0-24`, flannelValue('198.18.0.1', '5e:11:22:33:44:55'));
    const a = await manager(prefix, '198.18.0.1', { previousSubnet: '198.19.9.0/24' }).m.acquire((s, e) => vx(s, '198.18.0.1', e));
    expect(a).toMatchObject({ subnet: '198.19.7.0/24', how: 'existing', lease: { vtepMac: '5e:11:22:33:44:55' } });
    expect((await read(prefix)).get('198.19.7.0-24')!.lease).not.toBe(BigInt(`0x${id}`).toString());
    // no lease of ours: the previous subnet (subnet.env) when free ...
    const b = await manager(prefix, '198.18.0.2', { previousSubnet: '198.19.9.0/24' }).m.acquire((s, e) => vx(s, '198.18.0.2', e));
    expect(b).toMatchObject({ subnet: '198.19.9.0/24', how: 'previous' });
    // ... but not when another host holds it
    const c = await manager(prefix, '198.18.0.3', { previousSubnet: '198.19.9.0/24' }).m.acquire((s, e) => vx(s, '198.18.0.3', e));
    expect(c.how).toBe('new');
    expect(c.subnet).not.toBe('198.19.9.0/24');
    // a lease of ours that no longer fits the config (other SubnetLen) is deleted and replaced
    etcdctl(etcd.url, 'put', `${prefix}/subnets/198.19.200.0-25`, flannelValue('198.18.0.4', '5e:00:00:00:00:04'));
    const d = await manager(prefix, '198.18.0.4').m.acquire((s, e) => vx(s, '198.18.0.4', e));
    expect(d.how).toBe('new');
    expect((await read(prefix)).has('198.19.200.0-25')).toBe(false);
  });

  it('reservations (keys without a TTL) are honoured: never taken by others; ours is used and stays without a TTL', async () => {
    const prefix = await network({ Network: '198.19.0.0/16', SubnetMin: '198.19.1.0', SubnetMax: '198.19.2.0', Backend: { Type: 'vxlan' } });
    etcdctl(etcd.url, 'put', `${prefix}/subnets/198.19.1.0-24`, flannelValue('198.18.0.50', '5e:00:00:00:00:50'));
    etcdctl(etcd.url, 'put', `${prefix}/subnets/198.19.2.0-24`, flannelValue('198.18.0.51', '5e:00:00:00:00:51'));
    await expect(manager(prefix, '198.18.0.1').m.acquire((s, e) => vx(s, '198.18.0.1', e))).rejects.toThrow(/out of subnets/);
    const r = await manager(prefix, '198.18.0.51').m.acquire((s, e) => vx(s, '198.18.0.51', e));
    expect(r).toMatchObject({ subnet: '198.19.2.0/24', how: 'reservation', etcdLease: '0', expiresAt: Infinity });
    expect((await read(prefix)).get('198.19.2.0-24')!.lease).toBe('0');
  });

  it('race: 16 managers starting at once against one etcd each get a distinct subnet', async () => {
    const prefix = await network({ Network: '198.19.0.0/16', SubnetLen: 24, SubnetMin: '198.19.1.0', SubnetMax: '198.19.40.0', Backend: { Type: 'vxlan' } });
    const ms = Array.from({ length: 16 }, (_, i) => manager(prefix, `198.18.1.${i + 1}`).m);
    const held = await Promise.all(ms.map((m, i) => m.acquire((s, e) => vx(s, `198.18.1.${i + 1}`, e))));
    expect(new Set(held.map((h) => h.subnet)).size).toBe(16);
    const kvs = await read(prefix);
    expect(kvs.size).toBe(16);
    for (const h of held) expect((kvs.get(h.subnet.replace('/', '-'))!.value as { PublicIP: string }).PublicIP).toBe(h.lease.publicIp);
  });

  it('watch: flanneld-written leases are read (a dual-stack one too); adds, changes and removals arrive; a short-TTL lease disappears on expiry', async () => {
    const prefix = await network(APART);
    etcdctl(etcd.url, 'put', `${prefix}/subnets/198.19.20.0-24`, flannelValue('198.18.0.20', '5e:00:00:00:00:20'));
    const { m } = manager(prefix, '198.18.0.1');
    await m.acquire((s, e) => vx(s, '198.18.0.1', e));
    let peers: ReadonlyMap<string, Lease> = new Map();
    await m.watchPeers((all) => { peers = new Map(all); });
    await until('initial listing', () => peers.size === 1);
    expect(peers.get('198.19.20.0/24')).toEqual({ subnet: '198.19.20.0/24', publicIp: '198.18.0.20', backendType: 'vxlan', vni: 1, vtepMac: '5e:00:00:00:00:20' });
    etcdctl(etcd.url, 'put', `${prefix}/subnets/198.19.21.0-24`, flannelValue('198.18.0.21', '5e:00:00:00:00:21'));
    await until('add', () => peers.has('198.19.21.0/24'));
    etcdctl(etcd.url, 'put', `${prefix}/subnets/198.19.21.0-24`, flannelValue('198.18.0.99', '5e:00:00:00:00:99'));
    await until('change', () => peers.get('198.19.21.0/24')?.publicIp === '198.18.0.99');
    etcdctl(etcd.url, 'del', `${prefix}/subnets/198.19.20.0-24`);
    await until('removal', () => !peers.has('198.19.20.0/24'));
    // a dual-stack flanneld's lease: its IPv4 side is used
    const dual = `${prefix}/subnets/198.19.23.0-24&fc00:0:0:17::-64`;
    etcdctl(etcd.url, 'put', dual, '{"PublicIP":"198.18.0.23","PublicIPv6":"fc00::23","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"5e:00:00:00:00:23"},"BackendV6Data":{"VNI":1,"VtepMAC":"5e:00:00:00:00:23"}}');
    await until('dual-stack lease', () => peers.get('198.19.23.0/24')?.publicIp === '198.18.0.23');
    etcdctl(etcd.url, 'del', dual);
    await until('dual-stack lease removed', () => !peers.has('198.19.23.0/24'));
    const id = /lease ([0-9a-f]+) granted/.exec(etcdctl(etcd.url, 'lease', 'grant', '2'))![1]!;
    etcdctl(etcd.url, 'put', '--lease', id, `${prefix}/subnets/198.19.22.0-24`, flannelValue('198.18.0.22', '5e:00:00:00:00:22'));
    await until('short-TTL lease seen', () => peers.has('198.19.22.0/24'));
    const t0 = Date.now();
    await until('short-TTL lease expired', () => !peers.has('198.19.22.0/24'), 10_000);
    expect(Date.now() - t0).toBeLessThan(6000);
    expect(m.status()).toMatchObject({ connected: true, leaseHeld: true, peers: 1 });
  });

  it('1,200 leases are listed in pages of 500 at one revision (a lease written meanwhile comes by the watch): all arrive', async () => {
    const prefix = await network({ Network: '198.19.0.0/16', SubnetLen: 28, Backend: { Type: 'vxlan' } });
    const key = (i: number): string => `${prefix}/subnets/198.19.${i >> 4}.${(i & 15) << 4}-28`;
    const value = (i: number): string => flannelValue(`198.18.${1 + (i >> 8)}.${i & 255}`, `5e:00:00:00:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`);
    const c = new EtcdClient({ endpoints: [etcd.url] });
    for (let i = 0; i < 1200; i += 100) await Promise.all(Array.from({ length: 100 }, (_, j) => c.put(key(i + j), value(i + j))));
    const { m } = manager(prefix, '198.18.0.1');
    const held = await m.acquire((s, e) => vx(s, '198.18.0.1', e));
    const late = held.subnet === '198.19.75.0/28' ? 1201 : 1200; // a subnet that is not ours
    let peers: ReadonlyMap<string, Lease> = new Map();
    const listed = m.watchPeers((all) => { peers = new Map(all); });
    await c.put(key(late), value(late));
    await listed;
    await until('all leases', () => peers.size === 1201);
    c.close();
    expect(peers.get('198.19.74.240/28')).toMatchObject({ publicIp: '198.18.5.175', vtepMac: '5e:00:00:00:04:af' });
    expect(peers.get(key(late).slice(prefix.length + 9).replace('-', '/'))?.publicIp).toBe(`198.18.5.${late & 255}`);
  });

  it('untrusted data: junk, huge, outside-network, wrong-backend values, a claim on our subnet and our IP on another subnet are skipped, each logged once, never a crash', async () => {
    const prefix = await network();
    const { m, logs } = manager(prefix, '198.18.0.1', { previousSubnet: '198.19.5.0/24' });
    const h = await m.acquire((s, e) => vx(s, '198.18.0.1', e));
    expect(h.subnet).toBe('198.19.5.0/24');
    let peers: ReadonlyMap<string, Lease> = new Map();
    let calls = 0;
    await m.watchPeers((all) => { peers = new Map(all); calls++; });
    const c = new EtcdClient({ endpoints: [etcd.url] });
    const s = `${prefix}/subnets/`;
    await c.put(`${s}198.19.30.0-24`, '\u0000\u001b[31mnot json');
    await c.put(`${s}198.19.31.0-24`, JSON.stringify({ PublicIP: '198.18.0.31', BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: '5e:00:00:00:00:31' }, pad: 'x'.repeat(200_000) }));
    await c.put(`${s}198.20.0.0-24`, flannelValue('198.18.0.32', '5e:00:00:00:00:32'));
    await c.put(`${s}198.19.33.0-24`, '{"PublicIP":"198.18.0.33","BackendType":"udp"}');
    await c.put(`${s}not-a-subnet`, '{}');
    await c.put(`${s}198.19.5.0-24`, flannelValue('198.18.0.66', '5e:00:00:00:00:66')); // our subnet, another host's IP
    await c.put(`${s}198.19.36.0-24`, flannelValue('198.18.0.1', '5e:00:00:00:00:36')); // another subnet with our IP
    await c.put(`${s}198.19.34.0-24`, flannelValue('198.18.0.34', '5e:00:00:00:00:34'));
    await until('good lease applied', () => peers.has('198.19.34.0/24'));
    // the same junk again, and a change elsewhere: nothing is logged twice
    await c.put(`${s}198.19.30.0-24`, '\u0000\u001b[31mnot json');
    await c.put(`${s}198.19.35.0-24`, flannelValue('198.18.0.35', '5e:00:00:00:00:35'));
    await until('second good lease', () => peers.has('198.19.35.0/24'));
    c.close();
    expect([...peers.keys()].sort()).toEqual(['198.19.34.0/24', '198.19.35.0/24']);
    const skipped = logs.filter((l) => l.startsWith('ERROR etcd: skipped'));
    expect(skipped).toHaveLength(7);
    expect(skipped.join('\n')).toMatch(/198\.19\.36\.0-24.*has our public IP/);
    expect(skipped.join('\n')).toMatch(/198\.19\.30\.0-24.*not JSON/);
    expect(skipped.join('\n')).toMatch(/198\.19\.31\.0-24.*over the 65536 byte limit/);
    expect(skipped.join('\n')).toMatch(/198\.20\.0\.0-24.*outside Network/);
    expect(skipped.join('\n')).toMatch(/198\.19\.33\.0-24.*runs backend udp/);
    expect(skipped.join('\n')).toMatch(/not-a-subnet/);
    expect(skipped.join('\n')).toMatch(/198\.19\.5\.0-24.*claims our subnet 198\.19\.5\.0\/24 for PublicIP 198\.18\.0\.66/);
    for (const l of logs) expect(l).not.toMatch(/[\u0000-\u001f]/);
    expect(m.status().skippedKeys).toBe(7);
    expect(calls).toBeGreaterThan(0);
  });

  it('compaction past the watch revision while a host joins (the watcher cut off from etcd meanwhile): the watcher lists again and converges', async () => {
    const prefix = await network(APART);
    const relay = await TcpRelay.start(etcd.url.replace('http://', ''));
    try {
      const logs: string[] = [];
      const m = new EtcdSubnetManager({
        client: new EtcdClient({ endpoints: [relay.url] }), prefix, publicIp: '198.18.0.1', log: { info: (s) => logs.push(s), error: (s) => logs.push(`ERROR ${s}`) },
        backoffMs: { initial: 50, max: 200 },
      });
      open.push(m);
      await m.acquire((s, e) => vx(s, '198.18.0.1', e));
      let peers: ReadonlyMap<string, Lease> = new Map();
      await m.watchPeers((all) => { peers = new Map(all); });
      await until('watch up', () => m.status().connected);
      relay.cut();
      await until('loss seen', () => !m.status().connected);
      // while the watcher cannot reach etcd, a host joins and history is compacted past it
      etcdctl(etcd.url, 'put', `${prefix}/subnets/198.19.40.0-24`, flannelValue('198.18.0.40', '5e:00:00:00:00:40'));
      etcdctl(etcd.url, 'put', `${prefix}/other`, 'x');
      const rev = Number(/"revision":(\d+)/.exec(etcdctl(etcd.url, 'get', `${prefix}/other`, '-w', 'json'))![1]);
      etcdctl(etcd.url, 'compact', String(rev));
      relay.restore();
      await until('converged after compaction', () => peers.has('198.19.40.0/24'), 15_000);
      expect(m.status().compactions).toBe(1);
      expect(logs.join('\n')).toMatch(/was compacted .*listing again/);
      // and the watch goes on after the re-list
      etcdctl(etcd.url, 'put', `${prefix}/subnets/198.19.41.0-24`, flannelValue('198.18.0.41', '5e:00:00:00:00:41'));
      await until('event after re-list', () => peers.has('198.19.41.0/24'));
    } finally {
      await relay.close();
    }
  });

  it('etcd down then up: peers kept while down, not connected reported, reconnects with backoff, changes made meanwhile arrive', async () => {
    const prefix = await network(APART);
    etcdctl(etcd.url, 'put', `${prefix}/subnets/198.19.50.0-24`, flannelValue('198.18.0.50', '5e:00:00:00:00:50'));
    const { m, logs } = manager(prefix, '198.18.0.1');
    await m.acquire((s, e) => vx(s, '198.18.0.1', e));
    let peers: ReadonlyMap<string, Lease> = new Map();
    await m.watchPeers((all) => { peers = new Map(all); });
    await until('watch up', () => m.status().connected && peers.size === 1);
    await etcd.kill();
    await until('loss seen', () => !m.status().connected);
    await new Promise((r) => setTimeout(r, 1200)); // several failed attempts (backoff 50 .. 400 ms)
    expect(peers.size).toBe(1);
    const during = m.status().reconnects;
    expect(during).toBeGreaterThanOrEqual(2);
    expect(during).toBeLessThan(15); // backoff, not a tight loop
    await etcd.start();
    etcdctl(etcd.url, 'put', `${prefix}/subnets/198.19.51.0-24`, flannelValue('198.18.0.51', '5e:00:00:00:00:51'));
    await until('reconnected and caught up', () => m.status().connected && peers.has('198.19.51.0/24'));
    expect(logs.filter((l) => /reconnecting with backoff/.test(l))).toHaveLength(1);
    expect(logs.join('\n')).toMatch(/watch re-established/);
  });

  it('updatePublicIp (the underlay address moved): our lease is written again with the new PublicIP under its etcd lease; the watch neither skips it nor sees it as a peer', async () => {
    const prefix = await network(APART);
    const { m, logs } = manager(prefix, '198.18.0.1');
    const h = await m.acquire((s, e) => vx(s, '198.18.0.1', e));
    const key = h.subnet.replace('/', '-');
    const before = (await read(prefix)).get(key)!;
    let peers = -1;
    await m.watchPeers((all) => { peers = all.size; });
    await m.updatePublicIp('198.18.0.11');
    const after = (await read(prefix)).get(key)!;
    expect(after.value).toEqual({ ...(before.value as object), PublicIP: '198.18.0.11' });
    expect(after.lease).toBe(before.lease);
    expect(m.lease()!.lease.publicIp).toBe('198.18.0.11');
    await new Promise((r) => setTimeout(r, 300)); // the watch event of our own write
    expect(peers).toBe(0);
    expect(logs.filter((l) => l.startsWith('ERROR'))).toEqual([]);
    expect(logs).toContain(`etcd: lease ${h.subnet} now has PublicIP 198.18.0.11`);
  });

  it('renewal re-writes our key under a new etcd lease ahead of expiry; a key removed by someone is created again; close keeps it, release deletes it', async () => {
    const prefix = await network(APART);
    const { m } = manager(prefix, '198.18.0.1', { ttlSeconds: 3, renewMarginSeconds: 2, renewRetryMs: 200 });
    const h = await m.acquire((s, e) => vx(s, '198.18.0.1', e));
    const key = h.subnet.replace('/', '-');
    const first = (await read(prefix)).get(key)!.lease;
    await m.watchPeers(() => undefined);
    await new Promise((r) => setTimeout(r, 4500)); // past the first TTL
    const kv = (await read(prefix)).get(key);
    expect(kv).toBeDefined();
    expect(kv!.lease).not.toBe(first);
    expect(m.status().renewals).toBeGreaterThanOrEqual(2);
    expect(etcdctl(etcd.url, 'lease', 'timetolive', BigInt(first).toString(16))).toMatch(/already expired|not found|remaining\(-1s\)/);
    etcdctl(etcd.url, 'del', `${prefix}/subnets/${key}`);
    await until('re-created', async () => (await read(prefix)).has(key) && m.status().leaseHeld);
    m.close();
    expect((await read(prefix)).has(key)).toBe(true);
    const other = manager(prefix, '198.18.0.2').m;
    const o = await other.acquire((s, e) => vx(s, '198.18.0.2', e));
    await other.release();
    expect((await read(prefix)).has(o.subnet.replace('/', '-'))).toBe(false);
  });

  describe('dual stack (EnableIPv6) and IPv6 only, as flanneld stores them', () => {
    const DUAL = { Network: '198.19.0.0/16', EnableIPv6: true, IPv6Network: '2001:2:8000::/48', Backend: { Type: 'vxlan' } };
    /** Our lease builder for a dual-stack or IPv6-only host (as overlayd's resolveEtcdConfig builds it). */
    const vx6 = (pub: string, pub6: string, only6 = false) => (s: string, e?: Lease, s6?: string): Lease => {
      const l: Lease = { subnet: s, publicIp: only6 ? pub6 : pub, backendType: 'vxlan', vni: 1, vtepMac: e?.vtepMac ?? stableVtepMac(s) };
      if (s6 !== undefined) Object.assign(l, { ipv6Subnet: s6, publicIpv6: pub6, v6Vni: 1, v6VtepMac: e?.v6VtepMac ?? stableVtepMac(s6) });
      return l;
    };

    it('two hosts acquire dual-stack leases: keys <v4>-<len>&<v6>-<len>, values with PublicIPv6 and BackendV6Data as flanneld writes them; each sees the other with both halves', async () => {
      const prefix = await network({ ...DUAL, IPv6SubnetMin: '2001:2:8000:10::', IPv6SubnetMax: '2001:2:8000:11::' });
      const a = manager(prefix, '198.18.0.1', { publicIpv6: '2001:2::1' }).m;
      const b = manager(prefix, '198.18.0.2', { publicIpv6: '2001:2::2' }).m;
      const ha = await a.acquire(vx6('198.18.0.1', '2001:2::1'));
      const hb = await b.acquire(vx6('198.18.0.2', '2001:2::2'));
      expect(new Set([ha.lease.ipv6Subnet, hb.lease.ipv6Subnet])).toEqual(new Set(['2001:2:8000:10::/64', '2001:2:8000:11::/64']));
      const kv = await read(prefix);
      const ka = `${ha.subnet.replace('/', '-')}&${ha.lease.ipv6Subnet!.replace('/', '-')}`;
      expect([...kv.keys()].sort()).toEqual([ka, `${hb.subnet.replace('/', '-')}&${hb.lease.ipv6Subnet!.replace('/', '-')}`].sort());
      // pkg/lease LeaseAttrs: these fields, in this order, with these types
      const raw = etcdctl(etcd.url, 'get', `${prefix}/subnets/${ka}`, '--print-value-only').trim();
      expect(raw).toBe(`{"PublicIP":"198.18.0.1","PublicIPv6":"2001:2::1","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"${stableVtepMac(ha.subnet)}"},"BackendV6Data":{"VNI":1,"VtepMAC":"${stableVtepMac(ha.lease.ipv6Subnet!)}"}}`);
      // the IPv6 range is full now: a third host is out of (IPv6) subnets, in one line
      await expect(manager(prefix, '198.18.0.3', { publicIpv6: '2001:2::3' }).m.acquire(vx6('198.18.0.3', '2001:2::3'))).rejects.toThrow(/^etcd: out of subnets: every \/64 in IPv6Network 2001:2:8000:10::\/64\.\.2001:2:8000:11::\/64 is leased$/);
      let peers: ReadonlyMap<string, Lease> = new Map();
      await a.watchPeers((all) => { peers = new Map(all); });
      await until('b seen by a', () => peers.has(hb.subnet));
      expect(peers.get(hb.subnet)).toEqual(hb.lease);
    });

    it('a flanneld-written dual-stack value is a peer with both halves; a malformed IPv6 part (key or value) leaves an IPv4 peer, logged once; an IPv6-only lease in a dual-stack network is skipped', async () => {
      // our own (random) subnet from a range apart from the keys written below (one run in 80 drew one of them)
      const prefix = await network({ ...DUAL, SubnetMin: '198.19.1.0', SubnetMax: '198.19.9.0', IPv6SubnetMin: '2001:2:8000:1::', IPv6SubnetMax: '2001:2:8000:9::' });
      const { m, logs } = manager(prefix, '198.18.0.1', { publicIpv6: '2001:2::1' });
      await m.acquire(vx6('198.18.0.1', '2001:2::1'));
      const flannel = (n: number, v6: string): string => `{"PublicIP":"198.18.0.${n}","PublicIPv6":"${v6}","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"5e:00:00:00:00:${n}"},"BackendV6Data":{"VNI":1,"VtepMAC":"5e:00:00:00:60:${n}"}}`;
      etcdctl(etcd.url, 'put', `${prefix}/subnets/198.19.40.0-24&2001:2:8000:40::-64`, flannel(40, '2001:2::40'));
      etcdctl(etcd.url, 'put', `${prefix}/subnets/198.19.41.0-24&2001:2:8000:41::-64`, flannel(41, 'not-an-address'));
      etcdctl(etcd.url, 'put', `${prefix}/subnets/198.19.42.0-24&2001:2:8000:42::7-64`, flannel(42, '2001:2::42'));
      etcdctl(etcd.url, 'put', `${prefix}/subnets/0.0.0.0-0&2001:2:8000:43::-64`, '{"PublicIP":"0.0.0.0","PublicIPv6":"2001:2::43","BackendType":"vxlan","BackendV6Data":{"VNI":1,"VtepMAC":"5e:00:00:00:60:43"}}');
      let peers: ReadonlyMap<string, Lease> = new Map();
      await m.watchPeers((all) => { peers = new Map(all); });
      await until('listing', () => peers.size === 3);
      expect(peers.get('198.19.40.0/24')).toEqual({
        subnet: '198.19.40.0/24', publicIp: '198.18.0.40', backendType: 'vxlan', vni: 1, vtepMac: '5e:00:00:00:00:40',
        ipv6Subnet: '2001:2:8000:40::/64', publicIpv6: '2001:2::40', v6Vni: 1, v6VtepMac: '5e:00:00:00:60:40',
      });
      expect(peers.get('198.19.41.0/24')).toEqual({ subnet: '198.19.41.0/24', publicIp: '198.18.0.41', backendType: 'vxlan', vni: 1, vtepMac: '5e:00:00:00:00:41' });
      expect(peers.get('198.19.42.0/24')?.ipv6Subnet).toBeUndefined();
      // the same bad value written again: not logged again
      etcdctl(etcd.url, 'put', `${prefix}/subnets/198.19.41.0-24&2001:2:8000:41::-64`, flannel(41, 'not-an-address'));
      etcdctl(etcd.url, 'put', `${prefix}/subnets/198.19.44.0-24`, flannelValue('198.18.0.44', '5e:00:00:00:00:44'));
      await until('a later change', () => peers.has('198.19.44.0/24'));
      const said = (re: RegExp): number => logs.filter((l) => re.test(l)).length;
      expect(said(/198\.19\.41\.0-24.*PublicIPv6 "not-an-address" is not an IPv6 address; its IPv6 half is not used/)).toBe(1);
      expect(said(/198\.19\.42\.0-24.*its IPv6 part "2001:2:8000:42::7-64" is not an IPv6 subnet in network form; used as an IPv4 lease/)).toBe(1);
      expect(said(/skipped "[^"]*0\.0\.0\.0-0&2001:2:8000:43::-64": is an IPv6-only lease/)).toBe(1);
      // its IPv6 half mended: the peer gets it
      etcdctl(etcd.url, 'put', `${prefix}/subnets/198.19.41.0-24&2001:2:8000:41::-64`, flannel(41, '2001:2::41'));
      await until('IPv6 half mended', () => peers.get('198.19.41.0/24')?.publicIpv6 === '2001:2::41');
    });

    it('acquisition order with both families: our lease by PublicIP (both VTEP MACs kept), else the previous subnets of subnet.env, else new; an IPv4-only lease of ours no longer fits and is replaced', async () => {
      const prefix = await network(DUAL);
      const id = /lease ([0-9a-f]+) granted/.exec(etcdctl(etcd.url, 'lease', 'grant', '600'))![1]!;
      etcdctl(etcd.url, 'put', '--lease', id, `${prefix}/subnets/198.19.7.0-24&2001:2:8000:7::-64`,
        '{"PublicIP":"198.18.0.1","PublicIPv6":"2001:2::1","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"5e:11:22:33:44:55"},"BackendV6Data":{"VNI":1,"VtepMAC":"5e:11:22:33:44:66"}}');
      const a = await manager(prefix, '198.18.0.1', { publicIpv6: '2001:2::1' }).m.acquire(vx6('198.18.0.1', '2001:2::1'));
      expect(a).toMatchObject({ subnet: '198.19.7.0/24', how: 'existing', lease: { ipv6Subnet: '2001:2:8000:7::/64', vtepMac: '5e:11:22:33:44:55', v6VtepMac: '5e:11:22:33:44:66' } });
      const b = await manager(prefix, '198.18.0.2', { publicIpv6: '2001:2::2', previousSubnet: '198.19.9.0/24', previousIpv6Subnet: '2001:2:8000:9::/64' }).m.acquire(vx6('198.18.0.2', '2001:2::2'));
      expect(b).toMatchObject({ subnet: '198.19.9.0/24', how: 'previous', lease: { ipv6Subnet: '2001:2:8000:9::/64' } });
      // the previous IPv6 subnet is taken: both picked anew
      const c = await manager(prefix, '198.18.0.3', { publicIpv6: '2001:2::3', previousSubnet: '198.19.10.0/24', previousIpv6Subnet: '2001:2:8000:9::/64' }).m.acquire(vx6('198.18.0.3', '2001:2::3'));
      expect(c.how).toBe('new');
      expect(c.lease.ipv6Subnet).not.toBe('2001:2:8000:9::/64');
      // no previous IPv6 subnet (subnet.env of an IPv4-only run): flannel takes neither
      const d = await manager(prefix, '198.18.0.4', { publicIpv6: '2001:2::4', previousSubnet: '198.19.11.0/24' }).m.acquire(vx6('198.18.0.4', '2001:2::4'));
      expect(d.how).toBe('new');
      etcdctl(etcd.url, 'put', `${prefix}/subnets/198.19.200.0-24`, flannelValue('198.18.0.5', '5e:00:00:00:00:05'));
      const { m: e, logs } = manager(prefix, '198.18.0.5', { publicIpv6: '2001:2::5' });
      const he = await e.acquire(vx6('198.18.0.5', '2001:2::5'));
      expect(he.how).toBe('new');
      expect(he.lease.ipv6Subnet).toMatch(/^2001:2:8000:[0-9a-f]+::\/64$/);
      expect((await read(prefix)).has('198.19.200.0-24')).toBe(false);
      expect(logs.join('\n')).toMatch(/lease "198\.19\.200\.0-24" of our public IP 198\.18\.0\.5 does not fit the network config \(198\.19\.0\.0\/16, \/24 .*; 2001:2:8000::\/48, \/64 /);
    });

    it('race on half a key: another host creates a key with our IPv4 subnet (other IPv6 one) just before we create ours: the first created wins, we delete ours and pick again', async () => {
      const prefix = await network(DUAL);
      const rival = `{"PublicIP":"198.18.0.8","PublicIPv6":"2001:2::8","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"5e:00:00:00:00:08"},"BackendV6Data":{"VNI":1,"VtepMAC":"5e:00:00:00:60:08"}}`;
      let rivalKey = '';
      let ourFirst = '';
      /** The real etcd, with the other host's create landing between our listing and our create. */
      class Racing extends EtcdClient {
        override async create(key: string, value: string | Buffer, lease = '0'): Promise<boolean> {
          if (rivalKey === '') {
            ourFirst = key;
            rivalKey = key.replace(/&.*$/, '&2001:2:8000:ffff::-64');
            expect(await super.create(rivalKey, rival)).toBe(true);
          }
          return super.create(key, value, lease);
        }
      }
      const logs: string[] = [];
      const m = new EtcdSubnetManager({ client: new Racing({ endpoints: [etcd.url] }), prefix, publicIp: '198.18.0.1', publicIpv6: '2001:2::1', log: { info: (x) => logs.push(x), error: (x) => logs.push(x) } });
      open.push(m);
      const h = await m.acquire(vx6('198.18.0.1', '2001:2::1'));
      const kv = await read(prefix);
      expect(kv.has(ourFirst.slice(`${prefix}/subnets/`.length))).toBe(false);
      expect(kv.has(rivalKey.slice(`${prefix}/subnets/`.length))).toBe(true);
      expect(ourFirst.slice(`${prefix}/subnets/`.length).startsWith(h.subnet.replace('/', '-'))).toBe(false);
      expect(kv.size).toBe(2);
    });

    it('IPv6 only: keys 0.0.0.0-0&<v6>-<len>, PublicIP 0.0.0.0, no BackendData; hosts known by PublicIPv6 (two hosts, and one restarting)', async () => {
      const prefix = await network({ EnableIPv4: false, EnableIPv6: true, IPv6Network: '2001:2:8000::/48', Backend: { Type: 'vxlan' } });
      const a = manager(prefix, '198.18.0.1', { publicIpv6: '2001:2::1' }).m;
      const ha = await a.acquire(vx6('198.18.0.1', '2001:2::1', true));
      const hb = await manager(prefix, '198.18.0.2', { publicIpv6: '2001:2::2' }).m.acquire(vx6('198.18.0.2', '2001:2::2', true));
      expect(ha.subnet).toMatch(/^2001:2:8000:[0-9a-f]+::\/64$/);
      expect(hb.subnet).not.toBe(ha.subnet);
      const key = `0.0.0.0-0&${ha.subnet.replace('/', '-')}`;
      expect(etcdctl(etcd.url, 'get', `${prefix}/subnets/${key}`, '--print-value-only').trim())
        .toBe(`{"PublicIP":"0.0.0.0","PublicIPv6":"2001:2::1","BackendType":"vxlan","BackendV6Data":{"VNI":1,"VtepMAC":"${stableVtepMac(ha.subnet)}"}}`);
      let peers: ReadonlyMap<string, Lease> = new Map();
      await a.watchPeers((all) => { peers = new Map(all); });
      await until('b seen', () => peers.has(hb.subnet));
      expect(peers.get(hb.subnet)).toMatchObject({ subnet: hb.subnet, publicIp: '2001:2::2', ipv6Subnet: hb.subnet, publicIpv6: '2001:2::2' });
      a.close();
      const again = await manager(prefix, '198.18.0.9', { publicIpv6: '2001:2::1' }).m.acquire(vx6('198.18.0.9', '2001:2::1', true));
      expect(again).toMatchObject({ subnet: ha.subnet, how: 'existing' });
    });
  });
});
