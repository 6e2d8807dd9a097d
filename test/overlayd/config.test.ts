import { describe, expect, it } from 'vitest';
import {
  diffPeers, firstOverlap, PeersParse, gatewayForm, keyToSubnet, leaseToJson, MAX_PEERS_FILE_BYTES, parseEnvFile, parseNetConf, parsePeers, quoteUntrusted,
  renderSubnetEnv, subnetToKey, validateSubnet,
} from '../../src/overlayd/index.js';
import fc from 'fast-check';
import { ipPrefix } from '../../src/codec/addr.js';
import type { Lease } from '../../src/vtep/backend.js';
import { configErrorOf } from './helpers.js';

const err = configErrorOf;

describe('net-conf.json', () => {
  it('applies flannel defaults: udp, SubnetLen 24, port 8285', () => {
    const c = parseNetConf('{"Network": "198.19.0.0/16"}');
    expect(c.network).toBe('198.19.0.0/16');
    expect(c.subnetLen).toBe(24);
    expect(c.backend).toEqual({ type: 'udp', port: 8285, vni: 1, gbp: false, directRouting: false });
  });
  it('vxlan defaults: VNI 1, port 8472', () => {
    const c = parseNetConf('{"Network": "198.19.0.0/16", "Backend": {"Type": "vxlan"}}');
    expect(c.backend.type).toBe('vxlan');
    expect(c.backend.port).toBe(8472);
    expect(c.backend.vni).toBe(1);
  });
  it('reads Port, VNI, GBP, DirectRouting, MTU', () => {
    const c = parseNetConf('{"Network":"198.19.0.0/16","SubnetLen":26,"Backend":{"Type":"VXLAN","Port":4789,"VNI":42,"GBP":true,"DirectRouting":true,"MTU":1400}}');
    expect(c.subnetLen).toBe(26);
    expect(c.backend).toEqual({ type: 'vxlan', port: 4789, vni: 42, gbp: true, directRouting: true, mtu: 1400 });
    expect(parseNetConf('{"Network":"198.19.0.0/16","Backend":{"Type":"vxlan","Learning":true}}').backend).toMatchObject({ learning: true });
    expect(parseNetConf('{"Network":"198.19.0.0/16","Backend":{"Type":"vxlan","Learning":false}}').backend).not.toHaveProperty('learning');
  });
  it('small networks default SubnetLen to prefix + 2', () => {
    expect(parseNetConf('{"Network":"198.19.0.0/26"}').subnetLen).toBe(28);
  });
  it('SubnetMin/SubnetMax: flannel defaults skip the first subnet and end at the last; given ones are honoured', () => {
    expect(parseNetConf('{"Network":"198.19.0.0/16"}')).toMatchObject({ subnetMin: '198.19.1.0/24', subnetMax: '198.19.255.0/24' });
    expect(parseNetConf('{"Network":"198.19.0.0/26"}')).toMatchObject({ subnetMin: '198.19.0.16/28', subnetMax: '198.19.0.48/28' });
    expect(parseNetConf('{"Network":"198.19.0.0/16","SubnetLen":26,"SubnetMin":"198.19.4.64","SubnetMax":"198.19.9.192"}'))
      .toMatchObject({ subnetMin: '198.19.4.64/26', subnetMax: '198.19.9.192/26' });
  });
  it('unknown Backend.Type is a clear error naming the type and the supported ones', () => {
    const m = err(() => parseNetConf('{"Network":"198.19.0.0/16","Backend":{"Type":"ipip"}}', 'nc.json'));
    expect(m).toMatch(/nc\.json: Backend\.Type "ipip" is not supported.*"host-gw", "udp", "vxlan"/);
    expect(parseNetConf('{"Network":"198.19.0.0/16","Backend":{"Type":"host-gw"}}').backend).toMatchObject({ type: 'host-gw', port: 0 });
  });
  it.each([
    ['{"Network": "198.19.0.0/16",}', /nc\.json: invalid JSON/],
    ['[]', /expected a JSON object/],
    ['{}', /"Network".*required/],
    ['{"Network":"198.19.0.0/33"}', /not an IPv4 CIDR/],
    ['{"Network":"198.19.1.0/16"}', /host bits set.*198\.19\.0\.0\/16/],
    ['{"Network":"198.19.0.0/16","SubnetLen":31}', /too long/],
    ['{"Network":"198.19.0.0/16","SubnetLen":17}', /at least four subnets/],
    ['{"Network":"198.19.0.0/16","Backend":{"Type":"udp","Port":70000}}', /Port must be an integer in 0\.\.65535/],
    ['{"Network":"198.19.0.0/16","Backend":{"Type":"vxlan","VNI":"1"}}', /VNI must be an integer/],
    ['{"Network":"198.19.0.0/16","Backend":{"Type":"vxlan","GBP":"yes"}}', /GBP must be true or false/],
    ['{"Network":"198.19.0.0/16","SubnetMin":"198.20.1.0"}', /SubnetMin 198\.20\.1\.0 is not in the range of the Network/],
    ['{"Network":"198.19.0.0/16","SubnetMax":"198.19.1.128"}', /SubnetMax 198\.19\.1\.128 is not on a SubnetLen \(\/24\) boundary/],
    ['{"Network":"198.19.0.0/16","SubnetMin":7}', /SubnetMin 7 is not an IPv4 address/],
    ['{"Network":"198.19.0.0/16","SubnetMin":"198.19.9.0","SubnetMax":"198.19.3.0"}', /SubnetMin 198\.19\.9\.0 is above SubnetMax/],
  ])('rejects %s', (text, re) => {
    expect(err(() => parseNetConf(text, 'nc.json'))).toMatch(re);
  });
  it('--subnet must be inside Network, SubnetLen long, in network form', () => {
    const c = parseNetConf('{"Network":"198.19.0.0/16"}');
    expect(validateSubnet('198.19.3.0/24', c).len).toBe(24);
    expect(err(() => validateSubnet('198.18.3.0/24', c))).toBe('--subnet 198.18.3.0/24 is outside Network 198.19.0.0/16');
    expect(err(() => validateSubnet('198.19.3.0/25', c))).toMatch(/must be a \/24/);
    expect(err(() => validateSubnet('198.19.3.1/24', c))).toMatch(/host bits set.*198\.19\.3\.0\/24/);
    expect(err(() => validateSubnet('nope', c))).toMatch(/not an IPv4 CIDR/);
  });
});

describe('peers file (flannel etcd layout)', () => {
  const net = parseNetConf('{"Network":"198.19.0.0/16"}').networkCidr;
  const text = JSON.stringify({
    '198.19.2.0-24': { PublicIP: '198.18.0.2', BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: 'AA:BB:CC:00:00:02' } },
    '/coreos.com/network/subnets/198.19.3.0-24': { PublicIP: '198.18.0.3', BackendType: 'udp' },
  });
  it('parses keys and lease values, full etcd keys too', () => {
    const m = parsePeers(text, 'peers.json', net);
    expect([...m.keys()]).toEqual(['198.19.2.0/24', '198.19.3.0/24']);
    expect(m.get('198.19.2.0/24')).toEqual({ subnet: '198.19.2.0/24', publicIp: '198.18.0.2', backendType: 'vxlan', vni: 1, vtepMac: 'aa:bb:cc:00:00:02' });
    expect(m.get('198.19.3.0/24')).toEqual({ subnet: '198.19.3.0/24', publicIp: '198.18.0.3', backendType: 'udp' });
  });
  it('key <-> CIDR', () => {
    expect(subnetToKey('198.19.2.0/24')).toBe('198.19.2.0-24');
    expect(keyToSubnet('/coreos.com/network/subnets/198.19.2.0-24')).toBe('198.19.2.0/24');
    expect(keyToSubnet('/coreos.com/network/subnets/198.19.2.0-24&fc00:0:0:2::-64')).toBe('198.19.2.0/24'); // dual-stack flanneld
  });
  it.each([
    ['{"198.19.2.0-24": {"PublicIP": "198.18.0.2", "BackendType": "udp"', /invalid JSON/],
    ['{"198.19.2.0/24": {"PublicIP": "198.18.0.2", "BackendType": "udp"}}', /not of the form a\.b\.c\.d-len/],
    ['{"198.20.2.0-24": {"PublicIP": "198.18.0.2", "BackendType": "udp"}}', /outside Network/],
    ['{"198.19.2.0-24": {"PublicIP": "198.18.0", "BackendType": "udp"}}', /PublicIP "198\.18\.0" is not an IPv4 address/],
    ['{"198.19.2.0-24": {"PublicIP": "198.18.0.2", "BackendType": "ipip"}}', /BackendType "ipip"/],
    ['{"198.19.2.0-24": {"PublicIP": "198.18.0.2", "BackendType": "vxlan"}}', /needs BackendData/],
    ['{"198.19.2.0-24": {"PublicIP": "198.18.0.2", "BackendType": "vxlan", "BackendData": {"VNI": 1, "VtepMAC": "zz"}}}', /VtepMAC "zz"/],
    ['{"198.19.2.0-24": {"PublicIP": "198.18.0.2", "BackendType": "udp"}, "198.19.2.0-23": {"PublicIP": "198.18.0.3", "BackendType": "udp"}}', /overlaps/],
  ])('rejects %s', (t, re) => {
    expect(err(() => parsePeers(t, 'peers.json', net))).toMatch(re);
  });
  it('overlap check: the same verdict as comparing every pair, IPv4 and IPv6 mixed (property)', () => {
    const pfx = fc.record({ a: fc.integer({ min: 0, max: 0xffffffff }), len: fc.integer({ min: 0, max: 32 }) }).map(({ a, len }) => ipPrefix(`${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}/${len}`, { family: 4, hostBits: 'clear' }));
    const near = fc.record({ b: fc.integer({ min: 0, max: 255 }), len: fc.integer({ min: 20, max: 32 }) }).map(({ b, len }) => ipPrefix(`198.19.${b}.${(b * 37) & 255}/${len}`, { family: 4, hostBits: 'clear' }));
    const near6 = fc.record({ w: fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 4, maxLength: 4 }), len: fc.integer({ min: 56, max: 66 }) })
      .map(({ w, len }) => ipPrefix(`2001:2:8000:${w[0]}${w[1]}:${w[2]}${w[3]}::/${len}`, { hostBits: 'clear' }));
    fc.assert(fc.property(fc.array(fc.oneof(pfx, near, near6), { maxLength: 40 }), (ps) => {
      let naive = false;
      for (let i = 0; i < ps.length && !naive; i++) for (let j = 0; j < i; j++) if (ps[i]!.overlaps(ps[j]!)) { naive = true; break; }
      const got = firstOverlap(ps);
      expect(got !== undefined).toBe(naive);
      if (got) expect(got[0].overlaps(got[1])).toBe(true);
    }), { numRuns: 1000 });
  });
  it('20,000 leases parse (one pass, no pairwise overlap check) and a clash among them is named', () => {
    const big: Record<string, unknown> = {};
    for (let i = 0; i < 20_000; i++) big[`198.19.${i >> 8}.${i & 255}-32`] = { PublicIP: '198.18.0.2', BackendType: 'udp' };
    expect(parsePeers(JSON.stringify(big), 'peers.json', net).size).toBe(20_000);
    big['198.19.40.0-22'] = { PublicIP: '198.18.0.3', BackendType: 'udp' };
    expect(err(() => parsePeers(JSON.stringify(big), 'peers.json', net))).toMatch(/"198\.19\.40\.\d+-\d+" overlaps 198\.19\.40\.\d+-\d+/);
  });
  it('parsed a slice at a time (a deadline in the past: 64 leases a step, then the overlap check on its own): the same leases; a clash found in the last step', () => {
    const big: Record<string, unknown> = {};
    for (let i = 0; i < 1000; i++) big[`198.19.${i >> 8}.${i & 255}-32`] = { PublicIP: '198.18.0.2', BackendType: 'udp' };
    const text = JSON.stringify(big);
    const p = new PeersParse(text, 'peers.json', net);
    let steps = 1;
    while (!p.step(0)) steps++;
    expect(steps).toBe(Math.ceil(1000 / 64) + 1);
    expect([...p.result()]).toEqual([...parsePeers(text, 'peers.json', net)]);
    big['198.19.3.0-24'] = { PublicIP: '198.18.0.3', BackendType: 'udp' };
    const q = new PeersParse(JSON.stringify(big), 'peers.json', net);
    expect(() => { while (!q.step(0)) { /* slices */ } }).toThrow(/overlaps/);
    expect(() => new PeersParse('{"x": ', 'peers.json', net)).toThrow(/invalid JSON/);
  });
  it('junk is never echoed raw: control characters escaped, long keys cut', () => {
    const junk = '\u0000\u0001\u001b[31mred\u0085\ufffd' + 'x'.repeat(500);
    for (const t of [`{${JSON.stringify(junk)}: {}}`, junk, `{"198.19.2.0-24": {"PublicIP": ${JSON.stringify(junk)}, "BackendType": "udp"}}`]) {
      const m = err(() => parsePeers(t, 'peers.json', net));
      expect(m).not.toMatch(/[\u0000-\u001f\u007f-\u009f\ufffd]/);
      expect(m.length).toBeLessThan(400);
    }
    expect(quoteUntrusted('a\u0000b')).toBe('"a\\u0000b"');
    expect(quoteUntrusted('y'.repeat(100), 10)).toBe('"yyyyyyyyyy..."');
  });
  it('a peers text over the size limit is refused before parsing', () => {
    expect(err(() => parsePeers(' '.repeat(MAX_PEERS_FILE_BYTES + 1), 'peers.json', net))).toMatch(/over the 16 MiB limit/);
  });
  it('diff: only new, changed and removed peers', () => {
    const a: Lease = { subnet: '198.19.2.0/24', publicIp: '198.18.0.2', backendType: 'udp' };
    const b: Lease = { subnet: '198.19.3.0/24', publicIp: '198.18.0.3', backendType: 'udp' };
    const c: Lease = { subnet: '198.19.4.0/24', publicIp: '198.18.0.4', backendType: 'udp' };
    const prev = new Map([[a.subnet, a], [b.subnet, b]]);
    const next = new Map([[a.subnet, { ...a }], [b.subnet, { ...b, publicIp: '198.18.0.33' }], [c.subnet, c]]);
    const d = diffPeers(prev, next);
    expect(d.upsert.map((l) => l.subnet)).toEqual(['198.19.3.0/24', '198.19.4.0/24']);
    expect(d.remove).toEqual([]);
    expect(diffPeers(next, new Map([[c.subnet, c]]))).toEqual({ upsert: [], remove: ['198.19.2.0/24', '198.19.3.0/24'] });
    expect(diffPeers(prev, prev)).toEqual({ upsert: [], remove: [] });
  });
  it('our own lease renders in the same layout and parses back', () => {
    const own: Lease = { subnet: '198.19.1.0/24', publicIp: '198.18.0.1', backendType: 'vxlan', vni: 1, vtepMac: '02:00:00:00:00:01' };
    const line = leaseToJson(own);
    expect(JSON.parse(line)).toEqual({ '198.19.1.0-24': { PublicIP: '198.18.0.1', PublicIPv6: null, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: '02:00:00:00:00:01' } } });
    expect(parsePeers(line, 'lease', net).get('198.19.1.0/24')).toEqual(own);
    const udp: Lease = { subnet: '198.19.1.0/24', publicIp: '198.18.0.1', backendType: 'udp' };
    expect(JSON.parse(leaseToJson(udp))).toEqual({ '198.19.1.0-24': { PublicIP: '198.18.0.1', PublicIPv6: null, BackendType: 'udp' } });
  });
});

describe('subnet.env', () => {
  it('is written exactly as flanneld writes it, FLANNEL_SUBNET in gateway form', () => {
    const text = renderSubnetEnv({ network: '198.19.0.0/16', subnet: '198.19.1.0/24', mtu: 1472, ipMasq: false });
    expect(text).toBe('FLANNEL_NETWORK=198.19.0.0/16\nFLANNEL_SUBNET=198.19.1.1/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=false\n');
    expect(parseEnvFile(text)).toEqual({ FLANNEL_NETWORK: '198.19.0.0/16', FLANNEL_SUBNET: '198.19.1.1/24', FLANNEL_MTU: '1472', FLANNEL_IPMASQ: 'false' });
    expect(gatewayForm('198.19.7.0/26')).toBe('198.19.7.1/26');
  });
});

describe('net-conf.json keys as flanneld (Go encoding/json) matches them', () => {
  // Every key overlayd reads, with a value that differs from the default, and the result it gives.
  const full = { Network: '198.19.0.0/16', SubnetLen: 26, SubnetMin: '198.19.1.0', SubnetMax: '198.19.9.192' };
  const backend = { Type: 'vxlan', VNI: 4242, Port: 4789, GBP: true, DirectRouting: true, MTU: 1400 };
  const canonical = parseNetConf(JSON.stringify({ ...full, Backend: backend }));

  /** `key` with each ASCII letter's case chosen by `bits`. */
  const recase = (key: string, bits: number[]): string => [...key].map((c, i) => ((bits[i % bits.length]! & 1) ? c.toUpperCase() : c.toLowerCase())).join('');
  const recased = (o: Record<string, unknown>, bits: number[]): Record<string, unknown> => Object.fromEntries(Object.entries(o).map(([k, v]) => [recase(k, bits), v]));

  it('any case of any key means the same as the canonical spelling (property), and warns nothing', () => {
    fc.assert(fc.property(fc.array(fc.integer({ min: 0, max: 1 }), { minLength: 1, maxLength: 16 }), (bits) => {
      const c = parseNetConf(JSON.stringify({ ...recased(full, bits), [recase('Backend', bits)]: recased(backend, bits) }));
      expect(c).toEqual(canonical);
      expect(c.warnings).toEqual([]);
    }), { numRuns: 200 });
  });

  it('"vni": 4242 is the VNI (it was silently ignored); the Kelvin sign and the long s fold as in Go', () => {
    expect(parseNetConf('{"network": "198.19.0.0/16", "backend": {"type": "vxlan", "vni": 4242}}').backend.vni).toBe(4242);
    expect(parseNetConf('{"Network": "198.19.0.0/16", "\u017fubnetLen": 26}').subnetLen).toBe(26);  // ſubnetLen
    const k = parseNetConf('{"Network": "198.19.0.0/16", "Backend": {"Type": "vxlan", "MacPrefix": "0e:2a", "\u212Aey": 1}}');
    expect(k.warnings).toHaveLength(2); // MacPrefix: flanneld-only; Key (Kelvin K): nobody's
    // a letter that folds to nothing ASCII matches no key
    expect(parseNetConf('{"Network": "198.19.0.0/16", "Backend": {"Type": "vxlan", "VN\u00cd": 7}}').backend.vni).toBe(1);
  });

  it('two spellings of one key: the last one counts, as in Go, with a warning naming both', () => {
    const c = parseNetConf('{"Network": "198.19.0.0/16", "Backend": {"Type": "vxlan", "VNI": 7, "vni": 8}}');
    expect(c.backend.vni).toBe(8);
    expect(c.warnings).toEqual(['net-conf.json: Backend."VNI" and Backend."vni" each set Backend.VNI (keys match case-insensitively, as in flanneld); the last, "vni", counts']);
    expect(parseNetConf('{"Network": "198.19.0.0/16", "Backend": {"Type": "vxlan", "vni": 8, "VNI": 7}}').backend.vni).toBe(7);
  });

  it('warns once per key nobody reads: typos, flanneld-only keys, keys of another backend', () => {
    const c = parseNetConf(JSON.stringify({
      Network: '198.19.0.0/16', Netwrok: 'x', EnableIPv4: true, EnableIPv6: false, IPv6Network: 'fd00::/56',
      Backend: { Type: 'udp', Port: 8285, VNI: 4, Vni2: 1 },
    }));
    expect(c.warnings).toEqual([
      'net-conf.json: "IPv6Network" is not used (EnableIPv6 is not true); ignored',
      'net-conf.json: "Netwrok" is not a key flanneld or overlayd reads (a typo?); ignored',
      'net-conf.json: Backend."VNI" is not used by the udp backend; ignored',
      'net-conf.json: Backend."Vni2" is not a key flanneld or overlayd reads (a typo?); ignored',
    ]);
    expect(parseNetConf('{"Network": "198.19.0.0/16", "Networks": ["198.20.0.0/16"]}').warnings).toEqual(['net-conf.json: "Networks" is read by flanneld but not by overlayd (one Network per family); ignored']);
    // the udp backend does not read VNI: a bad one is no error there (flanneld ignores it too)
    expect(parseNetConf('{"Network": "198.19.0.0/16", "Backend": {"Type": "udp", "VNI": "x"}}').backend.vni).toBe(1);
    // junk keys reach the warning escaped and cut
    const j = parseNetConf(JSON.stringify({ Network: '198.19.0.0/16', ['\u0007'.repeat(100)]: 1 }));
    expect(j.warnings[0]).toMatch(/^net-conf\.json: "(\\u0007){64}\.\.\." is not a key/);
  });

  it('errors name the key as written, without a stray dot', () => {
    expect(err(() => parseNetConf('{"Network": "198.19.0.0/16", "Backend": {"Type": "vxlan", "VNI": "x"}}'))).toBe('net-conf.json: Backend.VNI must be an integer in 0..16777215, got "x"');
    expect(err(() => parseNetConf('{"Network": "198.19.0.0/16", "Backend": {"Type": "vxlan", "vni": -1}}'))).toBe('net-conf.json: Backend.vni must be an integer in 0..16777215, got -1');
    expect(err(() => parseNetConf('{"Network": "198.19.0.0/16", "Backend": {"Type": "vxlan", "gbp": 1}}'))).toBe('net-conf.json: Backend.gbp must be true or false, got 1');
    expect(err(() => parseNetConf('{"Network": "198.19.0.0/16", "subnetlen": 99}'))).toBe('net-conf.json: subnetlen must be an integer in 0..32, got 99');
    fc.assert(fc.property(fc.constantFrom('Port', 'VNI', 'MTU', 'GBP', 'DirectRouting'), fc.oneof(fc.string(), fc.constant(-5), fc.constant(1e9)), (k, v) => {
      let m = '';
      try { parseNetConf(JSON.stringify({ Network: '198.19.0.0/16', Backend: { Type: 'vxlan', [k]: v } })); } catch (e) { m = (e as Error).message; }
      if (m !== '') expect(m).toMatch(new RegExp(`^net-conf\\.json: Backend\\.${k} `));
      expect(m).not.toContain('Backend.:');
    }), { numRuns: 200 });
  });
});
