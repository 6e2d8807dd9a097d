import { describe, it, expect } from 'vitest';
import { NeighbourTable } from '../../src/fdb/index.js';
import { ipv4ToU32 } from '../../src/codec/addr.js';

const ip = ipv4ToU32;
const MAC = 0x2e11223344ff;

function clocked(opts: ConstructorParameters<typeof NeighbourTable>[0] = {}): { t: NeighbourTable; now: { v: number } } {
  const now = { v: 1_000_000 };
  return { t: new NeighbourTable({ ...opts, clock: () => now.v }), now };
}

describe('NeighbourTable', () => {
  it('looks up usable entries and misses on absent/incomplete/failed', () => {
    const { t } = clocked();
    t.add({ ip: '198.19.2.0', lladdr: '2e:11:22:33:44:ff', dev: 'flannel.1' });
    t.add({ ip: '198.19.2.10', dev: 'flannel.1', state: 'incomplete' });
    t.add({ ip: '198.19.2.11', dev: 'flannel.1', state: 'failed' });
    const e = t.lookup(ip('198.19.2.0'));
    expect(e).toMatchObject({ ip: ip('198.19.2.0'), mac: MAC, state: 'permanent', dev: 'flannel.1' });
    expect(t.lookup(ip('198.19.2.10'))).toBeUndefined();
    expect(t.lookup(ip('198.19.2.11'))).toBeUndefined();
    expect(t.lookup(ip('198.19.2.12'))).toBeUndefined();
    expect(t.get('198.19.2.10')?.state).toBe('incomplete');
    expect(t.size).toBe(3);
    expect(t.delete('198.19.2.0')).toBe(true);
    expect(t.delete('198.19.2.0')).toBe(false);
    expect(t.lookup(ip('198.19.2.0'))).toBeUndefined();
  });

  it('ages reachable -> stale -> removed, incomplete -> failed -> removed; permanent never', () => {
    const { t, now } = clocked({ reachableTimeMs: 30_000, gcStaleTimeMs: 60_000, incompleteTimeMs: 3_000 });
    t.add({ ip: '10.0.0.1', lladdr: MAC, dev: 'flannel.1', state: 'reachable' });
    t.add({ ip: '10.0.0.2', lladdr: MAC + 1, dev: 'flannel.1' });
    t.add({ ip: '10.0.0.3', dev: 'flannel.1', state: 'incomplete' });
    now.v += 29_000;
    expect(t.lookup(ip('10.0.0.1'))?.state).toBe('reachable');
    now.v += 2_000;
    expect(t.lookup(ip('10.0.0.1'))?.state).toBe('stale');
    expect(t.get('10.0.0.3')?.state).toBe('failed');
    // confirm() makes it reachable again.
    expect(t.confirm(ip('10.0.0.1'), MAC, 'flannel.1')).toBe(true);
    expect(t.lookup(ip('10.0.0.1'))?.state).toBe('reachable');
    // confirm() leaves permanent entries alone.
    expect(t.confirm(ip('10.0.0.2'), MAC + 7, 'flannel.1')).toBe(false);
    expect(t.lookup(ip('10.0.0.2'))?.mac).toBe(MAC + 1);
    now.v += 30_001 + 60_001;
    expect(t.sweep()).toBe(2);
    expect(t.get('10.0.0.1')).toBeUndefined();
    expect(t.get('10.0.0.3')).toBeUndefined();
    expect(t.get('10.0.0.2')?.state).toBe('permanent');
    now.v += 1e9;
    expect(t.sweep()).toBe(0);
    expect(t.size).toBe(1);
  });

  it('fires l3miss on misses, rate-limited per IP and in total', () => {
    const { t, now } = clocked({ missIntervalMs: 1000, missBurst: 3 });
    const seen: number[] = [];
    const off = t.on('l3miss', (a) => seen.push(a));
    t.add({ ip: '10.0.0.9', dev: 'flannel.1', state: 'incomplete' });
    t.lookup(ip('10.0.0.1'));
    t.lookup(ip('10.0.0.1'));
    t.lookup(ip('10.0.0.9'));
    expect(seen).toEqual([ip('10.0.0.1'), ip('10.0.0.9')]);
    t.lookup(ip('10.0.0.2'));
    t.lookup(ip('10.0.0.3')); // over the burst of 3
    expect(seen).toEqual([ip('10.0.0.1'), ip('10.0.0.9'), ip('10.0.0.2')]);
    now.v += 1000;
    t.lookup(ip('10.0.0.1'));
    t.lookup(ip('10.0.0.3'));
    expect(seen.slice(3)).toEqual([ip('10.0.0.1'), ip('10.0.0.3')]);
    // hits fire nothing
    t.add({ ip: '10.0.0.4', lladdr: MAC, dev: 'flannel.1' });
    t.lookup(ip('10.0.0.4'));
    expect(seen.length).toBe(5);
    off();
    now.v += 5000;
    t.lookup(ip('10.0.0.5'));
    expect(seen.length).toBe(5);
  });

  it('answers proxy ARP from the table (VXLAN proxy flag) and from proxy entries', () => {
    const { t } = clocked({ proxyMac: '2e:00:00:00:00:01' });
    const miss: number[] = [];
    t.on('l3miss', (a) => miss.push(a));
    t.add({ ip: '198.19.2.0', lladdr: MAC, dev: 'flannel.1' });
    t.addProxy('198.19.2.9', 'flannel.1');
    expect(t.proxyLookup(ip('198.19.2.0'))?.mac).toBe(MAC);
    expect(t.proxyLookup(ip('198.19.2.9'))).toMatchObject({ mac: 0x2e0000000001, dev: 'flannel.1' });
    expect(t.proxyLookup(ip('198.19.2.8'))).toBeUndefined();
    expect(miss).toEqual([ip('198.19.2.8')]);
    expect(t.showProxy()).toBe('198.19.2.9 dev flannel.1 proxy');
    const off = new NeighbourTable({ proxy: false });
    off.add({ ip: '198.19.2.0', lladdr: MAC, dev: 'flannel.1' });
    expect(off.proxyLookup(ip('198.19.2.0'))).toBeUndefined();
    expect(t.deleteProxy('198.19.2.9')).toBe(true);
    expect(t.proxyLookup(ip('198.19.2.9'))).toBeUndefined();
  });

  it('prints like ip neigh and round-trips JSON', () => {
    const { t } = clocked();
    t.add({ ip: '198.19.2.7', lladdr: '2e:11:22:33:44:fe', dev: 'flannel.1', state: 'reachable' });
    t.add({ ip: '198.19.2.10', dev: 'flannel.1', state: 'incomplete' });
    t.add({ ip: '198.19.2.0', lladdr: '2e:11:22:33:44:ff', dev: 'flannel.1' });
    t.add({ ip: '198.19.2.11', dev: 'flannel.1', state: 'failed' });
    t.add({ ip: '198.19.2.8', lladdr: '2e:11:22:33:44:fd', dev: 'flannel.1', state: 'stale' });
    t.add({ ip: '198.19.2.1', lladdr: '2e:11:22:33:44:fc', dev: 'flannel.1', router: true, state: 'reachable' });
    t.addProxy('198.19.2.9', 'flannel.1');
    expect(t.show().split('\n')).toEqual([
      '198.19.2.0 dev flannel.1 lladdr 2e:11:22:33:44:ff PERMANENT',
      '198.19.2.1 dev flannel.1 lladdr 2e:11:22:33:44:fc router REACHABLE',
      '198.19.2.7 dev flannel.1 lladdr 2e:11:22:33:44:fe REACHABLE',
      '198.19.2.8 dev flannel.1 lladdr 2e:11:22:33:44:fd STALE',
      '198.19.2.10 dev flannel.1 INCOMPLETE',
      '198.19.2.11 dev flannel.1 FAILED',
    ]);
    const json = JSON.parse(JSON.stringify(t));
    const u = NeighbourTable.fromJSON(json, { clock: () => 1_000_000 });
    expect(u.show()).toBe(t.show());
    expect(u.showProxy()).toBe(t.showProxy());
    expect(u.toJSON()).toEqual(json);
  });

  it('refuses bad input with errors naming the value', () => {
    const t = new NeighbourTable({ maxEntries: 1 });
    expect(() => t.add({ ip: '198.19.2', lladdr: MAC, dev: 'flannel.1' })).toThrow('"198.19.2"');
    expect(() => t.add({ ip: '198.19.2.1', lladdr: '2e:11:22:33:44', dev: 'flannel.1' })).toThrow('"2e:11:22:33:44"');
    expect(() => t.add({ ip: '198.19.2.1', lladdr: '01:00:5e:00:00:01', dev: 'flannel.1' })).toThrow(/01:00:5e:00:00:01.*multicast/);
    expect(() => t.add({ ip: '198.19.2.1', lladdr: 'ff:ff:ff:ff:ff:ff', dev: 'flannel.1' })).toThrow(/multicast/);
    expect(() => t.add({ ip: '198.19.2.1', dev: 'flannel.1', state: 'reachable' })).toThrow(/lladdr required/);
    expect(() => t.add({ ip: '198.19.2.1', lladdr: MAC, dev: 'flannel.1', state: 'bogus' as 'stale' })).toThrow('"bogus"');
    t.add({ ip: '198.19.2.1', lladdr: MAC, dev: 'flannel.1' });
    expect(() => t.add({ ip: '198.19.2.1', lladdr: MAC, dev: 'flannel.1' })).toThrow('File exists');
    expect(() => t.add({ ip: '198.19.2.2', lladdr: MAC, dev: 'flannel.1' })).toThrow(/full/);
  });
});
