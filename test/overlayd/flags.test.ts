/**
 * Command-line parity with flanneld: every flag also from FLANNELD_<FLAG>, the --ip-masq flags,
 * --iface-can-reach's choice (with a stand-in for the kernel's route lookup; the real one is
 * tested in namespaces in iface-netlink.test.ts) and the masquerade ruleset's fully-random switch.
 */
import { describe, expect, it } from 'vitest';
import { ENV_FLAGS, HELP, envName, masqRuleset, parseCli, pickInterface } from '../../src/overlayd/index.js';

/** A valid, non-default value for every flag, and the flags it needs alongside. */
const SAMPLE: Record<string, { v: string; with?: string[] }> = {
  'net-conf': { v: 'n.json' }, subnet: { v: '198.19.1.0/24' }, 'public-ip': { v: '198.18.0.7' }, 'public-ipv6': { v: '2001:2::7' }, 'ipv6-subnet': { v: '2001:2:0:1::/64' }, iface: { v: 'eth1' },
  'iface-regex': { v: 'eth[0-9]' }, 'iface-can-reach': { v: '198.18.0.254' }, peers: { v: 'p.json' }, 'subnet-file': { v: '/tmp/s.env' },
  'lease-out': { v: '/tmp/l.json' }, transport: { v: 'dgram' }, offload: { v: 'off' }, timing: { v: 'true' }, 'busy-poll-us': { v: '50' }, 'source-ports': { v: '4' },
  'stats-interval': { v: '3' }, 'healthz-port': { v: '9999' }, 'healthz-ip': { v: '127.0.0.2' }, pcap: { v: '/tmp/x.pcap' },
  'backend-module': { v: '/tmp/m.js' }, 'peers-debounce-ms': { v: '10' }, 'peers-max-wait-ms': { v: '100' },
  'etcd-endpoints': { v: 'http://e:2379' }, 'etcd-prefix': { v: '/x' }, 'etcd-cafile': { v: '/ca' },
  'etcd-certfile': { v: '/c', with: ['--etcd-keyfile', '/k'] }, 'etcd-keyfile': { v: '/k', with: ['--etcd-certfile', '/c'] },
  'etcd-username': { v: 'u', with: ['--etcd-password', 'p'] }, 'etcd-password': { v: 'p' }, 'subnet-lease-renew-margin': { v: '30' },
  'release-lease-on-exit': { v: 'true' }, 'keep-device-on-exit': { v: 'true' }, 'ip-masq': { v: 'true' }, 'ip-masq-fully-random-disable': { v: 'true', with: ['--ip-masq'] },
  'iptables-resync': { v: '9', with: ['--ip-masq'] },
  'no-supervisor': { v: 'true' }, takeover: { v: 'true' }, 'control-socket': { v: '/tmp/c.sock' },
};
const STATIC = ['--net-conf', 'n.json', '--subnet', '198.19.1.0/24'];
const ETCD = ['--etcd-endpoints', 'http://e:2379'];

describe('FLANNELD_* environment variables', () => {
  it('cover every flag --help lists (but --help and --version)', () => {
    const inHelp = new Set([...HELP.matchAll(/(?<![\w-])--([a-z][a-z0-9-]*[a-z0-9])/g)].map((m) => m[1]!));
    inHelp.delete('help');
    inHelp.delete('version');
    expect([...ENV_FLAGS].sort()).toEqual([...inHelp].sort());
    expect(Object.keys(SAMPLE).sort()).toEqual([...ENV_FLAGS].sort());
  });

  it.each([...ENV_FLAGS])('--%s: FLANNELD_ variable = the flag, when the command line does not give it', (f) => {
    const s = SAMPLE[f]!;
    const isEtcd = f.startsWith('etcd-') || f === 'subnet-lease-renew-margin' || f === 'release-lease-on-exit';
    const base = f === 'net-conf' ? ['--subnet', '198.19.1.0/24'] : f === 'subnet' ? ['--net-conf', 'n.json'] : f === 'etcd-endpoints' ? [] : isEtcd ? ETCD : STATIC;
    const flag = s.v === 'true' ? [`--${f}`] : [`--${f}`, s.v];
    const byFlag = parseCli([...base, ...(s.with ?? []), ...flag]);
    const byEnv = parseCli([...base, ...(s.with ?? [])], { [envName(f)]: s.v });
    expect(byEnv).toEqual(byFlag);
    if (f !== 'net-conf' && f !== 'subnet' && f !== 'etcd-endpoints') {
      let without: unknown;
      try { without = parseCli([...base, ...(s.with ?? [])]); } catch (e) { without = e; } // certfile without keyfile is an error
      expect(byEnv).not.toEqual(without);
    }
    // the command line wins
    if (s.v !== 'true') expect(parseCli([...base, ...(s.with ?? []), ...flag], { [envName(f)]: 'x' })).toEqual(byFlag);
  });

  it('a switch takes true/false/1/0 only', () => {
    expect(parseCli(STATIC, { FLANNELD_IP_MASQ: '1' })).toMatchObject({ options: { ipMasq: { fullyRandom: true, resyncSeconds: 5 } } });
    expect(parseCli(STATIC, { FLANNELD_IP_MASQ: 'false' })).not.toHaveProperty('options.ipMasq');
    expect(() => parseCli(STATIC, { FLANNELD_TIMING: 'yes' })).toThrow(/FLANNELD_TIMING="yes" must be true or false/);
  });
});

describe('--ip-masq', () => {
  it('fully-random by default, plain with --ip-masq-fully-random-disable, resync 5 s unless --iptables-resync', () => {
    expect(parseCli([...STATIC, '--ip-masq'])).toMatchObject({ options: { ipMasq: { fullyRandom: true, resyncSeconds: 5 } } });
    expect(parseCli([...STATIC, '--ip-masq', '--ip-masq-fully-random-disable', '--iptables-resync', '0'])).toMatchObject({ options: { ipMasq: { fullyRandom: false, resyncSeconds: 0 } } });
    expect(() => parseCli([...STATIC, '--ip-masq', '--iptables-resync', 'x'])).toThrow(/--iptables-resync "x" must be an integer/);
    const plain = masqRuleset({ network: '198.19.0.0/16', subnet: '198.19.1.0/24', fullyRandom: false });
    expect(plain).not.toMatch(/fully-random/);
    expect(plain.match(/ masquerade /g)).toHaveLength(2);
    expect(masqRuleset({ network: '198.19.0.0/16', subnet: '198.19.1.0/24', fullyRandom: true }).match(/ masquerade fully-random /g)).toHaveLength(2);
  });
});

describe('--iface-can-reach', () => {
  const ifaces = [{ name: 'lo', addrs: ['127.0.0.1'], internal: true }, { name: 'eth0', addrs: ['198.18.0.1'], internal: false }, { name: 'eth1', addrs: ['198.18.1.1', '198.18.1.2'], internal: false }];
  it('picks the interface of the route to the address, with the route\'s source address', () => {
    const seen: string[] = [];
    const get = (a: string) => { seen.push(a); return { dev: 'eth1', src: '198.18.1.2' }; };
    expect(pickInterface({ canReach: '203.0.113.9' }, ifaces, '', get)).toMatchObject({ name: 'eth1', localIp: '198.18.1.2', publicIp: '198.18.1.2' });
    expect(seen).toEqual(['203.0.113.9']);
    expect(pickInterface({ canReach: '203.0.113.9', publicIp: '198.18.9.9' }, ifaces, '', get)).toMatchObject({ name: 'eth1', publicIp: '198.18.9.9' });
    // --iface and --iface-regex come first, as in flanneld
    expect(pickInterface({ iface: ['eth0'], canReach: '203.0.113.9' }, ifaces, '', get).name).toBe('eth0');
  });
  it('clear errors: not an address, no route, a route out of a non-candidate', () => {
    const get = () => { throw new Error('ENETUNREACH'); };
    expect(() => pickInterface({ canReach: 'eth0' }, ifaces, '', get)).toThrow(/^--iface-can-reach "eth0" is not an IPv4 address$/);
    expect(() => pickInterface({ canReach: '203.0.113.9' }, ifaces, '', get)).toThrow(/^--iface-can-reach 203\.0\.113\.9: no route to it \(ENETUNREACH\)$/);
    expect(() => pickInterface({ canReach: '203.0.113.9' }, ifaces, '', () => ({ dev: 'wg0' }))).toThrow(/goes out of "wg0", which is not a candidate interface/);
  });
});
