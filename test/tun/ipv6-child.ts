/**
 * Child for test/tun/ipv6-off.test.ts, run inside a test namespace (`ip netns exec`): brings up
 * an IPv4-only device (a bare TUN, or a backend's), waits `ms`, and prints one JSON line with
 * what came out of it: IPv6 packets read from the TUN, or the backend's drops.
 * Modes: tun-off (default options), tun-on (ipv6: true, the control), vxlan, udp.
 */
import { readFileSync } from 'node:fs';
import { TunDevice, Rtnl } from '../../src/tun/index.js';
import { lookupBackend } from '../../src/vtep/index.js';

const mode = process.argv[2];
const ms = Number(process.argv[3] ?? 2000);
const sysctl = (dev: string): string => readFileSync(`/proc/sys/net/ipv6/conf/${dev}/disable_ipv6`, 'utf8').trim();
const linkLocal = async (dev: string): Promise<number> => (await Rtnl.shared().listAddresses(dev, 6)).length;

async function main(): Promise<void> {
  if (mode === 'tun-off' || mode === 'tun-on') {
    const dev = await TunDevice.create({ name: 'v6t0', mtu: 1400, up: true, addresses: ['198.19.9.1/24'], ...(mode === 'tun-on' ? { ipv6: true } : {}) });
    let v6 = 0;
    let other = 0;
    dev.onBatch((slots, n) => {
      for (let i = 0; i < n; i++) if (slots[i]!.buf[slots[i]!.off]! >> 4 === 6) v6++; else other++;
    });
    await new Promise((r) => setTimeout(r, ms));
    process.stdout.write(`${JSON.stringify({ v6, other, disableIpv6: sysctl('v6t0'), ipv6Addrs: await linkLocal('v6t0') })}\n`);
    dev.close();
    return;
  }
  const type = mode === 'udp' ? 'udp' : 'vxlan';
  const be = lookupBackend(type)!.create({
    network: '198.19.0.0/16', subnet: '198.19.1.0/24', publicIp: '198.18.0.1', mtu: 1500, transport: 'mmsg',
  });
  await be.start();
  await new Promise((r) => setTimeout(r, ms));
  const dev = type === 'udp' ? 'flannel0' : 'flannel.1';
  process.stdout.write(`${JSON.stringify({ drops: be.stats().drops, disableIpv6: sysctl(dev), ipv6Addrs: await linkLocal(dev) })}\n`);
  await be.stop();
}

main().then(() => process.exit(0), (e: Error) => { process.stderr.write(`${e.stack ?? e.message}\n`); process.exit(1); });
