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
});
