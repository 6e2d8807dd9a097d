/**
 * Dual stack as flanneld configures and stores it (pure logic, no etcd): net-conf.json's IPv6
 * keys with flannel's defaults and checks, dual-stack and IPv6-only lease keys and values both
 * ways (flanneld's JSON byte for byte), an unusable IPv6 half logged and dropped (never a throw
 * of anything but a ConfigError, property-tested on junk), subnet.env with the IPv6 pair,
 * free IPv6 subnets, the IPv6 VTEP MAC, and the refusal of EnableIPv6 by an IPv4-only dataplane.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ConfigError, PeersParse, defaultBackendFactory, freeSubnets, gatewayForm, ipPrefix, ipv6Refusal, leaseKey, leaseNetworks, leaseToEtcd, leaseToJson,
  parseCli, parseEnvFile, parseLeaseAttrs, parseLeaseKey, parseNetConf, parsePeers, previousSubnet, renderSubnetEnv, resolveConfig, stableVtepMac, subnetFits,
  validateSubnet, type BackendFactory, type Lease,
} from '../../src/index.js';
import { FAKE, NODE_ARGS, ROOT, configErrorOf } from './helpers.js';

const err = configErrorOf;

const DUAL = { Network: '198.19.0.0/16', EnableIPv6: true, IPv6Network: '2001:2:8000::/48', Backend: { Type: 'vxlan' } };

describe('net-conf.json: EnableIPv6, IPv6Network, IPv6SubnetLen, IPv6SubnetMin/Max, EnableIPv4', () => {
  it('flannel\'s defaults (its own test case: fc00::/48, IPv6 only): /64, the second subnet to the last', () => {
    const c = parseNetConf('{ "enableIPv6": true, "ipv6Network": "fc00::/48", "enableIPv4": false }');
    expect(c.ipv6).toMatchObject({ network: 'fc00::/48', subnetLen: 64, subnetMin: 'fc00:0:0:1::/64', subnetMax: 'fc00:0:0:ffff::/64' });
    // IPv6-only: the network leases are known by is the IPv6 one
    expect(c).toMatchObject({ enableIPv4: false, network: 'fc00::/48', subnetLen: 64, subnetMin: 'fc00:0:0:1::/64' });
    expect(c.warnings).toEqual([]);
  });
  it('flannel\'s overrides case, and the small-network default (length + 2) as for IPv4', () => {
    const c = parseNetConf('{ "EnableIPv6": true, "IPv6Network": "fc00::/48", "IPv6SubnetMin": "fc00:0:0:1::", "IPv6SubnetMax": "fc00:0:0:f::", "IPv6SubnetLen": 124, "enableIPv4": false }');
    expect(c.ipv6).toMatchObject({ subnetLen: 124, subnetMin: 'fc00:0:0:1::/124', subnetMax: 'fc00:0:0:f::/124' });
    expect(parseNetConf(JSON.stringify({ ...DUAL, IPv6Network: '2001:2:8000::/100' })).ipv6).toMatchObject({ subnetLen: 102, subnetMin: '2001:2:8000::400:0/102', subnetMax: '2001:2:8000::c00:0/102' });
  });
  it('dual stack: the IPv4 network stays the primary one, the IPv6 one beside it', () => {
    const c = parseNetConf(JSON.stringify(DUAL));
    expect(c).toMatchObject({ enableIPv4: true, network: '198.19.0.0/16', subnetLen: 24, ipv6: { network: '2001:2:8000::/48', subnetLen: 64, subnetMin: '2001:2:8000:1::/64', subnetMax: '2001:2:8000:ffff::/64' } });
    // keys of the family not enabled are warned about, not errors
    expect(parseNetConf('{"Network": "198.19.0.0/16", "IPv6SubnetLen": 60}').warnings).toEqual(['net-conf.json: "IPv6SubnetLen" is not used (EnableIPv6 is not true); ignored']);
    expect(parseNetConf('{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "2001:2::/48", "SubnetLen": 26}').warnings).toEqual(['net-conf.json: "SubnetLen" is not used (EnableIPv4 is false); ignored']);
  });
  it.each([
    [{ EnableIPv6: true, Network: '198.19.0.0/16' }, /^net-conf\.json: "IPv6Network" \(an IPv6 CIDR\) is required when EnableIPv6 is true$/],
    [{ EnableIPv4: false, EnableIPv6: false, Network: '198.19.0.0/16' }, /EnableIPv4 and EnableIPv6 are both false/],
    [{ EnableIPv4: false }, /both false/],
    [{ EnableIPv6: 'yes', Network: '198.19.0.0/16' }, /EnableIPv6 must be true or false, got "yes"/],
    [{ ...DUAL, IPv6Network: '198.20.0.0/16' }, /IPv6Network "198\.20\.0\.0\/16" is not an IPv6 CIDR/],
    [{ ...DUAL, IPv6Network: '2001:2:8000::1/48' }, /IPv6Network "2001:2:8000::1\/48" has host bits set \(did you mean 2001:2:8000::\/48\?\)/],
    [{ ...DUAL, IPv6Network: '2001:2:8000::/125' }, /IPv6Network 2001:2:8000::\/125 is too small \(smaller than a \/124\)/],
    [{ ...DUAL, IPv6SubnetLen: 127 }, /IPv6SubnetLen 127 is too long \(at most 126\)/],
    [{ ...DUAL, IPv6SubnetLen: 49 }, /IPv6SubnetLen 49 must be at least IPv6Network's length \+ 2 \(50\)/],
    [{ ...DUAL, IPv6SubnetLen: 129 }, /IPv6SubnetLen must be an integer in 0\.\.128, got 129/],
    [{ ...DUAL, IPv6SubnetMin: '2001:2:9000:1::' }, /IPv6SubnetMin 2001:2:9000:1:: is not in the range of the IPv6Network 2001:2:8000::\/48/],
    [{ ...DUAL, IPv6SubnetMax: '2001:2:8000:1::1' }, /IPv6SubnetMax 2001:2:8000:1::1 is not on a IPv6SubnetLen \(\/64\) boundary/],
    [{ ...DUAL, IPv6SubnetMin: '198.19.0.1' }, /IPv6SubnetMin "198\.19\.0\.1" is not an IPv6 address/],
    [{ ...DUAL, IPv6SubnetMin: '2001:2:8000:9::', IPv6SubnetMax: '2001:2:8000:3::' }, /IPv6SubnetMin 2001:2:8000:9:: is above IPv6SubnetMax 2001:2:8000:3::/],
  ])('rejects %j in one line', (conf, re) => {
    expect(err(() => parseNetConf(JSON.stringify(conf)))).toMatch(re);
  });
  it('property: any value of the IPv6 keys gives a config or a one-line ConfigError naming a key; any case of the keys means the same', () => {
    const anyJson = fc.jsonValue();
    const addr6 = fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 8, maxLength: 8 }).map((w) => w.map((x) => x.toString(16)).join(':'));
    const conf = fc.record({
      EnableIPv4: fc.oneof(fc.boolean(), anyJson), EnableIPv6: fc.oneof(fc.constant(true), anyJson),
      IPv6Network: fc.oneof(fc.constantFrom('2001:2:8000::/48', '2001:2::/120', '::/0', 'fe80::/10'), addr6.map((a) => `${a}/64`), anyJson),
      IPv6SubnetLen: fc.oneof(fc.integer({ min: -2, max: 130 }), anyJson),
      IPv6SubnetMin: fc.oneof(addr6, fc.constant('2001:2:8000:1::'), anyJson), IPv6SubnetMax: fc.oneof(addr6, fc.constant('2001:2:8000:ff::'), anyJson),
    }, { requiredKeys: [] });
    fc.assert(fc.property(conf, (c) => {
      let m = '';
      try {
        const n = parseNetConf(JSON.stringify({ Network: '198.19.0.0/16', ...c }));
        if (n.ipv6) {
          // what parses is consistent: Min <= Max, both inside, on the boundary
          const r = n.ipv6;
          expect(r.networkCidr.covers(ipPrefix(r.subnetMin))).toBe(true);
          expect(r.networkCidr.covers(ipPrefix(r.subnetMax))).toBe(true);
          expect(freeSubnets(r, [], 1)).toEqual([r.subnetMin]);
        }
      } catch (e) {
        expect(e).toBeInstanceOf(ConfigError);
        m = (e as Error).message;
      }
      expect(m).not.toMatch(/[\n\u0000-\u001f]/);
      if (m !== '') expect(m).toMatch(/^net-conf\.json: /);
    }), { numRuns: 2000 });
    const keys = { EnableIPv4: true, EnableIPv6: true, IPv6Network: '2001:2:8000::/40', IPv6SubnetLen: 56, IPv6SubnetMin: '2001:2:8000:100::', IPv6SubnetMax: '2001:2:80ff:ff00::' };
    const canonical = parseNetConf(JSON.stringify({ Network: '198.19.0.0/16', ...keys }));
    fc.assert(fc.property(fc.array(fc.boolean(), { minLength: 1, maxLength: 13 }), (bits) => {
      const recased = Object.fromEntries(Object.entries(keys).map(([k, v]) => [[...k].map((ch, i) => (bits[i % bits.length] ? ch.toUpperCase() : ch.toLowerCase())).join(''), v]));
      expect(parseNetConf(JSON.stringify({ Network: '198.19.0.0/16', ...recased }))).toEqual(canonical);
    }), { numRuns: 200 });
  });
  it('--ipv6-subnet: an IPv6SubnetLen-long subnet inside IPv6Network, in network form', () => {
    const c = parseNetConf(JSON.stringify(DUAL)).ipv6!;
    expect(validateSubnet('2001:2:8000:7::/64', c, '--ipv6-subnet').toString()).toBe('2001:2:8000:7::/64');
    expect(err(() => validateSubnet('2001:2:9000:7::/64', c, '--ipv6-subnet'))).toBe('--ipv6-subnet 2001:2:9000:7::/64 is outside IPv6Network 2001:2:8000::/48');
    expect(err(() => validateSubnet('2001:2:8000:7::/80', c, '--ipv6-subnet'))).toBe('--ipv6-subnet 2001:2:8000:7::/80 must be a /64 (IPv6SubnetLen in net-conf)');
    expect(err(() => validateSubnet('198.19.1.0/24', c, '--ipv6-subnet'))).toMatch(/not an IPv6 CIDR/);
  });
});

/** flanneld's JSON for a dual-stack VXLAN lease (pkg/lease LeaseAttrs as Go's encoding/json writes it). */
const FLANNEL_DUAL = '{"PublicIP":"198.18.0.9","PublicIPv6":"2001:2::9","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"5e:00:00:00:00:09"},"BackendV6Data":{"VNI":1,"VtepMAC":"5e:00:00:00:60:09"}}';
/** ... and for an IPv6-only one (no IPv4 device: PublicIP zero, no BackendData). */
const FLANNEL_V6ONLY = '{"PublicIP":"0.0.0.0","PublicIPv6":"2001:2::9","BackendType":"vxlan","BackendV6Data":{"VNI":1,"VtepMAC":"5e:00:00:00:60:09"}}';

describe('lease keys and values as flanneld writes them', () => {
  const conf = parseNetConf(JSON.stringify(DUAL));
  const nets = leaseNetworks(conf);
  const dual: Lease = {
    subnet: '198.19.9.0/24', publicIp: '198.18.0.9', backendType: 'vxlan', vni: 1, vtepMac: '5e:00:00:00:00:09',
    ipv6Subnet: '2001:2:8000:9::/64', publicIpv6: '2001:2::9', v6Vni: 1, v6VtepMac: '5e:00:00:00:60:09',
  };
  const only6: Lease = {
    subnet: '2001:2:8000:9::/64', publicIp: '2001:2::9', backendType: 'vxlan', vni: 1, vtepMac: '5e:00:00:00:60:09',
    ipv6Subnet: '2001:2:8000:9::/64', publicIpv6: '2001:2::9', v6Vni: 1, v6VtepMac: '5e:00:00:00:60:09',
  };

  it('keys: <v4>-<len>&<v6>-<len>, and 0.0.0.0-0&<v6>-<len> for IPv6 only (pkg/subnet MakeSubnetKey)', () => {
    expect(leaseKey(dual)).toBe('198.19.9.0-24&2001:2:8000:9::-64');
    expect(leaseKey(only6)).toBe('0.0.0.0-0&2001:2:8000:9::-64');
    expect(leaseKey({ subnet: '198.19.9.0/24', publicIp: '198.18.0.9', backendType: 'udp' })).toBe('198.19.9.0-24');
    const k = parseLeaseKey('/coreos.com/network/subnets/198.19.9.0-24&2001:2:8000:9::-64');
    expect([k.primary.toString(), k.v4?.toString(), k.v6?.toString(), k.v6Problem]).toEqual(['198.19.9.0/24', '198.19.9.0/24', '2001:2:8000:9::/64', undefined]);
    const o = parseLeaseKey('0.0.0.0-0&2001:2:8000:9::-64');
    expect([o.primary.toString(), o.v4, o.v6?.toString()]).toEqual(['2001:2:8000:9::/64', undefined, '2001:2:8000:9::/64']);
  });

  it('a malformed IPv6 part of a key is reported, and the key stays an IPv4 one; of an IPv6-only key it is an error', () => {
    for (const bad of ['2001:2:8000:9::1-64', '2001:2:8000:9::-129', '2001:2:8000:9::', 'junk-64', '2001:2:8000:9::-64&x', '2001:2:8000:A::-64', '']) {
      const k = parseLeaseKey(`198.19.9.0-24&${bad}`);
      expect(k.v4?.toString()).toBe('198.19.9.0/24');
      expect(k.v6).toBeUndefined();
      expect(k.v6Problem).toMatch(/^its IPv6 part ".*" is not an IPv6 subnet in network form$/);
      expect(err(() => parseLeaseKey(`0.0.0.0-0&${bad}`))).toMatch(/^subnet key "0\.0\.0\.0-0&.*": its IPv6 part/);
    }
  });

  it('values: flanneld\'s dual-stack and IPv6-only JSON parse, and ours render byte for byte the same', () => {
    expect(parseLeaseAttrs('198.19.9.0-24&2001:2:8000:9::-64', JSON.parse(FLANNEL_DUAL), 'etcd', nets)).toEqual(dual);
    expect(JSON.stringify(leaseToEtcd(dual).value)).toBe(FLANNEL_DUAL);
    expect(parseLeaseAttrs('0.0.0.0-0&2001:2:8000:9::-64', JSON.parse(FLANNEL_V6ONLY), 'etcd')).toEqual(only6);
    expect(JSON.stringify(leaseToEtcd(only6).value)).toBe(FLANNEL_V6ONLY);
    // host-gw: PublicIPv6, no backend data
    const hg = parseLeaseAttrs('198.19.9.0-24&2001:2:8000:9::-64', { PublicIP: '198.18.0.9', PublicIPv6: '2001:2::9', BackendType: 'host-gw' }, 'etcd', nets);
    expect(hg).toEqual({ subnet: '198.19.9.0/24', publicIp: '198.18.0.9', backendType: 'host-gw', ipv6Subnet: '2001:2:8000:9::/64', publicIpv6: '2001:2::9' });
    expect(leaseToJson(hg)).toBe('{"198.19.9.0-24&2001:2:8000:9::-64":{"PublicIP":"198.18.0.9","PublicIPv6":"2001:2::9","BackendType":"host-gw"}}');
    // a peers file with both kinds of lease, and an IPv4-only one beside them
    const m = parsePeers(JSON.stringify({ ...JSON.parse(leaseToJson(dual)), '198.19.3.0-24': { PublicIP: '198.18.0.3', PublicIPv6: null, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: '5e:00:00:00:00:03' } } }), 'peers.json', nets);
    expect([...m.keys()]).toEqual(['198.19.9.0/24', '198.19.3.0/24']);
    expect(m.get('198.19.9.0/24')).toEqual(dual);
    expect(m.get('198.19.3.0/24')!.ipv6Subnet).toBeUndefined();
  });

  it('an unusable IPv6 half (PublicIPv6, BackendV6Data, outside IPv6Network, malformed key part) is a note; the lease is used as IPv4', () => {
    const base = JSON.parse(FLANNEL_DUAL) as Record<string, unknown>;
    const cases: [string, Record<string, unknown>, RegExp][] = [
      ['198.19.9.0-24&2001:2:8000:9::-64', { ...base, PublicIPv6: 'nope' }, /PublicIPv6 "nope" is not an IPv6 address; its IPv6 half is not used$/],
      ['198.19.9.0-24&2001:2:8000:9::-64', { ...base, PublicIPv6: null }, /PublicIPv6 null is not an IPv6 address/],
      ['198.19.9.0-24&2001:2:8000:9::-64', { ...base, BackendV6Data: { VNI: 1, VtepMAC: 'zz' } }, /BackendV6Data\.VtepMAC "zz" is not a MAC address; its IPv6 half/],
      ['198.19.9.0-24&2001:2:8000:9::-64', { ...base, BackendV6Data: 7 }, /vxlan lease needs BackendV6Data/],
      ['198.19.9.0-24&2001:2:9999:9::-64', base, /IPv6 subnet 2001:2:9999:9::\/64 is outside IPv6Network 2001:2:8000::\/48/],
      ['198.19.9.0-24&2001:2:8000:9::1-64', base, /its IPv6 part "2001:2:8000:9::1-64" is not an IPv6 subnet in network form; used as an IPv4 lease$/],
    ];
    for (const [key, v, re] of cases) {
      const notes: string[] = [];
      const l = parseLeaseAttrs(key, v, 'etcd', nets, notes);
      expect(l).toEqual({ subnet: '198.19.9.0/24', publicIp: '198.18.0.9', backendType: 'vxlan', vni: 1, vtepMac: '5e:00:00:00:00:09' });
      expect(notes).toHaveLength(1);
      expect(notes[0]).toMatch(re);
    }
    // an IPv4 key with a PublicIPv6: kept (an IPv6 underlay address); a bad one is a note
    const n: string[] = [];
    expect(parseLeaseAttrs('198.19.9.0-24', { PublicIP: '198.18.0.9', PublicIPv6: '2001:2:0:0::9', BackendType: 'udp' }, 'etcd', nets, n).publicIpv6).toBe('2001:2::9');
    expect(parseLeaseAttrs('198.19.9.0-24', { PublicIP: '198.18.0.9', PublicIPv6: 5, BackendType: 'udp' }, 'etcd', nets, n).publicIpv6).toBeUndefined();
    expect(n).toEqual(['etcd: "198.19.9.0-24": PublicIPv6 5 is not an IPv6 address; not used']);
  });

  it('IPv6-only leases need their IPv6 half; they do not fit an IPv4 network; an IPv6-only network reads a dual-stack lease as its IPv6 half', () => {
    expect(err(() => parseLeaseAttrs('0.0.0.0-0&2001:2:8000:9::-64', { ...JSON.parse(FLANNEL_V6ONLY), BackendV6Data: null }, 'etcd'))).toMatch(/needs BackendV6Data/);
    expect(err(() => parseLeaseAttrs('0.0.0.0-0&2001:2:8000:9::-64', JSON.parse(FLANNEL_V6ONLY), 'etcd', nets))).toMatch(/is an IPv6-only lease \(no IPv4 subnet\), but Network 198\.19\.0\.0\/16 is IPv4/);
    const v6net = leaseNetworks(parseNetConf('{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "2001:2:8000::/48"}'));
    expect(parseLeaseAttrs('198.19.9.0-24&2001:2:8000:9::-64', JSON.parse(FLANNEL_DUAL), 'etcd', v6net)).toEqual({ ...only6 });
    expect(err(() => parseLeaseAttrs('198.19.9.0-24', JSON.parse(FLANNEL_DUAL), 'etcd', v6net))).toMatch(/has no IPv6 subnet, but the network is IPv6-only/);
  });

  it('a peers file: IPv6 subnets that overlap each other are named like IPv4 ones', () => {
    const a = { ...dual };
    const b = { ...dual, subnet: '198.19.10.0/24', ipv6Subnet: '2001:2:8000:9::/64', publicIp: '198.18.0.10' };
    const text = JSON.stringify({ ...JSON.parse(leaseToJson(a)), ...JSON.parse(leaseToJson(b)) });
    expect(err(() => parsePeers(text, 'peers.json', nets))).toMatch(/"2001:2:8000:9::-64" overlaps 2001:2:8000:9::-64/);
    const p = new PeersParse(JSON.stringify({ '198.19.9.0-24&2001:2:8000:9::-80': JSON.parse(FLANNEL_DUAL) }), 'peers.json', nets);
    p.step();
    expect(p.notes).toHaveLength(0); // -80 is in network form: a valid key (IPv6SubnetLen is the allocator's business, not the reader's)
  });

  it('property: any key and value give a lease or a one-line ConfigError, never another exception; notes are one line', () => {
    const key = fc.oneof(
      fc.string(),
      fc.tuple(fc.constantFrom('198.19.9.0-24', '0.0.0.0-0', '198.19.9.1-24'), fc.oneof(fc.string(), fc.constantFrom('2001:2:8000:9::-64', '::-0', 'ffff::-16', '2001:2:8000:9::-200'))).map(([a, b]) => `${a}&${b}`),
    );
    const anyJson = fc.jsonValue();
    const value = fc.oneof(anyJson, fc.record({
      PublicIP: fc.oneof(fc.constant('198.18.0.9'), fc.constant('0.0.0.0'), anyJson),
      PublicIPv6: fc.oneof(fc.constant('2001:2::9'), fc.constant(null), anyJson),
      BackendType: fc.constantFrom('vxlan', 'udp', 'host-gw', 'VXLAN', 'x'),
      BackendData: fc.oneof(fc.constant({ VNI: 1, VtepMAC: '5e:00:00:00:00:09' }), anyJson),
      BackendV6Data: fc.oneof(fc.constant({ VNI: 1, VtepMAC: '5e:00:00:00:60:09' }), anyJson),
    }, { requiredKeys: [] }));
    fc.assert(fc.property(key, value, fc.constantFrom(undefined, nets, { v6: nets.v6! }), (k, v, n) => {
      const notes: string[] = [];
      try {
        const l = parseLeaseAttrs(k, v, 'etcd', n, notes);
        // what parses renders back to a key that parses to the same subnets
        const back = parseLeaseKey(leaseKey(l));
        expect(back.primary.toString()).toBe(l.subnet);
        expect(back.v6?.toString()).toBe(l.ipv6Subnet);
      } catch (e) {
        expect(e).toBeInstanceOf(ConfigError);
        expect((e as Error).message).not.toMatch(/[\n\u0000-\u001f]/);
      }
      for (const x of notes) expect(x).not.toMatch(/[\n\u0000-\u001f]/);
    }), { numRuns: 3000 });
  });

  it('property: a dual-stack lease renders and parses back to itself', () => {
    const lease = fc.record({ a: fc.integer({ min: 1, max: 255 }), b: fc.integer({ min: 1, max: 0xffff }), mac: fc.integer({ min: 0, max: 0xffffff }), vni: fc.integer({ min: 0, max: 0xffffff }), bt: fc.constantFrom('udp', 'vxlan', 'host-gw') as fc.Arbitrary<Lease['backendType']> })
      .map(({ a, b, mac, vni, bt }): Lease => {
        const l: Lease = { subnet: `198.19.${a}.0/24`, publicIp: `198.18.0.${a}`, backendType: bt, ipv6Subnet: `2001:2:8000:${b.toString(16)}::/64`, publicIpv6: `2001:2::${a.toString(16)}` };
        if (bt === 'vxlan') Object.assign(l, { vni, vtepMac: stableVtepMac(l.subnet), v6Vni: vni, v6VtepMac: `0a:59:00:${((mac >> 16) & 255).toString(16).padStart(2, '0')}:${((mac >> 8) & 255).toString(16).padStart(2, '0')}:${(mac & 255).toString(16).padStart(2, '0')}` });
        return l;
      });
    fc.assert(fc.property(lease, (l) => {
      const { key, value } = leaseToEtcd(l);
      expect(parseLeaseAttrs(key, JSON.parse(JSON.stringify(value)), 'etcd', nets)).toEqual(l);
    }), { numRuns: 500 });
  });
});

describe('free IPv6 subnets', () => {
  it('between IPv6SubnetMin and IPv6SubnetMax, skipping taken ones (IPv4 prefixes ignored); agrees with brute force', () => {
    const c = parseNetConf(JSON.stringify({ ...DUAL, IPv6SubnetMin: '2001:2:8000:2::', IPv6SubnetMax: '2001:2:8000:9::' })).ipv6!;
    const taken = ['2001:2:8000:3::/64', '2001:2:8000:4::/63', '2001:2:8000:7:8000::/65', '198.19.0.0/16'].map((s) => ipPrefix(s));
    expect(freeSubnets(c, taken)).toEqual(['2001:2:8000:2::/64', '2001:2:8000:6::/64', '2001:2:8000:8::/64', '2001:2:8000:9::/64']);
    expect(freeSubnets(c, [ipPrefix('2001:2:8000::/48')])).toEqual([]);
    expect(subnetFits(c, '2001:2:8000:9::/64')).toBe(true);
    expect(subnetFits(c, '2001:2:8000:a::/64')).toBe(false);
    expect(subnetFits(c, '198.19.1.0/24')).toBe(false);
    expect(subnetFits(c, undefined)).toBe(false);
    // a huge range (a /16 of /64s: 2^48 candidates): still 100 at most, at once
    const big = parseNetConf(JSON.stringify({ ...DUAL, IPv6Network: '2001::/16' })).ipv6!;
    expect(freeSubnets(big, [ipPrefix('2001:0:0:1::/64')])).toHaveLength(100);
    expect(freeSubnets(big, [ipPrefix('2001:0:0:1::/64')])[0]).toBe('2001:0:0:2::/64');
    let seed = 7;
    const rnd = (n: number): number => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n; };
    const r = parseNetConf(JSON.stringify({ ...DUAL, IPv6Network: '2001:2:8000::/112', IPv6SubnetLen: 118 })).ipv6!;
    for (let round = 0; round < 50; round++) {
      const t = Array.from({ length: rnd(20) }, () => ipPrefix(`2001:2:8000::${rnd(65536).toString(16)}/${114 + rnd(10)}`, { hostBits: 'clear' }));
      const want: string[] = [];
      for (let n = 0x400; n <= 0xfc00; n += 0x400) {
        const p = ipPrefix(`2001:2:8000::${n.toString(16)}/118`);
        if (!t.some((x) => x.overlaps(p))) want.push(p.toString());
      }
      expect(freeSubnets(r, t)).toEqual(want);
    }
  });
});

describe('subnet.env with IPv6 (pkg/subnet WriteSubnetFile)', () => {
  it('dual stack: the IPv4 pair, the IPv6 pair, MTU, IPMASQ; IPv6 only: no IPv4 pair', () => {
    const text = renderSubnetEnv({ network: '198.19.0.0/16', subnet: '198.19.1.0/24', ipv6Network: '2001:2:8000::/48', ipv6Subnet: '2001:2:8000:1::/64', mtu: 1450, ipMasq: true });
    expect(text).toBe('FLANNEL_NETWORK=198.19.0.0/16\nFLANNEL_SUBNET=198.19.1.1/24\nFLANNEL_IPV6_NETWORK=2001:2:8000::/48\nFLANNEL_IPV6_SUBNET=2001:2:8000:1::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n');
    expect(renderSubnetEnv({ ipv6Network: '2001:2:8000::/48', ipv6Subnet: '2001:2:8000:1::/64', mtu: 1430, ipMasq: false }))
      .toBe('FLANNEL_IPV6_NETWORK=2001:2:8000::/48\nFLANNEL_IPV6_SUBNET=2001:2:8000:1::1/64\nFLANNEL_MTU=1430\nFLANNEL_IPMASQ=false\n');
    expect(gatewayForm('2001:2:8000:ff00::/56')).toBe('2001:2:8000:ff00::1/56');
    expect(parseEnvFile(text)).toMatchObject({ FLANNEL_IPV6_NETWORK: '2001:2:8000::/48', FLANNEL_IPV6_SUBNET: '2001:2:8000:1::1/64' });
  });
  it('the previous run\'s subnets are read back from it, each of its own family; junk is no subnet', () => {
    const d = mkdtempSync(join(tmpdir(), 'od-v6env-'));
    try {
      const f = join(d, 'subnet.env');
      writeFileSync(f, renderSubnetEnv({ network: '198.19.0.0/16', subnet: '198.19.1.0/24', ipv6Network: '2001:2:8000::/48', ipv6Subnet: '2001:2:8000:1::/64', mtu: 1450, ipMasq: false }));
      expect(previousSubnet(f)).toBe('198.19.1.0/24');
      expect(previousSubnet(f, 'FLANNEL_IPV6_SUBNET')).toBe('2001:2:8000:1::/64');
      writeFileSync(f, 'FLANNEL_SUBNET=2001:2:8000:1::1/64\nFLANNEL_IPV6_SUBNET=198.19.1.1/24\n');
      expect(previousSubnet(f)).toBeUndefined();
      expect(previousSubnet(f, 'FLANNEL_IPV6_SUBNET')).toBeUndefined();
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });
});

describe('the daemon with EnableIPv6', () => {
  it('the flannel-v6 VTEP MAC derives from the IPv6 subnet\'s last 32 prefix bits (distinct per subnet); IPv4 as before', () => {
    expect(stableVtepMac('198.19.7.0/24')).toBe('0a:58:c6:13:07:00');
    expect(stableVtepMac('2001:2:8000:9::/64')).toBe('0a:58:80:00:00:09');
    expect(stableVtepMac('2001:2:8000:9::4000/114')).toBe('0a:58:00:00:00:01'); // bits 82..114: the subnet's index
    const macs = new Set(Array.from({ length: 512 }, (_, i) => stableVtepMac(`2001:2:8000:${i.toString(16)}::/64`)));
    expect(macs.size).toBe(512);
  });

  it('the built-in dataplane runs IPv6; a --backend-module factory without `ipv6: true` is refused in one line naming what is missing', () => {
    const dual = parseNetConf(JSON.stringify(DUAL));
    expect(defaultBackendFactory.ipv6).toBe(true);
    expect(ipv6Refusal(dual, defaultBackendFactory, 'net-conf.json')).toBeUndefined();
    const v4only: BackendFactory = () => { throw new Error('not called'); };
    expect(ipv6Refusal(dual, v4only, 'net-conf.json')).toBe("net-conf.json: EnableIPv6 is true (dual stack, IPv6Network 2001:2:8000::/48), but the --backend-module's vxlan factory does not run IPv6 (it has no `ipv6: true`): the flannel-v6.1 device, IPv6 routes and the IPv6 underlay need it; set EnableIPv6 false (and EnableIPv4 true), or use the built-in dataplane");
    expect(ipv6Refusal(parseNetConf('{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "2001:2::/48"}'), v4only, 'n')).toMatch(/^n: EnableIPv4 is false \(IPv6 only, IPv6Network 2001:2::\/48\), but the --backend-module's udp factory/);
    expect(ipv6Refusal(parseNetConf('{"Network": "198.19.0.0/16"}'), v4only, 'n')).toBeUndefined();
  });

  it('static mode: --ipv6-subnet and --public-ipv6 with EnableIPv6, checked against net-conf', () => {
    const d = mkdtempSync(join(tmpdir(), 'od-v6static-'));
    try {
      const nc = join(d, 'net-conf.json');
      const peers = join(d, 'peers.json');
      writeFileSync(nc, JSON.stringify(DUAL));
      writeFileSync(peers, JSON.stringify({ '198.19.9.0-24&2001:2:8000:9::-64': JSON.parse(FLANNEL_DUAL), '198.19.8.0-24&2001:2:8000:8::1-64': JSON.parse(FLANNEL_DUAL) }));
      const ifaces = [{ name: 'lo', addrs: ['127.0.0.1'], internal: true }, { name: 'u0', addrs: ['198.18.0.1'], internal: false }];
      const run = (...a: string[]) => {
        const c = parseCli(['--net-conf', nc, '--iface', 'u0', '--subnet-file', join(d, 's.env'), ...a]);
        if (c.kind !== 'run') throw new Error('not run');
        return resolveConfig(c.options, ifaces, 'Iface\tDestination\n');
      };
      const cfg = run('--subnet', '198.19.1.0/24', '--ipv6-subnet', '2001:2:8000:1::/64', '--public-ipv6', '2001:2::1', '--peers', peers);
      expect(cfg.ipv6).toMatchObject({ subnet: '2001:2:8000:1::/64', publicIp: '2001:2::1' });
      expect(cfg.initialPeers.get('198.19.9.0/24')).toMatchObject({ ipv6Subnet: '2001:2:8000:9::/64', publicIpv6: '2001:2::9', v6VtepMac: '5e:00:00:00:60:09' });
      expect(cfg.initialPeers.get('198.19.8.0/24')!.ipv6Subnet).toBeUndefined();
      expect(cfg.initialPeerNotes).toEqual([expect.stringMatching(/"198\.19\.8\.0-24&2001:2:8000:8::1-64": its IPv6 part .* used as an IPv4 lease$/)]);
      expect(err(() => run('--subnet', '198.19.1.0/24', '--public-ipv6', '2001:2::1'))).toMatch(/--ipv6-subnet CIDR is required: .* has EnableIPv6 true/);
      expect(err(() => run('--subnet', '198.19.1.0/24', '--ipv6-subnet', '2001:2:9000:1::/64', '--public-ipv6', '2001:2::1'))).toMatch(/--ipv6-subnet 2001:2:9000:1::\/64 is outside IPv6Network/);
      expect(err(() => run('--subnet', '198.19.1.0/24', '--ipv6-subnet', '2001:2:8000:1::/64', '--public-ipv6', '198.18.0.1'))).toBe('--public-ipv6 "198.18.0.1" is not an IPv6 address');
      writeFileSync(nc, '{"Network": "198.19.0.0/16"}');
      expect(err(() => run('--subnet', '198.19.1.0/24', '--ipv6-subnet', '2001:2:8000:1::/64'))).toMatch(/--ipv6-subnet needs "EnableIPv6": true/);
      writeFileSync(nc, '{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "2001:2:8000::/48"}');
      expect(err(() => run('--subnet', '198.19.1.0/24', '--ipv6-subnet', '2001:2:8000:1::/64'))).toMatch(/--subnet is an IPv4 subnet, but .* has EnableIPv4 false/);
      const only = run('--ipv6-subnet', '2001:2:8000:1::/64', '--public-ipv6', '2001:2::1');
      expect([only.subnet, only.ipv6?.subnet]).toEqual(['2001:2:8000:1::/64', '2001:2:8000:1::/64']);
      expect(() => parseCli(['--etcd-endpoints', 'http://e:2379', '--ipv6-subnet', '2001:2:8000:1::/64'])).toThrow(/--ipv6-subnet is for static setups/);
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });
});

describe('overlayd with EnableIPv6 (static mode), a --backend-module without IPv6', () => {
  it.each([[[]], [['--no-supervisor']]])('%j: exits 2 with one line saying what is missing; no subnet.env', (extra) => {
    const d = mkdtempSync(join(tmpdir(), 'od-v6cli-'));
    try {
      const nc = join(d, 'net-conf.json');
      writeFileSync(nc, JSON.stringify(DUAL));
      const r = spawnSync(process.execPath, [...NODE_ARGS, '--net-conf', nc, '--subnet', '198.19.1.0/24', '--ipv6-subnet', '2001:2:8000:1::/64', '--public-ipv6', '2001:2::1',
        '--subnet-file', join(d, 'subnet.env'), '--backend-module', FAKE, ...extra], { cwd: ROOT, encoding: 'utf8', timeout: 30_000 });
      expect(r.status).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(/^overlayd: error: \S*net-conf(\.json)?: EnableIPv6 is true \(dual stack, IPv6Network 2001:2:8000::\/48\), but the --backend-module's vxlan factory does not run IPv6/);
      expect(existsSync(join(d, 'subnet.env'))).toBe(false);
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });
});
