/**
 * IPv4-only devices get IPv6 turned off before they go up (issue #16): the kernel then sends
 * nothing IPv6 through them (router solicitations, MLD reports), which a backend would read and
 * drop as tx_not_ipv4 right after start. Each case runs test/tun/ipv6-child.ts in a namespace.
 * The control (ipv6: true) shows that the kernel does send such packets through a fresh TUN,
 * so the zero counts below are not an artefact of the wait.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { Testbed, requireNetns } from '../helpers/netns.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const CHILD = join(ROOT, 'test', 'tun', 'ipv6-child.ts');

describe.runIf(requireNetns())('IPv6 off on IPv4-only devices', () => {
  const tb = new Testbed('tn6');
  afterAll(() => tb.destroy());

  /** Run the child in a fresh namespace host (with a 198.18.0.1 underlay for the backends). */
  const run = (mode: string, ms = 2000): Record<string, unknown> => {
    const h = tb.host(mode.replace(/-/g, ''));
    const peer = tb.host(`${mode.replace(/-/g, '')}p`);
    tb.link(h, 'u0', '198.18.0.1/24', peer, 'u0', '198.18.0.2/24');
    const r = spawnSync('ip', ['netns', 'exec', h.name, process.execPath, '--import', 'tsx', CHILD, mode, String(ms)], { cwd: ROOT, encoding: 'utf8', timeout: 30_000 });
    if (r.status !== 0) throw new Error(`child ${mode} exited ${r.status}: ${r.stderr}`);
    return JSON.parse(r.stdout) as Record<string, unknown>;
  };

  it('control: a TUN that keeps IPv6 gets the kernel\'s own IPv6 packets within two seconds', () => {
    const r = run('tun-on');
    expect(r.disableIpv6).toBe('0');
    expect(r.v6).toBeGreaterThan(0);
  });

  it('a TUN brought up with IPv4 addresses only: no IPv6 address, disable_ipv6 1, no IPv6 packet read', () => {
    const r = run('tun-off');
    expect(r).toEqual({ v6: 0, other: 0, disableIpv6: '1', ipv6Addrs: 0 });
  });

  it.each(['vxlan', 'udp'])('%s backend: zero tx_not_ipv4 drops two seconds after start', (mode) => {
    const r = run(mode) as { drops: Record<string, number>; disableIpv6: string; ipv6Addrs: number };
    expect(r.drops.tx_not_ipv4 ?? 0).toBe(0);
    expect(r.disableIpv6).toBe('1');
    expect(r.ipv6Addrs).toBe(0);
  });
});
