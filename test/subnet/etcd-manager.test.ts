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
    const prefix = await network();
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
    const prefix = await network();
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
    const prefix = await network();
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
    const prefix = await network();
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
    const prefix = await network();
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
});
