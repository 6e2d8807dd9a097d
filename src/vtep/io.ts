/**
 * Default device/socket factory: src/tun's TUN/TAP devices and UDP transports,
 * loaded on first use.
 */
import type { PacketDevice, UdpTransport } from '../tun/types.js';
import type { DataplaneIo } from './options.js';
import { FallbackDgramTransport } from './dgram-fallback.js';

type DeviceCtor = { create?: (opts: { name: string }) => Promise<PacketDevice>; open?: (opts: { name: string }) => PacketDevice };
interface TunModule {
  TunDevice?: DeviceCtor;
  TapDevice?: DeviceCtor;
  createTransport?: (kind: 'dgram' | 'mmsg') => UdpTransport;
}

let mod: TunModule | undefined;

async function load(): Promise<TunModule> {
  if (!mod) {
    const m = { ...((await import('../tun/index.js')) as unknown as TunModule) };
    if (!m.TunDevice) {
      // src/tun's device module before it is re-exported from its index
      const spec = '../tun/device.js';
      try { Object.assign(m, (await import(spec)) as TunModule); } catch { /* not there */ }
    }
    mod = m;
  }
  return mod;
}

function openWith(ctor: DeviceCtor | undefined, what: string, name: string): PacketDevice | Promise<PacketDevice> {
  if (!ctor) throw new Error(`src/tun does not export ${what}`);
  if (typeof ctor.open === 'function') return ctor.open({ name });
  if (typeof ctor.create === 'function') return ctor.create({ name });
  throw new Error(`src/tun's ${what} has no open()/create()`);
}

/** The default DataplaneIo (src/tun). */
export const defaultIo: DataplaneIo = {
  async openTun(name) {
    return openWith((await load()).TunDevice, 'TunDevice', name);
  },
  async openTap(name) {
    return openWith((await load()).TapDevice, 'TapDevice', name);
  },
  createTransport(kind) {
    if (mod?.createTransport) return mod.createTransport(kind);
    if (kind === 'dgram') return new FallbackDgramTransport();
    throw new Error('src/tun has no createTransport (mmsg transport unavailable)');
  },
};

/** Load src/tun ahead of createTransport (called by start()). */
export async function preloadIo(): Promise<void> {
  await load();
}
