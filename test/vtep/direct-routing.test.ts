/**
 * VXLAN DirectRouting's peer model (fake device and a recording kernel): a peer whose public IP
 * is directly connected gets `via <public IP> dev <underlay>` and no VTEP tables; one behind a
 * gateway gets the VTEP route and tables; a lease moving between the two switches the route;
 * stop() removes the direct routes (the VTEP's go with the device). The kernel behaviour is
 * tested in namespaces (test/overlayd/directrouting.test.ts).
 */
import { describe, expect, it } from 'vitest';
import { VxlanBackend } from '../../src/vtep/index.js';
import { FakeIo, mainRoute, recordingKernel } from './fakes.js';

/** eth0 on 198.18.0.0/24, the default route via 198.18.0.254. */
const kernelView = (): ReturnType<typeof recordingKernel> =>
  recordingKernel([mainRoute('198.18.0.0/24', 2), mainRoute('0.0.0.0/0', 2, '198.18.0.254')], [['lo', 1], ['eth0', 2]]);

const lease = (n: number, publicIp: string) => ({ subnet: `198.19.${n}.0/24`, publicIp, backendType: 'vxlan' as const, vni: 1, vtepMac: `02:00:00:00:00:0${n}` });

describe('VXLAN DirectRouting peers', () => {
  it('direct vs. VTEP routes, a lease moving between them, and stop', async () => {
    const kernel = kernelView();
    const b = new VxlanBackend({ subnet: '198.19.1.0/24', network: '198.19.0.0/16', publicIp: '198.18.0.1', io: new FakeIo(), kernel, directRouting: true });
    b.addPeer(lease(2, '198.18.0.2')); // before start: decided again once the routes are read
    await b.start();
    b.addPeer(lease(3, '203.0.113.3'));
    expect(kernel.ops).toEqual(['replace 198.19.2.0/24 via 198.18.0.2 dev eth0', 'replace 198.19.3.0/24 via 198.19.3.0 dev flannel.1 onlink']);
    expect(b.showTables().route).not.toMatch(/198\.19\.2\.0/);
    expect(b.showTables().route).toMatch(/198\.19\.3\.0\/24 via 198\.19\.3\.0 dev flannel\.1 onlink/);
    expect(b.stats().directPeers).toBe(1);
    kernel.ops.length = 0;
    b.addPeer(lease(2, '203.0.113.2')); // moved behind a gateway: through the VTEP now
    b.addPeer(lease(3, '198.18.0.3')); // moved onto the segment: direct now
    b.addPeer(lease(3, '198.18.0.3')); // unchanged: nothing sent
    expect(kernel.ops).toEqual(['replace 198.19.2.0/24 via 198.19.2.0 dev flannel.1 onlink', 'replace 198.19.3.0/24 via 198.18.0.3 dev eth0']);
    expect(b.showTables().route).toMatch(/198\.19\.2\.0\/24 via 198\.19\.2\.0/);
    expect(b.showTables().route).not.toMatch(/198\.19\.3\.0/);
    kernel.ops.length = 0;
    b.removePeer('198.19.2.0/24');
    await b.stop();
    expect(kernel.ops).toEqual(['delete 198.19.2.0/24 dev flannel.1', 'delete 198.19.3.0/24 dev eth0']);
  });

  it('off by default: every peer through the VTEP', async () => {
    const kernel = kernelView();
    const b = new VxlanBackend({ subnet: '198.19.1.0/24', network: '198.19.0.0/16', publicIp: '198.18.0.1', io: new FakeIo(), kernel });
    await b.start();
    b.addPeer(lease(2, '198.18.0.2'));
    expect(kernel.ops).toEqual(['replace 198.19.2.0/24 via 198.19.2.0 dev flannel.1 onlink']);
    await b.stop();
  });
});
