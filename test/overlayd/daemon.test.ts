import { DROP_REASONS } from '../../src/vtep/counters.js';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, MAX_PEERS_FILE_BYTES, Overlayd, parseCli, parseEnvFile, resolveConfig, type BackendParams, type DaemonConfig } from '../../src/overlayd/index.js';
import { FakeBackend } from './fixtures/fake-backend.js';

const dir = mkdtempSync(join(tmpdir(), 'od-daemon-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const ifaces = [{ name: 'lo', addrs: ['127.0.0.1'], internal: true }, { name: 'u0', addrs: ['198.18.0.1'], internal: false }];
const noRoute = 'Iface\tDestination\n';
let n = 0;
const running: Overlayd[] = [];
afterEach(async () => { for (const d of running.splice(0)) await d.stop(); });

const lease = (i: number, type = 'udp'): Record<string, unknown> => ({ PublicIP: `198.18.0.${i}`, BackendType: type });

function setup(extra: string[] = [], peers: Record<string, unknown> = {}, netConf = '{"Network":"198.19.0.0/16","Backend":{"Type":"udp"}}') {
  const d = join(dir, `t${n++}`);
  mkdirSync(d);
  writeFileSync(join(d, 'net-conf.json'), netConf);
  writeFileSync(join(d, 'peers.json'), JSON.stringify(peers));
  const cmd = parseCli(['--net-conf', join(d, 'net-conf.json'), '--subnet', '198.19.1.0/24', '--iface', 'u0', '--peers', join(d, 'peers.json'),
    '--subnet-file', join(d, 'run', 'flannel', 'subnet.env'), '--lease-out', join(d, 'lease.json'), '--peers-debounce-ms', '50', ...extra]);
  if (cmd.kind !== 'run') throw new Error('not run');
  const cfg = resolveConfig(cmd.options, ifaces, noRoute);
  let be: FakeBackend | undefined;
  const logs: string[] = [];
  const printed: string[] = [];
  const daemon = new Overlayd(cfg, {
    factory: (p: BackendParams) => (be = new FakeBackend(p)),
    log: { info: (m) => logs.push(m), error: (m) => logs.push(`ERROR ${m}`) },
    printLease: (l) => printed.push(l),
    skipPreflight: true,
  });
  running.push(daemon);
  return { d, cfg, daemon, logs, printed, be: () => be!, peersPath: join(d, 'peers.json') };
}

async function until(f: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!f()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('overlayd lifecycle (fake backend)', () => {
  it('start: backend params, subnet.env, lease printed and written, initial peers added (own lease skipped)', async () => {
    const t = setup([], { '198.19.1.0-24': lease(1), '198.19.2.0-24': lease(2) });
    await t.daemon.start();
    const p = t.be().params;
    expect(p).toMatchObject({ type: 'udp', subnet: '198.19.1.0/24', network: '198.19.0.0/16', iface: 'u0', publicIp: '198.18.0.1', port: 8285, mtu: 1472, transport: 'mmsg' });
    expect(parseEnvFile(readFileSync(join(t.d, 'run/flannel/subnet.env'), 'utf8'))).toEqual({
      FLANNEL_NETWORK: '198.19.0.0/16', FLANNEL_SUBNET: '198.19.1.1/24', FLANNEL_MTU: '1472', FLANNEL_IPMASQ: 'false',
    });
    expect(t.printed).toEqual(['{"198.19.1.0-24":{"PublicIP":"198.18.0.1","PublicIPv6":null,"BackendType":"udp"}}']);
    expect(readFileSync(join(t.d, 'lease.json'), 'utf8').trim()).toBe(t.printed[0]);
    expect(t.be().calls.map((c) => c.op)).toEqual(['start', 'addPeer']);
    expect([...t.be().peers.keys()]).toEqual(['198.19.2.0/24']);
    expect(t.logs.some((l) => /underlay interface u0 \(198\.18\.0\.1\): picked because --iface u0/.test(l))).toBe(true);
  });

  it('vxlan: MTU = underlay - 50 and VNI/port from net-conf; foreign backend types are ignored', async () => {
    const t = setup([], { '198.19.2.0-24': lease(2), '198.19.3.0-24': { ...lease(3, 'vxlan'), BackendData: { VNI: 7, VtepMAC: '02:00:00:00:00:03' } } },
      '{"Network":"198.19.0.0/16","Backend":{"Type":"vxlan","VNI":7,"Port":4789}}');
    await t.daemon.start();
    expect(t.be().params).toMatchObject({ type: 'vxlan', vni: 7, port: 4789, mtu: 1450 });
    expect([...t.be().peers.keys()]).toEqual(['198.19.3.0/24']);
    expect(t.logs.some((l) => /ERROR peer 198\.19\.2\.0-24 runs backend udp, we run vxlan; ignored/.test(l))).toBe(true);
  });

  it('peers file edits apply live: only changed peers touched; a syntax error mid-edit keeps the old peers', async () => {
    const t = setup([], { '198.19.2.0-24': lease(2), '198.19.3.0-24': lease(3) });
    await t.daemon.start();
    const be = t.be();
    be.calls.length = 0;
    // add .4, change .3, keep .2
    writeFileSync(t.peersPath, JSON.stringify({ '198.19.2.0-24': lease(2), '198.19.3.0-24': lease(33), '198.19.4.0-24': lease(4) }));
    await until(() => be.calls.length >= 2);
    await new Promise((r) => setTimeout(r, 150));
    expect(be.calls).toEqual([
      { op: 'addPeer', lease: { subnet: '198.19.3.0/24', publicIp: '198.18.0.33', backendType: 'udp' } },
      { op: 'addPeer', lease: { subnet: '198.19.4.0/24', publicIp: '198.18.0.4', backendType: 'udp' } },
    ]);
    be.calls.length = 0;
    // half-written file: nothing changes, an error is logged
    writeFileSync(t.peersPath, '{"198.19.2.0-24": {"PublicIP": "198.18.0.2", ');
    await until(() => t.logs.some((l) => /ERROR .*invalid JSON.*keeping the 3 current peers/.test(l)));
    expect(be.calls).toEqual([]);
    expect(be.peers.size).toBe(3);
    // editor-style replace (rename over): remove .2
    writeFileSync(join(t.d, 'peers.tmp'), JSON.stringify({ '198.19.3.0-24': lease(33), '198.19.4.0-24': lease(4) }));
    renameSync(join(t.d, 'peers.tmp'), t.peersPath);
    await until(() => be.calls.length >= 1);
    await new Promise((r) => setTimeout(r, 150));
    expect(be.calls).toEqual([{ op: 'removePeer', subnet: '198.19.2.0/24' }]);
  });

  it('a steady stream of edits is still applied: the debounce waits at most --peers-max-wait-ms', async () => {
    const t = setup(['--peers-debounce-ms', '200', '--peers-max-wait-ms', '300'], { '198.19.2.0-24': lease(2) });
    await t.daemon.start();
    const r0 = t.daemon.reloads;
    // an edit every 40 ms for 1.2 s: each within the 200 ms debounce of the last
    for (let i = 0; i < 30; i++) {
      writeFileSync(t.peersPath, JSON.stringify({ '198.19.2.0-24': lease(2), [`198.19.${10 + i}.0-24`]: lease(10 + i) }));
      await new Promise((r) => setTimeout(r, 40));
    }
    const during = t.daemon.reloads - r0;
    expect(during, 'reloads while the edits kept coming').toBeGreaterThanOrEqual(2);
    await until(() => t.be().peers.has('198.19.39.0/24'));
  });

  it('a peers file over the size limit is not read: the current peers stay, one clear line; at start, a ConfigError', async () => {
    const t = setup([], { '198.19.2.0-24': lease(2) });
    await t.daemon.start();
    writeFileSync(t.peersPath, Buffer.alloc(MAX_PEERS_FILE_BYTES + 1, 0x01));
    expect(t.daemon.reloadPeers('SIGHUP')).toBe(false);
    expect(t.logs.filter((l) => /ERROR peers file .*: 16777217 bytes, over the 16 MiB limit; not read; keeping the 1 current peers/.test(l))).toHaveLength(1);
    expect(t.logs.join('\n')).not.toMatch(/\u0001/);
    expect([...t.be().peers.keys()]).toEqual(['198.19.2.0/24']);
    const cmd = parseCli(['--net-conf', join(t.d, 'net-conf.json'), '--subnet', '198.19.1.0/24', '--iface', 'u0', '--peers', t.peersPath]);
    if (cmd.kind !== 'run') throw new Error('not run');
    expect(() => resolveConfig(cmd.options, ifaces, noRoute)).toThrow(/--peers .*: 16777217 bytes, over the 16 MiB limit/);
  });

  it('20,000 peers are parsed and applied in slices: the event loop runs between them; one summary line; a newer file read meanwhile wins', async () => {
    const t = setup(['--peers-debounce-ms', '60000'], {});
    await t.daemon.start();
    const many = (gen: number): Record<string, unknown> => {
      const m: Record<string, unknown> = {};
      for (let i = 0; i < 20_000; i++) m[`198.19.${100 + (i >> 8)}.${i & 255}-32`] = lease(2 + ((i + gen) % 200));
      return m;
    };
    writeFileSync(t.peersPath, JSON.stringify(many(0)));
    let turns = 0;
    let appliedAtFirstTurn = -1;
    const tick = (): void => { if (turns++ === 0) appliedAtFirstTurn = t.be().peers.size; if (t.be().peers.size < 20_000) setImmediate(tick); };
    setImmediate(tick);
    const r0 = t.daemon.reloads;
    expect(t.daemon.reloadPeers('SIGHUP')).toBe(true);
    await t.daemon.peersApplied();
    expect(appliedAtFirstTurn, 'the event loop ran before all 20,000 were applied').toBeLessThan(20_000);
    expect(turns).toBeGreaterThan(2);
    expect(t.daemon.reloads - r0).toBe(1);
    expect(t.be().peers.size).toBe(20_000);
    expect(t.logs.filter((l) => /^peers: 20000 added or changed, 0 removed \(SIGHUP\); 20000 now$/.test(l))).toHaveLength(1);
    // the file changes twice in a row: the second read replaces the first while it is parsed
    writeFileSync(t.peersPath, JSON.stringify(many(1)));
    expect(t.daemon.reloadPeers('SIGHUP')).toBe(true);
    writeFileSync(t.peersPath, JSON.stringify({ '198.19.200.0-24': lease(9) }));
    expect(t.daemon.reloadPeers('SIGHUP')).toBe(true);
    await t.daemon.peersApplied();
    expect([...t.be().peers.keys()]).toEqual(['198.19.200.0/24']);
    expect(t.logs.filter((l) => /^peers: 1 added or changed, 20000 removed \(SIGHUP\); 1 now$/.test(l))).toHaveLength(1);
    expect(t.logs.filter((l) => /^peer (added|removed): /.test(l))).toHaveLength(0);
  });

  it('reloadPeers (SIGHUP) re-reads the file; unchanged file touches nothing', async () => {
    const t = setup(['--peers-debounce-ms', '60000'], { '198.19.2.0-24': lease(2) });
    await t.daemon.start();
    const be = t.be();
    be.calls.length = 0;
    expect(t.daemon.reloadPeers('SIGHUP')).toBe(true);
    expect(be.calls).toEqual([]);
    writeFileSync(t.peersPath, '{}');
    expect(t.daemon.reloadPeers('SIGHUP')).toBe(true);
    expect(be.calls).toEqual([{ op: 'removePeer', subnet: '198.19.2.0/24' }]);
  });

  it('our own subnet in the peers file is skipped with one log line (again only when the entry changes)', async () => {
    const t = setup(['--peers-debounce-ms', '60000'], { '198.19.1.0-24': lease(1), '198.19.2.0-24': lease(2) });
    await t.daemon.start();
    t.daemon.reloadPeers('SIGHUP');
    t.daemon.reloadPeers('SIGHUP');
    await t.daemon.peersApplied();
    const own = (): string[] => t.logs.filter((l) => /^peer 198\.19\.1\.0-24 is our own subnet; skipped/.test(l));
    expect(own()).toEqual(['peer 198.19.1.0-24 is our own subnet; skipped (our lease)']);
    writeFileSync(t.peersPath, JSON.stringify({ '198.19.1.0-24': lease(9), '198.19.2.0-24': lease(2) }));
    t.daemon.reloadPeers('SIGHUP');
    t.daemon.reloadPeers('SIGHUP');
    await t.daemon.peersApplied();
    expect(own()).toEqual(['peer 198.19.1.0-24 is our own subnet; skipped (our lease)', 'peer 198.19.1.0-24 is our own subnet; skipped (its PublicIP 198.18.0.9 is not ours, 198.18.0.1)']);
    expect(t.be().calls.filter((c) => c.op === 'addPeer')).toHaveLength(1);
  });

  it('net-conf keys nobody reads are logged once at start, as warnings; "vni" is read as VNI', async () => {
    const t = setup([], {}, '{"network": "198.19.0.0/16", "Backend": {"type": "vxlan", "vni": 4242, "MacPrefix": "0e:2a"}}');
    await t.daemon.start();
    expect(t.be().params).toMatchObject({ type: 'vxlan', vni: 4242 });
    expect(t.logs.filter((l) => l.startsWith('warning: '))).toEqual([`warning: ${t.cfg.netConf.warnings[0]}`]);
    expect(t.cfg.netConf.warnings).toEqual([expect.stringMatching(/Backend\."MacPrefix" is read by flanneld but not by overlayd; ignored$/)]);
  });

  it('a failing backend start is stopped, and nothing is left: no subnet.env, no lease file, no capture file', async () => {
    const t = setup(['--pcap', join(dir, `fail${n}.pcap`)]);
    const d2 = new Overlayd(t.cfg, {
      factory: (p) => { const b = new FakeBackend(p); b.failStart = Object.assign(new Error('bind: address in use'), { code: 'EADDRINUSE' }); created = b; return b; },
      log: { info: () => {}, error: () => {} }, printLease: () => {}, skipPreflight: true,
    });
    let created: FakeBackend | undefined;
    await expect(d2.start()).rejects.toThrow(new ConfigError('UDP port 8285 is already in use'));
    expect(created!.calls.map((c) => c.op)).toEqual(['start', 'stop']);
    expect(existsSync(join(t.d, 'run/flannel/subnet.env'))).toBe(false);
    expect(existsSync(join(t.d, 'lease.json'))).toBe(false);
    expect(existsSync(join(dir, `fail${n - 1}.pcap`))).toBe(false);
  });

  it('metrics and healthz over HTTP mirror backend stats', async () => {
    const port = 20000 + Math.floor(Math.random() * 20000);
    const t = setup(['--healthz-port', String(port)], { '198.19.2.0-24': lease(2) });
    await t.daemon.start();
    t.be().counters = { txPackets: 10, txBytes: 1000, rxPackets: 7, rxBytes: 700, drops: { 'unknown-peer': 3, 'bad-vni': 1 }, peers: { '198.18.0.2': { txPackets: 10, txBytes: 1000, rxPackets: 7, rxBytes: 700 } } };
    const h = await fetch(`http://127.0.0.1:${port}/healthz`);
    expect(h.status).toBe(200);
    expect(await h.text()).toBe('ok');
    const m = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(m).toMatch(/^# TYPE overlayd_tx_packets_total counter$/m);
    expect(m).toMatch(/^overlayd_tx_packets_total 10$/m);
    expect(m).toMatch(/^overlayd_rx_bytes_total 700$/m);
    expect(m).toMatch(/^overlayd_drops_total\{reason="unknown-peer"\} 3$/m);
    expect(m).toMatch(/^overlayd_drops_total\{reason="bad-vni"\} 1$/m);
    // every reason the dataplane knows is declared, at 0 until it happens
    for (const r of DROP_REASONS) expect(m).toMatch(new RegExp(`^overlayd_drops_total\\{reason="${r}"\\} 0$`, 'm'));
    expect(m).toMatch(/^overlayd_kernel_errors_total 0$/m);
    expect(m).toMatch(/^overlayd_peer_rx_packets_total\{peer="198\.18\.0\.2"\} 7$/m);
    expect(m).toMatch(/^overlayd_peers 1$/m);
    expect(m).toMatch(/^overlayd_info\{backend="udp",subnet="198\.19\.1\.0\/24",public_ip="198\.18\.0\.1",iface="u0",transport="mmsg"\} 1$/m);
    // counters follow the backend (not accumulated twice)
    t.be().counters.txPackets = 12;
    const m2 = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(m2).toMatch(/^overlayd_tx_packets_total 12$/m);
    expect((await fetch(`http://127.0.0.1:${port}/nope`)).status).toBe(404);
    await t.daemon.stop();
    await expect(fetch(`http://127.0.0.1:${port}/healthz`)).rejects.toThrow();
  });

  it('a peer the backend rejects is logged, the others applied, and it is retried on the next reload', async () => {
    const t = setup(['--peers-debounce-ms', '60000'], { '198.19.2.0-24': lease(2), '198.19.3.0-24': lease(3) });
    await t.daemon.start();
    const be = t.be();
    const orig = be.addPeer.bind(be);
    let reject = true;
    be.addPeer = (l) => { if (reject && l.subnet === '198.19.4.0/24') throw new Error('no room'); orig(l); };
    writeFileSync(t.peersPath, JSON.stringify({ '198.19.2.0-24': lease(2), '198.19.3.0-24': lease(3), '198.19.4.0-24': lease(4), '198.19.5.0-24': lease(5) }));
    t.daemon.reloadPeers('SIGHUP');
    expect(t.logs.some((l) => /ERROR adding peer \{"198\.19\.4\.0-24".*no room/.test(l))).toBe(true);
    expect([...t.daemon.currentPeers().keys()].sort()).toEqual(['198.19.2.0/24', '198.19.3.0/24', '198.19.5.0/24']);
    reject = false;
    t.daemon.reloadPeers('SIGHUP');
    expect(be.peers.has('198.19.4.0/24')).toBe(true);
    expect(t.daemon.currentPeers().size).toBe(4);
  });

  it('stop is idempotent and stops the backend once', async () => {
    const t = setup();
    await t.daemon.start();
    await t.daemon.stop();
    await t.daemon.stop();
    expect(t.be().calls.filter((c) => c.op === 'stop')).toHaveLength(1);
  });

  it('config resolution errors are ConfigErrors naming the problem', () => {
    const d = join(dir, 'bad');
      mkdirSync(d, { recursive: true });
    writeFileSync(join(d, 'nc.json'), '{"Network":"198.19.0.0/16"}');
    const run = (args: string[]): DaemonConfig => {
      const c = parseCli(['--net-conf', join(d, 'nc.json'), ...args]);
      if (c.kind !== 'run') throw new Error('x');
      return resolveConfig(c.options, ifaces, noRoute);
    };
    expect(() => run(['--subnet', '198.19.1.0/24', '--iface', 'eth7'])).toThrow(/interface "eth7" does not exist \(have: lo, u0\)/);
    expect(() => run(['--subnet', '198.19.1.0/24', '--iface', 'u0', '--peers', join(d, 'missing.json')])).toThrow(/--peers .*missing\.json: no such file/);
    expect(() => run(['--subnet', '198.19.1.0/24', '--iface', 'u0', '--healthz-port', '1', '--healthz-ip', 'x'])).toThrow(/--healthz-ip "x"/);
    expect(() => parseCli(['--net-conf', 'x', '--subnet', 'y', '--transport', 'tcp'])).toThrow(/--transport "tcp"/);
  });

  it('--keep-device-on-exit, also as FLANNELD_KEEP_DEVICE_ON_EXIT, reaches the config', () => {
    const d = join(dir, 'keep');
    mkdirSync(d, { recursive: true });
    writeFileSync(join(d, 'nc.json'), '{"Network":"198.19.0.0/16"}');
    const cfg = (args: string[], env: NodeJS.ProcessEnv = {}): DaemonConfig => {
      const c = parseCli(['--net-conf', join(d, 'nc.json'), '--subnet', '198.19.1.0/24', '--iface', 'u0', ...args], env);
      if (c.kind !== 'run') throw new Error('x');
      return resolveConfig(c.options, ifaces, noRoute);
    };
    expect(cfg([]).keepDeviceOnExit).toBeUndefined();
    expect(cfg(['--keep-device-on-exit']).keepDeviceOnExit).toBe(true);
    expect(cfg([], { FLANNELD_KEEP_DEVICE_ON_EXIT: 'true' }).keepDeviceOnExit).toBe(true);
    expect(cfg([], { FLANNELD_KEEP_DEVICE_ON_EXIT: '0' }).keepDeviceOnExit).toBeUndefined();
    expect(() => cfg([], { FLANNELD_KEEP_DEVICE_ON_EXIT: 'yes' })).toThrow(/FLANNELD_KEEP_DEVICE_ON_EXIT="yes" must be true or false/);
  });
});
