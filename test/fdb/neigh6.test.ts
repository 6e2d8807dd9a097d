import { describe, it, expect, vi } from 'vitest';
import fc from 'fast-check';
import { NeighbourTable6 } from '../../src/fdb/index.js';
import { parseIpv6, formatIpv6 } from '../../src/codec/addr.js';

const MAC = 0x2e11223344ff;

describe('NeighbourTable6 (NDP)', () => {
  it('looks up at an offset, ages, fires rate-limited l3miss, prints and round-trips', () => {
    const now = { v: 1000 };
    const t = new NeighbourTable6({ clock: () => now.v, missBurst: 2 });
    const miss: string[] = [];
    t.on('l3miss', (a) => miss.push(formatIpv6(a)));
    t.add({ ip: '2001:db8:2::1', lladdr: '2e:11:22:33:44:ff', dev: 'flannel-v6.1' });
    t.add({ ip: 'fe80::2', lladdr: MAC + 1, dev: 'flannel-v6.1', state: 'reachable', router: true });
    t.add({ ip: '2001:db8:2::9', dev: 'flannel-v6.1', state: 'incomplete' });
    const pkt = new Uint8Array(40);
    pkt.set(parseIpv6('2001:db8:2::1'), 24);
    expect(t.lookup(pkt, 24)).toMatchObject({ mac: MAC, state: 'permanent', dev: 'flannel-v6.1' });
    expect(formatIpv6(t.lookup(pkt, 24)!.ip)).toBe('2001:db8:2::1');
    expect(t.lookup(parseIpv6('2001:db8:2::9'))).toBeUndefined();
    expect(t.lookup(parseIpv6('2001:db8:2::9'))).toBeUndefined();
    expect(t.lookup(parseIpv6('2001:db8:2::a'))).toBeUndefined();
    expect(t.lookup(parseIpv6('2001:db8:2::b'))).toBeUndefined();
    expect(miss).toEqual(['2001:db8:2::9', '2001:db8:2::a']);
    expect(t.show().split('\n')).toEqual([
      '2001:db8:2::1 dev flannel-v6.1 lladdr 2e:11:22:33:44:ff PERMANENT',
      '2001:db8:2::9 dev flannel-v6.1 INCOMPLETE',
      'fe80::2 dev flannel-v6.1 lladdr 2e:11:22:33:45:00 router REACHABLE',
    ]);
    const u = NeighbourTable6.fromJSON(JSON.parse(JSON.stringify(t)), { clock: () => now.v });
    expect(u.show()).toBe(t.show());
    now.v += 31_000;
    expect(t.lookup(parseIpv6('fe80::2'))?.state).toBe('stale');
    now.v += 100_000;
    expect(t.sweep()).toBe(2);
    expect(t.size).toBe(1);
    expect(t.delete('2001:db8:2::1')).toBe(true);
    expect(t.size).toBe(0);
    expect(() => t.add({ ip: '2001:db8:::1', lladdr: MAC, dev: 'x' })).toThrow('"2001:db8:::1"');
    expect(() => t.add({ ip: '2001:db8::1', lladdr: '33:33:00:00:00:01', dev: 'x' })).toThrow(/multicast/);
  });

  it('agrees with a Map model under random add/delete', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 40 })), { maxLength: 200 }), (ops) => {
        const t = new NeighbourTable6();
        const o = new Map<number, number>();
        const addr = (i: number): string => `2001:db8:${i % 3}::${i.toString(16)}`;
        for (const [del, i] of ops) {
          if (del) expect(t.delete(addr(i))).toBe(o.delete(i));
          else {
            t.replace({ ip: addr(i), lladdr: MAC + i, dev: 'flannel-v6.1' });
            o.set(i, MAC + i);
          }
        }
        expect(t.size).toBe(o.size);
        for (let i = 0; i <= 40; i++) expect(t.lookup(parseIpv6(addr(i)))?.mac).toBe(o.get(i));
      }),
      { numRuns: 200 },
    );
  });
});

describe('NeighbourTable6: what used to drift from the IPv4 table', () => {
  it('answers explicit proxy entries with proxyMac, prints them and round-trips them through JSON', () => {
    const t = new NeighbourTable6({ clock: () => 1000, proxyMac: '2e:00:00:00:00:01' });
    const miss: string[] = [];
    t.on('l3miss', (a) => miss.push(formatIpv6(a)));
    t.add({ ip: '2001:db8:2::1', lladdr: MAC, dev: 'flannel-v6.1' });
    t.addProxy('2001:db8:2::9', 'flannel-v6.1');
    t.addProxy(parseIpv6('2001:db8:2::8'), 'flannel-v6.1');
    const ns = new Uint8Array(64);
    ns.set(parseIpv6('2001:db8:2::9'), 48);
    expect(t.proxyLookup(ns, 48)).toMatchObject({ mac: 0x2e0000000001, state: 'permanent', dev: 'flannel-v6.1', router: false });
    expect(formatIpv6(t.proxyLookup(ns, 48)!.ip)).toBe('2001:db8:2::9');
    expect(t.proxyLookup(parseIpv6('2001:db8:2::1'))?.mac).toBe(MAC);
    expect(t.proxyLookup(parseIpv6('2001:db8:2::7'))).toBeUndefined();
    expect(miss).toEqual(['2001:db8:2::7']);
    expect(t.size).toBe(1);
    expect(t.showProxy().split('\n')).toEqual(['2001:db8:2::8 dev flannel-v6.1 proxy', '2001:db8:2::9 dev flannel-v6.1 proxy']);
    const json = JSON.parse(JSON.stringify(t));
    expect(json).toContainEqual({ dst: '2001:db8:2::9', dev: 'flannel-v6.1', proxy: true });
    const u = NeighbourTable6.fromJSON(json, { clock: () => 1000 });
    expect(u.showProxy()).toBe(t.showProxy());
    expect(u.toJSON()).toEqual(json);
    expect(t.deleteProxy('2001:db8:2::9')).toBe(true);
    expect(t.deleteProxy('2001:db8:2::9')).toBe(false);
    expect(t.proxyLookup(ns, 48)).toBeUndefined();
    // With the proxy flag off, table entries are not answered but explicit proxy entries are.
    const off = new NeighbourTable6({ proxy: false, proxyMac: 0x2e0000000002 });
    off.add({ ip: '2001:db8:2::1', lladdr: MAC, dev: 'flannel-v6.1' });
    off.addProxy('2001:db8:2::9', 'flannel-v6.1');
    expect(off.proxyLookup(parseIpv6('2001:db8:2::1'))).toBeUndefined();
    expect(off.proxyLookup(parseIpv6('2001:db8:2::9'))?.mac).toBe(0x2e0000000002);
  });

  it('writes the MAC of a usable entry into a frame (lookupMacInto), reading the address at an offset', () => {
    const t = new NeighbourTable6({ clock: () => 0 });
    t.add({ ip: '2001:db8:2::1', lladdr: '2e:11:22:33:44:ff', dev: 'flannel-v6.1' });
    t.add({ ip: '2001:db8:2::9', dev: 'flannel-v6.1', state: 'incomplete' });
    const pkt = new Uint8Array(40);
    pkt.set(parseIpv6('2001:db8:2::1'), 24);
    const frame = new Uint8Array(8);
    expect(t.lookupMacInto(pkt, frame, 2, 24)).toBe(true);
    expect([...frame]).toEqual([0, 0, 0x2e, 0x11, 0x22, 0x33, 0x44, 0xff]);
    pkt.set(parseIpv6('2001:db8:2::9'), 24);
    frame.fill(7);
    expect(t.lookupMacInto(pkt, frame, 2, 24)).toBe(false);
    expect([...frame]).toEqual([7, 7, 7, 7, 7, 7, 7, 7]);
  });

  it('ages on the injected clock, else on the shared coarse clock: no Date.now per lookup', async () => {
    const t0 = Date.now();
    let wall = t0;
    const dateNow = vi.spyOn(Date, 'now').mockImplementation(() => wall);
    try {
      const a = parseIpv6('fe80::2');
      // Injected clock: ageing follows it, Date.now is never read.
      let now = 0;
      const clock = vi.fn(() => now);
      const inj = new NeighbourTable6({ clock, reachableTimeMs: 1000 });
      inj.add({ ip: 'fe80::2', lladdr: MAC, dev: 'flannel-v6.1', state: 'reachable' });
      const before = dateNow.mock.calls.length;
      now = 999;
      expect(inj.lookup(a)?.state).toBe('reachable');
      now = 1001;
      expect(inj.lookup(a)?.state).toBe('stale');
      expect(clock).toHaveBeenCalled();
      expect(dateNow.mock.calls.length).toBe(before);
      // Default clock: lookups read the coarse clock, refreshed by its timer, not Date.now.
      const t = new NeighbourTable6({ reachableTimeMs: 1000 });
      t.add({ ip: 'fe80::2', lladdr: MAC, dev: 'flannel-v6.1', state: 'reachable' });
      expect(t.get('fe80::2')?.updated).toBe(t0);
      const calls = dateNow.mock.calls.length;
      wall = t0 + 5000;
      for (let i = 0; i < 100; i++) expect(t.lookup(a)?.state).toBe('reachable');
      expect(dateNow.mock.calls.length).toBe(calls);
      await new Promise((r) => setTimeout(r, 60)); // a few coarse-clock ticks
      expect(t.lookup(a)?.state).toBe('stale');
    } finally {
      dateNow.mockRestore();
    }
  });
});
