import { describe, expect, it } from 'vitest';
import { ConfigError, compileIfaceRegex, pickInterface, type IfaceInfo } from '../../src/overlayd/index.js';

const k8sNode: IfaceInfo[] = [
  { name: 'lo', addrs: ['127.0.0.1'], internal: true },
  { name: 'eth0', addrs: ['203.0.113.5'], internal: false },
  // The seed's incident: a pod veth that comes before eth1 in kernel order after a restart.
  { name: 'veth17f90f70', addrs: ['198.19.1.1'], internal: false },
  { name: 'eth1', addrs: ['198.18.0.1'], internal: false },
];
const noRoute = 'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n';
const defVia = (dev: string): string => `${noRoute}${dev}\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n`;

const msg = (f: () => unknown): string => {
  try { f(); } catch (e) { expect(e).toBeInstanceOf(ConfigError); return (e as Error).message; }
  throw new Error('expected ConfigError');
};

describe('--iface-regex anchoring', () => {
  it('an unanchored alternation matches whole names only: eth1|bond1 does not match veth17f90f70', () => {
    const re = compileIfaceRegex('eth1|bond1');
    expect(re.test('eth1')).toBe(true);
    expect(re.test('bond1')).toBe(true);
    expect(re.test('veth17f90f70')).toBe(false);
    expect(re.test('xbond1')).toBe(false); // a naive ^eth1|bond1$ would match this
    expect(re.test('eth10')).toBe(false);
    expect(re.test('eth1.100')).toBe(false);
  });
  it('the incident: picks eth1, not the veth listed before it', () => {
    const p = pickInterface({ ifaceRegex: ['eth1|bond1'] }, k8sNode, noRoute);
    expect(p.name).toBe('eth1');
    expect(p.publicIp).toBe('198.18.0.1');
    expect(p.reason).toMatch(/whole name matches --iface-regex "eth1\|bond1" \(as \^\(\?:eth1\|bond1\)\$\)/);
  });
  it('explicit prefixes still work and the others that matched are named', () => {
    const p = pickInterface({ ifaceRegex: ['eth.*'] }, k8sNode, noRoute);
    expect(p.name).toBe('eth0');
    expect(p.reason).toMatch(/also matched: eth1/);
  });
  it('matches whole addresses before names, as flannel does', () => {
    const p = pickInterface({ ifaceRegex: ['198\\.18\\.0\\.\\d+'] }, k8sNode, noRoute);
    expect(p.name).toBe('eth1');
    expect(p.reason).toMatch(/address 198\.18\.0\.1 matches/);
    expect(() => pickInterface({ ifaceRegex: ['198\\.18'] }, [k8sNode[3]!], noRoute)).toThrow(ConfigError);
  });
  it('several regexes: first regex that matches wins', () => {
    expect(pickInterface({ ifaceRegex: ['bond1', 'eth1'] }, k8sNode, noRoute).name).toBe('eth1');
  });
  it('a bad regex is a one-line ConfigError', () => {
    expect(msg(() => compileIfaceRegex('eth(1'))).toMatch(/^--iface-regex "eth\(1" is not a valid regular expression/);
  });
  it('no match names the regex and the interfaces', () => {
    expect(msg(() => pickInterface({ ifaceRegex: ['bond1'] }, k8sNode, noRoute))).toMatch(/no interface .* matches --iface-regex "bond1".*have: lo, eth0, veth17f90f70, eth1/);
  });
});

describe('interface choice', () => {
  it('--iface by name or address; a missing interface is an error naming it', () => {
    expect(pickInterface({ iface: ['eth1'] }, k8sNode, noRoute).name).toBe('eth1');
    const byAddr = pickInterface({ iface: ['198.18.0.1'] }, k8sNode, noRoute);
    expect(byAddr).toMatchObject({ name: 'eth1', localIp: '198.18.0.1' });
    expect(msg(() => pickInterface({ iface: ['eth9'] }, k8sNode, noRoute))).toBe('interface "eth9" does not exist (have: lo, eth0, veth17f90f70, eth1)');
  });
  it('default: the default route interface', () => {
    const p = pickInterface({}, k8sNode, defVia('eth0'));
    expect(p.name).toBe('eth0');
    expect(p.reason).toMatch(/default route/);
  });
  it('--public-ip alone picks the interface holding it; elsewhere it only sets the advertised address', () => {
    expect(pickInterface({ publicIp: '198.18.0.1' }, k8sNode, noRoute)).toMatchObject({ name: 'eth1', publicIp: '198.18.0.1' });
    expect(pickInterface({ publicIp: '192.0.2.9', iface: ['eth1'] }, k8sNode, noRoute)).toMatchObject({ name: 'eth1', localIp: '198.18.0.1', publicIp: '192.0.2.9' });
    expect(msg(() => pickInterface({ publicIp: '1.2.3' }, k8sNode, noRoute))).toMatch(/--public-ip "1\.2\.3" is not an IPv4 address/);
  });
  it('no default route and several candidates asks for --iface', () => {
    expect(msg(() => pickInterface({}, k8sNode, noRoute))).toMatch(/choose one with --iface/);
  });
});
