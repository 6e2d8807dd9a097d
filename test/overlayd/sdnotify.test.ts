/**
 * systemd readiness without libsystemd: sdNotify sends one datagram to $NOTIFY_SOCKET (a path or
 * an abstract '@name') through the addon; overlayd sends READY=1 (with STATUS and MAINPID) once it
 * forwards and STOPPING=1 on SIGTERM. A fake NOTIFY_SOCKET listener (python3, a Unix datagram
 * socket) records what arrives.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sdNotify } from '../../src/overlayd/index.js';
import { Testbed, requireNetns } from '../helpers/netns.js';
import { sleep, startOverlayd } from './helpers.js';

/** A Unix datagram listener at `addr` ('@name': abstract) printing each datagram as a JSON string line. */
function listener(addr: string): { p: ChildProcess; got: () => string[]; ready: Promise<void> } {
  const py = `import socket,sys,json
s=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM)
a=sys.argv[1]
s.bind('\\0'+a[1:] if a.startswith('@') else a)
print('"listening"',flush=True)
while True:
  d=s.recv(4096)
  print(json.dumps(d.decode()),flush=True)`;
  const p = spawn('python3', ['-c', py, addr], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  let onReady: () => void = () => {};
  const ready = new Promise<void>((r) => { onReady = r; });
  p.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    if (out.includes('"listening"')) onReady();
  });
  const got = (): string[] => out.split('\n').filter((l) => l !== '' && l !== '"listening"').map((l) => JSON.parse(l) as string);
  return { p, got, ready };
}

describe('sdNotify', () => {
  const dir = mkdtempSync(join(tmpdir(), 'od-sdn-'));
  const procs: ChildProcess[] = [];
  afterAll(() => {
    for (const p of procs) p.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('sends one datagram to a path or an abstract socket; no NOTIFY_SOCKET: false; a missing socket: an error', async () => {
    const path = join(dir, 'notify.sock');
    const abs = `@od-sdn-test-${process.pid}`;
    const l1 = listener(path);
    const l2 = listener(abs);
    procs.push(l1.p, l2.p);
    await Promise.all([l1.ready, l2.ready]);
    expect(sdNotify('READY=1\nSTATUS=x', { NOTIFY_SOCKET: path })).toBe(true);
    expect(sdNotify('STOPPING=1', { NOTIFY_SOCKET: abs })).toBe(true);
    expect(sdNotify('READY=1', {})).toBe(false);
    expect(() => sdNotify('READY=1', { NOTIFY_SOCKET: join(dir, 'none.sock') })).toThrow(/No such file or directory/);
    const end = Date.now() + 5000;
    while ((l1.got().length < 1 || l2.got().length < 1) && Date.now() < end) await sleep(20);
    expect(l1.got()).toEqual(['READY=1\nSTATUS=x']);
    expect(l2.got()).toEqual(['STOPPING=1']);
  });
});

describe.runIf(requireNetns())('overlayd under a fake systemd (Type=notify)', () => {
  const tb = new Testbed('odsdn');
  const dir = mkdtempSync(join(tmpdir(), 'od-sdn2-'));
  afterAll(() => {
    tb.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('READY=1 with STATUS and MAINPID once it forwards, STOPPING=1 on SIGTERM', async () => {
    const h = tb.host('a');
    h.ip('link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0p');
    h.ip('addr', 'add', '198.18.0.1/24', 'dev', 'eth0');
    h.ip('link', 'set', 'eth0', 'up');
    h.ip('link', 'set', 'eth0p', 'up');
    writeFileSync(join(dir, 'nc.json'), JSON.stringify({ Network: '198.19.0.0/16', Backend: { Type: 'udp' } }));
    const sock = join(dir, 'notify.sock');
    const l = listener(sock);
    tb.track(l.p);
    await l.ready;
    const d = startOverlayd(h, ['--net-conf', join(dir, 'nc.json'), '--subnet', '198.19.1.0/24', '--iface', 'eth0', '--subnet-file', join(dir, 'subnet.env')], { NOTIFY_SOCKET: sock });
    tb.track(d.child);
    await d.waitFor(/told systemd we are ready/);
    expect(l.got()).toEqual([`READY=1\nSTATUS=forwarding (udp, subnet 198.19.1.0/24)\nMAINPID=${d.child.pid}`]);
    d.child.kill('SIGTERM');
    expect(await d.exited).toBe(0);
    const end = Date.now() + 5000;
    while (l.got().length < 2 && Date.now() < end) await sleep(20);
    expect(l.got()[1]).toBe('STOPPING=1');
  });
});
