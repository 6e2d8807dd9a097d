import { describe, it, expect } from 'vitest';
import { Fdb } from '../../src/fdb/index.js';
import { ipv4ToU32 } from '../../src/codec/addr.js';

const ip = ipv4ToU32;
const A = 0x2e11223344aa;
const B = 0x2e11223344bb;

function clocked(opts: ConstructorParameters<typeof Fdb>[0] = {}): { f: Fdb; now: { v: number } } {
  const now = { v: 5_000_000 };
  return { f: new Fdb({ vni: 1, dev: 'flannel.1', ...opts, clock: () => now.v }), now };
}

describe('Fdb', () => {
  it('looks up exact entries, falls back to the all-zeros default (HER), else l2miss', () => {
    const { f } = clocked();
    const misses: [number, number][] = [];
    f.on('l2miss', (v, m) => misses.push([v, m]));
    f.add({ mac: '2e:11:22:33:44:aa', dst: '198.18.0.2' });
    expect(f.lookup(1, A)?.dests.map((d) => d.ip)).toEqual([ip('198.18.0.2')]);
    // no default yet: unknown unicast and broadcast miss
    expect(f.lookup(1, B)).toBeUndefined();
    expect(f.lookup(1, 0xffffffffffff)).toBeUndefined();
    expect(misses).toEqual([[1, B], [1, 0xffffffffffff]]);
    f.append({ mac: '00:00:00:00:00:00', dst: '198.18.0.3' });
    f.append({ mac: 0, dst: '198.18.0.4', port: 4790, dstVni: 7 });
    const e = f.lookup(1, 0xffffffffffff)!;
    expect(e.mac).toBe(0);
    expect(e.dests.map((d) => [d.ip, d.port, d.vni])).toEqual([[ip('198.18.0.3'), 0, 1], [ip('198.18.0.4'), 4790, 7]]);
    expect(f.lookup(1, B)?.dests.length).toBe(2);
    // other VNI: separate keyspace
    expect(f.lookup(2, A)).toBeUndefined();
    expect(misses.length).toBe(3);
    // exact get has no fallback
    expect(f.get(1, B)).toBeUndefined();
    const buf = Buffer.from([9, 0x2e, 0x11, 0x22, 0x33, 0x44, 0xaa]);
    expect(f.lookupBytes(1, buf, 1)?.mac).toBe(A);
  });

  it('add/replace/append/delete follow bridge fdb semantics', () => {
    const { f } = clocked();
    f.add({ mac: A, dst: '198.18.0.2' });
    expect(() => f.add({ mac: A, dst: '198.18.0.5' })).toThrow('File exists');
    f.replace({ mac: A, dst: '198.18.0.5' });
    expect(f.get(1, A)?.dests.map((d) => d.ip)).toEqual([ip('198.18.0.5')]);
    f.append({ mac: A, dst: '198.18.0.6' });
    expect(() => f.append({ mac: A, dst: '198.18.0.6' })).toThrow('File exists');
    f.append({ mac: A, dst: '2001:db8::1' });
    expect(f.get(1, A)?.dests.map((d) => d.family)).toEqual([4, 4, 6]);
    expect(f.delete(1, A, '198.18.0.5')).toBe(true);
    expect(f.delete(1, A, '198.18.0.5')).toBe(false);
    expect(f.delete(1, A, '2001:db8::1')).toBe(true);
    expect(f.get(1, A)?.dests.map((d) => d.ip)).toEqual([ip('198.18.0.6')]);
    expect(f.delete(1, A, '198.18.0.6')).toBe(true);
    expect(f.get(1, A)).toBeUndefined();
    expect(f.size).toBe(0);
  });

  it('learns, moves and refreshes learned entries; never overrides static ones', () => {
    const { f } = clocked();
    expect(f.learn(1, A, ip('198.18.0.2'), 4789)).toBe('new');
    expect(f.learn(1, A, ip('198.18.0.2'), 4789)).toBe('refreshed');
    expect(f.learn(1, A, ip('198.18.0.3'), 4789)).toBe('moved');
    expect(f.lookup(1, A)).toMatchObject({ state: 'learned', dests: [{ ip: ip('198.18.0.3'), port: 4789, vni: 1 }] });
    f.add({ mac: B, dst: '198.18.0.9' });
    expect(f.learn(1, B, ip('198.18.0.2'), 4789)).toBe('ignored');
    expect(f.lookup(1, B)?.dests[0]?.ip).toBe(ip('198.18.0.9'));
    expect(f.learn(1, 0x01005e000001, ip('198.18.0.2'), 4789)).toBe('ignored');
    expect(f.learn(1, 0, ip('198.18.0.2'), 4789)).toBe('ignored');
    f.learning = false;
    expect(f.learn(1, A + 5, ip('198.18.0.2'), 4789)).toBe('ignored');
    expect(f.size).toBe(2);
  });

  it('ages learned entries after 300 s by default (lazily and by sweep)', () => {
    const { f, now } = clocked();
    f.add({ mac: B, dst: '198.18.0.9' });
    f.learn(1, A, ip('198.18.0.2'), 0);
    f.learn(1, A + 1, ip('198.18.0.2'), 0);
    now.v += 299_000;
    f.learn(1, A + 1, ip('198.18.0.2'), 0); // refresh
    expect(f.lookup(1, A)).toBeDefined();
    now.v += 2_000;
    expect(f.lookup(1, A)).toBeUndefined(); // expired on lookup
    expect(f.size).toBe(2);
    now.v += 298_001;
    expect(f.sweep()).toBe(1);
    expect(f.size).toBe(1);
    now.v += 1e9;
    expect(f.lookup(1, B)).toBeDefined(); // permanent never ages
  });

  it('enforces maxEntries for learning and adds', () => {
    const { f } = clocked({ maxEntries: 2 });
    f.add({ mac: B, dst: '198.18.0.9' });
    expect(f.learn(1, A, ip('198.18.0.2'), 0)).toBe('new');
    expect(f.learn(1, A + 1, ip('198.18.0.2'), 0)).toBe('ignored');
    expect(() => f.add({ mac: A + 2, dst: '198.18.0.2' })).toThrow(/full/);
    f.flush(true); // drops the learned entry
    expect(f.size).toBe(1);
    expect(f.learn(1, A + 1, ip('198.18.0.2'), 0)).toBe('new');
    f.replace({ mac: A + 1, dst: '198.18.0.7' }); // existing key at the limit: fine, becomes permanent
    expect(f.get(1, A + 1)?.state).toBe('permanent');
    f.flush(true);
    expect(f.size).toBe(2);
  });

  it('rate-limits l2miss per key and in total', () => {
    const { f, now } = clocked({ missIntervalMs: 500, missBurst: 2 });
    const seen: number[] = [];
    f.on('l2miss', (_v, m) => seen.push(m));
    for (let i = 0; i < 10; i++) f.lookup(1, A);
    f.lookup(1, B);
    f.lookup(1, B + 1);
    expect(seen).toEqual([A, B]);
    now.v += 500;
    f.lookup(1, B + 1);
    expect(seen).toEqual([A, B, B + 1]);
  });

  it('prints like bridge fdb show and round-trips JSON', () => {
    const { f } = clocked({ dstPort: 8472 });
    f.add({ mac: '2e:11:22:33:44:ff', dst: '198.18.0.2' });
    f.append({ mac: '00:00:00:00:00:00', dst: '198.18.0.3' });
    f.append({ mac: '00:00:00:00:00:00', dst: '198.18.0.4', port: 4790, dstVni: 7 });
    f.add({ mac: '2e:11:22:33:44:ee', dst: '198.18.0.5', port: 8472, state: 'static' });
    f.learn(1, A, ip('198.18.0.6'), 8472);
    expect(f.show().split('\n')).toEqual([
      '2e:11:22:33:44:aa dev flannel.1 dst 198.18.0.6 self',
      '2e:11:22:33:44:ee dev flannel.1 dst 198.18.0.5 self static',
      '2e:11:22:33:44:ff dev flannel.1 dst 198.18.0.2 self permanent',
      '00:00:00:00:00:00 dev flannel.1 dst 198.18.0.3 self permanent',
      '00:00:00:00:00:00 dev flannel.1 dst 198.18.0.4 port 4790 vni 7 self permanent',
    ]);
    const json = JSON.parse(JSON.stringify(f));
    const g = Fdb.fromJSON(json, { vni: 1, dev: 'flannel.1', dstPort: 8472, clock: () => 5_000_000 });
    expect(g.show()).toBe(f.show());
    expect(g.toJSON()).toEqual(json);
  });

  it('refuses bad input with errors naming the value', () => {
    const f = new Fdb();
    expect(() => f.add({ mac: '01:00:5e:00:00:01', dst: '198.18.0.2' })).toThrow(/01:00:5e:00:00:01.*multicast/);
    expect(() => f.add({ mac: 'ff:ff:ff:ff:ff:ff', dst: '198.18.0.2' })).toThrow(/ff:ff:ff:ff:ff:ff/);
    expect(() => f.add({ mac: 'zz:11:22:33:44:55', dst: '198.18.0.2' })).toThrow('"zz:11:22:33:44:55"');
    expect(() => f.add({ mac: A, vni: 16777216, dst: '198.18.0.2' })).toThrow(/VNI 16777216/);
    expect(() => f.add({ mac: A, vni: -1, dst: '198.18.0.2' })).toThrow(/VNI -1/);
    expect(() => f.add({ mac: A, dst: '198.18.0.2', dstVni: 2 ** 24 })).toThrow(/VNI 16777216/);
    expect(() => f.add({ mac: A, dst: '198.18.0.2', port: 70000 })).toThrow(/port 70000/);
    expect(() => f.add({ mac: A, dst: '198.18.0.2', port: 1.5 })).toThrow(/port 1.5/);
    expect(() => f.add({ mac: A, dst: '198.18.0.256' })).toThrow('"198.18.0.256"');
    expect(() => f.add({ mac: A, dst: '2001:db8:::1' })).toThrow('"2001:db8:::1"');
    expect(() => f.get(1 << 24, A)).toThrow(/VNI/);
    expect(f.size).toBe(0);
  });

  it('missOnDefault: l2miss for unknown unicast even while the all-zeros entry floods it (not for group MACs)', () => {
    const f = new Fdb({ vni: 1, missOnDefault: true });
    const misses: number[] = [];
    f.on('l2miss', (_v, m) => misses.push(m));
    f.append({ mac: 0, dst: '198.18.0.2' });
    expect(f.lookup(1, 0x020000000077)?.mac).toBe(0);
    expect(misses).toEqual([0x020000000077]);
    const frame = Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x00, 0x5e, 0, 0, 1]);
    expect(f.lookupBytes(1, frame, 0)?.mac).toBe(0);
    expect(f.lookupBytes(1, frame, 6)?.mac).toBe(0);
    expect(misses).toHaveLength(1);
    const g = new Fdb({ vni: 1 });
    const gm: number[] = [];
    g.on('l2miss', (_v, m) => gm.push(m));
    g.append({ mac: 0, dst: '198.18.0.2' });
    g.lookup(1, 0x020000000077);
    expect(gm).toEqual([]);
    g.delete(1, 0);
    expect(g.lookup(1, 0x020000000077)).toBeUndefined();
    expect(gm).toEqual([0x020000000077]);
  });
});
