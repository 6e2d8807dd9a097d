/**
 * Print shapes checked against the real tools: the same entries are installed in a
 * network namespace with ip(8)/bridge(8) and in our tables, and the lines compared
 * (kernel lines have a trailing space, which we trim). Skips without namespaces.
 */
import { describe, it, expect, afterAll } from 'vitest';
import { Testbed, requireNetns, type NsHost } from '../helpers/netns.js';
import { RouteTable4, RouteTable6, NeighbourTable, NeighbourTable6, Fdb } from '../../src/fdb/index.js';

const lines = (s: string): string[] => s.split('\n').map((l) => l.trimEnd()).filter((l) => l.length > 0).sort();

describe.runIf(requireNetns())('print shapes match ip route / ip neigh / bridge fdb show', () => {
  const tb = new Testbed('fdbshape');
  let h: NsHost;
  afterAll(() => tb.destroy());

  it('matches the kernel tools line for line', () => {
    h = tb.host('a');
    h.ip('link', 'add', 'flannel.1', 'type', 'vxlan', 'id', '1', 'local', '198.18.0.1', 'dstport', '8472', 'nolearning');
    h.ip('link', 'set', 'flannel.1', 'up');
    const routes = new RouteTable4();
    const routes6 = new RouteTable6();
    const neigh = new NeighbourTable();
    const fdb = new Fdb({ vni: 1, dev: 'flannel.1', dstPort: 8472 });

    const r4: [string[], Parameters<RouteTable4['add']>[0]][] = [
      [['198.19.2.0/24', 'via', '198.19.2.0', 'dev', 'flannel.1', 'onlink'], { dst: '198.19.2.0/24', via: '198.19.2.0', dev: 'flannel.1', onlink: true }],
      [['198.19.3.5/32', 'via', '198.19.3.5', 'dev', 'flannel.1', 'onlink'], { dst: '198.19.3.5/32', via: '198.19.3.5', dev: 'flannel.1', onlink: true }],
      [['198.19.9.0/24', 'dev', 'flannel.1'], { dst: '198.19.9.0/24', dev: 'flannel.1' }],
      [['default', 'via', '198.19.2.0', 'dev', 'flannel.1', 'onlink'], { dst: 'default', via: '198.19.2.0', dev: 'flannel.1', onlink: true }],
    ];
    for (const [args, r] of r4) {
      h.ip('route', 'add', ...args);
      routes.add(r);
    }
    // ip refuses host bits with the message we reproduce.
    expect(() => h.ip('route', 'add', '198.19.2.1/24', 'dev', 'flannel.1')).toThrow('Invalid prefix for given prefix length.');
    expect(() => routes.add({ dst: '198.19.2.1/24', dev: 'flannel.1' })).toThrow('Invalid prefix for given prefix length.');
    const kernelRoutes = lines(h.ip('route', 'show'));
    expect(kernelRoutes.length).toBe(4);
    expect(lines(routes.show())).toEqual(kernelRoutes);

    h.ip('-6', 'route', 'add', '2001:db8:2::/64', 'via', 'fe80::1', 'dev', 'flannel.1', 'onlink');
    h.ip('-6', 'route', 'add', '2001:db8:3::/64', 'dev', 'flannel.1');
    routes6.add({ dst: '2001:db8:2::/64', via: 'fe80::1', dev: 'flannel.1', onlink: true });
    routes6.add({ dst: '2001:db8:3::/64', dev: 'flannel.1' });
    expect(lines(routes6.show())).toEqual(lines(h.ip('-6', 'route', 'show')).filter((l) => l.startsWith('2001:db8:')));

    const n4: [string[], Parameters<NeighbourTable['add']>[0]][] = [
      [['198.19.2.0', 'dev', 'flannel.1', 'lladdr', '2e:11:22:33:44:ff', 'nud', 'permanent'], { ip: '198.19.2.0', dev: 'flannel.1', lladdr: '2e:11:22:33:44:ff' }],
      [['198.19.2.7', 'dev', 'flannel.1', 'lladdr', '2e:11:22:33:44:fe', 'nud', 'reachable'], { ip: '198.19.2.7', dev: 'flannel.1', lladdr: '2e:11:22:33:44:fe', state: 'reachable' }],
      [['198.19.2.8', 'dev', 'flannel.1', 'lladdr', '2e:11:22:33:44:fd', 'nud', 'stale'], { ip: '198.19.2.8', dev: 'flannel.1', lladdr: '2e:11:22:33:44:fd', state: 'stale' }],
      [['198.19.2.10', 'dev', 'flannel.1', 'nud', 'incomplete'], { ip: '198.19.2.10', dev: 'flannel.1', state: 'incomplete' }],
      [['198.19.2.11', 'dev', 'flannel.1', 'lladdr', '2e:11:22:33:44:fc', 'nud', 'failed'], { ip: '198.19.2.11', dev: 'flannel.1', state: 'failed' }],
      [['198.19.2.12', 'dev', 'flannel.1', 'lladdr', '2e:11:22:33:44:fb', 'router', 'nud', 'stale'], { ip: '198.19.2.12', dev: 'flannel.1', lladdr: '2e:11:22:33:44:fb', router: true, state: 'stale' }],
    ];
    for (const [args, n] of n4) {
      h.ip('neigh', 'add', ...args);
      neigh.add(n);
    }
    h.ip('neigh', 'add', 'proxy', '198.19.2.9', 'dev', 'flannel.1');
    neigh.addProxy('198.19.2.9', 'flannel.1');
    const kernelNeigh = lines(h.ip('-4', 'neigh', 'show'));
    expect(kernelNeigh.length).toBe(6);
    expect(lines(neigh.show())).toEqual(kernelNeigh);
    expect(lines(neigh.showProxy())).toEqual(lines(h.ip('neigh', 'show', 'proxy')));

    const neigh6 = new NeighbourTable6();
    h.ip('-6', 'neigh', 'add', '2001:db8:2::1', 'dev', 'flannel.1', 'lladdr', '2e:11:22:33:44:ff', 'nud', 'permanent');
    h.ip('-6', 'neigh', 'add', '2001:db8:2::2', 'dev', 'flannel.1', 'lladdr', '2e:11:22:33:44:fe', 'router', 'nud', 'stale');
    neigh6.add({ ip: '2001:db8:2::1', dev: 'flannel.1', lladdr: '2e:11:22:33:44:ff' });
    neigh6.add({ ip: '2001:db8:2::2', dev: 'flannel.1', lladdr: '2e:11:22:33:44:fe', router: true, state: 'stale' });
    const kernelNeigh6 = lines(h.ip('-6', 'neigh', 'show')).filter((l) => l.startsWith('2001:db8:'));
    expect(kernelNeigh6.length).toBe(2);
    expect(lines(neigh6.show())).toEqual(kernelNeigh6);

    const f: [string[], Parameters<Fdb['add']>[0], boolean][] = [
      [['add', '2e:11:22:33:44:ff', 'dev', 'flannel.1', 'dst', '198.18.0.2', 'self', 'permanent'], { mac: '2e:11:22:33:44:ff', dst: '198.18.0.2' }, false],
      [['add', '2e:11:22:33:44:ee', 'dev', 'flannel.1', 'dst', '198.18.0.5', 'port', '4790', 'vni', '9', 'self', 'permanent'], { mac: '2e:11:22:33:44:ee', dst: '198.18.0.5', port: 4790, dstVni: 9 }, false],
      [['append', '00:00:00:00:00:00', 'dev', 'flannel.1', 'dst', '198.18.0.3', 'self', 'permanent'], { mac: 0, dst: '198.18.0.3' }, true],
      [['append', '00:00:00:00:00:00', 'dev', 'flannel.1', 'dst', '198.18.0.4', 'port', '4790', 'vni', '7', 'self', 'permanent'], { mac: 0, dst: '198.18.0.4', port: 4790, dstVni: 7 }, true],
    ];
    for (const [args, e, append] of f) {
      h.exec('bridge', ['fdb', ...args]);
      if (append) fdb.append(e);
      else fdb.add(e);
    }
    const kernelFdb = lines(h.exec('bridge', ['fdb', 'show'])).filter((l) => / dev flannel\.1 dst /.test(l));
    expect(kernelFdb.length).toBe(4);
    expect(lines(fdb.show())).toEqual(kernelFdb);
  });
});
