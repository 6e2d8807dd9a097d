import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { HostModel, Fdb } from '../../src/fdb/index.js';
import { ipv4ToU32, u32ToIpv4, formatMac } from '../../src/codec/addr.js';

const ip = ipv4ToU32;

type Host = { subnet: string; publicIp: string; vtepMac: string };

describe('HostModel (flannel VXLAN)', () => {
  it('installs exactly one route, one permanent neighbour and one permanent FDB entry per host', () => {
    const hm = new HostModel({ vni: 1 });
    expect(hm.addHost({ subnet: '198.19.2.0/24', publicIp: '198.18.0.2', vtepMac: '2e:11:22:33:44:ff' })).toBe('added');
    expect(hm.addHost({ subnet: '198.19.3.0/24', publicIp: '198.18.0.3', vtepMac: '2e:11:22:33:44:ee' })).toBe('added');
    expect([hm.routes.size, hm.neigh.size, hm.fdb.size, hm.size]).toEqual([2, 2, 2, 2]);
    const s = hm.show();
    expect(s.route).toBe('198.19.2.0/24 via 198.19.2.0 dev flannel.1 onlink\n198.19.3.0/24 via 198.19.3.0 dev flannel.1 onlink');
    expect(s.neigh).toBe('198.19.2.0 dev flannel.1 lladdr 2e:11:22:33:44:ff PERMANENT\n198.19.3.0 dev flannel.1 lladdr 2e:11:22:33:44:ee PERMANENT');
    expect(s.fdb).toBe('2e:11:22:33:44:ee dev flannel.1 dst 198.18.0.3 self permanent\n2e:11:22:33:44:ff dev flannel.1 dst 198.18.0.2 self permanent');
    const e = hm.resolve(ip('198.19.2.77'))!;
    expect(e.dests[0]!.ip).toBe(ip('198.18.0.2'));
    expect(hm.resolve(ip('198.19.4.1'))).toBeUndefined();
    expect(hm.check()).toEqual([]);
  });

  it('re-adding an identical host is a no-op; moving a subnet is atomic; remove cleans all three', () => {
    const hm = new HostModel<string>({ vni: 1 });
    hm.addHost({ subnet: '198.19.2.0/24', publicIp: '198.18.0.2', vtepMac: '2e:11:22:33:44:ff', peer: 'p1' });
    const route = hm.routes.get('198.19.2.0/24');
    const before = hm.show();
    expect(hm.addHost({ subnet: '198.19.2.0/24', publicIp: '198.18.0.2', vtepMac: '2e:11:22:33:44:ff' })).toBe('unchanged');
    expect(hm.show()).toEqual(before);
    expect(hm.routes.get('198.19.2.0/24')).toBe(route); // same object, peer kept
    expect(route!.peer).toBe('p1');
    // Move to a new host: new public IP and MAC.
    expect(hm.addHost({ subnet: '198.19.2.0/24', publicIp: '198.18.0.9', vtepMac: '2e:11:22:33:44:01', peer: 'p2' })).toBe('moved');
    expect(hm.resolve(ip('198.19.2.5'))!.dests[0]!.ip).toBe(ip('198.18.0.9'));
    expect(hm.routes.lookup(ip('198.19.2.5'))!.peer).toBe('p2');
    expect(hm.fdb.get(1, '2e:11:22:33:44:ff')).toBeUndefined();
    expect([hm.routes.size, hm.neigh.size, hm.fdb.size, hm.size]).toEqual([1, 1, 1, 1]);
    // Move with the same MAC but a new public IP.
    expect(hm.addHost({ subnet: '198.19.2.0/24', publicIp: '198.18.0.10', vtepMac: '2e:11:22:33:44:01' })).toBe('moved');
    expect(hm.resolve(ip('198.19.2.5'))!.dests[0]!.ip).toBe(ip('198.18.0.10'));
    expect(hm.check()).toEqual([]);
    expect(hm.removeHost('198.19.2.0/24')).toBe(true);
    expect(hm.removeHost('198.19.2.0/24')).toBe(false);
    expect([hm.routes.size, hm.neigh.size, hm.fdb.size, hm.size]).toEqual([0, 0, 0, 0]);
    expect(hm.resolve(ip('198.19.2.5'))).toBeUndefined();
  });

  it('invalid input leaves the tables untouched', () => {
    const hm = new HostModel({ vni: 1 });
    hm.addHost({ subnet: '198.19.2.0/24', publicIp: '198.18.0.2', vtepMac: '2e:11:22:33:44:ff' });
    const before = JSON.stringify(hm.show());
    expect(() => hm.addHost({ subnet: '198.19.2.1/24', publicIp: '198.18.0.2', vtepMac: '2e:11:22:33:44:ff' })).toThrow('Invalid prefix for given prefix length.');
    expect(() => hm.addHost({ subnet: '198.19.2.0/24', publicIp: '198.18.0', vtepMac: '2e:11:22:33:44:01' })).toThrow('"198.18.0"');
    expect(() => hm.addHost({ subnet: '198.19.2.0/24', publicIp: '198.18.0.9', vtepMac: '01:00:5e:00:00:01' })).toThrow(/multicast/);
    expect(() => hm.addHost({ subnet: '198.19.2.0/24', publicIp: '198.18.0.9', vtepMac: '2e:11:22:33:44:01', vni: 1 << 24 })).toThrow(/VNI 16777216/);
    expect(() => hm.addHost({ subnet: '198.19.2.0/24', publicIp: '198.18.0.9', vtepMac: '2e:11:22:33:44:01', port: 65536 })).toThrow(/port 65536/);
    expect(JSON.stringify(hm.show())).toBe(before);
    // A full FDB refuses a new host before touching anything; a move at the limit still works.
    const small = new HostModel({ vni: 1, fdb: new Fdb({ vni: 1, maxEntries: 1 }) });
    small.addHost({ subnet: '198.19.2.0/24', publicIp: '198.18.0.2', vtepMac: '2e:11:22:33:44:ff' });
    expect(() => small.addHost({ subnet: '198.19.3.0/24', publicIp: '198.18.0.3', vtepMac: '2e:11:22:33:44:ee' })).toThrow(/FDB full/);
    expect([small.routes.size, small.neigh.size, small.fdb.size, small.size]).toEqual([1, 1, 1, 1]);
    expect(small.addHost({ subnet: '198.19.2.0/24', publicIp: '198.18.0.3', vtepMac: '2e:11:22:33:44:ee' })).toBe('moved');
    expect(small.check()).toEqual([]);
  });

  it('keeps 1/1/1 per host and answers only the current owner under random add/move/remove (model-based)', () => {
    const subnetArb = fc.integer({ min: 0, max: 11 }).map((i) => `198.19.${i}.0/24`);
    const hostArb = fc.integer({ min: 0, max: 7 }).map((h) => ({ publicIp: `198.18.0.${h + 1}`, vtepMac: formatMac(0x0e0000000000 + h) }));
    const opArb = fc.oneof(
      fc.record({ kind: fc.constant('add' as const), subnet: subnetArb, host: hostArb }),
      fc.record({ kind: fc.constant('remove' as const), subnet: subnetArb }),
    );
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 60 }), (ops) => {
        const hm = new HostModel({ vni: 1 });
        const model = new Map<string, Host>();
        // Several subnets may share one VTEP MAC (one FDB entry); the last add decides where the MAC points.
        const macDest = new Map<string, string>();
        for (const op of ops) {
          if (op.kind === 'add') {
            const h = { subnet: op.subnet, ...op.host };
            const prev = model.get(op.subnet);
            const want = !prev ? 'added' : prev.vtepMac === h.vtepMac && macDest.get(h.vtepMac) === h.publicIp ? 'unchanged' : 'moved';
            expect(hm.addHost(h)).toBe(want);
            model.set(op.subnet, h);
            macDest.set(h.vtepMac, h.publicIp);
          } else {
            expect(hm.removeHost(op.subnet)).toBe(model.delete(op.subnet));
          }
          for (const m of [...macDest.keys()]) if (![...model.values()].some((x) => x.vtepMac === m)) macDest.delete(m);
          // Every subnet answers its current owner, and only that.
          for (let i = 0; i <= 11; i++) {
            const owner = model.get(`198.19.${i}.0/24`);
            const e = hm.resolve(ip(`198.19.${i}.9`));
            if (!owner) expect(e).toBeUndefined();
            else expect(u32ToIpv4(e!.dests[0]!.ip)).toBe(macDest.get(owner.vtepMac));
          }
          expect([hm.routes.size, hm.neigh.size, hm.size, hm.fdb.size]).toEqual([model.size, model.size, model.size, macDest.size]);
          expect(hm.check()).toEqual([]);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('with distinct MACs per host: exactly 1/1/1 and check() clean after any sequence', () => {
    const opArb = fc.record({ remove: fc.boolean(), subnet: fc.integer({ min: 0, max: 15 }), ip: fc.integer({ min: 1, max: 250 }), macTag: fc.integer({ min: 0, max: 3 }) });
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 80 }), (ops) => {
        const hm = new HostModel({ vni: 4 });
        const model = new Map<number, { ip: number; mac: number }>();
        for (const op of ops) {
          // MAC unique per subnet (encodes the subnet), so FDB entries never collide across subnets.
          const mac = 0x0e0000000000 + op.subnet * 16 + op.macTag;
          const subnet = `10.4.${op.subnet}.0/24`;
          if (op.remove) {
            hm.removeHost(subnet);
            model.delete(op.subnet);
          } else {
            hm.addHost({ subnet, publicIp: `198.18.1.${op.ip}`, vtepMac: mac });
            model.set(op.subnet, { ip: op.ip, mac });
          }
          expect([hm.routes.size, hm.neigh.size, hm.fdb.size]).toEqual([model.size, model.size, model.size]);
        }
        expect(hm.check()).toEqual([]);
        for (const [sn, h] of model) {
          const e = hm.resolve(ip(`10.4.${sn}.200`))!;
          expect(e.mac).toBe(h.mac);
          expect(e.dests).toHaveLength(1);
          expect(e.dests[0]!.ip).toBe(ip(`198.18.1.${h.ip}`));
        }
        const json = JSON.parse(JSON.stringify(hm));
        const again = new HostModel({ vni: 4 });
        again.importJSON(json);
        expect(again.show()).toEqual(hm.show());
      }),
      { numRuns: 300 },
    );
  });

  it('sends to the host VNI/port and round-trips hosts through JSON', () => {
    const hm = new HostModel({ vni: 1 });
    hm.addHost({ subnet: '198.19.2.0/24', publicIp: '198.18.0.2', vtepMac: '2e:11:22:33:44:ff', vni: 7, port: 4790 });
    expect(hm.fdb.show()).toBe('2e:11:22:33:44:ff dev flannel.1 dst 198.18.0.2 port 4790 vni 7 self permanent');
    expect(hm.hosts()).toEqual([{ subnet: '198.19.2.0/24', publicIp: '198.18.0.2', vtepMac: '2e:11:22:33:44:ff', vni: 7, port: 4790 }]);
    const b = new HostModel({ vni: 1 });
    b.importJSON(JSON.parse(JSON.stringify(hm)));
    expect(b.show()).toEqual(hm.show());
  });
});
