/**
 * The overlayd CLI, spawned as a process inside test namespaces: --help/--version,
 * a table of bad configurations (one-line error, exit status 2, nothing left behind),
 * the veth17f90f70 incident, and the daemon lifecycle with a fake backend module
 * (device/routes created, peers file watched, SIGHUP, SIGTERM removes everything).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Testbed, requireNetns, type NsHost } from '../helpers/netns.js';
import { FAKE, MAIN, NODE_ARGS, ROOT, nsState, runOverlayd, sleep, startOverlayd } from './helpers.js';
import { ENV_FLAGS, HELP } from '../../src/overlayd/index.js';

describe('overlayd --help / --version', () => {
  it('--help documents every flag the parser accepts', () => {
    const r = spawnSync(process.execPath, [...NODE_ARGS, '--help'], { cwd: ROOT, encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(HELP);
    // ENV_FLAGS is every flag of the parser's option table but help and version
    expect(ENV_FLAGS.length).toBeGreaterThan(30);
    for (const f of [...ENV_FLAGS, 'help', 'version']) expect(r.stdout).toContain(`--${f}`);
  });
  it('--version prints the package version', () => {
    const r = spawnSync(process.execPath, [...NODE_ARGS, '--version'], { cwd: ROOT, encoding: 'utf8' });
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    expect(r.stdout.trim()).toBe(`overlayd ${pkg.version}`);
  });
  it('main.ts has a node shebang', () => {
    expect(readFileSync(MAIN, 'utf8').startsWith('#!/usr/bin/env node\n')).toBe(true);
  });
});

describe.runIf(requireNetns())('overlayd in a namespace', () => {
  const tb = new Testbed('ovc');
  const dir = mkdtempSync(join(tmpdir(), 'od-cli-'));
  let a: NsHost;
  const holders: ChildProcess[] = [];
  const f = (name: string, text: string): string => {
    const p = join(dir, name);
    writeFileSync(p, text);
    return p;
  };
  let udpConf: string;
  let vxlanConf: string;
  let subnetFile: string;

  beforeAll(() => {
    a = tb.host('a');
    const b = tb.host('b');
    // Kernel order matters for the incident: the pod veth comes before eth1.
    a.ip('link', 'add', 'veth17f90f70', 'type', 'veth', 'peer', 'name', 'vp17');
    a.ip('addr', 'add', '198.18.9.1/24', 'dev', 'veth17f90f70');
    a.ip('link', 'set', 'veth17f90f70', 'up');
    tb.link(a, 'eth1', '198.18.0.1/24', b, 'eth1', '198.18.0.2/24');
    udpConf = f('udp.json', '{"Network": "198.19.0.0/16", "Backend": {"Type": "udp"}}');
    vxlanConf = f('vxlan.json', '{"Network": "198.19.0.0/16", "Backend": {"Type": "vxlan"}}');
    subnetFile = join(dir, 'flannel', 'subnet.env');
  });
  afterAll(() => {
    for (const h of holders) try { h.kill('SIGKILL'); } catch { /* gone */ }
    tb.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Hold a port inside the namespace with a small node process; resolves once bound. */
  async function hold(kind: 'udp' | 'tcp', port: number): Promise<ChildProcess> {
    const code = kind === 'udp'
      ? `require('dgram').createSocket('udp4').bind(${port}, () => console.log('bound'))`
      : `require('net').createServer().listen(${port}, '127.0.0.1', () => console.log('bound'))`;
    const c = spawn('ip', ['netns', 'exec', a.name, process.execPath, '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
    holders.push(c);
    await new Promise<void>((res, rej) => {
      c.stdout!.on('data', (d: Buffer) => { if (d.toString().includes('bound')) res(); });
      c.on('exit', () => rej(new Error('holder exited')));
    });
    return c;
  }

  const base = (conf: () => string, ...more: string[]): (() => string[]) => () => ['--net-conf', conf(), '--subnet', '198.19.1.0/24', '--iface', 'eth1', '--subnet-file', subnetFile, ...more];
  type Case = { name: string; args: () => string[]; err: RegExp; wrap?: string[]; env?: NodeJS.ProcessEnv; before?: () => Promise<void> | void };
  const cases: Case[] = [
    { name: 'unparseable net-conf JSON', args: () => ['--net-conf', f('broken.json', '{"Network": "198.19.0.0/16",'), '--subnet', '198.19.1.0/24', '--iface', 'eth1', '--subnet-file', subnetFile], err: /^overlayd: error: .*broken\.json: invalid JSON/ },
    { name: 'net-conf file missing', args: () => ['--net-conf', join(dir, 'nope.json'), '--subnet', '198.19.1.0/24'], err: /^overlayd: error: --net-conf .*nope\.json: no such file$/ },
    { name: 'unknown backend Type', args: () => ['--net-conf', f('ipip.json', '{"Network": "198.19.0.0/16", "Backend": {"Type": "ipip"}}'), '--subnet', '198.19.1.0/24', '--iface', 'eth1'], err: /Backend\.Type "ipip" is not supported by overlayd \(supported: "host-gw", "udp", "vxlan"\)$/ },
    { name: 'subnet outside Network', args: base(() => udpConf).bind(null), err: /^overlayd: error: --subnet 198\.20\.1\.0\/24 is outside Network 198\.19\.0\.0\/16$/ },
    { name: 'interface that does not exist', args: () => ['--net-conf', udpConf, '--subnet', '198.19.1.0/24', '--iface', 'eth9', '--subnet-file', subnetFile], err: /^overlayd: error: interface "eth9" does not exist \(have: .*eth1.*\)$/ },
    { name: 'bad --iface-regex', args: () => ['--net-conf', udpConf, '--subnet', '198.19.1.0/24', '--iface-regex', 'eth(1', '--subnet-file', subnetFile], err: /^overlayd: error: --iface-regex "eth\(1" is not a valid regular expression/ },
    { name: 'regex that only a substring of an interface name matches (bond1|eth)', args: () => ['--net-conf', udpConf, '--subnet', '198.19.1.0/24', '--iface-regex', 'bond1|eth', '--subnet-file', subnetFile], err: /no interface with an IPv4 address matches --iface-regex "bond1\|eth"/ },
    { name: 'malformed peers file', args: () => [...base(() => udpConf)(), '--peers', f('peers-bad.json', '{"198.19.2.0-24": {"PublicIP": "198.18.0.2"}}')], err: /peers-bad\.json: "198\.19\.2\.0-24": BackendType null is not "udp", "vxlan" or "host-gw"$/ },
    { name: 'unknown flag', args: () => [...base(() => udpConf)(), '--ifac', 'eth1'], err: /^overlayd: error: Unknown option '--ifac'/ },
    { name: 'busy-poll window out of range', args: () => [...base(() => udpConf)(), '--busy-poll-us', '2000000'], err: /^overlayd: error: --busy-poll-us "2000000" must be an integer in 0\.\.1000000$/ },
    { name: 'no CAP_NET_ADMIN (setpriv drops it)', args: base(() => udpConf), wrap: ['setpriv', '--bounding-set', '-net_admin', '--inh-caps', '-net_admin', '--'], err: /^overlayd: error: CAP_NET_ADMIN is required/ },
    { name: 'UDP port in use (udp 8285)', args: base(() => udpConf), before: async () => { await hold('udp', 8285); }, err: /^overlayd: error: UDP port 8285 \(Backend\.Port of udp\) is already in use$/ },
    { name: 'healthz port in use', args: base(() => udpConf, '--healthz-port', '19999'), before: async () => { await hold('tcp', 19999); }, err: /^overlayd: error: --healthz-ip 127\.0\.0\.1 --healthz-port 19999: address 127\.0\.0\.1:19999 already in use$/ },
    { name: 'VXLAN port held by a kernel vxlan device (left alone)', args: base(() => vxlanConf), before: () => { a.ip('link', 'add', 'kvx0', 'type', 'vxlan', 'id', '9', 'dstport', '8472', 'dev', 'eth1'); a.ip('link', 'set', 'kvx0', 'up'); }, err: /^overlayd: error: UDP port 8472 \(Backend\.Port of vxlan\) is already in use$/ },
    { name: 'backend start fails after creating its device (fake): stopped, device removed', args: base(() => udpConf, '--backend-module', FAKE, '--pcap', join(dir, 'fail.pcap')), env: { FAKE_START_FAIL: '1', FAKE_DEVICE: 'fakefail0' }, err: /^overlayd: error: backend udp failed to start: fake start failure after creating the device$/ },
  ];
  // fix the one case that needs a different subnet
  cases[3]!.args = () => ['--net-conf', udpConf, '--subnet', '198.20.1.0/24', '--iface', 'eth1', '--subnet-file', subnetFile];

  it.each(cases)('bad configuration: $name -> one-line error, exit 2, nothing left', async (c) => {
    if (c.before) await c.before();
    const before = nsState(a);
    const r = runOverlayd(a, c.args(), { wrap: c.wrap, env: c.env });
    expect(r.stderr.split('\n').filter(Boolean), r.stderr).toHaveLength(1);
    expect(r.stderr.trim()).toMatch(c.err);
    expect(r.status).toBe(2);
    expect(r.stdout).toBe('');
    expect(nsState(a)).toBe(before);
    expect(existsSync(subnetFile)).toBe(false);
    expect(existsSync(join(dir, 'fail.pcap'))).toBe(false);
    for (const h of holders.splice(0)) h.kill('SIGKILL');
  });

  it('the incident: --iface-regex eth1|bond1 picks eth1, not veth17f90f70 (listed first), and says why', async () => {
    const args = ['--net-conf', udpConf, '--subnet', '198.19.1.0/24', '--iface-regex', 'eth1|bond1', '--subnet-file', subnetFile, '--backend-module', FAKE];
    const d = startOverlayd(a, args, { FAKE_DEVICE: 'fakeinc0' });
    try {
      const line = await d.waitFor(/underlay interface \S+ \(\S+\): picked because .*/);
      expect(line).toMatch(/underlay interface eth1 \(198\.18\.0\.1\): picked because its whole name matches --iface-regex "eth1\|bond1" \(as \^\(\?:eth1\|bond1\)\$\)/);
      await d.waitFor(/running/);
      expect(JSON.parse(d.out().trim())).toEqual({ '198.19.1.0-24': { PublicIP: '198.18.0.1', PublicIPv6: null, BackendType: 'udp' } });
      // The fake backend holds no event-loop handle: the daemon itself must keep running.
      await sleep(700);
      expect(d.child.exitCode, d.err()).toBe(null);
    } finally {
      d.child.kill('SIGTERM');
      expect(await d.exited, d.err()).toBe(0);
    }
  });

  it('lifecycle (fake backend module): device + subnet.env + lease, peers file live edits and SIGHUP, SIGTERM leaves nothing', async () => {
    const before = nsState(a);
    const peers = f('peers.json', JSON.stringify({ '198.19.2.0-24': { PublicIP: '198.18.0.2', BackendType: 'udp' } }));
    const log = join(dir, 'calls.jsonl');
    const leaseOut = join(dir, 'lease.json');
    const d = startOverlayd(a, [...base(() => udpConf)(), '--backend-module', FAKE, '--peers', peers, '--lease-out', leaseOut, '--stats-interval', '1', '--peers-debounce-ms', '100'], { FAKE_DEVICE: 'fakelc0', FAKE_BACKEND_LOG: log });
    try {
      await d.waitFor(/running/);
      expect(a.ip('-br', 'link', 'show', 'fakelc0')).toMatch(/fakelc0/);
      expect(a.ip('route', 'show', '198.19.2.0/24')).toMatch(/dev fakelc0/);
      expect(readFileSync(subnetFile, 'utf8')).toBe('FLANNEL_NETWORK=198.19.0.0/16\nFLANNEL_SUBNET=198.19.1.1/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=false\n');
      expect(readFileSync(leaseOut, 'utf8').trim()).toBe(d.out().trim());
      // live add
      writeFileSync(peers, JSON.stringify({ '198.19.2.0-24': { PublicIP: '198.18.0.2', BackendType: 'udp' }, '198.19.3.0-24': { PublicIP: '198.18.0.3', BackendType: 'udp' } }));
      await d.waitFor(/peer added: \{"198\.19\.3\.0-24"/);
      expect(a.ip('route', 'show', '198.19.3.0/24')).toMatch(/dev fakelc0/);
      // stats line
      await d.waitFor(/stats: peers=2 tx=5pkt\/500B .* drops=unknown-peer=2/);
      // mid-edit garbage keeps peers
      writeFileSync(peers, '{"198.19.2.0-24": ');
      await d.waitFor(/error: .*peers\.json: invalid JSON.*keeping the 2 current peers/);
      // SIGHUP after a (non-watched-looking) fix: remove .2
      writeFileSync(peers, JSON.stringify({ '198.19.3.0-24': { PublicIP: '198.18.0.3', BackendType: 'udp' } }));
      d.child.kill('SIGHUP');
      await d.waitFor(/peer removed: 198\.19\.2\.0-24/);
      expect(a.ip('route', 'show', '198.19.2.0/24')).toBe('');
      await sleep(300);
      const calls = readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { op: string; subnet?: string; lease?: { subnet: string } });
      expect(calls.map((c) => `${c.op} ${c.subnet ?? c.lease?.subnet ?? ''}`.trim())).toEqual(['start', 'addPeer 198.19.2.0/24', 'addPeer 198.19.3.0/24', 'removePeer 198.19.2.0/24']);
    } finally {
      d.child.kill('SIGTERM');
    }
    expect(await d.exited, d.err()).toBe(0);
    expect(d.err()).toMatch(/SIGTERM: stopping/);
    expect(nsState(a)).toBe(before);
    rmSync(subnetFile, { force: true });
  });
});
