/**
 * HostGwBackend's peer model against a recording kernel: routes without onlink via the public IP
 * on the underlay, an off-segment peer refused (thrown, counted, no route, an earlier lease of the
 * subnet removed), unchanged leases sending nothing, removal and stop deleting what was added, the
 * NAT refusal. The kernel itself is tested in namespaces (test/overlayd/hostgw.test.ts).
 */
import { describe, expect, it } from 'vitest';
import { HostGwBackend, lookupBackend } from '../../src/vtep/index.js';
import { mainRoute, recordingKernel } from './fakes.js';

/** eth0 on 198.18.0.0/24, eth1 on 198.18.9.0/24, the default route via 198.18.0.254. */
const kernelView = (): ReturnType<typeof recordingKernel> =>
  recordingKernel([mainRoute('198.18.0.0/24', 2), mainRoute('198.18.9.0/24', 3), mainRoute('0.0.0.0/0', 2, '198.18.0.254')], [['lo', 1], ['eth0', 2], ['eth1', 3]]);
const lease = (n: number, publicIp: string) => ({ subnet: `198.19.${n}.0/24`, publicIp, backendType: 'host-gw' as const });

describe('HostGwBackend', () => {
  it('routes on-segment peers, refuses the others with a counted error, removes what it added', async () => {
    const kernel = kernelView();
    const b = new HostGwBackend({ subnet: '198.19.1.0/24', network: '198.19.0.0/16', publicIp: '198.18.0.1', underlayIface: 'eth0', kernel });
    await b.start();
    expect(b.localLease()).toEqual({ subnet: '198.19.1.0/24', publicIp: '198.18.0.1', backendType: 'host-gw' });
    b.addPeer(lease(2, '198.18.0.2'));
    b.addPeer(lease(2, '198.18.0.2')); // unchanged: nothing sent
    b.addPeer(lease(1, '198.18.0.1')); // our own subnet: ignored
    expect(() => b.addPeer(lease(3, '203.0.113.3'))).toThrow(/^host-gw: peer 198\.19\.3\.0\/24 \(public IP 203\.0\.113\.3\) is not on the L2 segment of eth0 \(on-link there: 198\.18\.0\.0\/24; the kernel reaches 203\.0\.113\.3 by default via 198\.18\.0\.254 dev eth0\);/);
    expect(() => b.addPeer(lease(4, '198.18.9.4'))).toThrow(/reaches 198\.18\.9\.4 by 198\.18\.9\.0\/24 dev eth1\)/); // on-link, but on another interface
    expect(kernel.ops).toEqual(['replace 198.19.2.0/24 via 198.18.0.2 dev eth0']);
    // a lease that moves off the segment loses its route
    expect(() => b.addPeer(lease(2, '203.0.113.2'))).toThrow(/not on the L2 segment/);
    expect(b.peers()).toEqual([]);
    expect(b.stats().errors).toMatchObject({ kernel: 0, rejectedPeers: 3, lastRejectedPeer: expect.stringMatching(/198\.19\.2\.0\/24/) });
    b.addPeer(lease(2, '198.18.0.2'));
    b.addPeer(lease(5, '198.18.0.5'));
    b.removePeer('198.19.5.0/24');
    await b.stop();
    expect(kernel.ops).toEqual([
      'replace 198.19.2.0/24 via 198.18.0.2 dev eth0', 'delete 198.19.2.0/24 dev eth0',
      'replace 198.19.2.0/24 via 198.18.0.2 dev eth0', 'replace 198.19.5.0/24 via 198.18.0.5 dev eth0', 'delete 198.19.5.0/24 dev eth0',
      'delete 198.19.2.0/24 dev eth0',
    ]);
  });

  it('is registered with no overhead and no port; refuses NAT and a missing interface, as flannel does', async () => {
    const reg = lookupBackend('host-gw')!;
    expect([reg.mtuOverhead, reg.defaultPort]).toEqual([0, 0]);
    expect(() => reg.create({ subnet: '198.19.1.0/24', network: '198.19.0.0/16', publicIp: '203.0.113.1', bindAddress: '198.18.0.1', underlayIface: 'eth0' }))
      .toThrow(/public IP 203\.0\.113\.1 differs from the interface's address 198\.18\.0\.1 \(behind NAT\?\)/);
    const b = new HostGwBackend({ subnet: '198.19.1.0/24', network: '198.19.0.0/16', publicIp: '198.18.0.1', underlayIface: 'eth7', kernel: kernelView() });
    await expect(b.start()).rejects.toThrow(/underlay interface "eth7" does not exist/);
  });
});
