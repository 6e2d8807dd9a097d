import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { RouteTable4, RouteTable6 } from '../../src/fdb/index.js';
import { I32Map, WordsMap } from '../../src/fdb/internal.js';
import { ipv4ToU32 } from '../../src/codec/addr.js';

const mask4 = (l: number): number => (l === 0 ? 0 : (0xffffffff << (32 - l)) >>> 0);
const LENS = [0, 1, 7, 8, 12, 16, 20, 23, 24, 25, 28, 31, 32];

type Op = { kind: 'add' | 'replace' | 'del'; addr: number; len: number; pick: number; gw: number };
const opArb = fc.record({
  kind: fc.constantFrom<'add' | 'replace' | 'del'>('add', 'add', 'replace', 'del'),
  // Few distinct top bits so prefixes nest and collide.
  addr: fc.tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 0x3fffffff })).map(([hi, lo]) => ((hi << 30) | lo) >>> 0),
  len: fc.oneof(fc.constantFrom(...LENS), fc.integer({ min: 0, max: 32 })),
  pick: fc.nat(),
  gw: fc.integer({ min: 1, max: 0xffffffff }),
});

function oracle4(routes: Map<string, { prefix: number; len: number; gw: number }>, dst: number): { prefix: number; len: number; gw: number } | undefined {
  let best: { prefix: number; len: number; gw: number } | undefined;
  for (const r of routes.values()) if (((dst & mask4(r.len)) >>> 0) === r.prefix && (!best || r.len > best.len)) best = r;
  return best;
}

describe('RouteTable4 longest-prefix match', () => {
  it('matches a brute-force oracle after random adds, replaces and deletes', () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 120 }), fc.array(fc.integer({ min: 0, max: 0xffffffff }), { minLength: 20, maxLength: 60 }), (ops, probes) => {
        const t = new RouteTable4<number>();
        const o = new Map<string, { prefix: number; len: number; gw: number }>();
        for (const op of ops) {
          const prefix = (op.addr & mask4(op.len)) >>> 0;
          const key = `${prefix}/${op.len}`;
          if (op.kind === 'del') {
            const keys = [...o.keys()];
            if (keys.length === 0) {
              expect(t.delete({ prefix, prefixLen: op.len })).toBe(false);
              continue;
            }
            const victim = o.get(keys[op.pick % keys.length]!)!;
            expect(t.delete({ prefix: victim.prefix, prefixLen: victim.len })).toBe(true);
            o.delete(`${victim.prefix}/${victim.len}`);
          } else if (op.kind === 'add') {
            if (o.has(key)) {
              expect(() => t.add({ dst: { prefix, prefixLen: op.len }, via: op.gw, dev: 'flannel.1', onlink: true })).toThrow(/File exists/);
            } else {
              t.add({ dst: { prefix, prefixLen: op.len }, via: op.gw, dev: 'flannel.1', onlink: true, peer: op.gw });
              o.set(key, { prefix, len: op.len, gw: op.gw });
            }
          } else {
            t.replace({ dst: { prefix, prefixLen: op.len }, via: op.gw, dev: 'flannel.1', onlink: true, peer: op.gw });
            o.set(key, { prefix, len: op.len, gw: op.gw });
          }
        }
        expect(t.size).toBe(o.size);
        // Probe random addresses and addresses inside every stored prefix.
        const dsts = [...probes];
        for (const r of o.values()) dsts.push((r.prefix | (probes[0]! & ~mask4(r.len))) >>> 0, r.prefix, (r.prefix | ~mask4(r.len)) >>> 0);
        for (const d of dsts) {
          const want = oracle4(o, d);
          const got = t.lookup(d);
          if (!want) expect(got).toBeUndefined();
          else {
            expect(got, `dst ${d}`).toBeDefined();
            expect(got!.prefix).toBe(want.prefix);
            expect(got!.prefixLen).toBe(want.len);
            expect(got!.gateway).toBe(want.gw);
            expect(got!.peer).toBe(want.gw);
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  it('keeps every route reachable under dense add/delete churn within one prefix length', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 0, max: 0xffffff }), { minLength: 64, maxLength: 64 }), fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 63 })), { maxLength: 400 }), (pool, ops) => {
        // Random (not sequential) /24s so hash probes collide and deletes must shift chains.
        const t = new RouteTable4();
        const o = new Set<number>();
        const p = (i: number): number => (pool[i]! * 256) >>> 0;
        for (const [del, i] of ops) {
          if (del) expect(t.deleteExact(p(i), 24)).toBe(o.delete(i));
          else {
            t.replace({ dst: { prefix: p(i), prefixLen: 24 }, dev: 'flannel.1' });
            o.add(i);
          }
          expect(t.size).toBe(o.size);
        }
        for (let i = 0; i <= 63; i++) expect(t.lookup(p(i) + 5)?.prefix).toBe(o.has(i) ? p(i) : undefined);
      }),
      { numRuns: 300 },
    );
  });

  it('handles many /24 and /32 routes plus a default (flannel shape)', () => {
    const t = new RouteTable4();
    t.add({ dst: 'default', via: '198.18.0.1', dev: 'eth0' });
    for (let i = 0; i < 5000; i++) t.add({ dst: { prefix: (0x0a000000 + i * 256) >>> 0, prefixLen: 24 }, via: (0x0a000000 + i * 256) >>> 0, onlink: true, dev: 'flannel.1' });
    t.add({ dst: '10.0.5.7/32', via: '10.0.5.7', dev: 'flannel.1', onlink: true });
    expect(t.lookup(ipv4ToU32('10.0.5.7'))!.prefixLen).toBe(32);
    expect(t.lookup(ipv4ToU32('10.0.5.8'))!.prefixLen).toBe(24);
    expect(t.lookup(ipv4ToU32('10.19.135.1'))!.dst).toBe('10.19.135.0/24');
    expect(t.lookup(ipv4ToU32('10.200.0.1'))!.dst).toBe('default');
    t.delete('default');
    expect(t.lookup(ipv4ToU32('10.200.0.1'))).toBeUndefined();
    expect(t.size).toBe(5001);
  });

  it('prints like ip route', () => {
    const t = new RouteTable4();
    t.add({ dst: '198.19.2.0/24', via: '198.19.2.0', dev: 'flannel.1', onlink: true });
    t.add({ dst: '198.19.3.5/32', via: '198.19.3.5', dev: 'flannel.1', onlink: true });
    t.add({ dst: '198.19.9.0/24', dev: 'flannel.1' });
    t.add({ dst: 'default', via: '198.19.2.0', dev: 'flannel.1', onlink: true });
    t.add({ dst: '198.19.1.0/32', dev: 'flannel.1', kind: 'local' });
    expect(t.show().split('\n')).toEqual([
      'default via 198.19.2.0 dev flannel.1 onlink',
      'local 198.19.1.0 dev flannel.1 scope host',
      '198.19.2.0/24 via 198.19.2.0 dev flannel.1 onlink',
      '198.19.3.5 via 198.19.3.5 dev flannel.1 onlink',
      '198.19.9.0/24 dev flannel.1 scope link',
    ]);
  });

  it('round-trips through JSON', () => {
    const t = new RouteTable4();
    t.add({ dst: '198.19.2.0/24', via: '198.19.2.0', dev: 'flannel.1', onlink: true });
    t.add({ dst: '198.19.9.0/24', dev: 'flannel.1' });
    t.add({ dst: '198.19.1.0/32', dev: 'flannel.1', kind: 'local' });
    const json = JSON.parse(JSON.stringify(t));
    const u = RouteTable4.fromJSON(json);
    expect(u.show()).toBe(t.show());
    expect(u.toJSON()).toEqual(json);
  });

  it('refuses bad input with ip-route style messages naming the value', () => {
    const t = new RouteTable4();
    expect(() => t.add({ dst: '198.19.2.1/24', dev: 'flannel.1' })).toThrow('Invalid prefix for given prefix length.');
    expect(() => t.add({ dst: '198.19.2.1/24', dev: 'flannel.1' })).toThrow('198.19.2.1/24');
    expect(() => t.add({ dst: '198.19.2.0/33', dev: 'flannel.1' })).toThrow('"198.19.2.0/33"');
    expect(() => t.add({ dst: '300.1.1.0/24', dev: 'flannel.1' })).toThrow('"300.1.1.0/24"');
    expect(() => t.add({ dst: '198.19.2.0/24', via: '1.2.3', dev: 'flannel.1' })).toThrow('"1.2.3"');
    expect(() => t.add({ dst: { prefix: 0xc6130201, prefixLen: 24 }, dev: 'flannel.1' })).toThrow('Invalid prefix for given prefix length.');
    expect(() => t.add({ dst: '198.19.2.0/24', dev: 'this-name-is-too-long' })).toThrow('"this-name-is-too-long"');
    expect(() => t.add({ dst: '198.19.2.0/24', via: '198.19.2.0', kind: 'local', dev: 'x' })).toThrow(/local route/);
    t.add({ dst: '198.19.2.0/24', dev: 'flannel.1' });
    expect(() => t.add({ dst: '198.19.2.0/24', dev: 'flannel.1' })).toThrow('RTNETLINK answers: File exists');
    expect(t.delete('198.19.3.0/24')).toBe(false);
  });

});

describe('RouteTable6 longest-prefix match', () => {
  const mask6 = (a: Uint8Array, l: number): Uint8Array => {
    const o = new Uint8Array(16);
    for (let i = 0; i < 16; i++) {
      const keep = l >= (i + 1) * 8 ? 8 : l <= i * 8 ? 0 : l - i * 8;
      o[i] = a[i]! & ((0xff << (8 - keep)) & 0xff);
    }
    return o;
  };
  const eq = (a: Uint8Array, b: Uint8Array): boolean => a.every((x, i) => x === b[i]);
  const addrArb = fc.tuple(fc.integer({ min: 0, max: 3 }), fc.uint8Array({ minLength: 16, maxLength: 16 })).map(([pool, b]) => {
    // Share leading bytes across a small pool so prefixes nest.
    const a = new Uint8Array(b);
    a[0] = 0x20;
    a[1] = pool;
    if (pool < 2) for (let i = 2; i < 8; i++) a[i] = 0;
    return a;
  });

  it('matches a brute-force oracle after random adds and deletes', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ addr: addrArb, len: fc.oneof(fc.constantFrom(0, 16, 48, 56, 64, 96, 127, 128), fc.integer({ min: 0, max: 128 })), del: fc.boolean(), pick: fc.nat() }), { minLength: 1, maxLength: 80 }),
        fc.array(addrArb, { minLength: 10, maxLength: 30 }),
        (ops, probes) => {
          const t = new RouteTable6<number>();
          const o: { p: Uint8Array; l: number; id: number }[] = [];
          ops.forEach((op, id) => {
            if (op.del && o.length > 0) {
              const [v] = o.splice(op.pick % o.length, 1);
              expect(t.delete({ prefix: v!.p, prefixLen: v!.l })).toBe(true);
              return;
            }
            const p = mask6(op.addr, op.len);
            const i = o.findIndex((x) => x.l === op.len && eq(x.p, p));
            if (i >= 0) o.splice(i, 1);
            o.push({ p, l: op.len, id });
            t.replace({ dst: { prefix: p, prefixLen: op.len }, dev: 'flannel-v6.1', peer: id });
          });
          expect(t.size).toBe(o.length);
          const dsts = [...probes];
          for (const x of o) {
            const d = new Uint8Array(probes[0]!);
            const m = mask6(new Uint8Array(16).fill(0xff), x.l);
            for (let i = 0; i < 16; i++) d[i] = (x.p[i]! & m[i]!) | (d[i]! & ~m[i]! & 0xff);
            dsts.push(d, Uint8Array.from(x.p));
          }
          for (const d of dsts) {
            let best: { p: Uint8Array; l: number; id: number } | undefined;
            for (const x of o) if (eq(mask6(d, x.l), x.p) && (!best || x.l > best.l)) best = x;
            const buf = new Uint8Array(20);
            buf.set(d, 3);
            const got = t.lookup(buf, 3);
            if (!best) expect(got).toBeUndefined();
            else {
              expect(got?.prefixLen).toBe(best.l);
              expect(got?.peer).toBe(best.id);
            }
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it('prints like ip -6 route, refuses host bits, and round-trips JSON', () => {
    const t = new RouteTable6();
    t.add({ dst: '2001:db8:2::/64', via: 'fe80::1', dev: 'flannel.1', onlink: true });
    t.add({ dst: '2001:db8:3::/64', dev: 'flannel.1' });
    expect(t.show().split('\n')).toEqual([
      '2001:db8:2::/64 via fe80::1 dev flannel.1 metric 1024 onlink pref medium',
      '2001:db8:3::/64 dev flannel.1 metric 1024 pref medium',
    ]);
    expect(() => t.add({ dst: '2001:db8:3::1/64', dev: 'flannel.1' })).toThrow('Invalid prefix for given prefix length.');
    expect(() => t.add({ dst: '2001:db8:::/64', dev: 'flannel.1' })).toThrow('"2001:db8:::/64"');
    expect(() => t.add({ dst: '2001:db8::/129', dev: 'flannel.1' })).toThrow('"2001:db8::/129"');
    const u = RouteTable6.fromJSON(JSON.parse(JSON.stringify(t)));
    expect(u.show()).toBe(t.show());
  });
});

describe('internal hash maps', () => {
  it('I32Map agrees with Map under random set/delete (backward-shift delete)', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.boolean(), fc.integer({ min: -40, max: 40 }).map((x) => x * 0x01000193 | 0), fc.nat(1000)), { maxLength: 400 }), (ops) => {
        const m = new I32Map();
        const o = new Map<number, number>();
        for (const [del, k, v] of ops) {
          if (del) expect(m.delete(k)).toBe(o.has(k) ? o.get(k) : -1), o.delete(k);
          else m.set(k, v), o.set(k, v);
        }
        expect(m.size).toBe(o.size);
        for (let k = -40; k <= 40; k++) {
          const key = k * 0x01000193 | 0;
          expect(m.get(key)).toBe(o.has(key) ? o.get(key) : -1);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('WordsMap agrees with Map under random set/delete', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 5 }), fc.integer({ min: 0, max: 30 }), fc.nat(1000)), { maxLength: 400 }), (ops) => {
        const m = new WordsMap(3);
        const o = new Map<string, number>();
        for (const [del, a, b, v] of ops) {
          const k = new Int32Array([a, 0, b * 0x9e3779b1]);
          const ks = `${a},${b}`;
          if (del) expect(m.delete(k)).toBe(o.get(ks) ?? -1), o.delete(ks);
          else m.set(k, v), o.set(ks, v);
        }
        expect(m.size).toBe(o.size);
        for (let a = 0; a <= 5; a++) for (let b = 0; b <= 30; b++) expect(m.get(new Int32Array([a, 0, b * 0x9e3779b1]))).toBe(o.get(`${a},${b}`) ?? -1);
      }),
      { numRuns: 300 },
    );
  });
});
