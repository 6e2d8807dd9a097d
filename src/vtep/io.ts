/**
 * Default device/socket factory: src/tun's TUN/TAP devices and UDP transports,
 * loaded on first use.
 */
import type { PacketDevice, UdpTransport } from '../tun/types.js';
import type { DataplaneIo } from './options.js';

type DeviceCtor = { open?: (name: string) => PacketDevice | Promise<PacketDevice>; new (name: string): PacketDevice };
interface TunModule {
  TunDevice?: DeviceCtor;
  TapDevice?: DeviceCtor;
  createTransport?: (kind: 'dgram' | 'mmsg') => UdpTransport;
}

let mod: TunModule | undefined;

async function load(): Promise<TunModule> {
  if (!mod) mod = (await import('../tun/index.js')) as unknown as TunModule;
  return mod;
}

function openWith(ctor: DeviceCtor | undefined, what: string, name: string): PacketDevice | Promise<PacketDevice> {
  if (!ctor) throw new Error(`src/tun does not export ${what}`);
  return typeof ctor.open === 'function' ? ctor.open(name) : new ctor(name);
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
    if (!mod?.createTransport) throw new Error('src/tun not loaded or has no createTransport');
    return mod.createTransport(kind);
  },
};

/** Load src/tun ahead of createTransport (called by start()). */
export async function preloadIo(): Promise<void> {
  await load();
}
