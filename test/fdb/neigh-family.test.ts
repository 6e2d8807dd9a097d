/**
 * The IPv4 and IPv6 neighbour tables are one implementation over two address
 * families: the same operations give the same states, ageing, misses, proxy answers
 * and printed/JSON shapes, up to how addresses are written.
 */
import { describe, it, expect } from 'vitest';
import { NeighbourTable, NeighbourTable6, type NeighbourOptions } from '../../src/fdb/index.js';
import { ipv4ToU32, parseIpv6 } from '../../src/codec/addr.js';

const MAC = 0x2e11223344ff;

interface Family {
  name: string;
  make(opts: NeighbourOptions): NeighbourTable | NeighbourTable6;
  /** Address number i (0..255) as text. */
  text(i: number): string;
  /** Hot-path lookups of address i. */
  lookup(t: NeighbourTable | NeighbourTable6, i: number): string | undefined;
  proxyLookup(t: NeighbourTable | NeighbourTable6, i: number): number | undefined;
  macInto(t: NeighbourTable | NeighbourTable6, i: number, frame: Uint8Array): boolean;
}

const v4: Family = {
  name: 'IPv4',
  make: (o) => new NeighbourTable(o),
  text: (i) => `198.19.2.${i}`,
  lookup: (t, i) => (t as NeighbourTable).lookup(ipv4ToU32(`198.19.2.${i}`))?.state,
  proxyLookup: (t, i) => (t as NeighbourTable).proxyLookup(ipv4ToU32(`198.19.2.${i}`))?.mac,
  macInto: (t, i, f) => (t as NeighbourTable).lookupMacInto(ipv4ToU32(`198.19.2.${i}`), f, 0),
};
const v6: Family = {
  name: 'IPv6',
  make: (o) => new NeighbourTable6(o),
  text: (i) => `2001:db8:2::${(i + 0x100).toString(16)}`,
  lookup: (t, i) => (t as NeighbourTable6).lookup(parseIpv6(`2001:db8:2::${(i + 0x100).toString(16)}`))?.state,
  proxyLookup: (t, i) => (t as NeighbourTable6).proxyLookup(parseIpv6(`2001:db8:2::${(i + 0x100).toString(16)}`))?.mac,
  macInto: (t, i, f) => (t as NeighbourTable6).lookupMacInto(parseIpv6(`2001:db8:2::${(i + 0x100).toString(16)}`), f, 0),
};

/** Run one scenario and record everything observable, with addresses written as their index. */
function scenario(f: Family): unknown[] {
  const now = { v: 1_000_000 };
  const t = f.make({ clock: () => now.v, proxyMac: '2e:00:00:00:00:01', missBurst: 3, maxEntries: 6 });
  const misses: number[] = [];
  t.on('l3miss', () => misses.push(now.v));
  const unText = (s: string): string => {
    for (let i = 255; i >= 0; i--) s = s.split(f.text(i)).join(`#${i}`);
    return s;
  };
  t.add({ ip: f.text(0), lladdr: MAC, dev: 'flannel.1' });
  t.add({ ip: f.text(1), lladdr: MAC + 1, dev: 'flannel.1', state: 'reachable', router: true });
  t.add({ ip: f.text(2), dev: 'flannel.1', state: 'incomplete' });
  t.add({ ip: f.text(3), lladdr: MAC + 3, dev: 'flannel.2', state: 'stale' });
  t.add({ ip: f.text(4), dev: 'flannel.1', state: 'failed' });
  t.addProxy(f.text(9), 'flannel.1');
  const frame = new Uint8Array(6);
  const out: unknown[] = [];
  out.push(unText(t.show()), unText(t.showProxy()), unText(JSON.stringify(t)), t.size, t.has(f.text(2)), t.has(f.text(7)));
  out.push([0, 1, 2, 3, 4, 5, 9].map((i) => f.lookup(t, i)), [0, 2, 5, 9].map((i) => f.proxyLookup(t, i)));
  out.push(f.macInto(t, 1, frame), [...frame], f.macInto(t, 2, frame));
  out.push(misses.length);
  expect(() => t.add({ ip: f.text(0), lladdr: MAC, dev: 'flannel.1' })).toThrow('File exists');
  t.add({ ip: f.text(5), lladdr: MAC + 5, dev: 'flannel.1' });
  expect(() => t.add({ ip: f.text(6), lladdr: MAC, dev: 'flannel.1' })).toThrow(/full/);
  now.v += 31_000;
  out.push(f.lookup(t, 1), t.get(f.text(2))?.state, t.confirm(f.text(3), MAC + 33, 'flannel.2'), t.confirm(f.text(0), MAC + 7, 'flannel.1'));
  now.v += 100_000;
  out.push(t.sweep(), t.size, unText(t.show()));
  out.push(t.delete(f.text(0)), t.delete(f.text(0)), t.deleteProxy(f.text(9)), f.proxyLookup(t, 9));
  t.flush();
  out.push(t.size, t.show(), unText(t.showProxy()));
  return out;
}

describe('NeighbourTable and NeighbourTable6 behave alike', () => {
  it('same observable results for the same operations', () => {
    const a = scenario(v4);
    const b = scenario(v6);
    expect(b).toEqual(a);
    // and the scenario is not vacuous
    expect(a[0]).toBe(
      [
        '#0 dev flannel.1 lladdr 2e:11:22:33:44:ff PERMANENT',
        '#1 dev flannel.1 lladdr 2e:11:22:33:45:00 router REACHABLE',
        '#2 dev flannel.1 INCOMPLETE',
        '#3 dev flannel.2 lladdr 2e:11:22:33:45:02 STALE',
        '#4 dev flannel.1 FAILED',
      ].join('\n'),
    );
    expect(a[1]).toBe('#9 dev flannel.1 proxy');
  });
});
