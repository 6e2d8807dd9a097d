import { describe, it, expect } from 'vitest';
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
