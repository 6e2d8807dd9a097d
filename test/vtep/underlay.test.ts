/** UnderlayView: the on-link decision of host-gw and DirectRouting, from a routing-table snapshot. */
import { describe, expect, it } from 'vitest';
import { UnderlayView } from '../../src/vtep/index.js';
import type { RouteInfo } from '../../src/tun/index.js';

const r = (dst: string, oif: number, extra: Partial<RouteInfo> = {}): RouteInfo => ({ family: 4, dst, oif, table: 254, protocol: 2, scope: 253, type: 1, onlink: false, ...extra });

describe('UnderlayView', () => {
  const v = new UnderlayView();
  v.load([
    r('0.0.0.0/0', 2, { gateway: '198.18.0.254', scope: 0 }),
    r('198.18.0.0/24', 2),
    r('198.18.1.0/24', 2, { gateway: '198.18.0.254', scope: 0 }),
    r('198.18.2.0/24', 3, { metric: 10 }),
    r('198.18.2.0/24', 2, { metric: 5, gateway: '198.18.0.9' }),
    r('198.18.3.0/24', 0, { type: 6 }), // blackhole
  ], new Map([['lo', 1], ['eth0', 2], ['eth1', 3]]));

  it('directly connected: the best route has no gateway', () => {
    expect(v.pathTo('198.18.0.7')).toEqual({ direct: true, oif: 2, via: '198.18.0.0/24 dev eth0' });
  });
  it('behind a gateway (a more specific route, or the default) is not direct', () => {
    expect(v.pathTo('198.18.1.4')).toEqual({ direct: false, oif: 2, via: '198.18.1.0/24 via 198.18.0.254 dev eth0' });
    expect(v.pathTo('203.0.113.1')).toMatchObject({ direct: false, via: 'default via 198.18.0.254 dev eth0' });
  });
  it('equal prefixes: the lowest metric wins, as in the kernel', () => {
    expect(v.pathTo('198.18.2.1')).toMatchObject({ direct: false, via: '198.18.2.0/24 via 198.18.0.9 dev eth0' });
  });
  it('a blackhole route, an empty table or a bad address is never direct', () => {
    expect(v.pathTo('198.18.3.1').direct).toBe(false);
    expect(new UnderlayView().pathTo('198.18.0.7')).toEqual({ direct: false, oif: 0, via: 'no route' });
    expect(v.pathTo('nope').direct).toBe(false);
  });
  it('lists what is on-link on an interface', () => {
    expect(v.onLink(2)).toEqual(['198.18.0.0/24']);
    expect(v.ifindex('eth1')).toBe(3);
  });
});
