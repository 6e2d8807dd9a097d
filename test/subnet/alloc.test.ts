/** Free-subnet search and the fit check of the etcd subnet manager (pure logic, no etcd). */
import { describe, expect, it } from 'vitest';
import { freeSubnets, ipPrefix, parseNetConf, subnetFits } from '../../src/index.js';

describe('free subnets between SubnetMin and SubnetMax', () => {
  const conf = parseNetConf('{"Network":"198.19.0.0/16","SubnetLen":24,"SubnetMin":"198.19.2.0","SubnetMax":"198.19.9.0"}');
  it('skips taken subnets, including ones covered by a shorter prefix or overlapped by a longer one', () => {
    const taken = ['198.19.3.0/24', '198.19.4.0/23', '198.19.7.128/25'].map((s) => ipPrefix(s));
    expect(freeSubnets(conf, taken)).toEqual(['198.19.2.0/24', '198.19.6.0/24', '198.19.8.0/24', '198.19.9.0/24']);
    expect(freeSubnets(conf, [ipPrefix('198.19.0.0/16')])).toEqual([]);
    expect(freeSubnets(conf, [], 3)).toEqual(['198.19.2.0/24', '198.19.3.0/24', '198.19.4.0/24']);
  });
  it('agrees with a brute-force check on random taken sets', () => {
    const c = parseNetConf('{"Network":"198.19.0.0/20","SubnetLen":26}');
    let seed = 42;
    const rnd = (n: number): number => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n; };
    for (let round = 0; round < 50; round++) {
      const taken = Array.from({ length: rnd(40) }, () => {
        const len = 22 + rnd(9);
        const net = (ipPrefix('198.19.0.0/20').net + rnd(4096)) >>> 0;
        return ipPrefix(`${net >>> 24}.${(net >> 16) & 255}.${(net >> 8) & 255}.${net & 255}/${len}`, { hostBits: 'clear' });
      });
      const want: string[] = [];
      for (let n = ipPrefix(c.subnetMin).net; n <= ipPrefix(c.subnetMax).net && want.length < 100; n += 64) {
        const p = ipPrefix(`${n >>> 24}.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}/26`);
        if (!taken.some((t) => t.overlaps(p))) want.push(p.toString());
      }
      expect(freeSubnets(c, taken)).toEqual(want);
    }
  });
  it('a subnet fits when SubnetLen long and between SubnetMin and SubnetMax', () => {
    expect(subnetFits(conf, '198.19.2.0/24')).toBe(true);
    expect(subnetFits(conf, '198.19.9.0/24')).toBe(true);
    expect(subnetFits(conf, '198.19.1.0/24')).toBe(false);
    expect(subnetFits(conf, '198.19.10.0/24')).toBe(false);
    expect(subnetFits(conf, '198.19.4.0/25')).toBe(false);
    expect(subnetFits(conf, 'junk')).toBe(false);
  });
});
