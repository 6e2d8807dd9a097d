import { afterAll, describe, expect, it } from 'vitest';
import { fileURLToPath } from 'node:url';
import { resolve } from 'node:path';
import { Testbed, requireNetns, sh } from '../helpers/netns.js';

const ROOT = resolve(fileURLToPath(import.meta.url), '../../..');

describe.runIf(requireNetns())('underlay interface discovery over rtnetlink', () => {
  const tb = new Testbed('ifn');
  afterAll(() => tb.destroy());

  it('finds a link that is up but not yet RUNNING (os.networkInterfaces() misses it)', () => {
    const h = tb.host('a');
    // A veth whose peer stays down: ul0 is administratively up with an address but has no carrier.
    h.ip('link', 'add', 'ul0', 'type', 'veth', 'peer', 'name', 'ul1');
    h.ip('addr', 'add', '198.18.0.1/24', 'dev', 'ul0');
    h.ip('link', 'set', 'ul0', 'up');
    const script = "import { listInterfaces, listInterfacesFrom } from './src/overlayd/iface.ts'; import { networkInterfaces } from 'node:os';" +
      'console.log(JSON.stringify({ nl: listInterfaces(), os: listInterfacesFrom(networkInterfaces()) }));';
    const out = sh('ip', ['netns', 'exec', h.name, process.execPath, '--import', 'tsx', '--input-type=module', '-e', script], { cwd: ROOT });
    const r = JSON.parse(out) as { nl: { name: string; addrs: string[]; internal: boolean }[]; os: { name: string }[] };
    expect(r.os.map((i) => i.name)).not.toContain('ul0'); // the libuv behaviour this guards against
    expect(r.nl).toContainEqual({ name: 'ul0', addrs: ['198.18.0.1'], internal: false });
    expect(r.nl.find((i) => i.name === 'lo')?.internal).toBe(true);
    // Kernel (ifindex) order: lo first.
    expect(r.nl[0]!.name).toBe('lo');
  });

  it('--iface-can-reach: the interface and source address of the kernel\'s route to the address (ip route get)', () => {
    const h = tb.host('b');
    const peer = tb.host('c');
    tb.link(h, 'd0', '198.18.0.1/24', peer, 'p0', '198.18.0.2/24');
    tb.link(h, 'd1', '198.18.1.1/24', peer, 'p1', '198.18.1.254/24');
    h.ip('route', 'add', '198.18.5.0/24', 'via', '198.18.1.254', 'dev', 'd1');
    const script = "import { pickInterface } from './src/overlayd/iface.ts';" +
      "const out = {}; for (const a of ['198.18.5.7', '198.18.0.9', '198.18.1.3']) out[a] = pickInterface({ canReach: a });" +
      "try { pickInterface({ canReach: '198.19.9.9' }); } catch (e) { out.err = e.message; }" +
      'console.log(JSON.stringify(out));';
    const r = JSON.parse(sh('ip', ['netns', 'exec', h.name, process.execPath, '--import', 'tsx', '--input-type=module', '-e', script], { cwd: ROOT })) as Record<string, { name: string; localIp: string; reason: string }> & { err: string };
    expect(r['198.18.5.7']).toMatchObject({ name: 'd1', localIp: '198.18.1.1', reason: "the kernel's route to --iface-can-reach 198.18.5.7 goes out of it with source 198.18.1.1" });
    expect(r['198.18.0.9']).toMatchObject({ name: 'd0', localIp: '198.18.0.1' });
    expect(r['198.18.1.3']).toMatchObject({ name: 'd1', localIp: '198.18.1.1' });
    expect(r.err).toMatch(/^--iface-can-reach 198\.19\.9\.9: no route to it \(.*ENETUNREACH/);
  });
});
